//! Attacks on ipc-socket's promises that the other test files leave alone, each test's doc
//! comment saying which promise and how it fails when broken.

use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use ipc_socket::rpc::{Client, ID_LEN, serve};
use ipc_socket::seqpacket::MAX_FDS;
use ipc_socket::{
    Address, Deadline, ErrorKind, Listener, MessageReceiver, MessageSender, Options, Seqpacket,
    Stream,
};
use ipc_testkit::{Ctx, TempDir, roles, spawn, within_watchdog};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

fn secs(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(n))
}

/// A connected Unix socket pair of `ty`, to wrap each end with a maximum of its own (or
/// none: a peer that is not this library).
fn raw_pair(ty: SocketType) -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None).unwrap()
}

/// Whether the pipe whose read end is `r` has no writer left: a read returns end of file
/// (polled first, 30 s at most, so a leaked writer fails the test instead of hanging it).
fn writer_gone(r: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::new(&r, rustix::event::PollFlags::IN)];
    let t = rustix::time::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&t)).unwrap() == 0 {
        return false;
    }
    let mut b = [0u8; 1];
    rustix::io::read(r, &mut b).unwrap() == 0
}

/// `msg` with `n` copies of `fd`, sent raw (`sendmsg`, no trailer: `msg` must not end with
/// `TAG`), as a peer that is not this library may: more than [`MAX_FDS`] if it likes.
fn send_raw_with_fds(sock: BorrowedFd<'_>, msg: &[u8], fd: BorrowedFd<'_>, n: usize) {
    let many: Vec<BorrowedFd<'_>> = (0..n).map(|_| fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(n))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&many)));
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(msg)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
}

/// Child: with the umask keeping the owner's own bits off (`0o277`: directories it makes
/// are `r-x` to it, no write), and as `nobody` when run by root (root's permission checks
/// would not see the mode), binds a seqpacket listener of mode 0600 at the path in its
/// argument, checks the file's mode and that a client connects, and drops it.
fn bind_with_owner_umask(ctx: &Ctx) {
    if rustix::process::geteuid().is_root() {
        become_nobody();
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o277));
    let path = std::path::Path::new(ctx.arg());
    let addr = Address::path(path);
    let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new().mode(0o600))
        .unwrap_or_else(|e| panic!("bind with umask 0277: {e}"));
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let mut c = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
    let mut s = l.accept(secs(30)).unwrap();
    c.send(b"exact").unwrap();
    assert_eq!(s.recv(&mut [0u8; 16]).unwrap(), 5);
}

const NOBODY: u32 = 65534;

/// Becomes user and group `nobody` (65534) for good.
fn become_nobody() {
    // SAFETY: plain system calls on this process's credentials, which glibc applies to every
    // thread of the process; no memory is shared with them.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(NOBODY), 0);
        assert_eq!(libc::setuid(NOBODY), 0);
    }
}

/// Child: as `nobody` when run by root (root may keep any number of descriptors in flight),
/// with `RLIMIT_NOFILE` at 16, sends messages of 8 descriptors to a peer that receives none,
/// until the kernel refuses (`ETOOMANYREFS`: this user's descriptors in flight over Unix
/// sockets above its `RLIMIT_NOFILE`): a typed `LimitExceeded` naming the limit. Once the
/// peer has received them, the next send goes through.
fn fds_in_flight_above_the_limit(_: &Ctx) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    if rustix::process::geteuid().is_root() {
        become_nobody();
    }
    let (mut a, mut b) = Seqpacket::pair(64).unwrap();
    let (_r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let eight = [w.as_fd(); 8];
    let nofile = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(16),
            maximum: nofile.maximum,
        },
    )
    .unwrap();
    let mut sent = 0;
    let e = loop {
        match a.send_with_fds(b"x", &eight, Deadline::Now) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    setrlimit(Resource::Nofile, nofile).unwrap();
    assert_eq!(
        e.kind(),
        ErrorKind::LimitExceeded,
        "after {sent} messages: {e}"
    );
    assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");
    let l = e.limit_info().expect("a limit detail");
    assert_eq!((&*l.knob, l.value), ("RLIMIT_NOFILE", Some(16)), "{e}");
    assert!(e.to_string().contains("in flight"), "{e}");
    for _ in 0..sent {
        assert_eq!(b.recv(&mut [0u8; 64]).unwrap(), 1);
    }
    a.send_with_fds(b"y", &eight, Deadline::Now).unwrap();
    let mut fds = Vec::new();
    let n = b
        .recv_with_fds(&mut [0u8; 64], &mut fds, Deadline::Now)
        .unwrap();
    assert_eq!((n, fds.len()), (1, 8));
}

/// Child: connects a raw TCP socket to the address in its argument, writes a frame header
/// announcing 1 MiB and 100 bytes of it, and parks (to be killed in the middle of the frame).
fn tcp_partial_frame_and_park(ctx: &Ctx) {
    let mut s = std::net::TcpStream::connect(ctx.arg()).unwrap();
    let mut frame = (1u32 << 20).to_le_bytes().to_vec();
    frame.extend_from_slice(&[9u8; 100]);
    s.write_all(&frame).unwrap();
    ctx.park("partial");
}

/// Child: connects a seqpacket socket to the path in its argument and parks, never sending.
fn connect_silent_and_park(ctx: &Ctx) {
    let _c = Seqpacket::connect(&Address::path(ctx.arg()), &Options::new(), secs(30)).unwrap();
    ctx.park("connected");
}

/// Child (run by root): moves its future children into a new pid namespace and runs the role
/// named by the first word of its argument there, with the rest as its argument, re-executed
/// like any role (the testkit's `spawn` starts threads, which a process whose children go to
/// another pid namespace may not); fails when it fails.
fn in_a_new_pid_namespace(ctx: &Ctx) {
    use std::os::unix::process::CommandExt;
    // SAFETY: a plain system call; it changes the pid namespace of this process's future
    // children only, and touches no memory.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWPID) }, 0);
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        ipc_testkit::ENTRY_TEST,
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ]);
    let (role, arg) = ctx.arg().split_once(' ').unwrap();
    cmd.env("IPC_TESTKIT_ROLE", role)
        .env("IPC_TESTKIT_ARG", arg);
    // SAFETY: runs in the child between fork and exec and only makes the prctl system call
    // (async-signal-safe, no allocation): the child dies with this process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "in the new pid namespace: {status:?}");
}

/// Grandchild, pid 1 of its own pid namespace: connects to the server at the path in its
/// argument, whose process this namespace cannot see (`SO_PEERCRED` reports its pid as 0),
/// and checks the server's uid like any client.
fn connect_from_a_child_pid_namespace(ctx: &Ctx) {
    assert_eq!(std::process::id(), 1, "not in a new pid namespace");
    let mut c = Seqpacket::connect(&Address::path(ctx.arg()), &Options::new(), secs(30))
        .unwrap_or_else(|e| panic!("connect from a child pid namespace: {e}"));
    let server = c.peer_cred().expect("the server's credentials");
    assert_eq!(server.uid, rustix::process::geteuid().as_raw());
    assert_eq!(server.pid, 0, "a process this namespace cannot see");
    c.send(b"from a container").unwrap();
}

