//! The soak script's short run (scripts/soak.sh, 2 minutes): one publisher
//! and 20 RTMP, 20 LL-HLS and 10 WHEP viewers against the server binary.
//! It asserts what a short run can show: every viewer served, no panic and
//! no error in the server's log, the server's open fds back to the baseline
//! once the viewers have left. RSS trends need the long run (RELIABILITY.md).

use std::time::Duration;

#[tokio::test]
async fn a_two_minute_soak_serves_everyone_logs_no_error_and_leaks_no_fd() {
    let out = std::env::temp_dir().join(format!("mediarelay-soak-{}", std::process::id()));
    // The checkout at run time (see tests/common's repo_dir).
    let repo = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let script = format!("{repo}/scripts/soak.sh");
    let child = tokio::process::Command::new("bash")
        .args([script.as_str(), "120", "20", "20", "10"])
        .env("SOAK_SERVER_BIN", env!("CARGO_BIN_EXE_mediarelay"))
        .env("SOAK_LOAD_BIN", env!("CARGO_BIN_EXE_mediarelay-load"))
        .env("SOAK_OUT", &out)
        .kill_on_drop(true)
        .output();
    let result = tokio::time::timeout(Duration::from_secs(240), child)
        .await
        .expect("the soak ends within 4 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    eprintln!("{stdout}\n{stderr}");
    for check in [
        "ok:   every viewer got media",
        "ok:   no panic in the server's log",
        "ok:   no ERROR in the server's log",
        "ok:   fds back to the baseline",
    ] {
        assert!(stdout.contains(check), "missing {check:?}");
    }
    assert!(result.status.success(), "{}", result.status);
    let _ = std::fs::remove_dir_all(&out);
}
