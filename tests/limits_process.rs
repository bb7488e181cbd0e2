//! Process limits: a thread or process the library must make and cannot (`fork` and `clone`
//! fail with `EAGAIN` past `RLIMIT_NPROC`, a cgroup's `pids.max` or `kernel.threads-max`) is
//! `LimitExceeded` naming the limit, not `WouldBlock`: `EAGAIN` there does not mean "try again
//! later", and a caller that retried on `WouldBlock` (an event loop, the async adapter) would
//! retry for ever. Runs in a child as `nobody` when the suite runs as root (root is exempt from
//! `RLIMIT_NPROC`).

use std::process::Command;

use ipc_core::{Error, ErrorKind, MessageReceiver, MessageSender, Readiness};
use ipc_pipe::ChildPipes;
use ipc_shm::ChannelOptions;
use ipc_testkit::limits::{run_checked, set_soft_limit, vm_size};
use ipc_testkit::{Ctx, roles, spawn};
use rustix::process::Resource;

const NOBODY: u32 = 65534;

/// Checks that `e` is `LimitExceeded` naming `RLIMIT_NPROC`.
fn names_nproc(e: &Error, what: &str) {
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{what}: {e}");
    let l = e
        .limit_info()
        .unwrap_or_else(|| panic!("{what}: no knob named: {e}"));
    assert!(l.knob.contains("RLIMIT_NPROC"), "{what}: {e}");
}

/// A channel that works, then `RLIMIT_NPROC` at 0: the receiver's readiness descriptor (its
/// doorbell thread) and a child spawned with pipe ends each name the limit; the channel still
/// carries messages.
fn no_process_left(_: &Ctx) {
    if rustix::process::geteuid().is_root() {
        // SAFETY: plain system calls on this process's credentials, which glibc applies to
        // every thread of the process; no memory is shared with them.
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
            assert_eq!(libc::setgid(NOBODY), 0);
            assert_eq!(libc::setuid(NOBODY), 0);
        }
    }
    let (mut tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    tx.send(b"before").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(rx.recv(&mut buf).unwrap(), 6);
    set_soft_limit(Resource::Nproc, 0);

    names_nproc(&rx.readiness_fd().unwrap_err(), "doorbell thread");
    let (r, _w) = ipc_pipe::pipe().unwrap();
    let mut pipes = ChildPipes::new();
    pipes.pass("ipc-limits", r).unwrap();
    names_nproc(
        &pipes.spawn(Command::new("/bin/true")).unwrap_err(),
        "child with pipe ends",
    );
    // ipc-core's own spawn with passed descriptors (what ipc-shm and ipc-sync point users
    // to): its io::Error, turned into this crate's error as its docs say, names the limit too.
    let (r, _w) = ipc_pipe::pipe().unwrap();
    let mut fds = ipc_core::inherit::ChildFds::new();
    fds.pass("ipc-limits", r).unwrap();
    let e = fds.spawn(&mut Command::new("/bin/true")).unwrap_err();
    names_nproc(&Error::from(e), "child with passed descriptors");
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv(&mut buf).unwrap(), 5);
    eprintln!("checked");
}

/// The v1 `pids` hierarchy (this machine's; with cgroup v2 the controller is in the unified
/// tree instead, and the test skips).
const PIDS_ROOT: &str = "/sys/fs/cgroup/pids";

/// What the test prints when it cannot make a `pids` cgroup.
const PIDS_SKIP: &str = "skipped: a pids cgroup needs root and the v1 pids hierarchy at";

/// Checks that `e` is `LimitExceeded` naming the `pids.max` file of cgroup `dir`.
fn names_pids_max(e: &Error, dir: &str, what: &str) {
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{what}: {e}");
    let l = e
        .limit_info()
        .unwrap_or_else(|| panic!("{what}: no knob named: {e}"));
    assert_eq!(&*l.knob, format!("{dir}/pids.max"), "{what}: {e}");
}

/// Writes `value` to the cgroup file `dir/file`.
fn cg_write(dir: &str, file: &str, value: &str) {
    std::fs::write(format!("{dir}/{file}"), value)
        .unwrap_or_else(|e| panic!("write {value} to {dir}/{file}: {e}"));
}

