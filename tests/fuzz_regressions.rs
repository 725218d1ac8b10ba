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

/// The checkout at run time before the compile-time one (a target directory
/// shared between clones hands one clone the other's test binaries).
fn repo_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn dir(kind: &str, target: &str) -> PathBuf {
    repo_dir().join("fuzz").join(kind).join(target)
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
    let manifest = std::fs::read_to_string(repo_dir().join("fuzz/Cargo.toml")).unwrap();
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{target}.rs\"")),
            "fuzz/Cargo.toml has no [[bin]] for {target}"
        );
    }
}

/// A fuzz smoke on stable Rust, for CI (cargo-fuzz needs nightly): every
/// seed, mutated 300 times with a fixed RNG seed (bytes flipped, set to
/// boundary values, inserted, removed, the input cut short), goes through
/// its harness without a panic. The real fuzzing (coverage-guided, minutes
/// per target) is in FUZZING.md.
#[test]
fn seeds_mutated_at_random_do_not_crash() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(0x6d65_6469_6172_656c);
    let mut runs = 0;
    for (target, run) in TARGETS {
        for (_, seed) in files("seeds", target) {
            for _ in 0..300 {
                let mut data = seed.clone();
                for _ in 0..rng.gen_range(1..=6) {
                    if data.is_empty() {
                        data.push(rng.r#gen());
                        continue;
                    }
                    let at = rng.gen_range(0..data.len());
                    match rng.gen_range(0..5) {
                        0 => data[at] ^= 1 << rng.gen_range(0..8),
                        1 => data[at] = [0, 1, 0x7f, 0x80, 0xff][rng.gen_range(0..5)],
                        2 => data.insert(at, rng.r#gen()),
                        3 => {
                            data.remove(at);
                        }
                        _ => data.truncate(at),
                    }
                }
                run(&data);
                runs += 1;
            }
        }
    }
    eprintln!("{runs} mutated inputs");
}
