//! `cargo xtask`: the project's task runner, so CI and contributors run the same commands.
//!
//! - `cargo xtask test [--soak]`: formatting, clippy, every test, and a tiny benchmark run.
//! - `cargo xtask bench [--quick | --tiny] [--filter ...]`: the cross-mechanism benchmark
//!   (`crates/ipc-bench`), built in release.
//! - `cargo xtask miri`: the lock-free and pure-logic tests under Miri (needs a nightly
//!   toolchain with the `miri` component; not part of `test`, which needs stable only).

mod leftovers;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("miri") => miri(),
        _ => {
            eprintln!(
                "usage: cargo xtask test [--soak]\n       cargo xtask miri\n       cargo xtask bench [--quick | --tiny] \
                 [--filter TERM,...] [--out DIR] [--list]   (--help for details)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn test(args: &[String]) -> Result<(), String> {
    let soak = args.iter().any(|a| a == "--soak");
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let cases = if soak { "2000" } else { "32" };
    let before = leftovers::Snapshot::take();
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-features"])
        .env("PROPTEST_CASES", cases)
        .env("RUSTDOCFLAGS", "-D warnings");
    if soak {
        cmd.env("IPC_SOAK", "1");
    }
    let tested = run("cargo test", &mut cmd).and_then(|()| {
        // The benchmark end to end in its tiny mode (debug build, seconds): every row, the
        // table, the JSON and the chart, so it cannot rot between real runs.
        run(
            "benchmark smoke run (cargo run -p ipc-bench -- --tiny)",
            cargo().args(["run", "-p", "ipc-bench", "--", "--tiny"]),
        )
    });
    // Checked even when tests failed: a failing test must not leave objects behind either.
    let clean = before.check();
    tested?;
    clean
}

/// `cargo xtask bench [ARGS]`: builds the benchmark (the `ipc-bench` crate's binary) in
/// release and runs it; ARGS go to it.
fn bench(args: &[String]) -> Result<(), String> {
    run(
        "cargo run --release -p ipc-bench",
        cargo()
            .args(["run", "--release", "-p", "ipc-bench", "--"])
            .args(args),
    )
}

/// The tests Miri can run: code over heap memory, with no syscalls Miri does not emulate.
/// `(package, test-name filter, extra Miri flags)`; an empty filter runs the package's library
/// tests.
const MIRI_SUITES: &[(&str, &str, &str)] = &[
    ("ipc-core", "frame::", ""),
    ("ipc-sync", "", ""),
    // The ring's payload bytes double as atomic record marks; Miri's store-buffer (weak
    // memory) emulation cannot model that mix and aborts. Data-race and aliasing checks stay.
    ("ipc-shm", "ring::", "-Zmiri-disable-weak-memory-emulation"),
];

fn miri() -> Result<(), String> {
    for (package, filter, extra) in MIRI_SUITES {
        let mut cmd = Command::new("cargo");
        cmd.args(["+nightly", "miri", "test", "-p", package, "--lib"]);
        if !filter.is_empty() {
            cmd.arg(filter);
        }
        // Permissive provenance: rustix casts integers to pointers in its syscall layer.
        // Isolation off: proptest looks up the working directory for its failure files.
        let flags = format!("-Zmiri-permissive-provenance -Zmiri-disable-isolation {extra}");
        cmd.env("MIRIFLAGS", flags.trim())
            .env("PROPTEST_CASES", "4");
        run(
            &format!("cargo +nightly miri test -p {package} {filter}"),
            &mut cmd,
        )?;
    }
    Ok(())
}
