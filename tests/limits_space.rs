//! Memory and queue limits: a full `/dev/shm` under every mechanism that writes there (the
//! pub-sub and MPSC segments, named semaphores) is a typed `LimitExceeded` at creation that
//! leaves no name behind, never a `SIGBUS` at first touch; and a listener whose backlog is
//! full makes a connect with a deadline time out, not hang, and leaves no descriptor.
//!
//! The `/dev/shm` children first make their own mount namespace (`unshare(CLONE_NEWNS)`) with
//! a small tmpfs on `/dev/shm`, as `ipc-shm`'s `shm_full.rs` does: nothing else sees it, and it
//! vanishes with the child. Where that is not permitted, the test says so and skips.

use std::time::Duration;

use ipc_core::{Deadline, ErrorKind};
use ipc_testkit::shmfs::{SKIP, assert_no_room, names};
use ipc_testkit::{Ctx, roles, spawn};

/// The size of the child's own `/dev/shm`.
const ROOM: usize = 1 << 20;

fn small_dev_shm() -> bool {
    ipc_testkit::shmfs::small_dev_shm(ROOM)
}

/// Fills `/dev/shm` to its last block with one file (`filler`), which the caller removes.
fn fill_dev_shm() {
    use std::io::Write;
    let mut f = std::fs::File::create("/dev/shm/filler").unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("fill /dev/shm: {e}"),
        }
    }
}

// ---- roles ----

/// Pub-sub and MPSC segments larger than what is left: refused naming `/dev/shm`, no name left.
fn patterns_past_the_room(_: &Ctx) {
    use ipc_shm::{MpscOptions, PubSubOptions};
    if !small_dev_shm() {
        return;
    }
    let opts = PubSubOptions::new().slots(64).max_message(ROOM / 32);
    assert!(opts.segment_size() > ROOM, "{}", opts.segment_size());
    let e = opts.create_posix("/ipc-full-pubsub").unwrap_err();
    assert_no_room(&e);
    assert_eq!(
        names(),
        Vec::<String>::new(),
        "a refused pub-sub left its name"
    );

    let opts = MpscOptions::new().producers(4).capacity(ROOM / 2);
    assert!(opts.segment_size() > ROOM, "{}", opts.segment_size());
    let e = opts.create_posix("/ipc-full-mpsc").unwrap_err();
    assert_no_room(&e);
    assert_eq!(
        names(),
        Vec::<String>::new(),
        "a refused MPSC left its name"
    );

    // With the mount full, even a small one is refused.
    fill_dev_shm();
    let e = PubSubOptions::new()
        .create_posix("/ipc-full-pubsub-small")
        .unwrap_err();
    assert_no_room(&e);
    let e = MpscOptions::new()
        .create_posix("/ipc-full-mpsc-small")
        .unwrap_err();
    assert_no_room(&e);
    assert_eq!(names(), vec!["filler".to_owned()]);
    std::fs::remove_file("/dev/shm/filler").unwrap();
    eprintln!("checked");
}

/// A named semaphore created in a full `/dev/shm`: its file is mapped and written by
/// `sem_init`; were its page not reserved first (`ftruncate` alone lets tmpfs grow a file past
/// its free space), that write would be a `SIGBUS`.
fn semaphore_in_a_full_dev_shm(_: &Ctx) {
    use ipc_sync::NamedSemaphore;
    if !small_dev_shm() {
        return;
    }
    fill_dev_shm();
    let e = NamedSemaphore::create("/ipc-full-sem", 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(
        e.limit_info().is_some_and(|l| l.knob.contains("/dev/shm")),
        "the knob is not named: {e}"
    );
    assert_eq!(names(), vec!["filler".to_owned()]);
    std::fs::remove_file("/dev/shm/filler").unwrap();
    eprintln!("checked");
}

fn run_role(role: &str) {
    ipc_testkit::limits::run_checked(role, &[SKIP]);
}

#[test]
fn pubsub_and_mpsc_segments_that_do_not_fit_dev_shm_are_refused_at_creation() {
    run_role("patterns_past_the_room");
}

#[test]
fn a_named_semaphore_in_a_full_dev_shm_is_refused_not_a_sigbus() {
    run_role("semaphore_in_a_full_dev_shm");
}

#[test]
fn growing_a_pipe_past_the_user_page_budget_names_pipe_user_pages_soft() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root, to use up the pipe budget of a user of its own");
        return;
    }
    run_role("pipe_budget_used_up");
}

