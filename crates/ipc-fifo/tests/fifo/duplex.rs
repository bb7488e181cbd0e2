//! Full duplex over two FIFOs: several client processes, each with its own pair; peers that
//! die during the handshake; no server.

use std::path::Path;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::{ConnectOptions, Connection, Fifo, Listener, OpenOptions};
use ipc_testkit::script::{check_message, message};
use ipc_testkit::{Ctx, spawn, watchdog, within_watchdog};

use crate::{entries, scratch};

/// The server's answer to a request: the request reversed.
pub(crate) fn answer(req: &[u8]) -> Vec<u8> {
    req.iter().rev().copied().collect()
}

/// Sizes of a client's requests: small, around PIPE_BUF, and well above it (one writer per
/// direction, so any size goes).
pub(crate) const SIZES: [usize; 6] = [0, 16, 4092, 4097, 100_000, 300];

/// Role: `path client`: connects, sends stamped requests, checks each answer is its own.
pub(crate) fn echo_client(ctx: &Ctx) {
    let a = ctx.args();
    let client: u32 = a[1].parse().unwrap();
    let mut conn = ConnectOptions::new()
        .timeout(ipc_testkit::watchdog())
        .connect(a[0])
        .unwrap();
    let mut buf = vec![0; 1 << 20];
    for (seq, &len) in SIZES.iter().enumerate() {
        let req = message(client, seq as u32, len);
        conn.send(&req).unwrap();
        let n = conn.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            answer(&req),
            "client {client}: answer to request {seq}"
        );
    }
}

#[test]
fn several_client_processes_each_get_their_own_replies() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            spawn("echo_client")
                .arg(format!("{} {c}", path.display()))
                .start()
        })
        .collect();
    let mut servers = Vec::new();
    for _ in 0..clients.len() {
        let conn = listener.accept_timeout(ipc_testkit::watchdog()).unwrap();
        // One thread per connection: the connections are independent.
        servers.push(std::thread::spawn(move || {
            let mut conn = conn;
            let mut buf = vec![0; 1 << 20];
            let mut served = 0;
            loop {
                match conn.recv(&mut buf) {
                    Ok(n) => {
                        conn.send(&answer(&buf[..n])).unwrap();
                        served += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::Disconnected => return served,
                    Err(e) => panic!("server: {e}"),
                }
            }
        }));
    }
    for c in clients {
        c.wait_success();
    }
    for s in servers {
        let served = within_watchdog("server thread", move || s.join().unwrap());
        assert_eq!(served, SIZES.len());
    }
    // Only the listener is left: every pair was unlinked.
    assert_eq!(entries(dir.path()), ["server"]);
    drop(listener);
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[test]
fn a_connection_is_full_duplex_and_reports_the_peer_leaving() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let p = path.clone();
    let client = std::thread::spawn(move || {
        let (mut tx, mut rx) = Connection::connect(&p).unwrap().split();
        // Send and receive at the same time, from two threads.
        let sender = std::thread::spawn(move || {
            for i in 0..200u32 {
                tx.send(&message(1, i, 5000)).unwrap();
            }
        });
        let mut buf = vec![0; 8192];
        for i in 0..200u32 {
            let n = rx.recv(&mut buf).unwrap();
            check_message(2, i, 5000, &buf[..n]).unwrap();
        }
        sender.join().unwrap();
    });
    let conn = listener.accept_timeout(ipc_testkit::watchdog()).unwrap();
    let (mut tx, mut rx) = conn.split();
    let sender = std::thread::spawn(move || {
        for i in 0..200u32 {
            tx.send(&message(2, i, 5000)).unwrap();
        }
        tx
    });
    let mut buf = vec![0; 8192];
    for i in 0..200u32 {
        let n = rx.recv(&mut buf).unwrap();
        check_message(1, i, 5000, &buf[..n]).unwrap();
    }
    let mut tx = within_watchdog("server sender", move || sender.join().unwrap());
    within_watchdog("client", move || client.join().unwrap());
    // The client is gone: both directions say so.
    assert_eq!(
        rx.recv(&mut buf).unwrap_err().kind(),
        ErrorKind::Disconnected
    );
    // Another test of this binary forking at that moment holds a copy of the client's read
    // end until its child execs (close-on-exec closes it only then): a send may still find a
    // reader for that instant. It must report the client gone once the copy is closed.
    let deadline = std::time::Instant::now() + ipc_testkit::watchdog();
    let e = loop {
        match tx.send(b"anyone?") {
            Err(e) => break e,
            Ok(()) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Ok(()) => panic!("send kept succeeding with the client gone"),
        }
    };
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// Role: `path`: does the first half of a client handshake by hand (creates the pair, opens
/// its read end, sends the hello), then parks: killed there, it is a client that died
/// mid-handshake.
pub(crate) fn hello_then_park(ctx: &Ctx) {
    let path = Path::new(ctx.arg());
    let id = format!("{}.0", std::process::id());
    let c2s = Fifo::create(format!("{}.{id}.c2s", path.display())).unwrap();
    let s2c = Fifo::create(format!("{}.{id}.s2c", path.display())).unwrap();
    let _r = OpenOptions::new()
        .nonblocking(true)
        .open_read(&s2c)
        .unwrap();
    let mut tx = OpenOptions::new()
        .open_write(path)
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    let mut hello = b"IFH\x01".to_vec();
    hello.extend_from_slice(id.as_bytes());
    tx.send(&hello).unwrap();
    let _keep = (c2s.keep(), s2c.keep()); // a SIGKILL would not run the guards either
    ctx.park("hello sent");
}

#[test]
fn a_client_dying_mid_handshake_does_not_hang_the_server() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let mut child = spawn("hello_then_park").arg(path.to_str().unwrap()).start();
    child.wait_checkpoint("hello sent");
    let pid = child.pid();
    child.kill_and_wait();
    // The hello is queued, the client is dead: accept must say so, not wait for it.
    let (mut listener, e) = within_watchdog("accept", move || {
        let e = listener.accept().unwrap_err();
        (listener, e)
    });
    assert!(
        matches!(e.kind(), ErrorKind::Disconnected | ErrorKind::NoPeer),
        "{e}"
    );
    // Its pair is left behind (nobody unlinked it); the listener can clean it up.
    let pair = [format!("server.{pid}.0.c2s"), format!("server.{pid}.0.s2c")];
    assert_eq!(
        entries(dir.path()),
        ["server", pair[0].as_str(), pair[1].as_str()]
    );
    assert_eq!(listener.remove_stale().unwrap(), 2);
    assert_eq!(entries(dir.path()), ["server"]);
    // The listener is still good for the next client.
    let p = path.clone();
    let client = std::thread::spawn(move || {
        let mut c = Connection::connect(&p).unwrap();
        c.send(b"hi").unwrap();
    });
    let mut conn = listener.accept_timeout(ipc_testkit::watchdog()).unwrap();
    let mut buf = [0; 8];
    assert_eq!(conn.recv(&mut buf).unwrap(), 2);
    client.join().unwrap();
}

