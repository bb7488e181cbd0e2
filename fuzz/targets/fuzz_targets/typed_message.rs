//! Fuzz target `typed_message`: the body is `ipc_fuzz::typed_message` (also run by proptest in `cargo xtask test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipc_fuzz::typed_message(data));