/// A seqpacket endpoint configured for a message larger than any `SO_SNDBUF` the kernel
/// grants (twice `wmem_max`) is refused as `LimitExceeded` whose limit detail names the limit
/// (matchable with `limit_info`, not only in the text): `wmem_max` and its value, or, where
/// `wmem_max` is above it (4 MiB here), the largest record the kernel allocates at all. The
/// largest message `largest_message` states goes through: it used to say twice `wmem_max`,
/// and a send of 4.1 MiB or more failed with an untyped `ENOBUFS`.
#[test]
fn a_seqpacket_message_above_what_the_kernel_sends_names_the_limit() {
    let knob = "/proc/sys/net/core/wmem_max";
    let wmem_max: u64 = std::fs::read_to_string(knob)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let too_big = 2 * wmem_max as usize + 1;
    assert!(too_big > ipc_socket::seqpacket::largest_message());
    let e = ipc_socket::Seqpacket::pair(too_big).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    let l = e
        .limit_info()
        .unwrap_or_else(|| panic!("no limit detail: {e}"));
    if l.knob == knob {
        assert_eq!(l.value, Some(wmem_max), "{e}");
        assert!(
            e.to_string().contains("SO_SNDBUF"),
            "the advice is gone: {e}"
        );
    } else {
        assert!(l.knob.contains("Unix-socket record"), "{e}");
        let ceiling = l.value.expect("the record ceiling") as usize;
        assert_eq!(ceiling, ipc_socket::seqpacket::largest_message(), "{e}");
    }
    // The largest it states works.
    let max = ipc_socket::seqpacket::largest_message();
    let (mut a, mut b) = ipc_socket::Seqpacket::pair(max).unwrap();
    use ipc_core::{MessageReceiver, MessageSender};
    let msg = vec![7u8; max];
    let t = std::thread::spawn(move || {
        a.send(&msg).unwrap();
        a
    });
    let mut buf = vec![0u8; max];
    assert_eq!(b.recv(&mut buf).unwrap(), max);
    drop(t.join().unwrap());
}

/// A record above a seqpacket endpoint's maximum, from a peer configured for more, is
/// `MessageTooLarge` whose detail gives the size and the limit (`message_size`), not only a
/// note; the message after it arrives whole.
#[test]
fn an_oversized_seqpacket_record_reports_its_size_and_the_limit() {
    use ipc_core::{MessageReceiver, MessageSender};
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let mut big = ipc_socket::Seqpacket::from_fd(a, 1 << 16).unwrap();
    let mut small = ipc_socket::Seqpacket::from_fd(b, 64).unwrap();
    big.send(&[1u8; 100]).unwrap();
    big.send(b"next").unwrap();
    let mut buf = [0u8; 64];
    let e = small.recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    let (size, limit) = e.message_size().unwrap_or_else(|| panic!("no sizes: {e}"));
    assert!(size > limit && limit == 64, "{size} {limit}: {e}");
    assert!(e.to_string().contains("dropped"), "the note is gone: {e}");
    let n = small.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"next");
}

/// The open descriptors of this process, by number.
fn open_fds() -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            std::fs::read_link(e.path()).ok()?;
            Some(e.file_name().into_string().unwrap())
        })
        .collect();
    v.sort();
    v
}

