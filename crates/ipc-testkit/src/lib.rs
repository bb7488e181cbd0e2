//! Multi-process test harness for the `ipc` workspace.
//!
//! Real IPC bugs show up between processes, so tests here run named *roles* in child processes
//! re-executed from the current test binary:
//!
//! - [`roles!`] registers the role functions of a test binary (once per binary);
//! - [`spawn`] starts a role in a child, with an argument string and inherited descriptors;
//! - [`Child`] waits for it under a watchdog, collects its exit status and stderr, waits for
//!   [checkpoints](Ctx::checkpoint) the role reports, and `SIGKILL`s it on request (or on drop,
//!   so no test leaves a stray process);
//! - [`unique_name`] and [`TempDir`] give every named object a name no parallel test shares;
//! - [`soak`], [`by_profile`], [`Rng`] and [`drain`]: the quick and soak profiles, seeded
//!   randomness that says its seed, and receiving until the first error under the watchdog;
//! - [`script`] holds proptest strategies for message scripts whose messages can be checked
//!   byte for byte, and [`Model`] the naive queue they are checked against.
//!
//! ```no_run
//! // tests/example.rs
//! use ipc_testkit::{Ctx, roles, spawn};
//!
//! fn greeter(ctx: &Ctx) {
//!     eprintln!("hello from {}", ctx.arg());
//! }
//! roles!(greeter);
//!
//! #[test]
//! fn child_runs() {
//!     let out = spawn("greeter").arg("the child").start().wait_success();
//!     assert!(out.stderr.contains("hello from the child"));
//! }
//! ```

pub mod acl;
pub mod alloc;
pub mod conformance;
pub mod fixture;
pub mod limits;
mod profile;
pub mod script;
pub mod shmfs;
mod supervise;
pub mod users;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use ipc_core::inherit::ChildFds;
pub use profile::{Rng, SEED_ENV, SOAK_ENV, by_profile, drain, kill_at_random, soak};
pub use script::{Model, Script};
pub use supervise::{KillTimer, role_main};

/// Environment variable naming the role a re-executed child runs.
const ROLE_ENV: &str = "IPC_TESTKIT_ROLE";
/// Environment variable carrying the role's argument string.
const ARG_ENV: &str = "IPC_TESTKIT_ARG";
/// Name of the inherited control pipe (child to parent: checkpoint labels, one per line).
const CTL_FD: &str = "__testkit_ctl";
/// The name of the test function [`roles!`] generates.
pub const ENTRY_TEST: &str = "__ipc_testkit_child_entry";

/// How long [`Child::wait`] waits before it kills the child and fails the test:
/// `IPC_TESTKIT_WATCHDOG_SECS`, default 120 s.
pub fn watchdog() -> Duration {
    std::env::var("IPC_TESTKIT_WATCHDOG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(120), Duration::from_secs)
}

/// Registers the role functions of this test binary, each a `fn(&Ctx)`.
///
/// Expands to a test named [`ENTRY_TEST`] that is the children's entry point: in a child it
/// runs the role named in the environment and exits (0 when the role returns, the panic's exit
/// status when it panics); in the parent test run it has nothing to do.
#[macro_export]
macro_rules! roles {
    ($($role:ident),* $(,)?) => {
        #[test]
        fn __ipc_testkit_child_entry() {
            $crate::child_entry(&[$((stringify!($role), $role as $crate::RoleFn)),*]);
        }
    };
}

/// A role: what a child runs.
pub type RoleFn = fn(&Ctx);

/// The body of the entry test [`roles!`] generates. Not for direct use.
#[doc(hidden)]
pub fn child_entry(roles: &[(&str, RoleFn)]) {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return; // Not a child: the parent's test run.
    };
    let Some((_, f)) = roles.iter().find(|(n, _)| *n == role) else {
        panic!("ipc-testkit: no role named {role:?} registered with roles!()");
    };
    let ctl = ipc_core::inherit::take(CTL_FD).ok().map(File::from);
    let ctx = Ctx {
        arg: std::env::var(ARG_ENV).unwrap_or_default(),
        ctl,
    };
    f(&ctx);
    // Skip the rest of libtest's run: the role was the whole job.
    let _ = std::io::stderr().flush();
    std::process::exit(0);
}

