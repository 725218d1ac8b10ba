#![no_main]
//! See `mediarelay::fuzzing::rtmp_server`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::rtmp_server(data);
});
