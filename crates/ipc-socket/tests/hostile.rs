//! Hostile peers and hostile surroundings, across real processes: a peer SIGKILLed before its
//! connection is accepted, with a descriptor in flight, or in the middle of a large framed
//! message or reply; names that do not fit and files planted at a socket's path; descriptors
//! a plain receive drops (closed on every receive path, none leaked); `RLIMIT_NOFILE`
//! exhausted at accept and while receiving descriptors; `SIGPIPE` at its default action on
//! every write path; short rpc messages; servers racing for a stale name or handing it over;
//! another user's squatter and clients (as root).

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use ipc_socket::rpc::{Client, serve_connection};
use ipc_socket::{
    Address, Deadline, ErrorKind, Listener, MessageReceiver, MessageSender, Options, Seqpacket,
    Stream,
};
use ipc_testkit::{Ctx, TempDir, roles, spawn, unique_name, within_watchdog};

fn secs(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(n))
}

const BIG: usize = 4 << 20;

/// How many descriptors this process has open.
fn open_fds() -> usize {
    // The directory's own descriptor is counted in every call alike.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
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

/// Child: connects a seqpacket socket to the path in its argument and parks (killed before
/// the server accepts it).
fn connect_and_park(ctx: &Ctx) {
    let _c = Seqpacket::connect(&Address::path(ctx.arg()), &Options::new(), secs(60)).unwrap();
    ctx.park("connected");
}

/// Child: on the seqpacket socket `sock`, sends a pipe's read end with a message (the pipe
/// holding "from child", its write end kept here), then parks.
fn pass_fd_and_park(ctx: &Ctx) {
    let mut s = Seqpacket::from_fd(ctx.take_fd("sock"), 64).unwrap();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    rustix::io::write(&w, b"from child").unwrap();
    s.send_with_fds(b"fd", &[r.as_fd()], secs(30)).unwrap();
    drop(r);
    ctx.park("sent");
}

/// Child: on the stream socket `sock` (maximum 4 MiB), sends "first", then a 4 MiB message
/// with `Deadline::Now`: accepted with its tail still here (the socket holds far less), then
/// parks, to be killed in the middle of that frame.
fn partial_frame_and_park(ctx: &Ctx) {
    let mut s = Stream::from_fd(ctx.take_fd("sock"), BIG).unwrap();
    s.send(b"first").unwrap();
    s.send_deadline(&vec![7u8; BIG], Deadline::Now).unwrap();
    ctx.park("partial");
}

/// Child: an rpc server on the stream socket `sock` (maximum 4 MiB) that takes two requests
/// and starts a 4 MiB reply to the first, then parks, to be killed with that reply half sent.
fn partial_reply_and_park(ctx: &Ctx) {
    let mut s = Stream::from_fd(ctx.take_fd("sock"), BIG).unwrap();
    let mut buf = vec![0u8; BIG];
    let n = s.recv(&mut buf).unwrap();
    let mut reply = buf[..8].to_vec();
    assert_eq!(n, 8 + 3);
    s.recv(&mut buf).unwrap();
    reply.resize(BIG, 1);
    s.send_deadline(&reply, Deadline::Now).unwrap();
    ctx.park("replying");
}

/// Child: with `SIGPIPE` at its default action (which would kill it), every way this crate
/// writes to a peer that is gone.
fn sigpipe_default(_: &Ctx) {
    // SAFETY: sets the disposition of SIGPIPE to the default; no handler is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // A stream message accepted in part, its tail finished by flush, then by drop.
    for finish_by_drop in [false, true] {
        let (mut a, b) = Stream::pair(BIG).unwrap();
        a.send_deadline(&vec![3u8; BIG], Deadline::Now).unwrap();
        drop(b);
        if finish_by_drop {
            drop(a);
        } else {
            let e = a.flush(secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            let e = a.send(b"more").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        }
    }
    // Descriptors to a gone peer.
    let (mut a, b) = Seqpacket::pair(64).unwrap();
    drop(b);
    let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let e = a.send_with_fds(b"x", &[r.as_fd()], secs(30)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    // An rpc server answering a client that left after its request: the client left, Ok.
    for stream in [false, true] {
        let ok = if stream {
            let (c, mut s) = Stream::pair(1024).unwrap();
            let mut c = Client::new(c);
            c.start(b"ping", secs(30)).unwrap();
            drop(c);
            serve_connection(&mut s, &|q: &[u8], out: &mut Vec<u8>| {
                out.extend_from_slice(q)
            })
        } else {
            let (c, mut s) = Seqpacket::pair(1024).unwrap();
            let mut c = Client::new(c);
            c.start(b"ping", secs(30)).unwrap();
            drop(c);
            serve_connection(&mut s, &|q: &[u8], out: &mut Vec<u8>| {
                out.extend_from_slice(q)
            })
        };
        ok.unwrap();
    }
    // TCP: the peer's close is seen before anything is written, or the write fails; never
    // a signal.
    let addr = Address::Inet("127.0.0.1:0".parse().unwrap());
    let l: Listener<Stream> = Listener::bind(&addr, &Options::new()).unwrap();
    let addr = l.local_addr().unwrap();
    let mut c = Stream::connect(&addr, &Options::new(), secs(30)).unwrap();
    drop(l.accept(secs(30)).unwrap());
    let e = (0..10_000)
        .find_map(|_| c.send(&[1u8; 1024]).err())
        .expect("sends to a closed TCP peer fail");
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// Fills every free descriptor slot below the soft `RLIMIT_NOFILE`, lowered to two above the
/// highest descriptor open now; returns the fillers, at least three (drop one to free a slot).
fn exhaust_descriptors() -> Vec<OwnedFd> {
    // Opened before the highest descriptor is read, so that it never takes a slot the loop
    // below counted on: with one gap below the highest, it would take the last free slot
    // and leave no filler.
    let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(highest + 3),
            maximum: hard,
        },
    )
    .unwrap();
    let mut fillers = Vec::new();
    loop {
        match rustix::io::fcntl_dupfd_cloexec(&null, 0) {
            Ok(fd) => fillers.push(fd),
            Err(rustix::io::Errno::MFILE) => break,
            Err(e) => panic!("dup: {e}"),
        }
    }
    fillers.push(null);
    fillers
}

/// Child (its own process: the limit and the descriptor counts are its own): accept and
/// descriptor receives at `RLIMIT_NOFILE`.
fn at_the_descriptor_limit(_: &Ctx) {
    let addr = Address::abstract_name(unique_name("nofile"));
    let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
    let mut c = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut fillers = exhaust_descriptors();
    // Accept: a typed error, and the connection stays queued for a later accept.
    let e = l.accept(secs(30)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    drop(fillers.pop());
    let mut s = l.accept(secs(30)).unwrap();
    // One slot free (the count below needs it): of two descriptors one is installed and one
    // truncated (MSG_CTRUNC), a typed error; the one that arrived is closed, nothing leaks,
    // and the next message is intact.
    c.send_with_fds(b"with fds", &[r.as_fd(), w.as_fd()], secs(30))
        .unwrap();
    c.send(b"after").unwrap();
    drop(fillers.pop());
    let mut buf = [0u8; 64];
    let mut fds = Vec::new();
    let before = open_fds();
    let e = s.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(e.to_string().contains("MSG_CTRUNC"), "{e}");
    assert!(fds.is_empty());
    assert_eq!(open_fds(), before, "descriptors leaked");
    let n = s.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
    assert_eq!(&buf[..n], b"after");
    assert!(fds.is_empty());
    // With room, the same descriptors arrive and work.
    c.send_with_fds(b"again", &[r.as_fd(), w.as_fd()], secs(30))
        .unwrap();
    drop((r, w));
    let n = s.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
    assert_eq!(&buf[..n], b"again");
    assert_eq!(fds.len(), 2);
    rustix::io::write(&fds[1], b"!").unwrap();
    let mut got = [0u8; 1];
    rustix::io::read(&fds[0], &mut got).unwrap();
    assert_eq!(&got, b"!");
    drop(fillers);
}

/// Child (its own process, for the counts): descriptors sent with a message that a plain
/// `recv` takes are closed, on every receive path, and with a held message when its endpoint
/// is dropped.
fn plain_recv_closes_descriptors(_: &Ctx) {
    // (endpoint maximum, receive buffer length): the small endpoint's own buffer, a buffer
    // longer than the maximum, exactly the maximum, and smaller (the endpoint's buffer).
    for (max, room) in [(64, 64), (64, 100), (8192, 9000), (8192, 8192), (8192, 100)] {
        let (mut a, mut b) = Seqpacket::pair(max).unwrap();
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        a.send_with_fds(b"carrying", &[w.as_fd(), w.as_fd()], secs(30))
            .unwrap();
        drop(w);
        let before = open_fds();
        let mut buf = vec![0u8; room];
        let n = b.recv_deadline(&mut buf, secs(30)).unwrap();
        assert_eq!(&buf[..n], b"carrying");
        assert_eq!(
            open_fds(),
            before,
            "max {max}, buffer {room}: descriptors leaked"
        );
        assert!(
            writer_gone(r.as_fd()),
            "max {max}, buffer {room}: a writer survives"
        );
    }
    // A message held because the buffer is too small keeps its descriptors; the endpoint
    // dropped, they close.
    let (mut a, mut b) = Seqpacket::pair(8192).unwrap();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    a.send_with_fds(&[9u8; 200], &[w.as_fd()], secs(30))
        .unwrap();
    drop(w);
    let mut fds = Vec::new();
    let e = b
        .recv_with_fds(&mut [0u8; 10], &mut fds, secs(30))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    drop(b);
    assert!(
        writer_gone(r.as_fd()),
        "a held message's descriptor survives its endpoint"
    );
    // A message with a descriptor still queued when the receiving end closes: released.
    drop(a);
    let (mut a, b) = Seqpacket::pair(8192).unwrap();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    a.send_with_fds(b"never read", &[w.as_fd()], secs(30))
        .unwrap();
    drop(w);
    drop(b);
    assert!(
        writer_gone(r.as_fd()),
        "a queued descriptor survives its receiver"
    );
}

/// Child: a seqpacket listener with a backlog of 1 at the path in its argument, never
/// accepting, until killed.
fn listen_and_park(ctx: &Ctx) {
    let _l: Listener<Seqpacket> =
        Listener::bind(&Address::path(ctx.arg()), &Options::new().backlog(1)).unwrap();
    ctx.park("listening");
}

/// Becomes user and group `nobody` (65534) for good.
fn become_nobody() {
    // SAFETY: plain system calls on this process's credentials; the role is single-threaded.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(NOBODY), 0);
        assert_eq!(libc::setuid(NOBODY), 0);
    }
}

const NOBODY: u32 = 65534;

/// Child (run by root): as `nobody`, squats the abstract name in its argument until killed.
fn squat_as_nobody(ctx: &Ctx) {
    become_nobody();
    let opts = Options::new().peer(ipc_socket::PeerPolicy::Any);
    let l: Listener<Seqpacket> = Listener::bind(&Address::abstract_name(ctx.arg()), &opts).unwrap();
    ctx.checkpoint("squatting");
    // Accepts whoever comes, so a client's refusal is its own.
    loop {
        let _ = l.accept(Deadline::Never);
    }
}

/// Child (run by root): as `nobody`, connects to the path sockets in its arguments: one of
/// mode 0600 (refused by the file's mode), one of 0666 (connected; root's server refuses it).
fn connect_as_nobody(ctx: &Ctx) {
    become_nobody();
    let args = ctx.args();
    let any = Options::new().peer(ipc_socket::PeerPolicy::Any);
    let e = Seqpacket::connect(&Address::path(args[0]), &any, secs(30)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    // The default policy refuses root's server on the client side.
    let e = Seqpacket::connect(&Address::path(args[1]), &Options::new(), secs(30)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let _c = Seqpacket::connect(&Address::path(args[1]), &any, secs(30)).unwrap();
    ctx.park("connected");
}

/// Child: binds and drops a listener at the path in its argument, over and over, until killed
/// (somewhere in the middle of a bind, sometimes).
fn bind_forever(ctx: &Ctx) {
    let addr = Address::path(ctx.arg());
    let mut first = true;
    loop {
        drop(Listener::<Seqpacket>::bind(&addr, &Options::new()).unwrap());
        if std::mem::take(&mut first) {
            ctx.checkpoint("binding");
        }
    }
}

/// Child: exits at once (its pid, once reaped, names no process).
fn exit_at_once(_: &Ctx) {}

/// Child: lives until killed.
fn park(ctx: &Ctx) {
    ctx.park("parked");
}

/// Child (run by root): as `nobody`, reclaims the stale socket at the path in its argument,
/// in a directory it may write but not read.
fn reclaim_as_nobody(ctx: &Ctx) {
    become_nobody();
    let addr = Address::path(ctx.arg());
    let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
    let _c = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
    drop(l.accept(secs(30)).unwrap());
}

roles!(
    reclaim_as_nobody,
    bind_forever,
    exit_at_once,
    park,
    squat_as_nobody,
    connect_as_nobody,
    listen_and_park,
    connect_and_park,
    pass_fd_and_park,
    partial_frame_and_park,
    partial_reply_and_park,
    sigpipe_default,
    at_the_descriptor_limit,
    plain_recv_closes_descriptors,
);

#[test]
fn a_client_killed_before_accept_is_disconnected_and_the_listener_goes_on() {
    within_watchdog("killed before accept", || {
        let dir = TempDir::new("sock-killed-connect");
        let path = dir.join("s");
        let addr = Address::path(&path);
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let mut child = spawn("connect_and_park")
            .arg(path.to_str().unwrap())
            .start();
        child.wait_checkpoint("connected");
        let pid = child.pid() as i32;
        assert!(child.kill_and_wait().killed());
        // Its connection is still queued: accepted, with the credentials it connected with,
        // and the end of the connection right away.
        let mut s = l.accept(secs(30)).unwrap();
        assert_eq!(s.peer_cred().unwrap().pid, pid);
        let e = s.recv_deadline(&mut [0u8; 64], secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let e = s.send(b"anyone?").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        // The listener goes on.
        let mut c = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
        let mut s = l.accept(secs(30)).unwrap();
        c.send(b"next").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(s.recv(&mut buf).unwrap(), 4);
    });
}

#[test]
fn a_descriptor_in_flight_survives_its_killed_sender() {
    within_watchdog("fd in flight", || {
        let (mine, theirs) = Seqpacket::pair(64).unwrap();
        let mut child = spawn("pass_fd_and_park").fd("sock", &theirs).start();
        drop(theirs);
        child.wait_checkpoint("sent");
        assert!(child.kill_and_wait().killed());
        let mut mine = mine;
        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let n = mine.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
        assert_eq!(&buf[..n], b"fd");
        assert_eq!(fds.len(), 1);
        // The pipe it carried: what the child wrote, then the end (its writer died with it).
        let mut got = Vec::new();
        std::fs::File::from(fds.pop().unwrap())
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, b"from child");
        let e = mine
            .recv_with_fds(&mut buf, &mut fds, secs(30))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
}

#[test]
fn a_sender_killed_mid_frame_is_disconnected_never_a_partial_message() {
    within_watchdog("killed mid frame", || {
        let (mut mine, theirs) = Stream::pair(BIG).unwrap();
        let mut child = spawn("partial_frame_and_park").fd("sock", &theirs).start();
        drop(theirs);
        child.wait_checkpoint("partial");
        assert!(child.kill_and_wait().killed());
        let mut buf = vec![0u8; BIG];
        let n = mine.recv_deadline(&mut buf, secs(30)).unwrap();
        assert_eq!(&buf[..n], b"first");
        let e = mine.recv_deadline(&mut buf, secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let e = mine.recv_deadline(&mut buf, secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
}

#[test]
fn an_rpc_server_killed_mid_reply_fails_every_pending_request() {
    within_watchdog("rpc killed mid reply", || {
        let (mine, theirs) = Stream::pair(BIG).unwrap();
        let mut child = spawn("partial_reply_and_park").fd("sock", &theirs).start();
        drop(theirs);
        let mut c = Client::new(mine);
        let a = c.start(b"one", Deadline::Never).unwrap();
        let b = c.start(b"two", Deadline::Never).unwrap();
        child.wait_checkpoint("replying");
        assert!(child.kill_and_wait().killed());
        let mut reply = vec![0u8; BIG];
        for id in [b, a] {
            let e = c.wait(id, &mut reply).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        }
        assert_eq!(c.in_flight(), 0);
        let e = c.start(b"three", Deadline::Never).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
}

#[test]
fn no_write_path_raises_sigpipe() {
    let out = spawn("sigpipe_default").start().wait();
    assert!(out.success(), "{:?}: {}", out.status, out.stderr);
}

#[test]
fn descriptor_limit_at_accept_and_receive_is_a_typed_error() {
    spawn("at_the_descriptor_limit").start().wait_success();
}

#[test]
fn a_plain_receive_closes_the_descriptors_on_every_path() {
    spawn("plain_recv_closes_descriptors")
        .start()
        .wait_success();
}

#[test]
fn names_that_do_not_fit_are_invalid_and_leave_nothing() {
    let dir = TempDir::new("sock-names");
    let long = Address::path(dir.join(&"n".repeat(120)));
    let nul = Address::Path(std::ffi::OsStr::new("bad\0name").into());
    for addr in [&long, &nul] {
        let e = Listener::<Seqpacket>::bind(addr, &Options::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{addr}: {e}");
        let e = Listener::<Stream>::bind(addr, &Options::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{addr}: {e}");
        let e = Seqpacket::connect(addr, &Options::new(), secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{addr}: {e}");
        let e = Stream::connect(addr, &Options::new(), secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{addr}: {e}");
    }
    // A final name that fits in a directory where the staging name does not: refused before
    // anything is bound, and the staging directory is gone.
    let base = dir.path().as_os_str().len() + 1;
    let sub = dir.join(&"d".repeat(107 - base - 2));
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(
        sub.join("x").as_os_str().len(),
        107,
        "the longest path sun_path holds"
    );
    let e =
        Listener::<Seqpacket>::bind(&Address::path(sub.join("x")), &Options::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    assert_eq!(
        std::fs::read_dir(&sub).unwrap().count(),
        0,
        "staging left behind"
    );
    // Abstract names: 107 bytes at most; NUL bytes inside are part of the name.
    let prefix = unique_name("abs");
    let mut n108 = prefix.clone().into_bytes();
    n108.resize(108, b'x');
    let e =
        Listener::<Seqpacket>::bind(&Address::Abstract(n108.clone()), &Options::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    let n107 = n108[..107].to_vec();
    let l: Listener<Seqpacket> =
        Listener::bind(&Address::Abstract(n107.clone()), &Options::new()).unwrap();
    let _c = Seqpacket::connect(&Address::Abstract(n107), &Options::new(), secs(30)).unwrap();
    drop(l.accept(secs(30)).unwrap());
    let with_nul = [prefix.as_bytes(), b"\0tail"].concat();
    let l: Listener<Seqpacket> =
        Listener::bind(&Address::Abstract(with_nul.clone()), &Options::new()).unwrap();
    let e = Seqpacket::connect(
        &Address::abstract_name(&prefix),
        &Options::new(),
        Deadline::Now,
    )
    .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::NoPeer,
        "the name up to its NUL is another name: {e}"
    );
    let _c = Seqpacket::connect(&Address::Abstract(with_nul), &Options::new(), secs(30)).unwrap();
    drop(l.accept(secs(30)).unwrap());
}

/// A socket file nobody listens on (its socket closed without removing it).
fn stale_socket(path: &std::path::Path) {
    let fd = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(path).unwrap()).unwrap();
}

#[test]
fn planted_files_are_refused_and_kept() {
    within_watchdog("planted files", || {
        let dir = TempDir::new("sock-planted");
        // A live listener of another socket type: in use, not stale.
        let path = dir.join("live");
        let addr = Address::path(&path);
        let live: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let e = Listener::<Stream>::bind(&addr, &Options::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        let mut c = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
        let mut s = live.accept(secs(30)).unwrap();
        c.send(b"still mine").unwrap();
        assert_eq!(s.recv(&mut [0u8; 64]).unwrap(), 10);
        // A symbolic link to a stale socket, and a dangling one: never followed or replaced.
        let stale = dir.join("stale");
        stale_socket(&stale);
        let link = dir.join("link");
        std::os::unix::fs::symlink(&stale, &link).unwrap();
        let dangling = dir.join("dangling");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        for p in [&link, &dangling] {
            let e = Listener::<Seqpacket>::bind(&Address::path(p), &Options::new()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WrongType, "{}: {e}", p.display());
            assert!(
                std::fs::symlink_metadata(p)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
        }
        // A parent that is missing, or a regular file.
        let e = Listener::<Seqpacket>::bind(&Address::path(dir.join("none/s")), &Options::new())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        std::fs::write(dir.join("file"), b"precious").unwrap();
        let e = Listener::<Seqpacket>::bind(&Address::path(dir.join("file/s")), &Options::new())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
        // Connecting: no file, a regular file, a stale socket.
        let e = Seqpacket::connect(
            &Address::path(dir.join("nowhere")),
            &Options::new(),
            secs(5),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        for p in ["file", "stale"] {
            let e = Seqpacket::connect(&Address::path(dir.join(p)), &Options::new(), secs(5))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NoPeer, "{p}: {e}");
        }
        drop((c, s, live));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["dangling", "file", "link", "stale"]);
    });
}

#[test]
fn short_rpc_messages_are_corrupted_and_the_conversation_goes_on() {
    within_watchdog("short rpc", || {
        // A client's request shorter than its id: the server says Corrupted, never panics.
        let (mut c, mut s) = Seqpacket::pair(256).unwrap();
        c.send(b"abc").unwrap();
        let e = serve_connection(&mut s, &|_: &[u8], _: &mut Vec<u8>| {
            panic!("a short request reached the handler")
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
        // A server's reply shorter than its id: Corrupted; the request stays in flight and
        // its real reply is delivered after.
        let (c, mut s) = Seqpacket::pair(256).unwrap();
        let mut client = Client::new(c);
        let id = client.start(b"q", secs(30)).unwrap();
        s.send(b"short").unwrap();
        let mut good = id.get().to_le_bytes().to_vec();
        good.extend_from_slice(b"answer");
        s.send(&good).unwrap();
        let mut reply = [0u8; 64];
        let e = client.wait(id, &mut reply).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
        let n = client.wait(id, &mut reply).unwrap();
        assert_eq!(&reply[..n], b"answer");
    });
}

#[test]
fn servers_racing_for_one_stale_name_end_with_one_owner() {
    within_watchdog("stale race", || {
        let dir = TempDir::new("sock-stale-race");
        let path = dir.join("s");
        let addr = Address::path(&path);
        for round in 0..200 {
            stale_socket(&path);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let winners: Vec<_> = (0..4)
                .map(|_| {
                    let (addr, barrier) = (addr.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Listener::<Seqpacket>::bind(&addr, &Options::new())
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .filter_map(|t| match t.join().unwrap() {
                    Ok(l) => Some(l),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
                        None
                    }
                })
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "round {round}: {} servers think they own the name",
                winners.len()
            );
            drop(winners);
            assert!(!path.exists());
        }
    });
}

#[test]
fn a_directory_lock_held_by_another_process_is_reported_not_waited_for() {
    within_watchdog("directory lock", || {
        let dir = TempDir::new("sock-dirlock");
        let path = dir.join("s");
        stale_socket(&path);
        // Someone holds the directory's lock (here an open file of this process: flock
        // locks are per open file).
        let held = std::fs::File::open(dir.path()).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let e = Listener::<Seqpacket>::bind(&Address::path(&path), &Options::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("flock"), "{e}");
        // Nothing replaced, nothing left; released, the stale file is reclaimed.
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        drop(held);
        let l: Listener<Seqpacket> =
            Listener::bind(&Address::path(&path), &Options::new()).unwrap();
        let _c = Seqpacket::connect(&Address::path(&path), &Options::new(), secs(30)).unwrap();
        drop(l);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    });
}

#[test]
fn an_empty_path_is_invalid_never_the_abstract_name_it_would_be() {
    within_watchdog("empty path", || {
        // To the kernel an empty sun_path is the abstract name "": a server there must not
        // receive the clients of an empty path.
        let squat = Listener::<Seqpacket>::bind(&Address::abstract_name(""), &Options::new());
        if let Err(e) = &squat {
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        }
        let empty = Address::path("");
        let e = Seqpacket::connect(&empty, &Options::new(), secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
        let e = Stream::connect(&empty, &Options::new(), secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
        let e = Listener::<Seqpacket>::bind(&empty, &Options::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
        if let Ok(l) = squat {
            let e = l.accept(Deadline::Now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        }
    });
}

#[test]
fn a_server_killed_with_connections_queued_and_one_waiting_fails_them_all() {
    within_watchdog("server killed before accept", || {
        let dir = TempDir::new("sock-killed-server");
        let path = dir.join("s");
        let addr = Address::path(&path);
        let mut server = spawn("listen_and_park").arg(path.to_str().unwrap()).start();
        server.wait_checkpoint("listening");
        // Fill its backlog: connected, never accepted.
        let mut queued = Vec::new();
        loop {
            match Seqpacket::connect(&addr, &Options::new(), Deadline::Now) {
                Ok(c) => queued.push(c),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
                    break;
                }
            }
            assert!(queued.len() < 1000, "the backlog never filled");
        }
        assert!(!queued.is_empty());
        // One more waits for room (before or after the kill, it must end the same way).
        let waiting = {
            let addr = addr.clone();
            std::thread::spawn(move || Seqpacket::connect(&addr, &Options::new(), secs(60)))
        };
        assert!(server.kill_and_wait().killed());
        let e = waiting.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoPeer, "{e}");
        for mut c in queued {
            let e = c.recv_deadline(&mut [0u8; 64], secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            let e = c.send(b"x").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        }
        // Its file is stale now: reclaimed by the next server.
        let _l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
    });
}

#[test]
fn a_server_starting_while_another_stops_keeps_its_socket_file() {
    within_watchdog("stop and start", || {
        let dir = TempDir::new("sock-handover");
        let path = dir.join("s");
        let addr = Address::path(&path);
        for round in 0..2000 {
            let old: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
            let new = {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    loop {
                        match Listener::<Seqpacket>::bind(&addr, &Options::new()) {
                            Ok(l) => return l,
                            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
                        }
                    }
                })
            };
            drop(old);
            let new = new.join().unwrap();
            assert!(
                std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()),
                "round {round}: the new server's socket file was removed by the old one"
            );
            drop(new);
        }
    });
}

#[test]
fn another_users_squatter_and_clients_are_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: cannot run a peer as another user; skipped");
        return;
    }
    within_watchdog("other users", || {
        // A squatter of another user on an abstract name (no file mode to keep it out).
        let name = unique_name("squat");
        let mut squatter = spawn("squat_as_nobody").arg(&name).start();
        squatter.wait_checkpoint("squatting");
        let addr = Address::abstract_name(&name);
        let e = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains(&format!("peer uid {NOBODY}")), "{e}");
        let c = Seqpacket::connect(
            &addr,
            &Options::new().peer(ipc_socket::PeerPolicy::Uid(NOBODY)),
            secs(30),
        )
        .unwrap();
        assert_eq!(c.peer_cred().unwrap().uid, NOBODY);
        drop(c);
        squatter.kill_and_wait();
        // Another user's clients: kept out by the file's mode, or refused at accept.
        let dir = TempDir::new("sock-users");
        rustix::fs::chmod(dir.path(), rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        let (private, open) = (dir.join("private"), dir.join("open"));
        let _p: Listener<Seqpacket> =
            Listener::bind(&Address::path(&private), &Options::new()).unwrap();
        let l: Listener<Seqpacket> =
            Listener::bind(&Address::path(&open), &Options::new().mode(0o666)).unwrap();
        let mut client = spawn("connect_as_nobody")
            .arg(format!("{} {}", private.display(), open.display()))
            .start();
        client.wait_checkpoint("connected");
        // Its first connect (refused by the policy on its side) and the second both reached
        // the backlog: each is refused here, naming the uid.
        for _ in 0..2 {
            let e = l.accept(secs(30)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains(&format!("peer uid {NOBODY}")), "{e}");
        }
        let e = l.accept(Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    });
}

/// The staging directories (`.ipc-sock.*`) in `dir`.
fn staging_dirs(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".ipc-sock."))
        .collect();
    v.sort();
    v
}

/// A staging directory `name` in `dir` with a file `s`, last modified `age` ago.
fn plant_staging(dir: &std::path::Path, name: &str, age: Duration) {
    let d = dir.join(name);
    let _ = std::fs::create_dir(&d);
    let _ = std::fs::write(d.join("s"), b"");
    backdate(&d, age);
}

fn backdate(p: &std::path::Path, age: Duration) {
    let t = std::time::SystemTime::now() - age;
    std::fs::File::open(p).unwrap().set_modified(t).unwrap();
}

#[test]
fn staging_directories_of_binds_killed_midway_are_swept_by_the_next_bind() {
    within_watchdog("staging sweep", || {
        let dir = TempDir::new("sock-staging");
        let path = dir.join("s");
        // Binds killed wherever they are, some in the middle (their directory stays).
        for _ in 0..10 {
            let mut c = spawn("bind_forever").arg(path.to_str().unwrap()).start();
            c.wait_checkpoint("binding");
            c.kill_and_wait();
        }
        let old = Duration::from_secs(120);
        for n in staging_dirs(dir.path()) {
            backdate(&dir.path().join(n), old);
        }
        let mut exited = spawn("exit_at_once").start();
        let dead_pid = exited.pid();
        assert!(exited.wait().success());
        let mut live = spawn("park").start();
        live.wait_checkpoint("parked");
        let live_pid = live.pid();
        plant_staging(dir.path(), &format!(".ipc-sock.{dead_pid}.7"), old);
        // Kept: a young one, a live process's, and names that are not staging directories.
        plant_staging(
            dir.path(),
            &format!(".ipc-sock.{dead_pid}.8"),
            Duration::ZERO,
        );
        plant_staging(dir.path(), &format!(".ipc-sock.{live_pid}.9"), old);
        plant_staging(dir.path(), ".ipc-sock.x.1", old);
        let keep = [
            format!(".ipc-sock.{dead_pid}.8"),
            format!(".ipc-sock.{live_pid}.9"),
            ".ipc-sock.x.1".to_owned(),
        ];
        let l: Listener<Seqpacket> =
            Listener::bind(&Address::path(&path), &Options::new()).unwrap();
        let mut want = keep.to_vec();
        want.sort();
        assert_eq!(staging_dirs(dir.path()), want);
        drop(l);
        live.kill_and_wait();
        for n in keep {
            std::fs::remove_dir_all(dir.path().join(n)).unwrap();
        }
    });
}

#[test]
fn replies_that_arrived_before_the_server_died_are_still_delivered() {
    within_watchdog("replies before death", || {
        let (c, mut s) = Seqpacket::pair(256).unwrap();
        let mut client = Client::new(c);
        let ids: Vec<_> = (0..3u8)
            .map(|i| client.start(&[i], secs(30)).unwrap())
            .collect();
        let mut buf = [0u8; 64];
        let mut second = Vec::new();
        for i in 0..3 {
            let n = s.recv(&mut buf).unwrap();
            if i == 1 {
                second = buf[..ipc_socket::rpc::ID_LEN.min(n)].to_vec();
            }
        }
        second.extend_from_slice(b"answer");
        s.send(&second).unwrap();
        drop(s);
        let mut reply = [0u8; 64];
        // Waiting for the first takes the second's reply, then the end.
        let e = client.wait(ids[0], &mut reply).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let n = client.wait(ids[1], &mut reply).unwrap();
        assert_eq!(&reply[..n], b"answer");
        let e = client.wait(ids[2], &mut reply).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert_eq!(client.in_flight(), 0);
    });
}

#[test]
fn a_stale_file_in_a_directory_without_read_permission_is_reclaimed() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: cannot run a peer as another user; skipped");
        return;
    }
    within_watchdog("write-only directory", || {
        let dir = TempDir::new("sock-wx");
        rustix::fs::chmod(dir.path(), rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        let sub = dir.join("wx");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("s");
        stale_socket(&path);
        for p in [&sub, &path] {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        rustix::fs::chmod(&sub, rustix::fs::Mode::from_raw_mode(0o300)).unwrap();
        spawn("reclaim_as_nobody")
            .arg(path.to_str().unwrap())
            .start()
            .wait_success();
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
    });
}

#[test]
fn connecting_to_a_listener_of_the_other_type_is_wrong_type() {
    within_watchdog("other type", || {
        let dir = TempDir::new("sock-other-type");
        let (sp, st) = (Address::path(dir.join("sp")), Address::path(dir.join("st")));
        let _a: Listener<Seqpacket> = Listener::bind(&sp, &Options::new()).unwrap();
        let _b: Listener<Stream> = Listener::bind(&st, &Options::new()).unwrap();
        let e = Stream::connect(&sp, &Options::new(), secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
        let e = Seqpacket::connect(&st, &Options::new(), secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
        // Abstract names are looked up per socket type: nothing of this type listens.
        let name = Address::abstract_name(unique_name("other-type"));
        let _c: Listener<Stream> = Listener::bind(&name, &Options::new()).unwrap();
        let e = Seqpacket::connect(&name, &Options::new(), secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoPeer, "{e}");
    });
}