/// Tasks in cgroup `dir` now.
fn cg_current(dir: &str) -> String {
    std::fs::read_to_string(format!("{dir}/pids.current"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Child, `outer inner`: moves itself into `inner` (a cgroup under `outer`), then makes the
/// cgroup full in two ways: its own `pids.max` at the tasks it holds, then (its own back at
/// `max`) the parent cgroup's. Each time a doorbell thread and a child with pipe ends must
/// name the `pids.max` that stopped them: the kernel charges a new task to every cgroup up
/// to the root, so the one at its limit can be an ancestor.
fn pids_cgroup_full(ctx: &Ctx) {
    let a = ctx.args();
    let (outer, inner) = (a[0], a[1]);
    cg_write(inner, "cgroup.procs", &std::process::id().to_string());
    // Made before any limit: a receiver whose doorbell thread is still to start.
    let mut channels = [(); 2].map(|()| ChannelOptions::new().capacity(1 << 12).pair().unwrap());
    let mut next = channels.iter_mut();
    let mut try_both = |dir: &str, what: &str| {
        let (_, rx) = next.next().unwrap();
        names_pids_max(
            &rx.readiness_fd().unwrap_err(),
            dir,
            &format!("doorbell thread, {what}"),
        );
        let (r, _w) = ipc_pipe::pipe().unwrap();
        let mut pipes = ChildPipes::new();
        pipes.pass("ipc-limits", r).unwrap();
        names_pids_max(
            &pipes.spawn(Command::new("/bin/true")).unwrap_err(),
            dir,
            &format!("child with pipe ends, {what}"),
        );
    };
    cg_write(inner, "pids.max", &cg_current(inner));
    try_both(inner, "its own cgroup full");
    cg_write(inner, "pids.max", "max");
    cg_write(outer, "pids.max", &cg_current(outer));
    try_both(outer, "the parent cgroup full");
    eprintln!("checked");
}

/// A cgroup made for one test, and one under it: removed on drop, also when the test fails
/// (its child has exited by then, so both are empty).
struct Cgroups {
    outer: String,
    inner: String,
}

impl Cgroups {
    /// Makes them, or says why not (not root, no v1 pids hierarchy, not allowed).
    fn new() -> Result<Cgroups, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        if !std::path::Path::new(&format!("{PIDS_ROOT}/cgroup.procs")).exists() {
            return Err("no such hierarchy".into());
        }
        let outer = format!("{PIDS_ROOT}/ipctest-pids-{}", std::process::id());
        std::fs::create_dir(&outer).map_err(|e| format!("mkdir {outer}: {e}"))?;
        let inner = format!("{outer}/inner");
        let made = Cgroups {
            outer,
            inner: inner.clone(),
        };
        std::fs::create_dir(&inner).map_err(|e| format!("mkdir {inner}: {e}"))?;
        Ok(made)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in [&self.inner, &self.outer] {
            match std::fs::remove_dir(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    if std::thread::panicking() {
                        eprintln!("rmdir {dir}: {e}");
                    } else {
                        panic!("rmdir {dir}: {e}");
                    }
                }
                _ => {}
            }
        }
    }
}

/// The ids the PID namespace gives out used up: in a new PID namespace (this child's own
/// child is its init) whose `kernel.pid_max` is 400, threads are started until none can be,
/// then a doorbell thread and a child with pipe ends must name `/proc/sys/kernel/pid_max`
/// (`fork` and `clone` fail with `EAGAIN` when no pid is free). Prints why when the kernel or
/// the privileges do not allow it (a per-namespace `pid_max` came with Linux 6.14).
fn pid_namespace_full(_: &Ctx) {
    let skip = |why: String| {
        eprintln!("{PID_MAX_SKIP}: {why}");
    };
    if !rustix::process::geteuid().is_root() {
        return skip("not root".into());
    }
    // Made before the namespace fills: a receiver whose doorbell thread is still to start.
    let (_tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    // SAFETY: unshare takes flags only; it gives this process a private mount table and puts
    // its next child in a new PID namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID) } != 0 {
        return skip(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: this role's process runs one thread (the test's child), so the child of fork
    // may allocate and run any code; it ends with _exit, running no destructor of the parent's.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pid_namespace_init(&mut rx)
        })) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        // SAFETY: ends this child at once, as a forked child must.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked, writing its status into a local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the namespace's init failed: {status:#x}"
    );
}

