#![no_main]
//! See `mediarelay::fuzzing::http1_request`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::http1_request(data);
});
