//! Replays every fuzz target's seed corpus (`fuzz/seeds/`, made by
//! `fuzz/seeds.py` from the fixtures) and every input that once crashed a
//! target (`fuzz/regressions/TARGET/`, see FUZZING.md) through the same
//! functions the fuzzer runs (`mediarelay::fuzzing`), on stable Rust.
//!
//! Seeds are real protocol bytes, so each must also get through its parser
//! (a non-zero count of accepted events, frames or units), except those
//! named `not_*`, which are there to be refused. Regressions only have to
//! return.

use std::path::PathBuf;

use mediarelay::fuzzing::TARGETS;

fn dir(kind: &str, target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

fn files(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_gets_through_its_parser() {
    for (target, run) in TARGETS {
        let seeds = files("seeds", target);
        assert!(
            !seeds.is_empty(),
            "no seeds for {target}: run fuzz/seeds.py"
        );
        for (name, data) in seeds {
            let accepted = run(&data);
            eprintln!("{target}/{name}: {} bytes, accepted {accepted}", data.len());
            if name.starts_with("not_") {
                assert_eq!(accepted, 0, "{target}/{name} should be refused");
            } else {
                assert!(accepted > 0, "{target}/{name} was not accepted");
            }
        }
    }
}

#[test]
fn past_crashes_do_not_crash() {
    for (target, run) in TARGETS {
        for (name, data) in files("regressions", target) {
            eprintln!("{target}/{name}: {} bytes", data.len());
            run(&data);
        }
    }
}

#[test]
fn every_fuzz_target_has_a_binary() {
    let manifest =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{target}.rs\"")),
            "fuzz/Cargo.toml has no [[bin]] for {target}"
        );
    }
}