/// What a role gets: its argument and its inherited descriptors; and how it reports progress.
#[derive(Debug)]
pub struct Ctx {
    arg: String,
    ctl: Option<File>,
}

impl Ctx {
    /// The argument string the parent gave.
    pub fn arg(&self) -> &str {
        &self.arg
    }

    /// The argument string split on whitespace.
    pub fn args(&self) -> Vec<&str> {
        self.arg.split_whitespace().collect()
    }

    /// The descriptor the parent passed under `name` ([`Spawn::fd`]). Panics if there is none.
    pub fn take_fd(&self, name: &str) -> OwnedFd {
        ipc_core::inherit::take(name).unwrap_or_else(|e| panic!("take_fd({name:?}): {e}"))
    }

    /// Tells the parent the role reached `label` ([`Child::wait_checkpoint`]).
    pub fn checkpoint(&self, label: &str) {
        if let Some(mut ctl) = self.ctl.as_ref() {
            // The parent may already be gone; a role keeps going either way.
            let _ = writeln!(ctl, "{label}");
        }
    }

    /// Reports `label` and then sleeps until killed: the parent can `SIGKILL` the role at
    /// exactly this point.
    pub fn park(&self, label: &str) -> ! {
        self.checkpoint(label);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and call: `ipctest-{tag}-{pid}-{n}`. Every named OS object a
/// test creates uses one, so tests run in parallel without sharing objects, and leftovers are
/// recognisable by the `ipctest-` prefix.
///
/// When [`LEDGER_ENV`] names a file (`cargo xtask test` sets it), the name is also appended
/// to it, one per line: the run's record of the names its tests made, which is all its
/// leftover check looks at when it cannot give the tests private namespaces.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("ipctest-{tag}-{}-{n}", std::process::id());
    record_in_ledger(&name);
    name
}

/// Environment variable naming the ledger file [`unique_name`] appends every name to.
pub const LEDGER_ENV: &str = "IPC_TESTKIT_LEDGER";

fn record_in_ledger(name: &str) {
    let Some(path) = std::env::var_os(LEDGER_ENV) else {
        return;
    };
    // One `write` of one line to a file opened with O_APPEND: lines from parallel tests and
    // processes never interleave. Opened and closed each time, so no test sees an extra
    // descriptor. Best effort: a process out of descriptors on purpose, or running as another
    // user, cannot record (the ledger is the fallback's record; with private namespaces
    // xtask does not need it).
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{name}\n").as_bytes()));
}

/// A POSIX IPC name (`/ipctest-…`) from [`unique_name`].
pub fn unique_posix_name(tag: &str) -> String {
    format!("/{}", unique_name(tag))
}

/// A private temporary directory, removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory under the system temporary directory, mode `0o700`.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

use std::os::unix::fs::DirBuilderExt;

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Starts building a child that runs `role` (registered with [`roles!`] in this test binary).
pub fn spawn(role: &str) -> Spawn {
    Spawn {
        role: role.to_owned(),
        arg: String::new(),
        fds: ChildFds::new(),
        envs: Vec::new(),
        pid_namespace: false,
    }
}

/// A child about to be started; see [`spawn`].
#[derive(Debug)]
pub struct Spawn {
    role: String,
    arg: String,
    fds: ChildFds,
    envs: Vec<(String, String)>,
    pid_namespace: bool,
}

impl Spawn {
    /// Sets the argument string the role reads with [`Ctx::arg`].
    pub fn arg(mut self, arg: impl Into<String>) -> Spawn {
        self.arg = arg.into();
        self
    }

