#![no_main]
//! See `mediarelay::fuzzing::viewer_rtcp`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::viewer_rtcp(data);
});