/// What [`pid_namespace_full`] prints when it cannot run.
const PID_MAX_SKIP: &str = "skipped: a PID namespace with its own pid_max";

/// The init of [`pid_namespace_full`]'s namespace.
fn pid_namespace_init(rx: &mut ipc_shm::Receiver) {
    // SAFETY: pointers are NUL-terminated literals or null, valid for each call.
    unsafe {
        let private = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_PRIVATE | libc::MS_REC,
            std::ptr::null(),
        );
        assert_eq!(private, 0, "{}", std::io::Error::last_os_error());
        let proc = libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            0,
            std::ptr::null(),
        );
        assert_eq!(proc, 0, "{}", std::io::Error::last_os_error());
    }
    if let Err(e) = std::fs::write("/proc/sys/kernel/pid_max", "400") {
        eprintln!("{PID_MAX_SKIP}: write pid_max: {e}");
        eprintln!("checked");
        return;
    }
    let mut parked = Vec::new();
    loop {
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(std::thread::park);
        match spawned {
            Ok(t) => parked.push(t),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{e}");
                break;
            }
        }
        assert!(parked.len() < 1000, "pid_max did not bind");
    }
    let names_pid_max = |e: &Error, what: &str| {
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{what}: {e}");
        let l = e.limit_info().unwrap_or_else(|| panic!("{what}: {e}"));
        assert_eq!(&*l.knob, "/proc/sys/kernel/pid_max", "{what}: {e}");
        assert_eq!(l.value, Some(400), "{what}: {e}");
    };
    names_pid_max(&rx.readiness_fd().unwrap_err(), "doorbell thread");
    let (r, _w) = ipc_pipe::pipe().unwrap();
    let mut pipes = ChildPipes::new();
    pipes.pass("ipc-limits", r).unwrap();
    names_pid_max(
        &pipes.spawn(Command::new("/bin/true")).unwrap_err(),
        "child with pipe ends",
    );
    eprintln!("checked after {} threads", parked.len());
}

/// `RLIMIT_AS` set a few pages above what the process uses: a thread cannot get its stack
/// (`pthread_create` says `EAGAIN` when that `mmap` fails), and the receiver's readiness
/// descriptor (its doorbell thread) names `RLIMIT_AS`, not `RLIMIT_NPROC` nor `WouldBlock`.
fn no_room_for_a_thread(_: &Ctx) {
    let (_tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    set_soft_limit(Resource::As, vm_size() + (16 << 10));
    let e = rx.readiness_fd().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    let knob = e
        .limit_info()
        .map(|l| l.knob.to_string())
        .unwrap_or_default();
    assert!(knob.contains("RLIMIT_AS"), "{e}");
    eprintln!("checked");
}

roles!(
    no_process_left,
    pids_cgroup_full,
    pid_namespace_full,
    no_room_for_a_thread
);

#[test]
fn a_thread_without_room_for_its_stack_names_rlimit_as() {
    run_checked("no_room_for_a_thread", &[]);
}

/// A PID namespace out of pids (its `pid_max`): a thread and a child the library cannot make
/// name `/proc/sys/kernel/pid_max`. Fails on the old code, which named
/// `/proc/sys/kernel/threads-max` for root (`RLIMIT_NPROC` for other users), neither reached.
#[test]
fn a_thread_or_process_past_pid_max_names_it() {
    run_checked("pid_namespace_full", &[PID_MAX_SKIP]);
}

/// A cgroup whose `pids.max` is reached, its own or its parent's: a thread and a child the
/// library cannot make name that `pids.max` file. Fails on the old code for the parent's: only
/// the process's own cgroup was looked at, and root got `threads-max` named instead.
#[test]
fn a_thread_or_process_past_a_cgroup_s_pids_max_names_that_cgroup() {
    let cgroups = match Cgroups::new() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("{PIDS_SKIP} {PIDS_ROOT}: {why}");
            return;
        }
    };
    let out = spawn("pids_cgroup_full")
        .arg(format!("{} {}", cgroups.outer, cgroups.inner))
        .start()
        .wait();
    assert!(
        out.stderr.contains("checked"),
        "status {:?}: {}",
        out.status,
        out.stderr
    );
    drop(cgroups);
}

#[test]
fn a_thread_or_process_past_rlimit_nproc_names_it_not_would_block() {
    run_checked("no_process_left", &[]);
}