/// Role: `path`: a fake server: reads the well-known FIFO until one hello arrived, then parks
/// (killed there, it is a server that died before accepting).
pub(crate) fn read_hello_then_park(ctx: &Ctx) {
    let r = OpenOptions::new()
        .wait(Deadline::Now)
        .keep_open(true)
        .open_read(ctx.arg())
        .unwrap();
    r.set_nonblocking(false).unwrap();
    let mut rx = r.into_atomic_receiver().unwrap();
    ctx.checkpoint("listening");
    let mut buf = [0; 4092];
    rx.recv(&mut buf).unwrap();
    ctx.park("got hello");
}

#[test]
fn a_server_dying_mid_handshake_does_not_hang_the_client() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("server")).unwrap();
    let mut server = spawn("read_hello_then_park")
        .arg(fifo.path().to_str().unwrap())
        .start();
    server.wait_checkpoint("listening");
    let p = fifo.path().to_path_buf();
    let client = std::thread::spawn(move || {
        ConnectOptions::new()
            .timeout(Duration::from_secs(3600))
            .connect(&p)
            .map(drop)
            .unwrap_err()
    });
    server.wait_checkpoint("got hello");
    server.kill_and_wait();
    let e = within_watchdog("connect", move || client.join().unwrap());
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    // The client cleaned up its pair.
    assert_eq!(entries(dir.path()), ["server"]);
}

