#![no_main]
//! See `mediarelay::fuzzing::config_toml`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::config_toml(data);
});
