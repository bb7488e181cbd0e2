//! Fuzz target `shm_channel`: the body is `ipc_fuzz::shm_channel` (also run by proptest in `cargo xtask test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipc_fuzz::shm_channel(data));