    /// Hands `fd` to the child under `name` ([`Ctx::take_fd`]).
    pub fn fd(mut self, name: &str, fd: impl std::os::fd::AsFd) -> Spawn {
        let fd = fd.as_fd().try_clone_to_owned().expect("dup fd to pass");
        self.fds
            .pass(name, fd)
            .unwrap_or_else(|e| panic!("pass fd {name:?}: {e}"));
        self
    }

    /// Hands `fd` to the child as fd number `target` (0 = stdin, 1 = stdout).
    pub fn fd_as(mut self, fd: impl std::os::fd::AsFd, target: i32) -> Spawn {
        let fd = fd.as_fd().try_clone_to_owned().expect("dup fd to pass");
        self.fds
            .pass_as(fd, target)
            .unwrap_or_else(|e| panic!("pass fd as {target}: {e}"));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: &str, value: &str) -> Spawn {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the role as the first process of a new PID namespace (as a container's would be:
    /// its pids mean nothing outside), sharing everything else with the test. The [`Child`]
    /// is a small parent in the test's namespace that waits for it and exits as it did (with
    /// 128 + the signal when killed); killing that parent kills the role (its parent-death
    /// signal). Needs root, or unprivileged user namespaces: [`try_start`](Spawn::try_start)
    /// says when neither is there.
    pub fn pid_namespace(mut self) -> Spawn {
        self.pid_namespace = true;
        self
    }

    /// Starts the child. Panics if it cannot be started.
    pub fn start(self) -> Child {
        let role = self.role.clone();
        self.try_start()
            .unwrap_or_else(|e| panic!("spawn role {role:?}: {e}"))
    }

    /// [`start`](Spawn::start), saying why a child could not be started (for a test that
    /// skips when, say, a PID namespace cannot be made here).
    pub fn try_start(mut self) -> std::io::Result<Child> {
        let exe = std::env::current_exe().expect("current_exe");
        let (ctl_r, ctl_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("control pipe");
        self.fds.pass(CTL_FD, ctl_w).expect("pass control pipe");
        let mut cmd = Command::new(exe);
        cmd.args([ENTRY_TEST, "--nocapture", "--test-threads=1", "--quiet"])
            .env(ROLE_ENV, &self.role)
            .env(ARG_ENV, &self.arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        // SAFETY: runs in the child between fork and exec and only makes the prctl syscall
        // (async-signal-safe, no allocation): the child gets SIGKILL if the thread that
        // spawned it ends, so a parent that dies leaves no stray process behind.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if self.pid_namespace {
            // SAFETY: runs in the child between fork and exec, single-threaded, and makes only
            // async-signal-safe system calls (unshare, fork, prctl, close_range, waitpid,
            // _exit), allocating nothing.
            unsafe { cmd.pre_exec(enter_pid_namespace) };
        }
        let mut child = self.fds.spawn(&mut cmd)?;
        drop(self.fds); // our copies of the passed ends, the control pipe's write end included
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            s.push_str(&String::from_utf8_lossy(&bytes));
            s
        });
        let (tx, checkpoints) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(File::from(ctl_r)).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Child {
            role: self.role,
            child,
            checkpoints,
            stderr: Some(stderr_thread),
            reaped: false,
            outcome: None,
        })
    }
}

/// The `pre_exec` hook of [`Spawn::pid_namespace`]: a new PID namespace for the next child
/// (the caller's own pid does not change), then a fork. The new child, pid 1 there, goes on to
/// exec the role; this process closes every descriptor but stdio (so the spawner's exec-error
/// pipe, the control pipe and the passed descriptors are the role's alone), waits for it and
/// exits as it did.
fn enter_pid_namespace() -> std::io::Result<()> {
    // SAFETY: plain system calls on numbers; in the child `fork` returns 0 and it returns to
    // the remaining hooks and exec; this process never returns from the block.
    unsafe {
        if libc::unshare(libc::CLONE_NEWPID) != 0
            && libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        match libc::fork() {
            -1 => Err(std::io::Error::last_os_error()),
            0 => {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            }
            role => {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                let mut status = 0;
                while libc::waitpid(role, &mut status, 0) == -1 {
                    if *libc::__errno_location() != libc::EINTR {
                        libc::_exit(127);
                    }
                }
                if libc::WIFSIGNALED(status) {
                    libc::_exit(128 + libc::WTERMSIG(status));
                }
                libc::_exit(libc::WEXITSTATUS(status))
            }
        }
    }
}

/// A running role. Dropping it kills and reaps the child.
#[derive(Debug)]
pub struct Child {
    role: String,
    child: std::process::Child,
    checkpoints: std::sync::mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    reaped: bool,
    outcome: Option<Outcome>,
}

/// How a child ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Outcome {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Whether it was ended by `SIGKILL`.
    pub fn killed(&self) -> bool {
        self.status.signal() == Some(libc::SIGKILL)
    }
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The role it runs.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Sends `SIGKILL` (the child dies at whatever instruction it is at).
    pub fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
        }
    }

    /// Waits until the role reports `label` with [`Ctx::checkpoint`] or [`Ctx::park`]
    /// (skipping labels reported before it). Panics, with the child's stderr, if the child ends
    /// first or the watchdog runs out.
    pub fn wait_checkpoint(&mut self, label: &str) {
        let deadline = Instant::now() + watchdog();
        loop {
            match self
                .checkpoints
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(got) if got == label => return,
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let out = self.wait();
                    panic!(
                        "role {:?} ended ({}) before checkpoint {label:?}; stderr:\n{}",
                        self.role, out.status, out.stderr
                    );
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let out = self.kill_and_wait();
                    panic!(
                        "watchdog: role {:?} did not reach checkpoint {label:?}; stderr:\n{}",
                        self.role, out.stderr
                    );
                }
            }
        }
    }

    /// Waits for the child to end, at most [`watchdog`]; a child that does not end by then is
    /// killed and the test fails with its stderr.
    pub fn wait(&mut self) -> Outcome {
        match self.wait_timeout(watchdog()) {
            Some(out) => out,
            None => {
                let out = self.kill_and_wait();
                panic!(
                    "watchdog: role {:?} hung; stderr:\n{}",
                    self.role, out.stderr
                );
            }
        }
    }

    /// Waits at most `timeout`; `None` if the child is still running. Once the child has
    /// ended, every call returns the same outcome.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Outcome> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(out) = &self.outcome {
                return Some(out.clone());
            }
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                self.reaped = true;
                let stderr = self
                    .stderr
                    .take()
                    .map(|t| t.join().unwrap_or_default())
                    .unwrap_or_default();
                self.outcome = Some(Outcome { status, stderr });
                continue;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits and panics, with the child's stderr, unless it exited with status 0.
    pub fn wait_success(mut self) -> Outcome {
        let out = self.wait();
        assert!(
            out.success(),
            "role {:?} failed ({}); stderr:\n{}",
            self.role,
            out.status,
            out.stderr
        );
        out
    }

    /// Kills the child with `SIGKILL` and reaps it.
    pub fn kill_and_wait(&mut self) -> Outcome {
        self.kill();
        self.wait_timeout(Duration::from_secs(30))
            .expect("a SIGKILLed child is reaped")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `f` on a thread and fails the test if it takes longer than [`watchdog`]: for the
/// parent's own blocking calls in a cross-process test, so a bug shows up as a failure, not a
/// hang. The thread is left behind on timeout (the test process is failing anyway).
pub fn within_watchdog<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(watchdog()) {
        Ok(v) => {
            let _ = handle.join();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: re-raise its panic here.
            match handle.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("sender dropped without a value or a panic"),
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: {what} did not finish within {:?}", watchdog())
        }
    }
}
