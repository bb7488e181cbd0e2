//! Kernel limits reach the caller as `LimitExceeded` errors that name the knob and its value:
//! `RLIMIT_MSGQUEUE` and `RLIMIT_NOFILE` (lowered in a child), the hard ceilings (privileged) or
//! the `/proc/sys/fs/mqueue` knobs (unprivileged), `queues_max`, System V `msgmnb`, and
//! permissions. Behaviour only an unprivileged process shows runs in a child that drops from
//! root to `nobody` (or as is, when the suite runs unprivileged).

use ipc_core::MessageSender;
use ipc_core::{ErrorKind, Limit, PosixName};
use ipc_mq::knobs::{
    HARD_MSGMAX, HARD_MSGSIZEMAX, MSG_MAX, MSGSIZE_MAX, QUEUES_MAX, RLIMIT_MSGQUEUE, RLIMIT_NOFILE,
    SYSV_MSGMAX, SYSV_MSGMNB, SYSV_MSGMNI,
};
use ipc_mq::posix::{Limits, OpenOptions as PosixOpenOptions, Queue};
use ipc_mq::{Access, sysv};
use ipc_mq::{Removable, RemoveGuard};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

fn knob(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The limit an error names; panics unless it is a `LimitExceeded` naming one.
fn limit_of(e: &ipc_core::Error) -> Limit {
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    e.limit_info().cloned().expect("a limit detail")
}

fn assert_gone(name: &str) {
    let e = Queue::open(name, Access::ReadOnly).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{name}: {e}");
}

// ---- roles ----

/// Lowers `RLIMIT_MSGQUEUE` to 1000 bytes, then creates a queue that needs more.
fn low_rlimit_msgqueue(_: &Ctx) {
    let old = getrlimit(Resource::Msgqueue);
    setrlimit(
        Resource::Msgqueue,
        Rlimit {
            current: Some(1000),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let name = unique_posix_name("rlimit");
    let e = Queue::create(&*name, 4, 1024).unwrap_err();
    let l = limit_of(&e);
    assert_eq!((&*l.knob, l.value), (RLIMIT_MSGQUEUE, Some(1000)), "{e}");
    assert!(e.to_string().contains("RLIMIT_MSGQUEUE is 1000"), "{e}");
    assert_gone(&name);
    // (Whether a smaller queue would fit depends on the bytes every other queue of this user
    // takes, in any process: the rlimit counts per user. So nothing more is asserted.)
}

/// Uses up the descriptor numbers below a lowered `RLIMIT_NOFILE`, then opens queues.
fn low_rlimit_nofile(_: &Ctx) {
    use rustix::fs::{Mode, OFlags, open};
    let existing = Queue::create(&*unique_posix_name("nofile"), 1, 16).unwrap();
    let _g = existing.remove_guard().unwrap();
    // The lowest free descriptor number: allow exactly the ones below it.
    let probe = open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let lowest_free = rustix::fd::AsRawFd::as_raw_fd(&probe) as u64;
    drop(probe);
    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(lowest_free),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let name = unique_posix_name("nofile");
    let e = Queue::create(&*name, 1, 16).unwrap_err();
    let l = limit_of(&e);
    assert_eq!(
        (&*l.knob, l.value),
        (RLIMIT_NOFILE, Some(lowest_free)),
        "{e}"
    );
    let e = Queue::open(existing.name().unwrap(), Access::ReadOnly).unwrap_err();
    assert_eq!(limit_of(&e).knob, RLIMIT_NOFILE, "{e}");
    let e = existing.try_clone().unwrap_err();
    assert_eq!(limit_of(&e).knob, RLIMIT_NOFILE, "{e}");
    setrlimit(Resource::Nofile, old).unwrap();
    assert_gone(&name);
}

/// If running as root, becomes `nobody` for good; reports whether it did.
fn drop_root() -> bool {
    if !rustix::process::geteuid().is_root() {
        return false;
    }
    // SAFETY: plain credential calls with valid arguments (an empty group list); glibc applies
    // them to every thread of this child process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
    // A credential change clears the parent-death signal; set it again.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).unwrap();
    true
}

/// `posix_name sysv_key sysv_id open_posix_name open_sysv_key send_only_id` (objects the
/// parent made: the first three mode 0o600, the next two 0o666, the last a full 0o622 queue):
/// runs unprivileged and checks the knob errors, `queues_max`, `msgmnb`, permission denials,
/// the refusal of squatted objects, and sending without read permission.
fn unprivileged(ctx: &Ctx) {
    let a = ctx.args();
    let dropped = drop_root();
    let limits = Limits::current();
    if limits.privileged {
        eprintln!("skipped: this process has CAP_SYS_RESOURCE without being root");
        return;
    }
    let msg_max = knob(MSG_MAX);
    let msgsize_max = knob(MSGSIZE_MAX);
    assert_eq!(limits.msg_max, Some(msg_max));

    // The per-queue knobs bind.
    let name = unique_posix_name("unpriv");
    let e = Queue::create(&*name, msg_max as usize + 1, 8).unwrap_err();
    let l = limit_of(&e);
    assert_eq!((&*l.knob, l.value), (MSG_MAX, Some(msg_max)), "{e}");
    let e = Queue::create(&*name, 1, msgsize_max as usize + 1).unwrap_err();
    let l = limit_of(&e);
    assert_eq!((&*l.knob, l.value), (MSGSIZE_MAX, Some(msgsize_max)), "{e}");
    assert_gone(&name);
    let q = Queue::create(&*name, msg_max as usize, msgsize_max as usize).unwrap();
    drop(q.remove_guard());

    // queues_max counts every queue in the namespace; ours run into it. (While they exist,
    // other unprivileged processes cannot create queues either; root is exempt.)
    let queues_max = knob(QUEUES_MAX);
    if queues_max <= 4096 {
        let mut held = Vec::new();
        let e = loop {
            assert!(held.len() as u64 <= queues_max, "never refused");
            match Queue::create(&*unique_posix_name("many"), 1, 1) {
                Ok(q) => held.push((q.remove_guard().unwrap(), q)),
                Err(e) => break e,
            }
        };
        let l = limit_of(&e);
        assert_eq!((&*l.knob, l.value), (QUEUES_MAX, Some(queues_max)), "{e}");
    } else {
        eprintln!("skipped queues_max: {queues_max} queues are too many to create in a test");
    }

    // System V: raising msg_qbytes past msgmnb needs CAP_SYS_RESOURCE.
    let msgmnb = knob(SYSV_MSGMNB);
    let own = sysv::Queue::private().unwrap();
    let _remove = own.remove_guard();
    let e = own.set_max_bytes(msgmnb + 1).unwrap_err();
    let l = limit_of(&e);
    assert_eq!((&*l.knob, l.value), (SYSV_MSGMNB, Some(msgmnb)), "{e}");
    own.set_max_bytes(msgmnb / 2).unwrap();
    assert_eq!(own.status().unwrap().max_bytes, msgmnb / 2);

    if !dropped {
        eprintln!("skipped permission checks: the parent's objects belong to this user");
        return;
    }
    // The parent's objects are root's, mode 0o600.
    let e = Queue::open(a[0], Access::ReadOnly).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let key = sysv::Key::from_raw(a[1].parse().unwrap());
    let e = sysv::Queue::open(key, Access::ReadOnly).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let theirs = sysv::Queue::from_id(a[2].parse().unwrap());
    for e in [
        theirs.status().unwrap_err(),
        theirs.try_send_typed(1, b"x").unwrap_err(),
        theirs.remove().unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    }
    // Open to everyone (0o666) but root's: `open` and `open_or_create` refuse another
    // user's queue (it may be squatted), unless asked with `Owner::Any`.
    for e in [
        Queue::open(a[3], Access::ReadWrite).unwrap_err(),
        Queue::open_or_create(a[3], 1, 1).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("owned by uid 0"), "{e}");
        assert!(e.to_string().contains("Owner::Any"), "{e}");
    }
    let mut q = PosixOpenOptions::new()
        .owner(ipc_mq::Owner::Any)
        .open(a[3])
        .unwrap();
    q.try_send(b"any owner").unwrap();
    let key = sysv::Key::from_raw(a[4].parse().unwrap());
    for e in [
        sysv::Queue::open(key, Access::ReadWrite).unwrap_err(),
        sysv::Queue::open_or_create(key).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("owned by uid 0"), "{e}");
        assert!(e.to_string().contains("Owner::Any"), "{e}");
    }
    let q = sysv::OpenOptions::new()
        .owner(ipc_mq::Owner::Any)
        .open(key)
        .unwrap();
    q.try_send_typed(1, b"any owner").unwrap();

    // Send-only (0o622) and full: a send waits or would block; it is not refused for want
    // of the read permission that IPC_STAT (the "can it ever fit" check) needs.
    let send_only = sysv::Queue::from_id(a[5].parse().unwrap());
    let e = send_only.try_send_typed(1, b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    let e = send_only
        .send_typed_timeout(1, b"x", std::time::Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    let e = send_only.status().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
}

/// The line a child prints when it cannot make a private IPC namespace.
const SKIP_NS: &str = "skipped: unshare(CLONE_NEWIPC) is not permitted";

/// In a private IPC namespace (so the lowered knobs touch nothing else), exhausts `msgmni`,
/// `msgmax` and `msgmnb` and checks each error names its knob and value.
fn sysv_msg_limits(_: &Ctx) {
    // SAFETY: unshare takes a flag word and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
        eprintln!("{SKIP_NS}: {}", std::io::Error::last_os_error());
        return;
    }
    let set = |path: &str, v: u64| std::fs::write(path, v.to_string()).unwrap();
    // msgmni: two queues may exist.
    set(SYSV_MSGMNI, 2);
    let a = sysv::Queue::private().unwrap();
    let _ga = a.remove_guard();
    let b = sysv::Queue::private().unwrap();
    let _gb = b.remove_guard();
    let e = sysv::Queue::private().unwrap_err();
    let l = limit_of(&e);
    assert_eq!((&*l.knob, l.value), (SYSV_MSGMNI, Some(2)), "{e}");
    assert!(
        e.to_string().contains("/proc/sys/kernel/msgmni is 2"),
        "{e}"
    );
    set(SYSV_MSGMNI, 32000);

    // msgmax: the largest message.
    set(SYSV_MSGMAX, 100);
    let q = sysv::Queue::private().unwrap();
    let g = q.remove_guard();
    let e = q.send_typed(1, &[7; 101]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(e.message_size(), Some((101, 100)), "{e}");
    assert!(e.to_string().contains("/proc/sys/kernel/msgmax"), "{e}");
    q.send_typed(1, &[7; 100]).unwrap();
    drop((q, g));
    set(SYSV_MSGMAX, 8192);

    // msgmnb: a new queue's byte limit; a message longer than that can never be sent.
    set(SYSV_MSGMNB, 64);
    let q = sysv::Queue::private().unwrap();
    let _g = q.remove_guard();
    assert_eq!(q.status().unwrap().max_bytes, 64);
    let e = q.send_typed(1, &[7; 100]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(e.message_size(), Some((100, 64)), "{e}");
    assert!(
        e.to_string()
            .contains("/proc/sys/kernel/msgmnb, which is 64"),
        "{e}"
    );
    eprintln!("checked");
}

roles!(
    low_rlimit_msgqueue,
    low_rlimit_nofile,
    unprivileged,
    sysv_msg_limits
);

#[test]
fn each_sysv_queue_limit_names_its_knob_and_value() {
    let out = spawn("sysv_msg_limits").start().wait_success();
    if out.stderr.contains(SKIP_NS) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

// ---- tests ----

#[test]
fn rlimit_msgqueue_is_named_with_its_value() {
    // RLIMIT_MSGQUEUE binds root too; lower it in a child only.
    spawn("low_rlimit_msgqueue").start().wait_success();
}

#[test]
fn running_out_of_descriptors_is_named_rlimit_nofile() {
    spawn("low_rlimit_nofile").start().wait_success();
}

#[test]
fn capacity_beyond_the_ceiling_names_the_bound_that_applies() {
    let limits = Limits::current();
    let name = unique_posix_name("ceiling");
    let over_count = Queue::create(&*name, HARD_MSGMAX as usize + 1, 1).unwrap_err();
    let over_size = Queue::create(&*name, 1, HARD_MSGSIZEMAX as usize + 1).unwrap_err();
    if limits.privileged {
        // msg_max and msgsize_max do not bind; the kernel's own constants do.
        let l = limit_of(&over_count);
        assert!(l.knob.starts_with("HARD_MSGMAX"), "{over_count}");
        assert_eq!(l.value, Some(HARD_MSGMAX));
        let l = limit_of(&over_size);
        assert!(l.knob.starts_with("HARD_MSGSIZEMAX"), "{over_size}");
        assert_eq!(l.value, Some(HARD_MSGSIZEMAX));
        // And beyond msg_max is allowed.
        let q = Queue::create(&*name, knob(MSG_MAX) as usize + 1, 8).unwrap();
        drop(q.remove_guard());
    } else {
        assert_eq!(limit_of(&over_count).knob, MSG_MAX, "{over_count}");
        assert_eq!(limit_of(&over_size).knob, MSGSIZE_MAX, "{over_size}");
    }
    assert_gone(&name);
}

#[test]
fn unprivileged_processes_meet_the_knobs_and_the_permissions() {
    let name = PosixName::new(unique_posix_name("perm")).unwrap();
    let q = Queue::create(&name, 1, 8).unwrap();
    let _g = RemoveGuard::new(Removable::Queue(name.clone()));
    assert_eq!(rustix::fs::fstat(&q).unwrap().st_mode & 0o777, 0o600);
    let dir = ipc_testkit::TempDir::new("perm");
    std::fs::write(dir.join("key"), b"").unwrap();
    let key = sysv::Key::from_path(dir.join("key"), b'P').unwrap();
    let sq = sysv::Queue::create(key).unwrap();
    let _remove = sq.remove_guard();
    let open_name = unique_posix_name("open");
    let open_q = ipc_mq::posix::OpenOptions::new()
        .create_new(true)
        .mode(0o666)
        .open(&*open_name)
        .unwrap();
    let _g2 = open_q.remove_guard().unwrap();
    std::fs::write(dir.join("open"), b"").unwrap();
    let open_key = sysv::Key::from_path(dir.join("open"), b'P').unwrap();
    let open_sq = sysv::OpenOptions::new()
        .create_new(true)
        .mode(0o666)
        .open(open_key)
        .unwrap();
    let _remove2 = open_sq.remove_guard();
    let send_only = sysv::OpenOptions::new()
        .create_new(true)
        .mode(0o622)
        .open(sysv::Key::PRIVATE)
        .unwrap();
    let _remove3 = send_only.remove_guard();
    send_only.set_max_bytes(10).unwrap();
    send_only.send_typed(1, &[0; 10]).unwrap();
    let out = spawn("unprivileged")
        .arg(format!(
            "{name} {} {} {open_name} {} {}",
            key.as_raw(),
            sq.id(),
            open_key.as_raw(),
            send_only.id()
        ))
        .start()
        .wait_success();
    if rustix::process::geteuid().is_root() {
        // As root, the child dropped to nobody: every check ran.
        assert!(!out.stderr.contains("skipped"), "{}", out.stderr);
    }
    // Nothing the child tried changed our objects.
    assert_eq!(sq.status().unwrap().mode, 0o600);
    assert_eq!(q.attributes().unwrap().messages, 0);
}
