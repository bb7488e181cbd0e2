//! What the `ipc` binary's test files share: running it and logging what it printed.

use std::process::{Command, Output};

/// Runs `ipc` with `args`, logs the command line and its output (shown when a test fails),
/// and returns the output.
pub(crate) fn ipc(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ipc"))
        .args(args)
        .output()
        .expect("run ipc");
    eprintln!(
        "$ ipc {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
