//! Fuzz target `frame_decoder`: the body is `ipc_fuzz::frame_decoder` (also run by proptest in `cargo xtask test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipc_fuzz::frame_decoder(data));