#[test]
fn connecting_without_a_server() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("server")).unwrap();
    let e = ConnectOptions::new()
        .deadline(Deadline::Now)
        .connect(&fifo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoPeer);
    let e = ConnectOptions::new()
        .timeout(Duration::from_millis(20))
        .connect(&fifo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert_eq!(
        entries(dir.path()),
        ["server"],
        "no pair is made before a server answers"
    );
    // A bad hello: a typed error, and the listener goes on.
    drop(fifo);
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let mut tx = OpenOptions::new()
        .open_write(&path)
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    tx.send(b"IFH\x01../../etc/x.1").unwrap();
    tx.send(b"GET / HTTP/1.0").unwrap();
    for _ in 0..2 {
        let e = listener.accept_timeout(Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    }
    let e = listener
        .accept_timeout(Duration::from_millis(10))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}

/// A listener whose name leaves no room for its clients' connection FIFOs
/// (`<name>.<pid>.<n>.c2s`) within the filesystem's longest name used to bind fine, and every
/// client then failed with `InvalidName` for its own pair while the server never heard of it.
/// Now `bind` refuses the name and leaves nothing behind; the longest name that leaves room
/// serves a client process.
#[test]
fn a_listener_name_with_no_room_for_its_clients_fifos_is_refused_at_bind() {
    let dir = scratch();
    let name_max = rustix::fs::statfs(dir.path()).unwrap().f_namelen as usize;
    let room = name_max - ipc_fifo::PAIR_SUFFIX_MAX;
    let e = Listener::bind(dir.join(&"l".repeat(room + 1))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
    let path = dir.join(&"l".repeat(room));
    let mut listener = Listener::bind(&path).unwrap();
    let client = spawn("echo_client")
        .arg(format!("{} 0", path.display()))
        .start();
    let mut conn = listener.accept_timeout(ipc_testkit::watchdog()).unwrap();
    let mut buf = vec![0; 1 << 20];
    for _ in SIZES {
        let n = conn.recv(&mut buf).unwrap();
        conn.send(&answer(&buf[..n])).unwrap();
    }
    client.wait_success();
}

/// `remove_stale` judged a pair by the pid in its name alone, checked in the listener's pid
/// namespace; a client in another one (a container sharing the directory) has a pid there
/// that may name no process here, and its live handshake lost its names. Here a live
/// client's pair is renamed to a pid that exists nowhere (above `pid_max`), as such a client's
/// would look: it must be left alone while the client lives (the client's lock on `s2c`
/// says so), and removed once it is gone. Failed without the fix: the first `remove_stale`
/// removed 2.
#[test]
fn remove_stale_leaves_a_live_clients_pair_alone_whatever_its_pid_says() {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    let dir = scratch();
    let path = dir.join("server");
    let listener = Listener::bind(&path).unwrap();
    let p = path.clone();
    // Never accepted: it waits mid-handshake until the listener goes.
    let client = std::thread::spawn(move || {
        ConnectOptions::new()
            .timeout(ipc_testkit::watchdog())
            .connect(&p)
            .map(drop)
            .unwrap_err()
    });
    // Its hello is sent once its pair is made and locked.
    let peek = openat(
        CWD,
        &path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let deadline = Deadline::after(ipc_testkit::watchdog());
    while rustix::io::ioctl_fionread(&peek).unwrap() == 0 {
        assert!(!deadline.has_passed(), "no hello came");
        std::thread::sleep(Duration::from_millis(1));
    }
    let own = format!("server.{}.", std::process::id());
    let mut renamed = Vec::new();
    for name in entries(dir.path()) {
        if let Some(rest) = name.strip_prefix(&own) {
            let to = format!("server.4194399.{rest}");
            std::fs::rename(dir.join(&name), dir.join(&to)).unwrap();
            renamed.push(to);
        }
    }
    assert_eq!(renamed.len(), 2, "{:?}", entries(dir.path()));
    assert_eq!(listener.remove_stale().unwrap(), 0, "a live client's pair");
    assert_eq!(entries(dir.path()).len(), 3);
    // No reader of the listener's FIFO left: the client sees the server gone.
    drop((peek, listener));
    let e = within_watchdog("connect", move || client.join().unwrap());
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    // The client is gone (its guards did not find the renamed names): now they are stale.
    let listener = Listener::bind(&path).unwrap();
    assert_eq!(listener.remove_stale().unwrap(), 2);
    assert_eq!(entries(dir.path()), ["server"]);
}

/// A client that dies while its handshake is in progress (the server took its hello and has
/// its pair open) is reported by the next `accept` as gone at once (its end of `s2c` closed),
/// not after the handshake timeout, and its pair is stale. Fails if the server only noticed
/// at the timeout (`TimedOut`).
#[test]
fn a_client_dying_while_its_handshake_is_in_progress_is_reported_as_gone() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let mut child = spawn("hello_then_park").arg(path.to_str().unwrap()).start();
    child.wait_checkpoint("hello sent");
    // Wait for the hello to be taken: the handshake is then in progress.
    let deadline = Deadline::after(ipc_testkit::watchdog());
    loop {
        let e = listener
            .accept_deadline(Deadline::Now)
            .map(drop)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        if e.to_string().contains("1 in progress") {
            break;
        }
        assert!(!deadline.has_passed(), "the hello was not taken");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill_and_wait();
    let (listener, e) = within_watchdog("accept", move || {
        let e = listener.accept().map(drop).unwrap_err();
        (listener, e)
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert_eq!(listener.remove_stale().unwrap(), 2);
    assert_eq!(entries(dir.path()), ["server"]);
}

/// Child: binds a listener at the path it is given, then waits to be killed (its FIFO stays,
/// as after any death without unwinding); with a second argument `serve`, answers one client.
pub(crate) fn bind_and_park(ctx: &Ctx) {
    let args = ctx.args();
    let mut listener = Listener::bind(args[0]).unwrap();
    ctx.checkpoint("bound");
    if args.get(1) == Some(&"serve") {
        let mut conn = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = conn.receiver().recv(&mut buf).unwrap();
        conn.sender().send(&answer(&buf[..n])).unwrap();
    }
    let _keep = std::mem::ManuallyDrop::new(listener);
    ctx.park("served");
}

#[test]
fn bind_reclaiming_takes_a_dead_listeners_fifo_and_nothing_else() {
    let dir = scratch();
    let path = dir.join("server");
    let mut dead = spawn("bind_and_park").arg(path.to_str().unwrap()).start();
    dead.wait_checkpoint("bound");
    assert!(dead.kill_and_wait().killed());
    assert_eq!(
        entries(dir.path()),
        ["server"],
        "a killed listener leaves its FIFO"
    );
    std::thread::sleep(ipc_fifo::STALE_AFTER);

    // bind says what is there and what takes it over; it removes nothing.
    let e = Listener::bind(&path).map(drop).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("bind_reclaiming"), "{e}");
    assert_eq!(entries(dir.path()), ["server"]);

    // Reclaimed: a new listener there serves a client.
    let mut listener = Listener::bind_reclaiming(&path).unwrap();
    let p = path.clone();
    let client = std::thread::spawn(move || {
        let mut c = ConnectOptions::new()
            .timeout(Duration::from_secs(3600))
            .connect(&p)
            .unwrap();
        c.sender().send(b"again").unwrap();
        let mut buf = [0u8; 64];
        let n = c.receiver().recv(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    let mut conn = listener.accept_timeout(watchdog()).unwrap();
    let mut buf = [0u8; 64];
    let n = conn.receiver().recv(&mut buf).unwrap();
    conn.sender().send(&answer(&buf[..n])).unwrap();
    assert_eq!(
        within_watchdog("reply", move || client.join().unwrap()),
        answer(b"again")
    );
    drop((conn, listener));
    assert_eq!(entries(dir.path()), Vec::<String>::new());

    // A live listener's FIFO, however old: refused, and that listener still serves.
    let mut live = spawn("bind_and_park")
        .arg(format!("{} serve", path.display()))
        .start();
    live.wait_checkpoint("bound");
    std::thread::sleep(ipc_fifo::STALE_AFTER);
    let e = Listener::bind_reclaiming(&path).map(drop).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let mut c = ConnectOptions::new()
        .timeout(Duration::from_secs(3600))
        .connect(&path)
        .unwrap();
    c.sender().send(b"still there").unwrap();
    let n = c.receiver().recv_timeout(&mut buf, watchdog()).unwrap();
    assert_eq!(buf[..n], answer(b"still there"));
    live.wait_checkpoint("served");
    live.kill_and_wait();
    drop(c);
    std::fs::remove_file(&path).unwrap();

    // Not a FIFO: left alone.
    std::fs::write(&path, b"data").unwrap();
    let e = Listener::bind_reclaiming(&path).map(drop).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
    std::fs::remove_file(&path).unwrap();

    // Another user's FIFO nobody reads: left alone (root can make one to try).
    if rustix::process::geteuid().is_root() {
        let other = Fifo::create(&path).unwrap().keep();
        rustix::fs::chown(&other, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
        std::thread::sleep(ipc_fifo::STALE_AFTER);
        let e = Listener::bind_reclaiming(&path).map(drop).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert!(path.symlink_metadata().is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}

/// Binds racing for one dead listener's FIFO take turns: however they interleave, exactly one
/// gets a listener, the others `AlreadyExists`, and the winner's FIFO is the one at the path
/// (a client reaches it). Without the turns, a second reclaimer could unlink the first one's
/// new FIFO and leave it listening on a FIFO with no name.
#[test]
fn binds_racing_to_reclaim_one_fifo_leave_one_listener_with_its_name() {
    const RACERS: usize = 4;
    for round in 0..3 {
        let dir = scratch();
        let path = dir.join("server");
        let mut dead = spawn("bind_and_park").arg(path.to_str().unwrap()).start();
        dead.wait_checkpoint("bound");
        assert!(dead.kill_and_wait().killed());
        std::thread::sleep(ipc_fifo::STALE_AFTER);
        let start = std::sync::Arc::new(std::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    Listener::bind_reclaiming(&path)
                })
            })
            .collect();
        let mut won = Vec::new();
        for r in racers {
            match within_watchdog("a racing bind", move || r.join().unwrap()) {
                Ok(l) => won.push(l),
                Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "round {round}: {e}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: one bind wins");
        let mut listener = won.pop().unwrap();
        let p = path.clone();
        let client = std::thread::spawn(move || {
            let mut c = ConnectOptions::new()
                .timeout(Duration::from_secs(3600))
                .connect(&p)
                .unwrap();
            c.sender().send(b"winner").unwrap();
        });
        let mut conn = listener.accept_timeout(watchdog()).unwrap();
        let mut buf = [0u8; 16];
        let n = conn.receiver().recv_timeout(&mut buf, watchdog()).unwrap();
        assert_eq!(&buf[..n], b"winner", "round {round}");
        within_watchdog("client", move || client.join().unwrap());
        drop((conn, listener));
        assert_eq!(entries(dir.path()), Vec::<String>::new());
    }
}

/// A connection whose two sides were given different maxima (the client 1,000 bytes, the
/// server the default 16 MiB): each direction has one writer, so a message above a side's
/// maximum is one `MessageTooLarge` naming both sizes for that side and is dropped, and the
/// message after it arrives, as on a stream socket. Fails on the old code, where the client's
/// maximum, at most that of atomic records, made its receiver take a frame above `PIPE_BUF`
/// for interleaved writers' bytes: `Corrupted` for good, "after" and every later reply lost.
#[test]
fn a_side_with_a_smaller_maximum_drops_only_the_messages_above_it() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let p = path.clone();
    let client = std::thread::spawn(move || {
        let mut conn = ConnectOptions::new()
            .timeout(watchdog())
            .max_message(1000)
            .connect(&p)
            .unwrap();
        let mut buf = vec![0u8; 1000];
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(match conn.recv(&mut buf) {
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(e) => Err((e.kind(), e.message_size(), e.to_string())),
            });
        }
        // The server's turn to receive one above its own maximum never comes: it has the
        // larger one. The client's request goes through whole.
        conn.send(b"done").unwrap();
        got
    });
    let mut conn = listener.accept_timeout(watchdog()).unwrap();
    conn.send(b"before").unwrap();
    conn.send(&[7u8; 5000]).unwrap();
    conn.send(&[8u8; 100_000]).unwrap();
    conn.send(b"after").unwrap();
    conn.send(&[9u8; 1000]).unwrap();
    let got = within_watchdog("client", move || client.join().unwrap());
    let kinds: Vec<_> = got
        .iter()
        .map(|r| match r {
            Ok(m) => Ok(m.clone()),
            Err((k, size, _)) => Err((*k, *size)),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            Ok(b"before".to_vec()),
            Err((ErrorKind::MessageTooLarge, Some((5000, 1000)))),
            Err((ErrorKind::MessageTooLarge, Some((100_000, 1000)))),
            Ok(b"after".to_vec()),
        ],
        "{got:?}"
    );
    let request = within_watchdog("server recv", move || {
        let mut buf = [0u8; 16];
        let n = conn.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    assert_eq!(request, b"done");
}