/// Waits (30 s at most, a hang guard) until `path` exists.
fn await_file(path: &std::path::Path) {
    for _ in 0..3000 {
        if std::fs::symlink_metadata(path).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

/// Grandchild, pid 1 of its own pid namespace: binds a seqpacket listener in the directory
/// in its argument, connects a client of its own (which it can see) and says so (`bound`),
/// waits until the parent's client (a process it cannot see) is queued too (`go`), then serves
/// both with `rpc::serve` (deadline `Now`: it takes those two): the server must go on past
/// the client whose credentials it cannot read, and answer its own.
fn serve_behind_a_pid_namespace(ctx: &Ctx) {
    assert_eq!(std::process::id(), 1, "not in a new pid namespace");
    let dir = std::path::Path::new(ctx.arg());
    let addr = Address::path(dir.join("s"));
    let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
    let inside = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
    std::fs::write(dir.join("bound"), b"").unwrap();
    await_file(&dir.join("go"));
    std::thread::scope(|scope| {
        let client = scope.spawn(move || {
            let mut c = Client::new(inside);
            let mut buf = [0u8; 64];
            let n = c.call(b"inside", &mut buf, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"inside");
        });
        let served = serve(&l, Deadline::Now, |q: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(q)
        });
        client.join().unwrap();
        served.unwrap_or_else(|e| panic!("serve stopped for every client: {e}"));
    });
}

/// The descriptors open in this process that would survive an `exec` (no `FD_CLOEXEC`).
fn inheritable_fds() -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| {
            // SAFETY: `fcntl(F_GETFD)` on a descriptor number only reads its flags; one closed
            // meanwhile (the directory's own) fails with EBADF and is left out.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect();
    v.sort();
    v
}

/// Child (its own process, so no other test's descriptors are counted): makes every kind of
/// descriptor this crate hands out (listeners on a path, an abstract name and TCP, endpoints
/// connected and accepted on each, pairs, descriptors received with a message and kept by a
/// held one) and checks that none would survive an `exec`.
fn everything_close_on_exec(ctx: &Ctx) {
    let before = inheritable_fds();
    let dir = std::path::Path::new(ctx.arg());
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let path = Address::path(dir.join("s"));
    let abs = Address::abstract_name(ipc_testkit::unique_name("cloexec"));
    for addr in [&path, &abs] {
        let l: Listener<Seqpacket> = Listener::bind(addr, &Options::new()).unwrap();
        keep.push(Box::new(
            Seqpacket::connect(addr, &Options::new(), secs(30)).unwrap(),
        ));
        keep.push(Box::new(l.accept(secs(30)).unwrap()));
        keep.push(Box::new(l));
    }
    let tcp: Listener<Stream> = Listener::bind(
        &Address::Inet("127.0.0.1:0".parse().unwrap()),
        &Options::new(),
    )
    .unwrap();
    keep.push(Box::new(
        Stream::connect(&Address::Inet(bound(&tcp)), &Options::new(), secs(30)).unwrap(),
    ));
    keep.push(Box::new(tcp.accept(secs(30)).unwrap()));
    keep.push(Box::new(tcp));
    let l: Listener<Stream> =
        Listener::bind(&Address::path(dir.join("t")), &Options::new()).unwrap();
    keep.push(Box::new(
        Stream::connect(&Address::path(dir.join("t")), &Options::new(), secs(30)).unwrap(),
    ));
    keep.push(Box::new(l.accept(secs(30)).unwrap()));
    keep.push(Box::new(l));
    keep.push(Box::new(Stream::pair(64).unwrap()));
    let (mut a, mut b) = Seqpacket::pair(8192).unwrap();
    // A pipe made without close-on-exec, sent twice: received, and kept by a held message.
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::empty()).unwrap();
    a.send_with_fds(b"fds", &[r.as_fd(), w.as_fd()], secs(30))
        .unwrap();
    a.send_with_fds(&[5u8; 100], &[r.as_fd()], secs(30))
        .unwrap();
    drop((r, w));
    let mut fds = Vec::new();
    b.recv_with_fds(&mut [0u8; 8192], &mut fds, secs(30))
        .unwrap();
    assert_eq!(fds.len(), 2);
    let e = b
        .recv_with_fds(&mut [0u8; 10], &mut fds, secs(30))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    keep.push(Box::new((a, b, fds)));
    assert_eq!(
        inheritable_fds(),
        before,
        "descriptors an exec would inherit"
    );
    drop(keep);
}

/// Child: as `nobody` when run by root (root is not held to `RLIMIT_NPROC`), with
/// `RLIMIT_NPROC` at 1 so that no new thread can start, runs `rpc::serve` over two clients
/// queued before it (deadline `Now`: it takes them and returns): it cannot give either a
/// thread, so each is dropped (`Disconnected` to it), and `serve` returns instead of
/// panicking.
fn serve_without_threads(ctx: &Ctx) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    if rustix::process::geteuid().is_root() {
        become_nobody();
    }
    let addr = Address::path(std::path::Path::new(ctx.arg()).join("s"));
    let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
    let mut clients: Vec<Seqpacket> = (0..2)
        .map(|_| Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap())
        .collect();
    let nproc = getrlimit(Resource::Nproc);
    setrlimit(
        Resource::Nproc,
        Rlimit {
            current: Some(1),
            maximum: nproc.maximum,
        },
    )
    .unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve(&l, Deadline::Now, |q: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(q)
        })
    }));
    setrlimit(Resource::Nproc, nproc).unwrap();
    let r = r.unwrap_or_else(|_| panic!("serve panicked when no thread could start"));
    r.unwrap();
    for c in &mut clients {
        let e = c.recv_deadline(&mut [0u8; 64], secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    }
}

/// The most bytes this process had allocated at once, counted by [`PEAK`]'s allocator.
#[cfg(feature = "serde")]
mod peak {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    pub(super) struct Peak;
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    // SAFETY: every call forwards to the system allocator with the caller's own arguments;
    // the counters are only read, never used to allocate.
    unsafe impl GlobalAlloc for Peak {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires of the caller.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
                PEAK.fetch_max(live, Relaxed);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `alloc` above with this layout, as the caller promises.
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
    }

    /// The peak allocation while `f` runs, above what was live when it started.
    pub(super) fn during(f: impl FnOnce()) -> usize {
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        f();
        PEAK.load(Relaxed) - base
    }
}

#[cfg(feature = "serde")]
#[global_allocator]
static PEAK: peak::Peak = peak::Peak;

/// Child (its own process: no other test allocates meanwhile): decodes messages whose nested
/// length fields claim up to 2^63 elements or bytes, each a few bytes long: every one is
/// `Corrupted`, and the most allocated at once stays under 8 MiB.
#[cfg(feature = "serde")]
fn nested_claims(_: &Ctx) {
    use std::collections::HashMap;

    use ipc_socket::typed::decode;
    /// A postcard varint.
    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }
    let huge = varint(1 << 63);
    let giga = varint(1 << 32);
    let nested: Vec<u8> = [&huge[..], &huge, &huge, &[1, 2, 3]].concat();
    let strings: Vec<u8> = [&giga[..], &huge, b"abc"].concat();
    let map: Vec<u8> = [&huge[..], &giga, b"key", &huge].concat();
    let bytes: Vec<u8> = [&giga[..], &huge, &[0u8; 16]].concat();
    let mut kinds = Vec::new();
    let peak = peak::during(|| {
        kinds.push(decode::<Vec<Vec<Vec<u64>>>>(&nested).map(drop));
        kinds.push(decode::<Vec<String>>(&strings).map(drop));
        kinds.push(decode::<HashMap<String, Vec<u64>>>(&map).map(drop));
        kinds.push(decode::<Vec<serde_bytes::ByteBuf>>(&bytes).map(drop));
    });
    for r in kinds {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    }
    assert!(
        peak < 8 << 20,
        "{peak} bytes allocated at once for messages of a few bytes"
    );
    // The counter sees what a real decode allocates: 1000 u64 are 8000 bytes.
    let real = ipc_socket::typed::encode(&vec![7u64; 1000]).unwrap();
    let seen = peak::during(|| assert_eq!(decode::<Vec<u64>>(&real).unwrap().len(), 1000));
    assert!(seen >= 8000, "the allocation counter saw {seen} bytes");
}

