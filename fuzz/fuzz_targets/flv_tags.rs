#![no_main]
//! See `mediarelay::fuzzing::flv_tags`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::flv_tags(data);
});
