//! Unix-domain sockets: listener with many clients, exact socket mode, stale files reclaimed
//! and non-sockets refused, abstract names, deadlines on connect and accept, peer credentials
//! and the accept-time policy, SIGPIPE-free sends, the descriptor left blocking, a stream of
//! mixed sizes in order with the writer on the receiver's CPU and on another, and what a peer
//! that closes with our message unread sent before it closed.

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use ipc_socket::{
    Address, Deadline, ErrorKind, Listener, MessageReceiver, MessageSender, Options, PeerPolicy,
    Seqpacket, Stream,
};
use ipc_testkit::{Ctx, TempDir, roles, spawn, unique_name, within_watchdog};

fn secs(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(n))
}

/// Child: connects to the seqpacket listener at the path in its argument, sends its pid, and
/// echoes one message.
fn client_echo(ctx: &Ctx) {
    let addr = Address::path(ctx.arg());
    let mut s = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
    s.send(std::process::id().to_string().as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).unwrap();
    s.send(&buf[..n]).unwrap();
}

/// Child: binds a listener at the path in its argument and parks (killed by the parent).
fn hold_listener(ctx: &Ctx) {
    let _l: Listener<Seqpacket> =
        Listener::bind(&Address::path(ctx.arg()), &Options::new()).unwrap();
    ctx.park("listening");
}

/// The sizes of [`stream_burst`]'s messages, in turn: small and large mixed, so receives
/// switch between reading ahead (after 1 KiB or more, yielding before a read that would
/// sleep) and not, and between a read of several frames and the rest of one.
const BURST_SIZES: [usize; 10] = [4096, 64, 4096, 0, 1024, 65536, 4096, 1 << 20, 100, 8192];

/// How many times a burst goes through [`BURST_SIZES`].
const BURST_ROUNDS: usize = 20;

/// Message `i` of a burst, `len` bytes: its sequence number, then bytes that depend on both.
fn burst_message(i: u64, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len).map(|k| (i as usize * 7 + k) as u8).collect();
    let n = len.min(8);
    m[..n].copy_from_slice(&i.to_le_bytes()[..n]);
    m
}

/// Pins the calling process to `cpu`.
fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).unwrap();
}

/// Child: pins itself to the CPU in its second argument, connects to the stream listener at
/// the abstract name in its first, streams [`BURST_ROUNDS`] rounds of messages of the burst
/// sizes one way, then answers the parent's request.
fn stream_burst(ctx: &Ctx) {
    let args = ctx.args();
    pin(args[1].parse().unwrap());
    let addr = Address::abstract_name(args[0]);
    let opts = Options::new().max_message(1 << 20);
    let mut s = Stream::connect(&addr, &opts, secs(30)).unwrap();
    for i in 0..(BURST_SIZES.len() * BURST_ROUNDS) as u64 {
        s.send(&burst_message(
            i,
            BURST_SIZES[i as usize % BURST_SIZES.len()],
        ))
        .unwrap();
    }
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"done?");
    s.send(b"done").unwrap();
}

roles!(
    client_echo,
    hold_listener,
    send_without_sigpipe,
    stream_burst
);

/// A Unix stream of mixed sizes arrives whole and in order whether the writer shares the
/// receiver's CPU (where a receive that emptied the socket yields before it reads again) or
/// runs on another, and a request after it gets its answer.
#[test]
fn a_mixed_stream_arrives_in_order_on_one_cpu_and_across() {
    within_watchdog("mixed stream", || {
        let cpus = rustix::thread::sched_getaffinity(None).unwrap();
        let mine: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| cpus.is_set(c))
            .collect();
        let mut placements = vec![(mine[0], mine[0])];
        if let Some(&other) = mine.get(1) {
            placements.push((mine[0], other));
        }
        for (parent_cpu, child_cpu) in placements {
            let name = unique_name("burst");
            let opts = Options::new().max_message(1 << 20);
            let l: Listener<Stream> =
                Listener::bind(&Address::abstract_name(&name), &opts).unwrap();
            let child = spawn("stream_burst")
                .arg(format!("{name} {child_cpu}"))
                .start();
            pin(parent_cpu);
            let mut s = l.accept(secs(30)).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            for i in 0..(BURST_SIZES.len() * BURST_ROUNDS) as u64 {
                let len = BURST_SIZES[i as usize % BURST_SIZES.len()];
                let n = s.recv(&mut buf).unwrap();
                assert_eq!(n, len, "message {i} on CPUs {parent_cpu}/{child_cpu}");
                assert!(buf[..n] == burst_message(i, len), "message {i}'s bytes");
            }
            s.send(b"done?").unwrap();
            let n = s.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"done");
            child.wait_success();
            assert_eq!(
                s.recv(&mut buf).unwrap_err().kind(),
                ErrorKind::Disconnected
            );
            rustix::thread::sched_setaffinity(None, &cpus).unwrap();
        }
    });
}

