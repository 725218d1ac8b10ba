#![no_main]
//! See `mediarelay::fuzzing::api_config_body`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::api_config_body(data);
});
