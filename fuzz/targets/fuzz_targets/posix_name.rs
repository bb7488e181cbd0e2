//! Fuzz target `posix_name`: the body is `ipc_fuzz::posix_name` (also run by proptest in `cargo xtask test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipc_fuzz::posix_name(data));