#[test]
fn listener_accepts_many_clients_each_its_own_endpoint() {
    within_watchdog("many clients", || {
        let dir = TempDir::new("sock-many");
        let path = dir.join("s");
        let l: Listener<Seqpacket> =
            Listener::bind(&Address::path(&path), &Options::new()).unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| spawn("client_echo").arg(path.to_str().unwrap()).start())
            .collect();
        let mut buf = [0u8; 64];
        for _ in 0..4 {
            let mut s = l.accept(secs(30)).unwrap();
            let n = s.recv(&mut buf).unwrap();
            let pid: i32 = std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap();
            let cred = s.peer_cred().expect("credentials");
            assert_eq!(cred.pid, pid);
            assert_eq!(cred.uid, rustix::process::geteuid().as_raw());
            assert_eq!(cred.gid, rustix::process::getegid().as_raw());
            s.send(format!("to {pid}").as_bytes()).unwrap();
            let n = s.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("to {pid}").as_bytes());
        }
        for c in children {
            c.wait_success();
        }
        drop(l);
        assert!(!path.exists(), "the listener removes its socket file");
    });
}

#[test]
fn socket_file_has_the_exact_mode_whatever_the_umask() {
    let dir = TempDir::new("sock-mode");
    // A umask that would strip group and other bits: the mode is exact all the same.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    for mode in [0o600, 0o660, 0o666, 0o640] {
        let path = dir.join(&format!("s{mode:o}"));
        let l: Listener<Stream> =
            Listener::bind(&Address::path(&path), &Options::new().mode(mode)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, mode);
        drop(l);
        assert!(!path.exists());
    }
    rustix::process::umask(old);
    // Nothing left behind (the staging directories are gone).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn stale_socket_file_is_reclaimed_live_one_is_not() {
    within_watchdog("stale", || {
        let dir = TempDir::new("sock-stale");
        let path = dir.join("s");
        let mut holder = spawn("hold_listener").arg(path.to_str().unwrap()).start();
        holder.wait_checkpoint("listening");
        // A live server: refused.
        let e = Listener::<Seqpacket>::bind(&Address::path(&path), &Options::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        // The server dies without cleaning up: its file stays, stale.
        holder.kill_and_wait();
        assert!(path.exists());
        let e =
            Seqpacket::connect(&Address::path(&path), &Options::new(), Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoPeer, "{e}");
        let l = Listener::<Seqpacket>::bind(&Address::path(&path), &Options::new()).unwrap();
        let _c = Seqpacket::connect(&Address::path(&path), &Options::new(), secs(10)).unwrap();
        let _s = l.accept(secs(10)).unwrap();
    });
}

