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
use ipc_testkit::{Ctx, roles};
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
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv(&mut buf).unwrap(), 5);
    eprintln!("checked");
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

roles!(no_process_left, no_room_for_a_thread);

#[test]
fn a_thread_without_room_for_its_stack_names_rlimit_as() {
    run_checked("no_room_for_a_thread", &[]);
}

#[test]
fn a_thread_or_process_past_rlimit_nproc_names_it_not_would_block() {
    run_checked("no_process_left", &[]);
}
