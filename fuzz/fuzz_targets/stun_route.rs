#![no_main]
//! See `mediarelay::fuzzing::stun_route`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mediarelay::fuzzing::stun_route(data);
});
