//! `cargo xtask`: the project's task runner, so CI and contributors run the same commands.
//!
//! - `cargo xtask test [--soak] [--timeout SECS]`: formatting, clippy, the API docs (rustdoc
//!   warnings denied), every test, every example but the measurement probes (`examples.rs`:
//!   each must exit 0), and a tiny benchmark run, with every feature but the benchmark's
//!   `peers` (`features.rs`). The tests run under a watchdog (`watchdog.rs`): a test binary (or a
//!   crate's doc tests) still running after SECS seconds (default 300, 3600 with `--soak`) is
//!   killed with its process group and the run fails naming it and the tests still running.
//!   They run in private IPC and mount namespaces when permitted, and a leftover check
//!   (`leftovers.rs`) reports and removes whatever the tests left behind, touching nothing
//!   else on the machine. `--soak` raises the proptest case count and sets `IPC_SOAK=1` for
//!   the long test variants.
//! - `cargo xtask bench [--quick | --tiny] [--filter ...] [--peers]`: the cross-mechanism
//!   benchmark (`crates/ipc-bench`), built in release; `--peers` builds it with its feature
//!   `peers` (iceoryx2 measured in the same run; crates.io at the first build).
//! - `cargo xtask miri`: the lock-free and pure-logic tests under Miri, on the nightly
//!   toolchain, which it installs with the `miri` component through rustup when missing (not
//!   part of `test`, which needs stable only).
//! - `cargo xtask fuzz [TARGET] [--time SECS]`: the cargo-fuzz targets in `fuzz/targets`
//!   (frame decoder, shm channel, POSIX names, typed messages), SECS seconds each (default
//!   60). Installs cargo-fuzz if missing; on a stable toolchain it builds with `RUSTC_BOOTSTRAP=1` (see
//!   `fuzz.rs`). Not part of `test`, where the same bodies run as proptest tests.
//! - `cargo xtask isolated -- COMMAND [ARGS...]`: runs one command the way `test` runs the
//!   tests (private namespaces when permitted, private `TMPDIR`, the leftover check), e.g.
//!   `cargo xtask isolated -- cargo test -p ipc-mq`.
//!
//! Unknown commands and arguments get the usage text and exit status 2. (`xtask watchdog --secs
//! N -- PROGRAM [ARGS...]` is the test runner `test` gives cargo; see `watchdog.rs`.)

mod examples;
mod features;
mod fuzz;
mod isolate;
mod leftovers;
mod watchdog;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str = "\
usage: cargo xtask test [--soak] [--timeout SECS]
       cargo xtask bench [--quick | --tiny] [--filter TERM,...] [--out DIR] [--list] [--peers]
                         (--help for details)
       cargo xtask miri
       cargo xtask fuzz [TARGET] [--time SECS]
       cargo xtask isolated -- COMMAND [ARGS...]

  test       fmt, clippy, every test, the examples and a tiny benchmark run; each test
             binary killed and failed after SECS s (default 300, --soak 3600); leftovers
             reported and removed
  fuzz       cargo-fuzz targets (frame_decoder, shm_channel, posix_name), SECS s each
             (default 60); installs cargo-fuzz if missing and uses RUSTC_BOOTSTRAP=1 on stable
  isolated   run COMMAND as `test` runs the tests (private namespaces, leftover check)";

/// A command line that does not parse: usage text and exit status 2.
#[derive(Debug)]
struct Usage(String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Started by cargo as RUSTDOC (doc tests under the watchdog). The runner mode
    // (`watchdog ...`) sees the same environment, so it is recognised first.
    let runner = args.first().is_some_and(|a| a == "watchdog");
    if let (false, Ok(real)) = (runner, std::env::var(watchdog::RUSTDOC_REAL_ENV)) {
        return exit_code(watchdog::rustdoc(&real, &args));
    }
    let result = match dispatch(&args) {
        Ok(r) => r,
        Err(Usage(e)) => {
            eprintln!("xtask: {e}\n{USAGE}");
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

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(101))
}

fn dispatch(args: &[String]) -> Result<Result<(), String>, Usage> {
    let rest = args.get(1..).unwrap_or_default();
    Ok(match args.first().map(String::as_str) {
        Some("test") => test(&parse_test(rest)?),
        Some("bench") => bench(rest),
        Some("miri") if rest.is_empty() => miri(),
        Some("fuzz") => fuzz::fuzz(&fuzz::parse(rest).map_err(Usage)?),
        Some("isolated") => isolated(rest)?,
        // The test runner cargo is told to use: `watchdog --secs N -- PROGRAM ARGS...`.
        Some("watchdog") => {
            let (secs, program) = parse_watchdog(rest)?;
            std::process::exit(watchdog::supervise(
                &program[0],
                &program[1..],
                Duration::from_secs(secs),
            ));
        }
        Some(other) => {
            return Err(Usage(format!(
                "unknown command or arguments: {other} {}",
                rest.join(" ")
            )));
        }
        None => return Err(Usage("no command".into())),
    })
}

/// Options of `cargo xtask test`.
#[derive(Debug, PartialEq, Eq)]
struct TestOpts {
    soak: bool,
    limit: Duration,
}

fn parse_secs(flag: &str, v: Option<&String>) -> Result<u64, Usage> {
    let v = v.ok_or_else(|| Usage(format!("{flag} needs a number of seconds")))?;
    v.parse()
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| Usage(format!("{flag} {v}: not a positive number of seconds")))
}

