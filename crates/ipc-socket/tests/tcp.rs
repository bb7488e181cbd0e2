//! TCP: IPv4 and IPv6 over loopback (TCP_NODELAY, framing, deadlines, no credentials), and
//! client and server in two network namespaces joined by a veth pair the test makes itself
//! (10.x addresses inside those private namespaces only: nothing leaves the machine), skipped
//! with a message when the test may not create namespaces or `ip` is missing. Also the
//! read-ahead rule TCP and Unix streams share.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use ipc_core::stream::ReadAhead;
use ipc_socket::{
    Address, Deadline, ErrorKind, Listener, MessageReceiver, MessageSender, Options, Stream,
};
use ipc_testkit::{Ctx, roles, spawn, within_watchdog};

/// Options for messages up to 1 MiB.
fn big() -> Options {
    Options::new().max_message(1 << 20)
}

fn secs(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(n))
}

fn round_trip(bind: SocketAddr) {
    let l: Listener<Stream> = Listener::bind(&Address::Inet(bind), &big()).unwrap();
    let addr = l.local_addr().unwrap();
    let mut c = Stream::connect(&addr, &big(), secs(10)).unwrap();
    let mut s = l.accept(secs(10)).unwrap();
    for end in [&c, &s] {
        assert!(end.peer_cred().is_none(), "TCP has no peer credentials");
        assert!(
            rustix::net::sockopt::tcp_nodelay(end).unwrap(),
            "TCP_NODELAY"
        );
    }
    let mut buf = vec![0u8; 1 << 20];
    let e = s.try_recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    let e = s
        .recv_timeout(&mut buf, Duration::from_millis(10))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    for size in [0, 1, 1000, 200_000, 1 << 20] {
        let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        c.send(&msg).unwrap();
        let n = s.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &msg[..], "size {size}");
        s.send(&msg[..n.min(10)]).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(n, size.min(10));
    }
    drop(c);
    assert_eq!(
        s.recv(&mut buf).unwrap_err().kind(),
        ErrorKind::Disconnected
    );
    // The peer is gone: a send says so rather than writing into the void.
    let e = s.send_timeout(b"x", Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn ipv4_loopback() {
    within_watchdog("ipv4_loopback", || {
        round_trip((Ipv4Addr::LOCALHOST, 0).into());
    });
}

/// A message of `len` bytes stamped with its sequence number `i`.
fn stamped(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

/// The sizes of a mixed stream: small and large in turn, so reads ahead stop in the middle of
/// frames of every kind.
const MIXED: [usize; 9] = [64, 1024, 4100, 700, 3000, 20_000, 1, 1023, 60_000];

/// Streams 2000 messages of the [`MIXED`] sizes from `c` (on a thread of its own) to `s`:
/// each arrives whole and in order, and after each the receive side reads ahead when it was
/// 1 KiB or more, adaptively otherwise.
fn mixed_burst_reads_ahead_after_a_kilobyte(mut c: Stream, mut s: Stream) {
    let count = 2000;
    let writer = std::thread::spawn(move || {
        for i in 0..count {
            c.send(&stamped(i, MIXED[i % MIXED.len()])).unwrap();
        }
        // Held open until the reader has everything: its last receive must not see the end.
        let mut done = [0u8; 1];
        c.recv(&mut done).unwrap();
    });
    assert_eq!(
        s.read_ahead_policy(),
        ReadAhead::Adaptive,
        "before any message"
    );
    let mut buf = vec![0u8; 64 << 10];
    for i in 0..count {
        let n = s.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &stamped(i, MIXED[i % MIXED.len()])[..],
            "message {i}"
        );
        let want = if n >= 1024 {
            ReadAhead::Always
        } else {
            ReadAhead::Adaptive
        };
        assert_eq!(
            s.read_ahead_policy(),
            want,
            "after message {i} of {n} bytes"
        );
    }
    s.send(b"!").unwrap();
    writer.join().unwrap();
}

/// A stream, TCP or Unix, reads ahead after a message of 1 KiB or more and adaptively after a
/// smaller one, and a burst of mixed sizes, read ahead while it keeps coming, arrives whole
/// and in order.
#[test]
fn streams_read_ahead_after_a_kilobyte_and_keep_every_message() {
    within_watchdog("streams_read_ahead", || {
        let opts = Options::new().max_message(64 << 10);
        let l: Listener<Stream> =
            Listener::bind(&Address::Inet((Ipv4Addr::LOCALHOST, 0).into()), &opts).unwrap();
        let c = Stream::connect(&l.local_addr().unwrap(), &opts, secs(10)).unwrap();
        mixed_burst_reads_ahead_after_a_kilobyte(c, l.accept(secs(10)).unwrap());
        let (c, s) = Stream::pair(64 << 10).unwrap();
        mixed_burst_reads_ahead_after_a_kilobyte(c, s);

        // Split after a large message: the receiver keeps that policy whatever comes next.
        let l: Listener<Stream> =
            Listener::bind(&Address::Inet((Ipv4Addr::LOCALHOST, 0).into()), &opts).unwrap();
        let mut c = Stream::connect(&l.local_addr().unwrap(), &opts, secs(10)).unwrap();
        let s = l.accept(secs(10)).unwrap();
        let (mut a, b) = Stream::pair(64 << 10).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        for (tx, mut rx) in [(&mut c, s), (&mut a, b)] {
            tx.send(&stamped(0, 4100)).unwrap();
            tx.send(&stamped(1, 10)).unwrap();
            assert_eq!(rx.recv(&mut buf).unwrap(), 4100);
            let (_tx, mut rx) = rx.into_split();
            assert_eq!(rx.read_ahead_policy(), ReadAhead::Always);
            assert_eq!(rx.recv(&mut buf).unwrap(), 10);
            assert_eq!(&buf[..10], &stamped(1, 10)[..]);
            assert_eq!(
                rx.read_ahead_policy(),
                ReadAhead::Always,
                "split: as it was"
            );
        }
    });
}

#[test]
fn ipv6_loopback() {
    within_watchdog("ipv6_loopback", || {
        // A kernel or namespace without IPv6 on lo cannot run this.
        if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
            eprintln!("SKIPPED ipv6_loopback: no IPv6 on the loopback interface here");
            return;
        }
        round_trip((Ipv6Addr::LOCALHOST, 0).into());
    });
}

