#![no_main]
//! See `mediarelay::fuzzing::hls_request`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::hls_request(data);
});