fn parse_test(args: &[String]) -> Result<TestOpts, Usage> {
    let mut soak = false;
    let mut secs = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--soak" => soak = true,
            "--timeout" => secs = Some(parse_secs("--timeout", it.next())?),
            other => return Err(Usage(format!("test: unexpected argument {other:?}"))),
        }
    }
    let default = if soak {
        watchdog::SOAK_LIMIT
    } else {
        watchdog::DEFAULT_LIMIT
    };
    Ok(TestOpts {
        soak,
        limit: secs.map_or(default, Duration::from_secs),
    })
}

fn parse_watchdog(args: &[String]) -> Result<(u64, &[String]), Usage> {
    match args {
        [flag, secs, dashes, program @ ..]
            if flag == "--secs" && dashes == "--" && !program.is_empty() =>
        {
            Ok((parse_secs("--secs", Some(secs))?, program))
        }
        _ => Err(Usage("watchdog --secs N -- PROGRAM [ARGS...]".into())),
    }
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `--config` value that makes cargo start every test binary through `runner`'s watchdog.
fn runner_config(runner: &Path, limit: Duration) -> String {
    format!(
        "target.'cfg(all())'.runner = [{}, \"watchdog\", \"--secs\", \"{}\", \"--\"]",
        toml_str(&runner.to_string_lossy()),
        limit.as_secs()
    )
}

/// A copy of this executable for cargo to start test binaries (and rustdoc) through: cargo may
/// relink `target/debug/xtask` itself while the tests build. Removed on drop.
struct RunnerCopy(PathBuf);

impl RunnerCopy {
    fn new() -> Result<RunnerCopy, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let dir = target_dir().join("xtask-watchdog");
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let copy = dir.join(format!("xtask-{}", std::process::id()));
        std::fs::copy(&exe, &copy).map_err(|e| format!("copy xtask to {}: {e}", copy.display()))?;
        Ok(RunnerCopy(copy))
    }
}

