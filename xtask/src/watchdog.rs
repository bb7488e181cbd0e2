//! The per-test-binary watchdog of `cargo xtask test`: every test fails instead of hanging.
//!
//! `cargo test` is told to start each test binary through xtask (`target.'cfg(all())'.runner`,
//! which cargo uses for unit, integration and bench-harness test binaries), and rustdoc through
//! xtask too (`RUSTDOC`, for doc tests: on stable, rustdoc runs them itself). Either way
//! [`supervise`] runs the program in a process group of its own, with
//! `PR_SET_PDEATHSIG(SIGKILL)` so it cannot outlive the watchdog, which has the same setting
//! towards cargo, which has it towards xtask: an interrupted run leaves nothing running, and copies its standard
//! output through, noting libtest's progress lines. If the program is still running after the
//! limit (`cargo xtask test --timeout SECS`, default [`DEFAULT_LIMIT`]), the whole process
//! group is killed with `SIGKILL` and the run fails with a message naming the binary and the
//! tests still running: libtest prints `test NAME has been running for over 60 seconds` for a
//! long test, and `test NAME ... ok` when one finishes, so a test announced and not finished
//! is one still running. A process that left the group (`setsid`) is caught by the run's
//! leftover check (xtask is its subreaper), so nothing is left behind either way.
//!
//! A watchdog at this level, rather than one inside each test, covers every test, including
//! those that never call ipc-testkit, doc tests, and hangs outside any test function.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// The default limit per test binary: far above what any binary needs on a busy 2-core
/// machine, far below "hung".
pub(crate) const DEFAULT_LIMIT: Duration = Duration::from_secs(300);
/// The default limit with `--soak`, whose tests run longer on purpose.
pub(crate) const SOAK_LIMIT: Duration = Duration::from_secs(3600);

/// Environment variables of the rustdoc wrapper mode: the real rustdoc, and the limit.
pub(crate) const RUSTDOC_REAL_ENV: &str = "IPC_XTASK_REAL_RUSTDOC";
pub(crate) const RUSTDOC_LIMIT_ENV: &str = "IPC_XTASK_RUSTDOC_LIMIT";

/// What libtest said so far: tests announced as long-running, and tests finished.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    long_running: BTreeSet<String>,
    finished: BTreeSet<String>,
    last_finished: Option<String>,
}

impl Progress {
    /// Notes one line of libtest output.
    pub(crate) fn line(&mut self, line: &str) {
        let line = line.trim_end();
        let Some(rest) = line.strip_prefix("test ") else {
            return;
        };
        if let Some(name) = rest.strip_suffix(" has been running for over 60 seconds") {
            self.long_running.insert(name.to_owned());
        } else if let Some((name, _result)) = rest.rsplit_once(" ... ") {
            self.finished.insert(name.to_owned());
            self.last_finished = Some(name.to_owned());
        }
    }

    /// Tests announced as long-running that have not finished.
    pub(crate) fn still_running(&self) -> Vec<&str> {
        self.long_running
            .difference(&self.finished)
            .map(String::as_str)
            .collect()
    }

    /// The message for a binary killed after `limit`.
    pub(crate) fn timeout_message(&self, program: &str, limit: Duration) -> String {
        let mut msg = format!(
            "watchdog: {program} still running after {} s; killed it and its process group",
            limit.as_secs()
        );
        let running = self.still_running();
        if running.is_empty() {
            msg.push_str("; no test was reported running for over 60 s");
            if let Some(last) = &self.last_finished {
                msg.push_str(&format!(" (the last one to finish was {last})"));
            }
        } else {
            msg.push_str(&format!("; tests still running: {}", running.join(", ")));
        }
        msg
    }
}

