#![no_main]
//! See `mediarelay::fuzzing::sdp_offer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::sdp_offer(data);
});