/// A listener whose backlog is full (connected, never accepted): a connect with a deadline
/// ends at it with `TimedOut` (Unix: the kernel's `EAGAIN` retried; TCP: the SYN dropped
/// while the accept queue is full), closes its socket, and the queued connections still work
/// once accepted. Run in a child: the descriptor count is the child's own.
fn connect_to_a_full_backlog(_: &Ctx) {
    use ipc_core::{MessageReceiver, MessageSender};
    use ipc_socket::{Address, Listener, Options, Stream};
    let opts = Options::new().backlog(1);
    let unix = Address::abstract_name(ipc_testkit::unique_name("backlog"));
    let tcp = Address::Inet("127.0.0.1:0".parse().unwrap());
    for addr in [unix, tcp] {
        let l = Listener::<Stream>::bind(&addr, &opts).unwrap();
        let addr = l.local_addr().unwrap();
        let mut queued = Vec::new();
        let e = loop {
            match Stream::connect(
                &addr,
                &Options::new(),
                Deadline::after(Duration::from_millis(200)),
            ) {
                Ok(c) => queued.push(c),
                Err(e) => break e,
            }
            assert!(queued.len() < 64, "{addr}: the backlog never filled");
        };
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{addr}: {e}");
        let fds = open_fds();
        let e = Stream::connect(
            &addr,
            &Options::new(),
            Deadline::after(Duration::from_millis(50)),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{addr}: {e}");
        assert_eq!(
            open_fds(),
            fds,
            "{addr}: a timed-out connect left its socket"
        );
        for (i, c) in queued.iter_mut().enumerate() {
            c.send(&[i as u8]).unwrap();
        }
        for i in 0..queued.len() {
            let mut a = l.accept(Deadline::after(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 8];
            let n = a
                .recv_deadline(&mut b, Deadline::after(Duration::from_secs(10)))
                .unwrap();
            assert_eq!(&b[..n], &[i as u8], "{addr}");
        }
    }
    eprintln!("checked");
}

/// A uid no other test uses: the per-user pipe page budget this role uses up is that user's
/// alone (ipc-pipe's capacity tests use `nobody`'s).
const BUDGET_UID: u32 = 61_234;

/// Role (root): becomes [`BUDGET_UID`], makes pipes until the user is past
/// `pipe-user-pages-soft` (a new pipe then gets fewer than the default 16 pages), and asks a
/// pipe holding a message to grow: refused (`EPERM`) as `LimitExceeded` naming that knob and
/// its value, and the message is still there, whole.
fn pipe_budget_used_up(_: &Ctx) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    use std::io::{Read, Write};
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    )
    .unwrap();
    // SAFETY: plain credential calls with valid arguments (an empty group list); glibc applies
    // them to every thread of this process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(BUDGET_UID), 0);
        assert_eq!(libc::setuid(BUDGET_UID), 0);
    }
    let page = rustix::param::page_size();
    let mut held = Vec::new();
    let (mut r, mut w) = loop {
        let (r, w) = ipc_pipe::pipe().unwrap();
        if w.capacity().unwrap() < 16 * page {
            break (r, w);
        }
        held.push((r, w));
        assert!(held.len() < 8192, "never past the budget");
    };
    w.write_all(b"kept").unwrap();
    let e = w.set_capacity(16 * page).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    let l = e.limit_info().expect("a limit detail");
    assert_eq!(&*l.knob, "/proc/sys/fs/pipe-user-pages-soft", "{e}");
    let soft: u64 = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(l.value, Some(soft), "{e}");
    let mut got = [0u8; 4];
    r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"kept");
    eprintln!("checked: {e}");
}

/// A `/dev/shm` out of inodes (`nr_inodes=` used up by files of its own): a segment and a named
/// semaphore are `LimitExceeded` naming `/dev/shm`'s inodes (before, a bare `ENOSPC` with no
/// knob, read as "out of space" on a mount with bytes to spare), and no name is left.
fn dev_shm_out_of_inodes(_: &Ctx) {
    use ipc_shm::Segment;
    use ipc_sync::NamedSemaphore;
    if !ipc_testkit::shmfs::dev_shm_with("size=1M,nr_inodes=8") {
        return;
    }
    let mut planted = 0;
    loop {
        match std::fs::File::create(format!("/dev/shm/inode-{planted}")) {
            Ok(_) => planted += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("plant a file: {e}"),
        }
    }
    let before = names();
    for e in [
        Segment::create("/ipc-no-inode", 4096).unwrap_err(),
        NamedSemaphore::create("/ipc-no-inode-sem", 1).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
        let l = e
            .limit_info()
            .unwrap_or_else(|| panic!("the knob is not named: {e}"));
        assert!(l.knob.contains("inodes of /dev/shm"), "{e}");
        assert_eq!(l.value, Some(0), "{e}");
    }
    assert_eq!(names(), before, "a refused creation left a name");
    eprintln!("checked after {planted} files");
}

roles!(
    dev_shm_out_of_inodes,
    pipe_budget_used_up,
    patterns_past_the_room,
    semaphore_in_a_full_dev_shm,
    connect_to_a_full_backlog
);

#[test]
fn a_connect_to_a_full_backlog_times_out_and_leaves_nothing() {
    let out = spawn("connect_to_a_full_backlog").start().wait();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

#[test]
fn a_dev_shm_out_of_inodes_names_them() {
    run_role("dev_shm_out_of_inodes");
}