#[test]
fn connect_to_nothing_is_no_peer() {
    // A port bound but never listened on: nobody else can take it while this socket holds
    // it (a port merely freed could be taken by a test running in parallel), and a connect
    // to it is refused.
    let holder = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(&holder, &SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let port = SocketAddr::try_from(rustix::net::getsockname(&holder).unwrap()).unwrap();
    let e = Stream::connect(&Address::Inet(port), &Options::new(), secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoPeer, "{e}");
}

// ---------------------------------------------------------------------------------------------
// Two network namespaces joined by a veth pair.

const SERVER_IP: &str = "10.213.7.1";
const CLIENT_IP: &str = "10.213.7.2";
const PORT: u16 = 7777;

/// Runs `ip ARGS` in this thread's network namespace; panics with its output on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves this thread into a new, private network namespace (children it forks follow).
fn private_netns() -> std::io::Result<()> {
    // SAFETY: CLONE_NEWNET changes only this thread's network namespace; no descriptor table
    // is unshared, so no other thread's descriptors are affected.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .map_err(Into::into)
}

/// Waits until `dev` appears in this namespace, then gives it `addr` and brings it and `lo`
/// up.
fn configure(dev: &str, addr: &str) {
    let start = std::time::Instant::now();
    while !Command::new("ip")
        .args(["link", "show", dev])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{dev} never came"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ip(&["link", "set", "lo", "up"]);
    ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]);
    ip(&["link", "set", dev, "up"]);
}

/// Child: exits 0 if it can make a network namespace and a veth pair in it, 77 if not.
fn netns_probe(_: &Ctx) {
    let ok = private_netns().is_ok()
        && Command::new("ip")
            .args(["link", "add", "p0", "type", "veth", "peer", "name", "p1"])
            .output()
            .is_ok_and(|o| o.status.success());
    std::process::exit(if ok { 0 } else { 77 });
}