/// No typed messages without feature `serde`: nothing to check.
#[cfg(not(feature = "serde"))]
fn nested_claims(_: &Ctx) {}

/// Child (the working directory is per process): in the directory in its argument, binds a
/// listener at the relative path `s` (working directory `a`), changes its working directory
/// to `b`, where a file `s` of its own lies, and drops the listener: its socket file `a/s`
/// must be gone, and `b/s` (another file, the same relative name) kept.
fn bind_relative_then_chdir(ctx: &Ctx) {
    let dir = std::path::Path::new(ctx.arg());
    std::env::set_current_dir(dir.join("a")).unwrap();
    let l: Listener<Seqpacket> = Listener::bind(&Address::path("s"), &Options::new()).unwrap();
    let _c = Seqpacket::connect(&Address::path("s"), &Options::new(), secs(30)).unwrap();
    std::env::set_current_dir(dir.join("b")).unwrap();
    drop(l);
    assert_eq!(std::fs::read(dir.join("b/s")).unwrap(), b"another file");
    assert!(
        std::fs::symlink_metadata(dir.join("a/s")).is_err(),
        "the socket file bound at a relative path stayed after a change of directory"
    );
}

/// Child: binds a listener at the path in its argument, forks (a pre-fork server's worker),
/// and the forked copy drops its listener and exits; then the socket file must still be there
/// and a client connect, since this process still listens. Dropped here, the file goes.
fn fork_and_drop_in_the_child(ctx: &Ctx) {
    let addr = Address::path(ctx.arg());
    let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
    // SAFETY: the forked child only drops the listener (system calls and glibc's malloc,
    // which is fork-safe) and leaves with `_exit`, running nothing else of this process.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        drop(l);
        // SAFETY: ends the forked child at once, without running this process's exit code.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid place for its status.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        std::fs::symlink_metadata(ctx.arg()).is_ok(),
        "a forked copy of the listener removed the socket file this process listens on"
    );
    let _c = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
    drop(l.accept(secs(30)).unwrap());
    drop(l);
    assert!(std::fs::symlink_metadata(ctx.arg()).is_err());
}

/// Child: a TCP rpc server on the listener address in its argument that answers the first
/// request, reads two more without answering, and parks (to be killed with requests in
/// flight, some of them never read: the kernel resets the connection).
fn tcp_server_answers_one_and_parks(ctx: &Ctx) {
    let at: std::net::SocketAddr = ctx.arg().parse().unwrap();
    let mut s = Stream::connect(&Address::Inet(at), &Options::new(), secs(30)).unwrap();
    let mut buf = [0u8; 64];
    let n = s.recv_deadline(&mut buf, secs(30)).unwrap();
    s.send(&[&buf[..ID_LEN], b"first"].concat()).unwrap();
    assert!(n >= ID_LEN);
    for _ in 0..2 {
        s.recv_deadline(&mut buf, secs(30)).unwrap();
    }
    ctx.park("read three");
}

/// Child (run by root): as `nobody`, connects to the socket at the path in its argument (any
/// server uid): must be refused by the file's permissions.
fn nobody_is_refused(ctx: &Ctx) {
    become_nobody();
    let any = Options::new().peer(ipc_socket::PeerPolicy::Any);
    let e = Seqpacket::connect(&Address::path(ctx.arg()), &any, secs(30))
        .map(drop)
        .expect_err("nobody connected to a socket file whose mode keeps it out");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
}

roles!(
    nobody_is_refused,
    tcp_server_answers_one_and_parks,
    fork_and_drop_in_the_child,
    bind_relative_then_chdir,
    nested_claims,
    serve_without_threads,
    everything_close_on_exec,
    bind_with_owner_umask,
    fds_in_flight_above_the_limit,
    tcp_partial_frame_and_park,
    connect_silent_and_park,
    in_a_new_pid_namespace,
    connect_from_a_child_pid_namespace,
    serve_behind_a_pid_namespace,
);

/// A peer configured for larger messages sends a record above this endpoint's maximum with a
/// descriptor, to `recv_with_fds` with a buffer of at least the maximum (the direct `recvmsg`
/// path; a smaller buffer takes the held path, which `hostile.rs` covers): the error is
/// `MessageTooLarge`, the record is dropped, and its descriptor is closed with it. It must not
/// be appended to the caller's list, where it would pass for the next message's descriptor
/// (a peer slipping a descriptor into a later message) and stay open. Fails with the
/// descriptor appended before the length check.
#[test]
fn descriptors_of_a_record_above_the_maximum_are_closed_with_it() {
    within_watchdog("descriptors of an oversized record", || {
        // (the endpoint's maximum, the receive buffer): a small endpoint and a larger one,
        // with a buffer of exactly the maximum and a longer one.
        for (max, room) in [(64, 64), (64, 100), (8192, 8192), (8192, 9000)] {
            let (a, b) = raw_pair(SocketType::SEQPACKET);
            let mut big = Seqpacket::from_fd(a, 1 << 16).unwrap();
            let mut rx = Seqpacket::from_fd(b, max).unwrap();
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            big.send_with_fds(&vec![1u8; room + 2], &[w.as_fd()], secs(30))
                .unwrap();
            drop(w);
            big.send(b"next").unwrap();
            let mut buf = vec![0u8; room];
            let mut fds = Vec::new();
            let e = rx.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{max}/{room}: {e}");
            assert!(
                fds.is_empty(),
                "{max}/{room}: the dropped record's descriptor was handed to the caller"
            );
            assert!(
                writer_gone(r.as_fd()),
                "{max}/{room}: the dropped record's descriptor is still open"
            );
            let n = rx.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"next", "{max}/{room}");
            assert!(fds.is_empty(), "{max}/{room}");
        }
    });
}

