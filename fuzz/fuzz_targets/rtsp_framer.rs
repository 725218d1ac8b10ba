#![no_main]
//! See `mediarelay::fuzzing::rtsp_framer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::rtsp_framer(data);
});
