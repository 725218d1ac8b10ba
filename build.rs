//! Embeds the player page's JavaScript dependency (hls.js, a declared npm
//! dependency in web/package.json, installed by `npm ci` in web/ — the
//! run and test scripts do it) into the binary. Without it the page still
//! plays WebRTC, and LL-HLS where the browser has it natively (Safari).

use std::path::Path;

fn main() {
    let src = Path::new("web/node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=web/package-lock.json");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("hls.min.js");
    let body = std::fs::read(src).unwrap_or_else(|_| {
        println!("cargo:warning=web/node_modules/hls.js is not installed (run `npm ci` in web/): the player page has no hls.js");
        b"/* hls.js not installed at build time (npm ci in web/) */".to_vec()
    });
    std::fs::write(out, body).expect("OUT_DIR is writable");
}