/// Child: the server, in its own namespace, on veth end `vs`.
fn netns_server(ctx: &Ctx) {
    private_netns().unwrap();
    ctx.checkpoint("unshared");
    configure("vs", SERVER_IP);
    let addr = Address::Inet(format!("{SERVER_IP}:{PORT}").parse().unwrap());
    let l: Listener<Stream> = Listener::bind(&addr, &big()).unwrap();
    ctx.checkpoint("listening");
    let mut s = l.accept(secs(60)).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.recv(&mut buf) {
            Ok(n) => s.send(&buf[..n]).unwrap(),
            Err(e) if e.kind() == ErrorKind::Disconnected => break,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Child: the client, in its own namespace, on veth end `vc`.
fn netns_client(ctx: &Ctx) {
    private_netns().unwrap();
    ctx.checkpoint("unshared");
    configure("vc", CLIENT_IP);
    ctx.checkpoint("configured");
    let addr = Address::Inet(format!("{SERVER_IP}:{PORT}").parse().unwrap());
    // The server configures its end and listens in parallel: refused until it does.
    let deadline = secs(60);
    let mut c = loop {
        match Stream::connect(&addr, &big(), deadline) {
            Err(e) if e.kind() == ErrorKind::NoPeer && !deadline.has_passed() => {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => break r.unwrap(),
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    for size in [0usize, 5, 1500, 100_000, 1 << 20] {
        let msg: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        c.send(&msg).unwrap();
        let n = c.recv_timeout(&mut buf, Duration::from_secs(60)).unwrap();
        assert_eq!(&buf[..n], &msg[..], "size {size}");
    }
    eprintln!("netns round trips done");
}

/// Child: makes the veth pair in a namespace of its own and moves one end into each peer's
/// namespace (pids in the argument).
fn netns_wire(ctx: &Ctx) {
    let tids: Vec<String> = ctx.args().into_iter().map(unshared_task).collect();
    private_netns().unwrap();
    ip(&["link", "add", "vs", "type", "veth", "peer", "name", "vc"]);
    ip(&["link", "set", "vs", "netns", &tids[0]]);
    ip(&["link", "set", "vc", "netns", &tids[1]]);
}

/// The thread of process `pid` that moved to a network namespace of its own (a role runs on
/// a test thread, and `unshare` moves only the calling thread): its tid, which `ip link set
/// netns` accepts like a pid.
fn unshared_task(pid: &str) -> String {
    let main = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        if std::fs::read_link(task.join("ns/net")).is_ok_and(|ns| ns != main) {
            return task.file_name().unwrap().to_string_lossy().into_owned();
        }
    }
    // The role ran on the main thread: the process's namespace is the new one.
    pid.to_string()
}

roles!(netns_probe, netns_server, netns_client, netns_wire);

#[test]
fn client_and_server_in_two_network_namespaces_over_veth() {
    within_watchdog("netns veth", || {
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("SKIPPED netns veth test: the `ip` command (iproute2) is missing");
            return;
        }
        let probe = spawn("netns_probe").start().wait();
        if !probe.success() {
            eprintln!(
                "SKIPPED netns veth test: no privilege to create network namespaces and veth \
                 pairs here (needs CAP_SYS_ADMIN and CAP_NET_ADMIN): {:?}",
                probe.status
            );
            return;
        }
        let mut server = spawn("netns_server").start();
        let mut client = spawn("netns_client").start();
        server.wait_checkpoint("unshared");
        client.wait_checkpoint("unshared");
        spawn("netns_wire")
            .arg(format!("{} {}", server.pid(), client.pid()))
            .start()
            .wait_success();
        server.wait_checkpoint("listening");
        let out = client.wait_success();
        assert!(
            out.stderr.contains("netns round trips done"),
            "{}",
            out.stderr
        );
        server.wait_success();
    });
}

/// A TCP stream whose receiver has a maximum of atomic records (1,000 bytes) and a peer with
/// a larger one: each message above it (5,000 bytes, above `PIPE_BUF`; 100,000 bytes) is one
/// `MessageTooLarge` naming both sizes, dropped as it arrives, and the next message arrives;
/// under each receive form.
#[test]
fn a_tcp_receiver_with_a_small_maximum_drops_larger_messages_and_goes_on() {
    within_watchdog("tcp small maximum", || {
        let small = Options::new().max_message(1000);
        let l: Listener<Stream> =
            Listener::bind(&Address::Inet((Ipv4Addr::LOCALHOST, 0).into()), &small).unwrap();
        let addr = l.local_addr().unwrap();
        let mut c = Stream::connect(&addr, &big(), secs(10)).unwrap();
        let mut s = l.accept(secs(10)).unwrap();
        let sender = std::thread::spawn(move || {
            for _ in 0..3 {
                c.send(&[5u8; 5000]).unwrap();
                c.send(&vec![6u8; 100_000]).unwrap();
                c.send(b"after").unwrap();
            }
            c
        });
        let mut buf = vec![0u8; 1000];
        for form in 0..3 {
            let mut recv = |buf: &mut [u8]| loop {
                let r = match form {
                    0 => s.recv(buf),
                    1 => s.recv_timeout(buf, Duration::from_secs(60)),
                    _ => s.try_recv(buf),
                };
                match r {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                    r => break r,
                }
            };
            for size in [5000, 100_000] {
                let e = recv(&mut buf).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{form}: {e}");
                assert_eq!(e.message_size(), Some((size, 1000)), "{form}: {e}");
            }
            let n = recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"after", "{form}");
        }
        drop(sender.join().unwrap());
        assert_eq!(
            s.recv(&mut buf).unwrap_err().kind(),
            ErrorKind::Disconnected
        );
    });
}
