#![no_main]
//! See `mediarelay::fuzzing::codec_config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::codec_config(data);
});