impl Drop for RunnerCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn test(opts: &TestOpts) -> Result<(), String> {
    // Every feature but the benchmark's peers (`features::UNTESTED`).
    let features = features::tested(&workspace_root())?;
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
            "--features",
            &features,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The API docs, with broken intra-doc links and other rustdoc warnings as errors.
    run(
        "cargo doc (rustdoc warnings denied)",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--features", &features])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    let runner = RunnerCopy::new()?;
    let session = leftovers::Run::start()?;
    let cases = if opts.soak { "2000" } else { "32" };
    let config = runner_config(&runner.0, opts.limit);
    let real_rustdoc = std::env::var("RUSTDOC").unwrap_or_else(|_| "rustdoc".into());
    let under_watchdog = |cmd: &mut Command| {
        cmd.arg("--config")
            .arg(&config)
            .env("RUSTDOC", &runner.0)
            .env(watchdog::RUSTDOC_REAL_ENV, &real_rustdoc)
            .env(
                watchdog::RUSTDOC_LIMIT_ENV,
                opts.limit.as_secs().to_string(),
            );
    };
    let step = |what: &str, cmd: &mut Command| match session.run(what, cmd)? {
        0 => Ok(()),
        code => Err(format!("{what} failed (exit status {code})")),
    };
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--features", &features]);
    under_watchdog(&mut cmd);
    cmd.env("PROPTEST_CASES", cases)
        .env("RUSTDOCFLAGS", "-D warnings");
    if opts.soak {
        cmd.env("IPC_SOAK", "1");
    }
    let tested = step("cargo test", &mut cmd).and_then(|()| {
        // Every example the docs point to, built by `cargo test` above: each must exit 0.
        let built = target_dir().join("debug").join("examples");
        for name in examples::runnable(&workspace_root())? {
            let mut cmd = Command::new(&runner.0);
            cmd.args([
                "watchdog",
                "--secs",
                &examples::LIMIT_SECS.to_string(),
                "--",
            ])
            .arg(built.join(&name))
            .stdin(std::process::Stdio::null());
            step(&format!("example {name}"), &mut cmd)?;
        }
        // The benchmark end to end in its tiny mode (debug build, seconds): every row, the
        // table, the JSON and the chart, so it cannot rot between real runs.
        let mut cmd = cargo();
        cmd.args(["run", "-p", "ipc-bench"]);
        under_watchdog(&mut cmd);
        cmd.args(["--", "--tiny"]);
        step(
            "benchmark smoke run (cargo run -p ipc-bench -- --tiny)",
            &mut cmd,
        )
    });
    // Checked even when tests failed: a failing test must not leave objects behind either.
    let clean = session.finish();
    tested?;
    clean
}

/// `cargo xtask isolated -- COMMAND [ARGS...]`.
fn isolated(args: &[String]) -> Result<Result<(), String>, Usage> {
    let [dashes, program, rest @ ..] = args else {
        return Err(Usage("isolated -- COMMAND [ARGS...]".into()));
    };
    if dashes != "--" {
        return Err(Usage(format!("isolated: unexpected argument {dashes:?}")));
    }
    let result = (|| {
        let session = leftovers::Run::start()?;
        let ran = session.run(
            &format!("{program} {}", rest.join(" ")),
            Command::new(program).args(rest),
        );
        let clean = session.finish();
        match (ran?, clean) {
            (0, clean) => clean,
            (code, Ok(())) => Err(format!("{program} failed (exit status {code})")),
            (code, Err(e)) => Err(format!("{program} failed (exit status {code}); {e}")),
        }
    })();
    Ok(result)
}

/// `cargo xtask bench [ARGS]`: builds the benchmark (the `ipc-bench` crate's binary) in
/// release and runs it; ARGS go to it. With `--peers`, ipc-bench is built with its feature
/// `peers` (the peer rows: iceoryx2, fetched from crates.io at the first build).
fn bench(args: &[String]) -> Result<(), String> {
    let features: &[&str] = if args.iter().any(|a| a == "--peers") {
        &["--features", "peers"]
    } else {
        &[]
    };
    run(
        "cargo run --release -p ipc-bench",
        cargo()
            .args(["run", "--release", "-p", "ipc-bench"])
            .args(features)
            .arg("--")
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

/// Makes sure `cargo +nightly miri` can run: installs the nightly toolchain with the `miri`
/// component through rustup when either is missing (both come from the Rust project's
/// release channel, like the stable toolchain itself), then lets Miri build its sysroot.
fn ensure_miri() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .map_err(|e| format!("rustup (needed to install Miri): {e}"))?;
    let listed = String::from_utf8_lossy(&installed.stdout);
    if !installed.status.success() {
        run(
            "rustup toolchain install nightly --component miri",
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "miri,rust-src",
            ]),
        )?;
    } else if !listed.lines().any(|l| l.starts_with("miri")) {
        run(
            "rustup component add miri rust-src --toolchain nightly",
            Command::new("rustup").args([
                "component",
                "add",
                "miri",
                "rust-src",
                "--toolchain",
                "nightly",
            ]),
        )?;
    }
    run(
        "cargo +nightly miri setup",
        Command::new("cargo").args(["+nightly", "miri", "setup"]),
    )
}

fn miri() -> Result<(), String> {
    ensure_miri()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_arguments_are_checked() {
        let t = parse_test(&args(&[])).unwrap();
        assert_eq!((t.soak, t.limit), (false, watchdog::DEFAULT_LIMIT));
        let t = parse_test(&args(&["--soak"])).unwrap();
        assert_eq!((t.soak, t.limit), (true, watchdog::SOAK_LIMIT));
        let t = parse_test(&args(&["--timeout", "7", "--soak"])).unwrap();
        assert_eq!((t.soak, t.limit), (true, Duration::from_secs(7)));
        for bad in [
            &["--bogus"][..],
            &["--timeout"],
            &["--timeout", "x"],
            &["soak"],
        ] {
            assert!(parse_test(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_commands_and_arguments_are_usage_errors() {
        for bad in [
            &[][..],
            &["tset"],
            &["miri", "--bogus"],
            &["fuzz", "--bogus"],
            &["isolated"],
        ] {
            assert!(dispatch(&args(bad)).is_err(), "{bad:?}");
        }
        assert!(parse_watchdog(&args(&["--secs", "1", "--"])).is_err());
        let a = args(&["--secs", "3", "--", "bin", "-q"]);
        let (secs, program) = parse_watchdog(&a).unwrap();
        assert_eq!((secs, program), (3, &a[3..]));
    }

    #[test]
    fn runner_config_is_a_toml_array() {
        let c = runner_config(Path::new("/a b/\"x\"/xtask"), Duration::from_secs(9));
        assert_eq!(
            c,
            r#"target.'cfg(all())'.runner = ["/a b/\"x\"/xtask", "watchdog", "--secs", "9", "--"]"#
        );
    }
}