/// A message whose descriptors the kernel truncated (`MSG_CTRUNC`: a peer that is not this
/// library sent more than [`MAX_FDS`]) is first received by a plain `recv` with a buffer too
/// small for it (`MessageTooLarge`: held, descriptors and all), then by `recv_with_fds` with
/// room: that receive must say the descriptors were truncated (`LimitExceeded`, as when it
/// meets the message first), not return the message as if it had come with none. The next
/// message is intact. Fails when the held message forgets the truncation.
#[test]
fn a_held_message_with_truncated_descriptors_is_limit_exceeded_to_recv_with_fds() {
    within_watchdog("held message with truncated descriptors", || {
        let (a, b) = raw_pair(SocketType::SEQPACKET);
        let mut rx = Seqpacket::from_fd(b, 8192).unwrap();
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        send_raw_with_fds(a.as_fd(), &[1u8; 200], w.as_fd(), MAX_FDS + 6);
        drop(w);
        let mut tx = Seqpacket::from_fd(a, 8192).unwrap();
        tx.send(b"after").unwrap();
        let e = rx.recv(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        let mut buf = vec![0u8; 8192];
        let mut fds = Vec::new();
        let e = rx
            .recv_with_fds(&mut buf, &mut fds, secs(30))
            .expect_err("a message whose descriptors were truncated came back as whole");
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
        assert!(e.to_string().contains("MSG_CTRUNC"), "{e}");
        assert!(fds.is_empty());
        assert!(
            writer_gone(r.as_fd()),
            "a truncated set's descriptor leaked"
        );
        let n = rx.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
        assert_eq!(&buf[..n], b"after");
        assert!(fds.is_empty());
        // A plain receive of such a message still gets it: it never asked for descriptors.
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        send_raw_with_fds(tx.as_fd(), &[2u8; 200], w.as_fd(), MAX_FDS + 6);
        drop(w);
        let e = rx.recv(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(rx.recv(&mut buf).unwrap(), 200);
        assert!(writer_gone(r.as_fd()));
    });
}

/// Exactly [`MAX_FDS`] descriptors, the most `send_with_fds` takes, all arrive with their
/// message on every receive path that takes descriptors (a buffer smaller than the maximum,
/// exactly the maximum, longer), none truncated. Passes on the code as it is: guards the
/// control buffer's size against an off-by-one (one descriptor fewer of room would make every
/// full message `LimitExceeded`).
#[test]
fn the_most_descriptors_a_message_takes_all_arrive() {
    within_watchdog("MAX_FDS descriptors", || {
        for (max, room) in [(64, 10), (64, 64), (8192, 100), (8192, 8192), (8192, 9000)] {
            let (mut a, mut b) = Seqpacket::pair(max).unwrap();
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let many: Vec<BorrowedFd<'_>> = (0..MAX_FDS).map(|_| w.as_fd()).collect();
            a.send_with_fds(b"many", &many, secs(30)).unwrap();
            let e = a
                .send_with_fds(
                    b"too many",
                    &[many.as_slice(), &[w.as_fd()]].concat(),
                    secs(30),
                )
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            drop(many);
            drop(w);
            let mut buf = vec![0u8; room];
            let mut fds = Vec::new();
            let n = b.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
            assert_eq!(&buf[..n], b"many", "{max}/{room}");
            assert_eq!(fds.len(), MAX_FDS, "{max}/{room}");
            drop(fds);
            assert!(writer_gone(r.as_fd()), "{max}/{room}");
        }
    });
}

/// The rpc client's count of requests in flight ("started, reply not yet taken") counts a
/// request whose reply has arrived but has not been taken: while `wait` for another request
/// receives it, and after a `wait` that found the caller's buffer too small ("the reply is
/// kept ... `in_flight` unchanged"). A caller that waits while `in_flight() > 0` would
/// otherwise forget replies that came. Fails when `in_flight` counts only the requests whose
/// reply is still on its way.
#[test]
fn a_reply_that_arrived_but_was_not_taken_is_still_in_flight() {
    within_watchdog("rpc in flight", || {
        let (c, mut s) = Seqpacket::pair(4096).unwrap();
        let mut client = Client::new(c);
        let a = client.start(b"a", secs(30)).unwrap();
        let b = client.start(b"b", secs(30)).unwrap();
        assert_eq!(client.in_flight(), 2);
        let mut buf = [0u8; 64];
        let mut ids = Vec::new();
        for _ in 0..2 {
            let n = s.recv(&mut buf).unwrap();
            ids.push(buf[..ID_LEN.min(n)].to_vec());
        }
        let reply = |id: &[u8], body: &[u8]| [id, body].concat();
        s.send(&reply(&ids[0], &[7u8; 40])).unwrap();
        s.send(&reply(&ids[1], b"bb")).unwrap();
        // Too small a buffer for a's reply: kept, the count unchanged.
        let e = client.wait(a, &mut [0u8; 10]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(client.in_flight(), 2, "a's reply is kept, not taken");
        // b's reply taken; a's still waits to be taken.
        assert_eq!(client.wait(b, &mut buf).unwrap(), 2);
        assert_eq!(client.in_flight(), 1, "a's reply has not been taken");
        assert_eq!(client.wait(a, &mut buf).unwrap(), 40);
        assert_eq!(client.in_flight(), 0);
        // A reply taken by a wait for another request counts until taken.
        let c1 = client.start(b"c", secs(30)).unwrap();
        let d1 = client.start(b"d", secs(30)).unwrap();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let n = s.recv(&mut buf).unwrap();
            ids.push(buf[..ID_LEN.min(n)].to_vec());
        }
        s.send(&reply(&ids[0], b"C")).unwrap();
        s.send(&reply(&ids[1], b"D")).unwrap();
        assert_eq!(client.wait(d1, &mut buf).unwrap(), 1);
        assert_eq!(
            client.in_flight(),
            1,
            "c's reply came while waiting for d's"
        );
        client.cancel(c1);
        assert_eq!(client.in_flight(), 0, "cancelled with its reply");
        assert_eq!(
            client.wait(c1, &mut buf).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

/// A hostile or buggy rpc server answers with ids nobody asked for (0, never issued, a
/// cancelled request's, a timed-out request's), twice for one request, and with an empty
/// payload: each request gets its own first reply exactly once, every other reply is dropped,
/// never delivered to another request, and a second `wait` for a request whose reply was
/// taken is `NotFound`. Passes on the code as it is: nothing else sends replies the client
/// did not ask for.
#[test]
fn replies_with_unknown_duplicate_and_late_ids_never_reach_another_request() {
    within_watchdog("rpc hostile replies", || {
        let (c, mut s) = Seqpacket::pair(4096).unwrap();
        let mut client = Client::new(c);
        let timed = client
            .start(b"t", Deadline::after(Duration::from_millis(10)))
            .unwrap();
        let cancelled = client.start(b"x", secs(30)).unwrap();
        let a = client.start(b"a", secs(30)).unwrap();
        let b = client.start(b"b", secs(30)).unwrap();
        let mut buf = [0u8; 64];
        let e = client.wait(timed, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        client.cancel(cancelled);
        let reply = |id: u64, body: &[u8]| [&id.to_le_bytes()[..], body].concat();
        for (id, body) in [
            (0, &b"zero"[..]),
            (b.get() + 1000, b"never issued"),
            (timed.get(), b"late"),
            (cancelled.get(), b"cancelled"),
            (a.get(), b"A"),
            (a.get(), b"A again"),
            (b.get(), b""),
            (b.get(), b"B again"),
            (u64::MAX, b"max"),
        ] {
            s.send(&reply(id, body)).unwrap();
        }
        assert_eq!(client.wait(b, &mut buf).unwrap(), 0, "b's own, empty reply");
        assert_eq!(client.wait(a, &mut buf).unwrap(), 1);
        assert_eq!(&buf[..1], b"A");
        for id in [a, b, timed, cancelled] {
            let e = client.wait(id, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        }
        // The rest is dropped on the way to the next request's reply.
        let d = client.start(b"d", secs(30)).unwrap();
        s.send(&reply(a.get(), b"A a third time")).unwrap();
        s.send(&reply(d.get(), b"D")).unwrap();
        assert_eq!(client.wait(d, &mut buf).unwrap(), 1);
        assert_eq!(&buf[..1], b"D");
        assert_eq!(client.in_flight(), 0);
        let e = client.wait(d, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    });
}

/// "The mode is exact: the umask does not apply", also for a umask that takes the owner's own
/// bits (`0o277`): the staging directory the listener binds in is its own, `0o700` whatever
/// the umask, so the bind works and the file has the mode asked for. Run in a child (the
/// umask is per process), as `nobody` when the test runs as root. Fails when the staging
/// directory keeps the umask's mode (`r-x`: the bind in it is refused).
#[test]
fn a_umask_without_the_owner_s_write_bit_still_binds_with_the_exact_mode() {
    within_watchdog("owner umask", || {
        let dir = TempDir::new("sock-umask-owner");
        let sub = dir.join("d");
        std::fs::create_dir(&sub).unwrap();
        if rustix::process::geteuid().is_root() {
            rustix::fs::chmod(dir.path(), rustix::fs::Mode::from_raw_mode(0o711)).unwrap();
            std::os::unix::fs::chown(&sub, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let path = sub.join("s");
        spawn("bind_with_owner_umask")
            .arg(path.to_str().unwrap())
            .start()
            .wait_success();
        // Nothing left: no socket file, no staging directory.
        let left: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    });
}

/// A peer that never receives lets this user's descriptors in flight over Unix sockets pile
/// up until the kernel refuses more (`ETOOMANYREFS` above `RLIMIT_NOFILE`): a send must say
/// so as a typed error, `LimitExceeded` naming `RLIMIT_NOFILE` (what to raise, or that the
/// peer must receive), not a bare I/O error. Run in a child (the limit and the count are per
/// process and user), as `nobody` when the suite runs as root. Fails with the errno passed
/// through as `ErrorKind::Io`.
#[test]
fn descriptors_in_flight_above_the_limit_are_limit_exceeded() {
    spawn("fds_in_flight_above_the_limit")
        .start()
        .wait_success();
}

/// The TCP address a listener bound to port 0 got.
fn bound(l: &Listener<Stream>) -> std::net::SocketAddr {
    match l.local_addr().unwrap() {
        Address::Inet(a) => a,
        a => panic!("not an IP address: {a}"),
    }
}

/// A TCP peer (a raw socket in another process) sends a frame header announcing 1 MiB,
/// within the receiver's maximum, and 100 bytes of it, then stalls: a timed receive is
/// `TimedOut` and a try `WouldBlock`, never a partial message. Killed in the middle of the
/// frame, it is `Disconnected` to that receive (the note says the partial message was
/// dropped), to every receive after it, and to a send. A second peer's header announcing
/// 4 GiB (above `MAX_DROPPED_FRAME`: not this framing) is `Corrupted` on every receive, never
/// an allocation or a wait for 4 GiB; a third's announcing the maximum + 1 is
/// `MessageTooLarge` naming that size, its bytes dropped as they come (the next receive waits
/// for more of them within its deadline, `TimedOut`), and the peer closing is `Disconnected`
/// saying how much never came. Passed on the code as it was: `hostile.rs` kills a Unix peer
/// mid-frame; nothing attacked a stalled frame, or TCP.
#[test]
fn a_tcp_peer_stalled_then_killed_mid_frame_times_out_then_is_disconnected() {
    within_watchdog("tcp stalled frame", || {
        let opts = Options::new().max_message(2 << 20);
        let any = Address::Inet("127.0.0.1:0".parse().unwrap());
        let l: Listener<Stream> = Listener::bind(&any, &opts).unwrap();
        let at = bound(&l);
        let mut child = spawn("tcp_partial_frame_and_park")
            .arg(at.to_string())
            .start();
        let mut s = l.accept(secs(30)).unwrap();
        child.wait_checkpoint("partial");
        let mut buf = vec![0u8; 2 << 20];
        let e = s
            .recv_deadline(&mut buf, Deadline::after(Duration::from_millis(50)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        let e = s.try_recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        assert!(child.kill_and_wait().killed());
        let e = s.recv_deadline(&mut buf, secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(e.to_string().contains("middle of a message"), "{e}");
        let e = s.recv_deadline(&mut buf, secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let e = s.send(b"anyone?").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        // A header announcing 4 GiB, and more bytes behind it.
        let mut raw = std::net::TcpStream::connect(at).unwrap();
        let mut s = l.accept(secs(30)).unwrap();
        raw.write_all(&u32::MAX.to_le_bytes()).unwrap();
        raw.write_all(&[1u8; 64]).unwrap();
        for _ in 0..2 {
            let e = s.recv_deadline(&mut buf, secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
            assert!(e.to_string().contains(&u32::MAX.to_string()), "{e}");
        }
        drop(raw);
        // The maximum + 1, and more bytes behind it.
        let over = (2u32 << 20) + 1;
        let mut raw = std::net::TcpStream::connect(at).unwrap();
        let mut s = l.accept(secs(30)).unwrap();
        raw.write_all(&over.to_le_bytes()).unwrap();
        raw.write_all(&[1u8; 64]).unwrap();
        let e = s.recv_deadline(&mut buf, secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(e.message_size(), Some((over as usize, 2 << 20)), "{e}");
        let e = s
            .recv_deadline(&mut buf, Deadline::after(Duration::from_millis(50)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        drop(raw);
        let e = s.recv_deadline(&mut buf, secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let never = over as usize - 64;
        assert!(
            e.to_string().contains(&format!("{never} of its bytes")),
            "{e}"
        );
    });
}

/// Files at a bind path the other tests do not plant: a FIFO (`WrongType`, kept; never
/// opened, which would block until a writer came: the watchdog would fail the test), and the
/// file of a live Unix datagram socket (a server of another kind: `AlreadyExists`, kept, and
/// it still receives). Passes on the code as it is.
#[test]
fn a_fifo_and_a_live_datagram_socket_at_the_path_are_refused_and_kept() {
    within_watchdog("fifo and datagram socket", || {
        let dir = TempDir::new("sock-fifo-dgram");
        let fifo = dir.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        for r in [
            Listener::<Seqpacket>::bind(&Address::path(&fifo), &Options::new()).map(drop),
            Listener::<Stream>::bind(&Address::path(&fifo), &Options::new()).map(drop),
        ] {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
        }
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let path = dir.join("dgram");
        let dgram = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let unix = rustix::net::SocketAddrUnix::new(path.as_path()).unwrap();
        rustix::net::bind(&dgram, &unix).unwrap();
        for r in [
            Listener::<Seqpacket>::bind(&Address::path(&path), &Options::new()).map(drop),
            Listener::<Stream>::bind(&Address::path(&path), &Options::new()).map(drop),
        ] {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        }
        let client = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        rustix::net::sendto(
            &client,
            b"still here",
            rustix::net::SendFlags::empty(),
            &unix,
        )
        .unwrap();
        let mut got = [0u8; 32];
        let (n, _) = rustix::net::recv(&dgram, &mut got, rustix::net::RecvFlags::DONTWAIT).unwrap();
        assert_eq!(&got[..n], b"still here");
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["dgram", "fifo"]);
    });
}

/// `rpc::serve` answers a well-behaved client while others misbehave: one connected from
/// another process that never sends (parked, killed at the end), one whose request is shorter
/// than its id (its connection is dropped: `Disconnected` to it), one that connects and
/// leaves at once. Every connection is queued before `serve` starts, so it takes them all at
/// its deadline `Now` and then waits for each to leave: the calls never depend on timing.
/// Passes on the code as it is: `rpc.rs` serves only well-behaved clients.
#[test]
fn serve_answers_one_client_while_others_stay_silent_break_the_format_or_leave() {
    within_watchdog("serve past broken clients", || {
        let dir = TempDir::new("sock-serve-broken");
        let path = dir.join("s");
        let addr = Address::path(&path);
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let mut silent = spawn("connect_silent_and_park")
            .arg(path.to_str().unwrap())
            .start();
        silent.wait_checkpoint("connected");
        let mut short = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
        short.send(b"abc").unwrap();
        drop(Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap());
        let good = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
        std::thread::scope(|scope| {
            let server = scope.spawn(|| {
                serve(&l, Deadline::Now, |q: &[u8], out: &mut Vec<u8>| {
                    out.extend(q.iter().rev());
                })
            });
            let mut c = Client::new(good);
            let mut buf = [0u8; 64];
            for i in 0..20u8 {
                let n = c.call(&[i, 1, 2], &mut buf, secs(30)).unwrap();
                assert_eq!(&buf[..n], &[2, 1, i]);
            }
            let e = short.recv_deadline(&mut buf, secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            drop(c);
            assert!(silent.kill_and_wait().killed());
            server.join().unwrap().unwrap();
        });
    });
}

/// A TCP client that resets its connection (`SO_LINGER` 0) before the server accepts it: the
/// accept that takes it succeeds (a per-connection failure must not be an `accept` error,
/// which stops `rpc::serve` for every client) and the connection is `Disconnected`; the next
/// client is accepted and served. Passes on the code as it is.
#[test]
fn a_tcp_client_reset_before_accept_does_not_fail_the_accept() {
    within_watchdog("tcp reset before accept", || {
        let any = Address::Inet("127.0.0.1:0".parse().unwrap());
        let l: Listener<Stream> = Listener::bind(&any, &Options::new()).unwrap();
        let at = bound(&l);
        let reset = std::net::TcpStream::connect(at).unwrap();
        rustix::net::sockopt::set_socket_linger(&reset, Some(Duration::ZERO)).unwrap();
        drop(reset);
        let mut good = Stream::connect(&Address::Inet(at), &Options::new(), secs(30)).unwrap();
        good.send(b"hello").unwrap();
        let mut buf = [0u8; 64];
        // The reset connection first (unless the kernel dropped it from the queue), then the
        // good one; no accept fails.
        loop {
            let mut s = l.accept(secs(30)).unwrap();
            match s.recv_deadline(&mut buf, secs(30)) {
                Ok(n) => {
                    assert_eq!(&buf[..n], b"hello");
                    s.send(b"served").unwrap();
                    break;
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}"),
            }
        }
        let n = good.recv_deadline(&mut buf, secs(30)).unwrap();
        assert_eq!(&buf[..n], b"served");
    });
}

const BIG: usize = 4 << 20;

/// A stream endpoint with a message of its own in progress (accepted in part, its tail kept:
/// a send with `Deadline::Now` on a full socket) whose peer sent a message and then closed:
/// the receive returns that message first and `Disconnected` only after it, as for any peer
/// that closed ("after every complete message before it"), even though finishing the message
/// in progress meets the closed peer first. Fails when the failed write is returned before
/// the messages already received.
#[test]
fn a_message_in_progress_to_a_closed_peer_does_not_hide_what_the_peer_sent() {
    within_watchdog("stream in progress, peer closed", || {
        let (mut a, mut b) = Stream::pair(BIG).unwrap();
        b.send(b"last words").unwrap();
        a.send_deadline(&vec![3u8; BIG], Deadline::Now).unwrap();
        drop(b);
        let mut buf = vec![0u8; 64];
        let n = a
            .recv_deadline(&mut buf, secs(30))
            .expect("the peer's message, before its end");
        assert_eq!(&buf[..n], b"last words");
        let e = a.recv_deadline(&mut buf, secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
}

/// The same through the rpc client: a request whose reply has arrived, then a large request
/// accepted in part, then the server closes. "A server that closes or dies fails every
/// request in flight with `Disconnected` (replies that had arrived before are still
/// delivered)": the first request gets its reply, the large one `Disconnected`. Fails when the
/// failed write of the large request's tail is taken for the end before the reply is read.
#[test]
fn a_reply_that_arrived_before_the_server_closed_survives_a_request_in_progress() {
    within_watchdog("rpc in progress, server closed", || {
        let (c, mut s) = Stream::pair(BIG).unwrap();
        let mut client = Client::new(c);
        let small = client.start(b"small", secs(30)).unwrap();
        let mut buf = vec![0u8; 64];
        let n = s.recv_deadline(&mut buf, secs(30)).unwrap();
        let reply = [&buf[..ID_LEN], b"answer"].concat();
        assert_eq!(n, ID_LEN + 5);
        s.send(&reply).unwrap();
        let large = client
            .start(&vec![4u8; BIG - ID_LEN], Deadline::Now)
            .unwrap();
        drop(s);
        let n = client
            .wait(small, &mut buf)
            .expect("the reply that arrived before the server closed");
        assert_eq!(&buf[..n], b"answer");
        let e = client.wait(large, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert_eq!(client.in_flight(), 0);
    });
}

/// An rpc server answers a request and closes; the client's next request fails to go out
/// (`Disconnected`): the reply that arrived before the server closed is still delivered to
/// its request ("replies that had arrived before are still delivered"), and only then is the
/// server gone for the rest. Fails when a failed send marks the server gone for `wait`
/// without reading what it sent.
#[test]
fn a_reply_that_arrived_survives_a_request_that_could_not_be_sent() {
    within_watchdog("rpc send failed, reply queued", || {
        for stream in [false, true] {
            let mut buf = vec![0u8; 64];
            let (mut client, mut s): (Client<Box<dyn Duplex>>, Box<dyn Duplex>) = if stream {
                let (c, s) = Stream::pair(4096).unwrap();
                (Client::new(Box::new(c)), Box::new(s))
            } else {
                let (c, s) = Seqpacket::pair(4096).unwrap();
                (Client::new(Box::new(c)), Box::new(s))
            };
            let a = client.start(b"a", secs(30)).unwrap();
            let n = s.recv_deadline(&mut buf, secs(30)).unwrap();
            assert_eq!(n, ID_LEN + 1);
            let reply = [&buf[..ID_LEN], b"A"].concat();
            s.send(&reply).unwrap();
            drop(s);
            let e = client.start(b"b", secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "stream {stream}: {e}");
            let n = client
                .wait(a, &mut buf)
                .unwrap_or_else(|e| panic!("stream {stream}: the reply that arrived: {e}"));
            assert_eq!(&buf[..n], b"A");
            assert_eq!(client.in_flight(), 0);
            let e = client.start(b"c", secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "stream {stream}: {e}");
        }
    });
}

/// A duplex message endpoint, boxed, so one test runs over either kind of socket.
trait Duplex: MessageSender + MessageReceiver {}
impl<T: MessageSender + MessageReceiver> Duplex for T {}

/// A client in a pid namespace of its own (a container, say) connects to a server in the
/// parent namespace, which it cannot see: the kernel reports the server's pid as 0 in
/// `SO_PEERCRED`. The connection must work, the uid checked as usual ("the pid is for
/// logging"). It did not: rustix's `UCred` holds the pid as a `NonZero` (`Pid`), and
/// `io::Result<UCred>` keeps its `Err` in that niche, so the kernel's 0 came back from
/// `socket_peercred` as an error ("I/O error (Success (os error 0))"; undefined behaviour in
/// rustix), and a server in such a namespace failed `accept` for every client from the parent
/// namespace. The credentials are now read through libc (`ipc_core::fd::peer_credentials`).
/// Needs root to make the pid namespace; says so and passes otherwise.
#[test]
fn a_client_in_a_child_pid_namespace_connects_to_a_server_it_cannot_see() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: cannot make a pid namespace; skipped");
        return;
    }
    within_watchdog("child pid namespace", || {
        let dir = TempDir::new("sock-pidns");
        let path = dir.join("s");
        let l: Listener<Seqpacket> =
            Listener::bind(&Address::path(&path), &Options::new()).unwrap();
        let child = spawn("in_a_new_pid_namespace")
            .arg(format!(
                "connect_from_a_child_pid_namespace {}",
                path.display()
            ))
            .start();
        let mut s = l.accept(secs(30)).unwrap();
        // This side sees the client, a process of a namespace below its own.
        assert!(s.peer_cred().unwrap().pid > 1);
        // Its verdict first (with what it said), then what it sent.
        child.wait_success();
        let mut buf = [0u8; 64];
        let n = s.recv_deadline(&mut buf, secs(30)).unwrap();
        assert_eq!(&buf[..n], b"from a container");
    });
}

/// Every descriptor this crate makes or receives is close-on-exec: listeners, connected and
/// accepted endpoints (Unix path, abstract, TCP), pairs, received descriptors and those a held
/// message keeps, checked in a child of its own against `/proc/self/fd`. Passes on the code as
/// it is: `fd_passing.rs` checks received descriptors only. Fails if any of them lacks
/// `SOCK_CLOEXEC` / `MSG_CMSG_CLOEXEC` (the pipe sent is made without the flag).
#[test]
fn every_descriptor_the_crate_hands_out_is_close_on_exec() {
    let dir = TempDir::new("sock-cloexec");
    spawn("everything_close_on_exec")
        .arg(dir.path().to_str().unwrap())
        .start()
        .wait_success();
}

/// `rpc::serve` gives each client a thread; when none can start (`RLIMIT_NPROC`, the
/// system's thread limit, memory: what a client that opens connections without end brings
/// about), the client is dropped and the server goes on ("a client whose connection fails is
/// logged and dropped"), never a panic that takes the server down with every other client.
/// Run in a child with `RLIMIT_NPROC` at 1, as `nobody` when the suite runs as root. Fails
/// with the panic of `std::thread::Scope::spawn`.
#[test]
fn serve_drops_a_client_it_cannot_give_a_thread_instead_of_panicking() {
    within_watchdog("serve without threads", || {
        let dir = TempDir::new("sock-nproc");
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        }
        spawn("serve_without_threads")
            .arg(dir.path().to_str().unwrap())
            .start()
            .wait_success();
    });
}

/// The rpc module's "Failure" over a byte stream: a server allowed larger messages than its
/// client sends a reply above the client's maximum. The endpoint drops that reply unread
/// (`MessageTooLarge`), so which request it answered cannot be told: every request waiting
/// for one must fail and be forgotten ("rather than one of them waiting for a reply that will
/// never come"), as on a seqpacket socket, not stay in flight for waits that fail one by one.
/// The connection goes on: a later call gets its own reply (the forgotten request's reply,
/// arriving first, is dropped). Fails when the client keeps the requests, or (as before) when
/// the stream is lost for good after the dropped reply.
#[test]
fn a_reply_above_the_maximum_on_a_stream_fails_every_request_in_flight() {
    within_watchdog("rpc stream reply above the maximum", || {
        let (a, b) = raw_pair(SocketType::STREAM);
        let client = Stream::from_fd(a, 2048).unwrap();
        let mut server = Stream::from_fd(b, 64 << 10).unwrap();
        let t = std::thread::spawn(move || {
            ipc_socket::rpc::serve_connection(&mut server, &|q: &[u8], out: &mut Vec<u8>| {
                out.resize(q[0] as usize * 1024, 7);
            })
        });
        let mut c = Client::new(client);
        let big = c.start(&[4], Deadline::Never).unwrap();
        let small = c.start(&[0], Deadline::Never).unwrap();
        let mut reply = vec![0u8; 2048];
        let e = c.wait(big, &mut reply).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(
            c.in_flight(),
            0,
            "requests left waiting for replies that cannot come"
        );
        let e = c.wait(small, &mut reply).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let n = c.call(&[1], &mut reply, Deadline::Never).unwrap();
        assert_eq!(reply[..n], [7; 1024]);
        drop(c);
        t.join().unwrap().unwrap();
    });
}

/// Typed messages whose nested length fields claim gigabytes (a sequence of 2^63 sequences of
/// 2^63 elements, 2^32 strings of 2^63 bytes, a map, byte buffers) are `Corrupted`, and
/// "allocations are bounded": measured with a counting allocator in a child of its own, the
/// most allocated at once stays under 8 MiB (at most serde's cautious 1 MiB per level; postcard
/// gives no size hint above the bytes left, so none is reserved at all), and the counter sees
/// a real decode's allocation. Passes on the code as it is: the proptest of `typed.rs` feeds
/// at most 512 random bytes and would see a large allocation only if it aborted. Fails if a
/// claimed count were reserved.
#[cfg(feature = "serde")]
#[test]
fn nested_length_claims_of_gigabytes_are_corrupted_with_bounded_allocation() {
    spawn("nested_claims").start().wait_success();
}

/// `rpc::serve` in a pid namespace of its own (a container) with a client from the parent
/// namespace, which it cannot see, and one of its own. Reading the outside client's
/// credentials failed there (rustix could not hold `SO_PEERCRED`'s pid 0, see the test
/// above), and such a failure belongs to that one connection: the server must drop it and go
/// on ("a client whose connection fails is logged and dropped"), answering its own client,
/// not return an error that stops it for every client. (With the credentials read through
/// libc the outside client is simply served; the test accepts either.) Root only. Failed
/// when a failure after `accept4` was an error of `accept` that ended `serve`.
#[test]
fn serve_goes_on_past_a_client_whose_credentials_cannot_be_read() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: cannot make a pid namespace; skipped");
        return;
    }
    within_watchdog("serve in a child pid namespace", || {
        let dir = TempDir::new("sock-pidns-serve");
        let child = spawn("in_a_new_pid_namespace")
            .arg(format!(
                "serve_behind_a_pid_namespace {}",
                dir.path().display()
            ))
            .start();
        await_file(&dir.join("bound"));
        let outside =
            Seqpacket::connect(&Address::path(dir.join("s")), &Options::new(), secs(30)).unwrap();
        std::fs::write(dir.join("go"), b"").unwrap();
        let mut c = Client::new(outside);
        let mut buf = [0u8; 64];
        match c.call(b"outside", &mut buf, secs(30)) {
            Ok(n) => assert_eq!(&buf[..n], b"outside"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}"),
        }
        drop(c);
        child.wait_success();
    });
}

/// "Dropping the listener removes the socket file": also one bound at a relative path by a
/// process that changed its working directory since (as a daemon does), whose relative name
/// now means another file: the listener's own file goes, the other file stays. Fails when the
/// removal looks the relative name up in the new working directory (it finds another file,
/// leaves it, and the socket file stays behind).
#[test]
fn a_listener_bound_at_a_relative_path_removes_its_file_after_a_chdir() {
    within_watchdog("relative path and chdir", || {
        let dir = TempDir::new("sock-chdir");
        std::fs::create_dir(dir.join("a")).unwrap();
        std::fs::create_dir(dir.join("b")).unwrap();
        std::fs::write(dir.join("b/s"), b"another file").unwrap();
        spawn("bind_relative_then_chdir")
            .arg(dir.path().to_str().unwrap())
            .start()
            .wait_success();
    });
}

/// A pre-fork server: the listener is bound, the process forks, and a forked copy that exits
/// drops its listener. The socket file must stay while the process that bound it listens:
/// only that process removes it (a forked copy's drop would leave every later client
/// `NotFound` while the server still listens). Fails when any copy's drop removes the file.
#[test]
fn a_forked_copy_of_a_listener_leaves_the_socket_file_to_its_binder() {
    within_watchdog("fork and drop", || {
        let dir = TempDir::new("sock-fork");
        spawn("fork_and_drop_in_the_child")
            .arg(dir.join("s").to_str().unwrap())
            .start()
            .wait_success();
    });
}

/// "Deadlines on every call" for a TCP connect: a listener whose accept queue is full drops
/// further handshakes (loopback only), so a connect waits for the handshake it will not get
/// soon: with a deadline it is `TimedOut` (`WouldBlock` for `Deadline::Now`), never a hang;
/// once the queue has room, a connect goes through. Passes on the code as it is: `unix.rs`
/// tests the Unix connect's deadline, which retries instead of polling.
#[test]
fn a_tcp_connect_to_a_full_accept_queue_honours_its_deadline() {
    within_watchdog("tcp connect deadline", || {
        let any = Address::Inet("127.0.0.1:0".parse().unwrap());
        let l: Listener<Stream> = Listener::bind(&any, &Options::new().backlog(1)).unwrap();
        let at = Address::Inet(bound(&l));
        let short = || Deadline::after(Duration::from_millis(200));
        let mut held = Vec::new();
        let e = loop {
            match Stream::connect(&at, &Options::new(), short()) {
                Ok(c) => held.push(c),
                Err(e) => break e,
            }
            assert!(held.len() < 100, "the accept queue never filled");
        };
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        let e = Stream::connect(&at, &Options::new(), Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        // Room again: accepted ones leave the queue.
        for _ in 0..held.len() {
            drop(l.accept(secs(30)).unwrap());
        }
        let mut c = Stream::connect(&at, &Options::new(), secs(30)).unwrap();
        c.send(b"through").unwrap();
        // (A connection of a timed-out attempt that made it in after all is gone: skipped.)
        loop {
            let mut s = l.accept(secs(30)).unwrap();
            match s.recv_deadline(&mut [0u8; 16], secs(30)) {
                Ok(n) => break assert_eq!(n, 7),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}"),
            }
        }
    });
}

/// "A server that closes or dies fails every request in flight with `Disconnected`", over TCP
/// and across processes: a server (here the side that connected, the protocol does not care)
/// answers one of five requests, reads two more and is SIGKILLed with the last two unread
/// (the kernel answers with a reset, not an orderly end). The answered request gets its
/// reply, the four others `Disconnected`, none hangs (no deadlines), and a new request is
/// `Disconnected`. Passes on the code as it is: `hostile.rs` kills Unix servers only.
#[test]
fn a_tcp_server_killed_with_requests_in_flight_fails_them_all() {
    within_watchdog("tcp server killed", || {
        let any = Address::Inet("127.0.0.1:0".parse().unwrap());
        let l: Listener<Stream> = Listener::bind(&any, &Options::new()).unwrap();
        let mut server = spawn("tcp_server_answers_one_and_parks")
            .arg(bound(&l).to_string())
            .start();
        let mut c = Client::new(l.accept(secs(30)).unwrap());
        let ids: Vec<_> = (0..5u8)
            .map(|i| c.start(&[i], Deadline::Never).unwrap())
            .collect();
        server.wait_checkpoint("read three");
        assert!(server.kill_and_wait().killed());
        let mut buf = [0u8; 64];
        let n = c.wait(ids[0], &mut buf).unwrap();
        assert_eq!(&buf[..n], b"first");
        for id in &ids[1..] {
            let e = c.wait(*id, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        }
        assert_eq!(c.in_flight(), 0);
        let e = c.start(b"more", Deadline::Never).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
}

/// A request that makes the server's handler panic (a bug in the handler that one client's
/// input reaches: an empty request indexed here) costs that client its connection
/// (`Disconnected`), not the server: another client is answered before and after it, and
/// `serve` returns `Ok` instead of passing the panic of one client's thread on to its caller.
/// Fails when a connection thread's panic reaches `serve` (`std::thread::scope` re-raises it).
#[test]
fn a_handler_panic_for_one_client_costs_that_client_only() {
    within_watchdog("handler panic", || {
        let dir = TempDir::new("sock-handler-panic");
        let addr = Address::path(dir.join("s"));
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let good = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
        let bad = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
        let served = std::thread::scope(|scope| {
            let server = scope.spawn(|| {
                serve(&l, Deadline::Now, |q: &[u8], out: &mut Vec<u8>| {
                    out.push(q[0]);
                })
            });
            let mut good = Client::new(good);
            let mut bad = Client::new(bad);
            let mut buf = [0u8; 64];
            assert_eq!(good.call(&[1], &mut buf, secs(30)).unwrap(), 1);
            let e = bad.call(&[], &mut buf, secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            assert_eq!(good.call(&[2], &mut buf, secs(30)).unwrap(), 1);
            assert_eq!(buf[0], 2);
            drop((good, bad));
            server.join()
        });
        served
            .unwrap_or_else(|_| panic!("serve panicked: one client's handler panic took it down"))
            .unwrap();
    });
}

/// "The mode is exact" and "decides who may connect", also in a directory with a default
/// ACL (which replaces the umask for new files, and here grants `nobody` everything): the
/// socket file must carry no access ACL of its own, its mode `0o660` alone deciding (the
/// owner and its group; with the inherited ACL the owning group had no access and `nobody`
/// read and write, behind `srw-rw----+`). As root, `nobody` is also shown refused. Fails when
/// the inherited ACL stays on the file. Skipped where the filesystem takes no ACLs.
#[test]
fn a_default_acl_on_the_directory_does_not_widen_the_exact_mode() {
    within_watchdog("default ACL", || {
        let dir = TempDir::new("sock-acl");
        let Some(sub) = ipc_testkit::acl::dir_with_default_acl(&dir) else {
            return;
        };
        let path = sub.join("s");
        let l: Listener<Seqpacket> =
            Listener::bind(&Address::path(&path), &Options::new().mode(0o660)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
        let mut buf = [0u8; 256];
        match rustix::fs::lgetxattr(&path, "system.posix_acl_access", &mut buf) {
            Err(rustix::io::Errno::NODATA) => {}
            r => panic!("the socket file carries an access ACL beside its exact mode: {r:?}"),
        }
        if rustix::process::geteuid().is_root() {
            spawn("nobody_is_refused")
                .arg(path.to_str().unwrap())
                .start()
                .wait_success();
        }
        drop(l);
    });
}