/// Runs `program args` under the watchdog; returns the exit code to exit with.
pub(crate) fn supervise(program: &str, args: &[String], limit: Duration) -> i32 {
    // The watchdog itself dies with its parent (cargo, which dies with xtask), taking the
    // program with it (below): an interrupted run leaves nothing running. If the parent is
    // already gone (reparented to init or a subreaper before this call), exit now.
    let parent = rustix::process::getppid();
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err()
        || rustix::process::getppid() != parent
    {
        return 101;
    }
    let mut cmd = Command::new(program);
    // The tests must not see the wrapper's settings (a test that runs xtask would take itself
    // for rustdoc).
    cmd.args(args)
        .env_remove(RUSTDOC_REAL_ENV)
        .env_remove(RUSTDOC_LIMIT_ENV)
        .stdout(Stdio::piped())
        .process_group(0);
    // SAFETY: runs between fork and exec and makes one prctl syscall (async-signal-safe, no
    // allocation): the program is killed if the watchdog dies (e.g. on Ctrl-C, which the
    // program, in a process group of its own, does not receive).
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask watchdog: cannot run {program}: {e}");
            return 101;
        }
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    let stdout = child.stdout.take().expect("stdout is piped");
    // The copier says when the pipe closed. It is never joined: a process that escaped the
    // group can hold the pipe open forever (the leftover check kills it later).
    let (done_tx, copier_done) = std::sync::mpsc::channel::<()>();
    {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            let mut out = std::io::stdout();
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(mut line) = line else { break };
                if let Ok(mut p) = progress.lock() {
                    p.line(&String::from_utf8_lossy(&line));
                }
                line.push(b'\n');
                let _ = out.write_all(&line);
                let _ = out.flush();
            }
            let _ = done_tx.send(());
        });
    }
    let drain = || {
        let _ = copier_done.recv_timeout(Duration::from_secs(2));
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                drain();
                use std::os::unix::process::ExitStatusExt;
                return status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(101);
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("xtask watchdog: waiting for {program}: {e}");
                return 101;
            }
        }
        if Instant::now() >= deadline {
            if let Some(group) = Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(group, Signal::KILL);
            }
            let _ = child.wait();
            drain();
            let msg = progress
                .lock()
                .map(|p| p.timeout_message(program, limit))
                .unwrap_or_default();
            eprintln!("\n{msg}\n");
            return 101;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rustdoc wrapper: doc test runs (`--test`) go through [`supervise`], everything else
/// straight to the real rustdoc.
pub(crate) fn rustdoc(real: &str, args: &[String]) -> i32 {
    let limit = std::env::var(RUSTDOC_LIMIT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_LIMIT, Duration::from_secs);
    if args.iter().any(|a| a == "--test") {
        return supervise(real, args, limit);
    }
    let err = Command::new(real).args(args).exec();
    eprintln!("xtask: cannot run {real}: {err}");
    101
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_tests_announced_and_not_finished() {
        let mut p = Progress::default();
        for line in [
            "running 4 tests",
            "test quick ... ok",
            "test slow_but_done has been running for over 60 seconds",
            "test hung::forever has been running for over 60 seconds",
            "test slow_but_done ... ok",
            "test src/lib.rs - Foo (line 12) ... FAILED",
        ] {
            p.line(line);
        }
        assert_eq!(p.still_running(), vec!["hung::forever"]);
        let msg = p.timeout_message("target/debug/deps/x-123", Duration::from_secs(5));
        assert!(msg.contains("target/debug/deps/x-123"), "{msg}");
        assert!(msg.contains("still running after 5 s"), "{msg}");
        assert!(msg.contains("tests still running: hung::forever"), "{msg}");
        assert!(!msg.contains("slow_but_done"), "{msg}");
    }

    #[test]
    fn without_announcements_it_names_the_last_finished_test() {
        let mut p = Progress::default();
        p.line("test a ... ok");
        p.line("test b ... ignored");
        let msg = p.timeout_message("bin", Duration::from_secs(1));
        assert!(msg.contains("no test was reported running"), "{msg}");
        assert!(msg.contains("the last one to finish was b"), "{msg}");
    }
}
