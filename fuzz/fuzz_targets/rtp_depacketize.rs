#![no_main]
//! See `mediarelay::fuzzing::rtp_depacketize`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::rtp_depacketize(data);
});
