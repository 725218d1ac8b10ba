#![no_main]
//! See `mediarelay::fuzzing::api_config_body`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mediarelay::fuzzing::api_config_body(data));