#[test]
fn non_socket_files_are_never_replaced() {
    let dir = TempDir::new("sock-nonsock");
    let file = dir.join("regular");
    std::fs::write(&file, b"precious").unwrap();
    let e = Listener::<Seqpacket>::bind(&Address::path(&file), &Options::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    // A symbolic link (even to a socket) is not followed, not replaced.
    let link = dir.join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let e = Listener::<Seqpacket>::bind(&Address::path(&link), &Options::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A directory neither.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let e = Listener::<Seqpacket>::bind(&Address::path(&sub), &Options::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
    assert!(sub.is_dir());
    // Only what was made here remains.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["link", "regular", "sub"]);
}

#[test]
fn abstract_names_connect_without_a_file() {
    within_watchdog("abstract_names_connect_without_a_file", || {
        let name = unique_name("abstract");
        let addr = Address::abstract_name(&name);
        let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new()).unwrap();
        let e = Listener::<Seqpacket>::bind(&addr, &Options::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        let mut c = Seqpacket::connect(&addr, &Options::new(), secs(10)).unwrap();
        let mut s = l.accept(secs(10)).unwrap();
        c.send(b"abstract").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.recv(&mut buf).unwrap(), 8);
        drop((c, s, l));
        let e = Seqpacket::connect(&addr, &Options::new(), Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoPeer, "{e}");
        // The same over a stream socket.
        let l: Listener<Stream> = Listener::bind(&addr, &Options::new()).unwrap();
        let mut c = Stream::connect(&addr, &Options::new(), secs(10)).unwrap();
        let mut s = l.accept(secs(10)).unwrap();
        c.send(b"stream").unwrap();
        assert_eq!(s.recv(&mut buf).unwrap(), 6);
    });
}

#[test]
fn accept_and_connect_honour_deadlines() {
    let dir = TempDir::new("sock-deadline");
    let addr = Address::path(dir.join("s"));
    let l: Listener<Seqpacket> = Listener::bind(&addr, &Options::new().backlog(1)).unwrap();
    let e = l.accept(Deadline::Now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    let e = l
        .accept(Deadline::after(Duration::from_millis(20)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    // Fill the backlog: a further connect waits, then times out.
    let mut held = Vec::new();
    let timed_out = loop {
        match Seqpacket::connect(
            &addr,
            &Options::new(),
            Deadline::after(Duration::from_millis(50)),
        ) {
            Ok(c) => held.push(c),
            Err(e) => break e,
        }
        assert!(held.len() < 100, "the backlog never filled");
    };
    assert_eq!(timed_out.kind(), ErrorKind::TimedOut, "{timed_out}");
    // Accepting makes room again.
    let _s = l.accept(secs(10)).unwrap();
    let missing = Address::path(dir.join("missing"));
    let e = Seqpacket::connect(&missing, &Options::new(), Deadline::Now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn peer_policy_refuses_other_uids_with_a_typed_error() {
    let dir = TempDir::new("sock-policy");
    let addr = Address::path(dir.join("s"));
    let me = rustix::process::geteuid().as_raw();
    let other = me.wrapping_add(4242);
    let l: Listener<Seqpacket> =
        Listener::bind(&addr, &Options::new().peer(PeerPolicy::Uid(other))).unwrap();
    let _c = Seqpacket::connect(&addr, &Options::new(), secs(10)).unwrap();
    let e = l.accept(secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains(&format!("peer uid {me}")), "{e}");
    // The listener goes on: the next client of an acceptable policy is accepted.
    drop(l);
    let l: Listener<Seqpacket> =
        Listener::bind(&addr, &Options::new().peer(PeerPolicy::SameUser)).unwrap();
    // And a client checks the server too.
    let e = Seqpacket::connect(
        &addr,
        &Options::new().peer(PeerPolicy::Uid(other)),
        secs(10),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let c = Seqpacket::connect(&addr, &Options::new().peer(PeerPolicy::Any), secs(10)).unwrap();
    assert_eq!(c.peer_cred().unwrap().uid, me);
    let s = l.accept(secs(10)).unwrap();
    assert_eq!(s.peer_cred().unwrap().pid, std::process::id() as i32);
}

/// Child: with SIGPIPE at its default action (which would kill it), sends to gone peers.
fn send_without_sigpipe(_: &Ctx) {
    // SAFETY: sets the disposition of SIGPIPE to the default; no handler is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let (mut a, b) = Seqpacket::pair(1024).unwrap();
    drop(b);
    let e = a.send(b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    let e = a.recv(&mut [0u8; 8]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    let (mut c, d) = Stream::pair(1024).unwrap();
    drop(d);
    let e = c.send(b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn sends_to_a_gone_peer_are_disconnected_without_sigpipe() {
    let out = spawn("send_without_sigpipe").start().wait();
    assert!(out.success(), "{:?}: {}", out.status, out.stderr);
}

#[test]
fn timed_calls_leave_the_descriptor_blocking() {
    within_watchdog("timed_calls_leave_the_descriptor_blocking", || {
        let (mut a, mut b) = Seqpacket::pair(1024).unwrap();
        let e = b
            .recv_timeout(&mut [0u8; 8], Duration::from_millis(5))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        a.try_send(b"x").unwrap();
        assert!(!ipc_core_is_nonblocking(&a) && !ipc_core_is_nonblocking(&b));
        let (mut c, mut d) = Stream::pair(1024).unwrap();
        let e = d.try_recv(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        c.send_timeout(b"x", Duration::from_secs(1)).unwrap();
        assert_eq!(
            d.recv_timeout(&mut [0u8; 8], Duration::from_secs(5))
                .unwrap(),
            1
        );
        assert!(!ipc_core_is_nonblocking(&c) && !ipc_core_is_nonblocking(&d));
    });
}

fn ipc_core_is_nonblocking(fd: &impl AsFd) -> bool {
    rustix::fs::fcntl_getfl(fd)
        .unwrap()
        .contains(rustix::fs::OFlags::NONBLOCK)
}

#[test]
fn empty_messages_are_not_end_of_stream() {
    within_watchdog("empty_messages_are_not_end_of_stream", || {
        let (mut a, mut b) = Seqpacket::pair(1024).unwrap();
        a.send(b"").unwrap();
        a.send(b"").unwrap();
        drop(a);
        let mut buf = [0u8; 8];
        assert_eq!(b.recv(&mut buf).unwrap(), 0);
        assert_eq!(b.recv(&mut buf).unwrap(), 0);
        assert_eq!(
            b.recv(&mut buf).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
    });
}

#[test]
fn seqpacket_over_tcp_is_unsupported_and_wrong_fds_are_refused() {
    let addr = Address::Inet((std::net::Ipv4Addr::LOCALHOST, 0).into());
    let e = Listener::<Seqpacket>::bind(&addr, &Options::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let (s, _t) = Stream::pair(16).unwrap();
    let fd: std::os::fd::OwnedFd = s.as_fd().try_clone_to_owned().unwrap();
    let e = Seqpacket::from_fd(fd, 16).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
}

#[test]
fn dropping_a_listener_leaves_a_file_that_replaced_its_socket() {
    let dir = TempDir::new("sock-replaced");
    let path = dir.join("s");
    let listener = Listener::<Seqpacket>::bind(&Address::path(&path), &Options::new()).unwrap();
    // Someone moves the socket away and puts their own file at the name.
    std::fs::rename(&path, dir.join("moved")).unwrap();
    std::fs::write(&path, b"theirs").unwrap();
    drop(listener);
    assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
    // Its own file, still in place, is removed.
    let path2 = dir.join("s2");
    drop(Listener::<Seqpacket>::bind(&Address::path(&path2), &Options::new()).unwrap());
    assert!(
        std::fs::symlink_metadata(&path2).is_err(),
        "the socket file stayed"
    );
}

/// A buffer too small for the next message: `MessageTooLarge` with both sizes, and the
/// message is not lost: a receive with room gets it (with its descriptors), then the next.
/// Both on an endpoint whose maximum takes the one-`recv` path and on a larger one.
#[test]
fn a_too_small_buffer_loses_nothing() {
    within_watchdog("a_too_small_buffer_loses_nothing", || {
        for max in [1000, 100_000] {
            let (mut a, mut b) = Seqpacket::pair(max).unwrap();
            let big: Vec<u8> = (0..max).map(|i| (i % 253) as u8).collect();
            a.send(&big).unwrap();
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            a.send_with_fds(b"with a pipe end", &[w.as_fd()], Deadline::Never)
                .unwrap();
            drop(w);
            a.send(b"last").unwrap();
            let mut small = [0u8; 16];
            for _ in 0..2 {
                let e = b.try_recv(&mut small).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{max}: {e}");
                assert_eq!(e.message_size(), Some((max, 16)), "{max}: {e}");
            }
            let mut buf = vec![0u8; max];
            assert_eq!(b.recv(&mut buf).unwrap(), max);
            assert_eq!(buf, big, "{max}");
            // Descriptors ride along through a small buffer too.
            let mut fds = Vec::new();
            let n = b
                .recv_with_fds(&mut small, &mut fds, Deadline::Never)
                .unwrap();
            assert_eq!(&small[..n], b"with a pipe end");
            assert_eq!(fds.len(), 1, "{max}");
            rustix::io::write(&fds[0], b"!").unwrap();
            let mut one = [0u8; 1];
            assert_eq!(rustix::io::read(&r, &mut one).unwrap(), 1);
            assert_eq!(b.recv(&mut small).unwrap(), 4);
            assert_eq!(&small[..4], b"last");
            assert_eq!(
                b.try_recv(&mut small).unwrap_err().kind(),
                ErrorKind::WouldBlock
            );
        }
    });
}

/// The inline paths of a small seqpacket endpoint (a message that is its own record sent from
/// the caller's buffer; a receive into a buffer of the maximum) wait and expire like the
/// general ones: an empty socket is `WouldBlock` / `TimedOut`, a message that arrives during a
/// timed receive is returned, a full socket is `WouldBlock` to `try_send` and a timed send
/// waits for the room the receiver makes; nothing is lost or duplicated on the way.
#[test]
fn seqpacket_inline_paths_wait_and_expire() {
    within_watchdog("seqpacket_inline_paths_wait_and_expire", || {
        let (mut a, mut b) = Seqpacket::pair(64).unwrap();
        let mut buf = [0u8; 64];
        let e = b.try_recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        let e = b
            .recv_timeout(&mut buf, Duration::from_millis(5))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            a.send(b"late").unwrap();
            a
        });
        assert_eq!(b.recv_deadline(&mut buf, secs(10)).unwrap(), 4);
        assert_eq!(&buf[..4], b"late");
        let mut a = late.join().unwrap();
        // Fill the socket: numbered messages until try_send finds no room.
        let mut sent = 0u32;
        loop {
            let mut msg = [1u8; 64];
            msg[..4].copy_from_slice(&sent.to_le_bytes());
            match a.try_send(&msg) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
                    break;
                }
            }
            assert!(sent < 1_000_000, "the socket never filled");
        }
        let drain = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [0u8; 64];
            for i in 0..=sent {
                assert_eq!(b.recv(&mut buf).unwrap(), 64, "message {i}");
                assert_eq!(buf[..4], i.to_le_bytes(), "message {i}");
            }
            let e = b.try_recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        });
        let mut last = [1u8; 64];
        last[..4].copy_from_slice(&sent.to_le_bytes());
        a.send_deadline(&last, secs(10)).unwrap();
        drain.join().unwrap();
    });
}

/// A peer that closes with a message of ours unread still delivers what it sent before it
/// closed, then `Disconnected`: the kernel reports such a close as `ECONNRESET` (the closed
/// end's receive queue was not empty) ahead of the messages still queued for us, and clears
/// it once reported, so those messages are still there to read.
#[test]
#[ignore = "bug (session 16): Seqpacket's receive takes ECONNRESET for the end, losing the \
            messages queued behind it"]
fn a_peer_closing_with_our_message_unread_still_delivers_what_it_sent() {
    let (mut a, mut b) = Seqpacket::pair(1024).unwrap();
    a.send(b"never read").unwrap();
    b.send(b"sent before the close").unwrap();
    drop(b);
    let mut buf = [0u8; 64];
    let first = a.recv(&mut buf).map(|n| buf[..n].to_vec());
    assert_eq!(
        first.as_deref().map_err(|e| e.kind()),
        Ok(&b"sent before the close"[..])
    );
    let e = a.recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}
