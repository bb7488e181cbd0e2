//! A SIGKILL at every step of opening, using and closing each end, for plain FIFO ends and for
//! both sides of the duplex handshake: the survivor never hangs (every wait is under the
//! watchdog), gets a typed error or the messages completed before the kill (never a partial
//! one), stays usable, and nothing is left behind that `remove_stale` and the test's directory
//! guard do not remove. `IPC_SOAK=1` repeats every case 20 times.

use std::path::Path;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::{ConnectOptions, Connection, Fifo, FifoReader, Listener, OpenOptions};
use ipc_testkit::{Ctx, spawn, within_watchdog};

use crate::{entries, scratch};

const BIG: usize = 1 << 20;

fn rounds() -> usize {
    if crate::soak() { 20 } else { 1 }
}

/// Waits until the pipe behind `fd` holds at least `bytes`.
fn wait_until_queued(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) {
    let fd = fd.try_clone_to_owned().unwrap();
    within_watchdog("the FIFO to fill", move || {
        while (rustix::io::ioctl_fionread(&fd).unwrap() as usize) < bytes {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Plain ends.

const WRITER_STEPS: [&str; 5] = ["opening", "opened", "mid-message", "sent", "closed"];

/// Role: `path step`: a writer that goes as far as `step` and parks there (or, for `opening`,
/// reports the step and blocks in a bounded open that no reader ever answers).
pub(crate) fn writer_steps(ctx: &Ctx) {
    let a = ctx.args();
    let (path, step) = (a[0], a[1]);
    if step == "opening" {
        ctx.checkpoint("opening");
        let r = OpenOptions::new()
            .timeout(Duration::from_secs(3600))
            .open_write(path);
        panic!("the open returned with no reader: {r:?}");
    }
    let w = OpenOptions::new()
        .timeout(ipc_testkit::watchdog())
        .open_write(path)
        .unwrap();
    if step == "opened" {
        ctx.park("opened");
    }
    let mut tx = w.into_stream_sender(BIG).unwrap();
    if step == "mid-message" {
        ctx.checkpoint("mid-message");
        tx.send(&vec![7; BIG]).unwrap();
        panic!("a 1 MiB send into a FIFO nobody reads returned");
    }
    tx.send(b"complete").unwrap();
    if step == "closed" {
        drop(tx);
    }
    ctx.park(step);
}

fn reader(fifo: &Fifo) -> FifoReader {
    let r = OpenOptions::new()
        .wait(Deadline::Now)
        .open_read(fifo)
        .unwrap();
    r.set_nonblocking(false).unwrap();
    r
}

/// The FIFO still works: a new writer's message arrives through a new reader.
fn still_works(fifo: &Fifo) {
    let r = reader(fifo);
    let mut tx = OpenOptions::new()
        .nonblocking(true)
        .open_write(fifo)
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    tx.send(b"after").unwrap();
    drop(tx);
    let mut rx = r.into_receiver(64).unwrap();
    let got = within_watchdog("recv after", move || {
        let mut b = [0u8; 64];
        let n = rx.recv(&mut b).unwrap();
        (b[..n].to_vec(), rx.recv(&mut b).unwrap_err().kind())
    });
    assert_eq!(got, (b"after".to_vec(), ErrorKind::Disconnected));
}

#[test]
fn a_writer_killed_at_any_step_is_a_disconnect_never_a_partial_message_or_a_hang() {
    for _ in 0..rounds() {
        for step in WRITER_STEPS {
            let dir = scratch();
            let fifo = Fifo::create(dir.join("f")).unwrap();
            // For `opening` no reader is there while the writer waits.
            let r = (step != "opening").then(|| reader(&fifo));
            let mut child = spawn("writer_steps")
                .arg(format!("{} {step}", fifo.path().display()))
                .start();
            child.wait_checkpoint(step);
            if let (Some(r), "mid-message") = (&r, step) {
                wait_until_queued(std::os::fd::AsFd::as_fd(r), r.capacity().unwrap());
            }
            assert!(child.kill_and_wait().killed(), "{step}");
            if let Some(r) = r {
                let (msgs, end) = ipc_testkit::drain(r.into_receiver(BIG).unwrap(), BIG);
                assert_eq!(end.kind(), ErrorKind::Disconnected, "{step}: {end}");
                let want: &[&[u8]] = match step {
                    "sent" | "closed" => &[b"complete"],
                    _ => &[],
                };
                assert_eq!(msgs, want, "{step}");
                if step == "mid-message" {
                    assert!(
                        end.to_string().contains("partial message was dropped"),
                        "{end}"
                    );
                }
            }
            still_works(&fifo);
        }
    }
}

const READER_STEPS: [&str; 3] = ["opening", "opened", "reading"];

/// Role: `path step`: a reader that goes as far as `step` and parks there (`opening`: blocked
/// in a bounded open that no writer answers; `reading`: has received one message).
pub(crate) fn reader_steps(ctx: &Ctx) {
    let a = ctx.args();
    let (path, step) = (a[0], a[1]);
    if step == "opening" {
        ctx.checkpoint("opening");
        let r = OpenOptions::new()
            .timeout(Duration::from_secs(3600))
            .open_read(path);
        panic!("the open returned with no writer: {r:?}");
    }
    // `opened` does not wait for the writer; `reading` does (a reader that opened before any
    // writer came would read end-of-file).
    let wait = if step == "opened" {
        Deadline::Now
    } else {
        Deadline::after(ipc_testkit::watchdog())
    };
    let r = OpenOptions::new().wait(wait).open_read(path).unwrap();
    r.set_nonblocking(false).unwrap();
    if step == "opened" {
        ctx.park("opened");
    }
    let mut rx = r.into_atomic_receiver().unwrap();
    rx.recv(&mut [0u8; 4092]).unwrap();
    ctx.park("reading");
}

#[test]
fn a_reader_killed_at_any_step_is_a_disconnect_for_the_writer_never_a_hang() {
    for _ in 0..rounds() {
        for step in READER_STEPS {
            let dir = scratch();
            let fifo = Fifo::create(dir.join("f")).unwrap();
            let mut child = spawn("reader_steps")
                .arg(format!("{} {step}", fifo.path().display()))
                .start();
            if step == "opening" {
                child.wait_checkpoint("opening");
                assert!(child.kill_and_wait().killed());
                // Nothing holds a read end now: a writer that may not wait is told so.
                let e = OpenOptions::new()
                    .nonblocking(true)
                    .open_write(&fifo)
                    .map(drop)
                    .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NoPeer, "{e}");
                continue;
            }
            let p = fifo.path().to_path_buf();
            let mut tx = within_watchdog("open for writing", move || {
                OpenOptions::new()
                    .timeout(ipc_testkit::watchdog())
                    .open_write(&p)
                    .unwrap()
                    .into_atomic_sender()
                    .unwrap()
            });
            if step == "reading" {
                tx.send(b"one").unwrap();
            }
            child.wait_checkpoint(step);
            assert!(child.kill_and_wait().killed(), "{step}");
            let e = within_watchdog("send after the kill", move || {
                loop {
                    if let Err(e) = tx.send(&[1; 4000]) {
                        return e;
                    }
                }
            });
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{step}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The duplex handshake, client side: the protocol by hand, so the client can stop between
// any two of its steps (see the `duplex` module docs).

const CLIENT_STEPS: [&str; 7] = [
    "listener-open",
    "pair-created",
    "s2c-open",
    "hello-sent",
    "c2s-open",
    "connected",
    "mid-message",
];

/// Role: `path step`: a client that goes as far as `step` and parks.
pub(crate) fn client_steps(ctx: &Ctx) {
    let a = ctx.args();
    let (path, step) = (Path::new(a[0]), a[1]);
    if step == "connected" || step == "mid-message" {
        let mut conn = ConnectOptions::new()
            .timeout(ipc_testkit::watchdog())
            .connect(path)
            .unwrap();
        if step == "mid-message" {
            ctx.checkpoint("mid-message");
            conn.send(&vec![9; BIG]).unwrap();
            panic!("a 1 MiB send nobody reads returned");
        }
        ctx.park("connected");
    }
    let mut hello_tx = OpenOptions::new()
        .open_write(path)
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    if step == "listener-open" {
        ctx.park(step);
    }
    let id = format!("{}.0", std::process::id());
    let c2s = Fifo::create(format!("{}.{id}.c2s", path.display())).unwrap();
    let s2c = Fifo::create(format!("{}.{id}.s2c", path.display())).unwrap();
    let _names = (c2s.keep(), s2c.keep()); // a SIGKILL runs no guard either
    let s2c = format!("{}.{id}.s2c", path.display());
    let c2s = format!("{}.{id}.c2s", path.display());
    if step == "pair-created" {
        ctx.park(step);
    }
    let _r = OpenOptions::new()
        .nonblocking(true)
        .open_read(&s2c)
        .unwrap();
    if step == "s2c-open" {
        ctx.park(step);
    }
    hello_tx.send(format!("IFH\x01{id}").as_bytes()).unwrap();
    if step == "hello-sent" {
        ctx.park(step);
    }
    let _w = OpenOptions::new()
        .timeout(ipc_testkit::watchdog())
        .open_write(&c2s)
        .unwrap();
    ctx.park("c2s-open");
}

#[test]
fn a_client_killed_at_any_handshake_step_never_hangs_or_breaks_the_listener() {
    for _ in 0..rounds() {
        for step in CLIENT_STEPS {
            let dir = scratch();
            let path = dir.join("server");
            let listener = Listener::bind(&path).unwrap();
            let mut child = spawn("client_steps")
                .arg(format!("{} {step}", path.display()))
                .start();
            // From `c2s-open` on the client needs the server: accept runs beside it.
            let needs_server = matches!(step, "c2s-open" | "connected" | "mid-message");
            let (listener, accepting) = if needs_server {
                let t = std::thread::spawn(move || {
                    let mut listener = listener;
                    let r = listener.accept_timeout(ipc_testkit::watchdog());
                    (listener, r)
                });
                (None, Some(t))
            } else {
                (Some(listener), None)
            };
            child.wait_checkpoint(step);
            let mut listener = match accepting {
                None => {
                    let listener = listener.expect("kept when not accepting");
                    assert!(child.kill_and_wait().killed());
                    listener_after_kill(listener, step)
                }
                Some(t) => {
                    let (listener, conn) = t.join().unwrap();
                    let conn = conn.unwrap_or_else(|e| panic!("{step}: accept: {e}"));
                    let (_tx, rx) = conn.split();
                    if step == "mid-message" {
                        wait_until_queued(
                            std::os::fd::AsFd::as_fd(&rx),
                            rx.get_ref().capacity().unwrap(),
                        );
                    }
                    assert!(child.kill_and_wait().killed());
                    let mut rx = rx;
                    let e = within_watchdog("recv from a killed client", move || {
                        rx.recv(&mut vec![0; 16 << 20]).unwrap_err()
                    });
                    assert_eq!(e.kind(), ErrorKind::Disconnected, "{step}: {e}");
                    listener
                }
            };
            listener.remove_stale().unwrap();
            assert_eq!(entries(dir.path()), ["server"], "{step}: leftovers");
            // The listener serves the next client.
            let p = path.clone();
            let client = std::thread::spawn(move || {
                let mut c = ConnectOptions::new()
                    .timeout(ipc_testkit::watchdog())
                    .connect(&p)
                    .unwrap();
                c.send(b"next").unwrap();
            });
            let (mut conn, _listener) = within_watchdog("next accept", move || {
                (
                    listener.accept_timeout(ipc_testkit::watchdog()).unwrap(),
                    listener,
                )
            });
            let mut b = [0u8; 8];
            assert_eq!(conn.recv(&mut b).unwrap(), 4, "{step}");
            client.join().unwrap();
        }
    }
}

/// After a client died before the server took part: `accept` either finds no hello (it times
/// out) or fails on the dead client's hello with a typed error; it never hangs.
fn listener_after_kill(listener: Listener, step: &str) -> Listener {
    let step = step.to_owned();
    within_watchdog("accept after the kill", move || {
        let mut listener = listener;
        match listener.accept_timeout(Duration::from_millis(100)) {
            Ok(_) => panic!("{step}: accepted a dead client"),
            Err(e) => {
                let ok = match step.as_str() {
                    "listener-open" | "pair-created" | "s2c-open" => {
                        e.kind() == ErrorKind::TimedOut
                    }
                    _ => matches!(e.kind(), ErrorKind::Disconnected | ErrorKind::NoPeer),
                };
                assert!(ok, "{step}: {e}");
            }
        }
        listener
    })
}

// ---------------------------------------------------------------------------------------------
// The duplex handshake, server side.

const SERVER_STEPS: [&str; 5] = [
    "listening",
    "hello-read",
    "s2c-open",
    "c2s-open",
    "mid-message",
];

/// Role: `path step`: a server on the FIFO the parent made, by hand up to `c2s-open` (in the
/// order `accept` takes the steps), with the real `Listener` for `mid-message`; parks at
/// `step`.
pub(crate) fn server_steps(ctx: &Ctx) {
    let a = ctx.args();
    let (path, step) = (Path::new(a[0]), a[1]);
    if step == "mid-message" {
        let fifo = Fifo::create(path).unwrap();
        let mut listener = Listener::from_fifo(fifo).unwrap();
        ctx.checkpoint("bound");
        let mut conn = listener.accept_timeout(ipc_testkit::watchdog()).unwrap();
        ctx.checkpoint("mid-message");
        conn.send(&vec![5; BIG]).unwrap();
        panic!("a 1 MiB send nobody reads returned");
    }
    let r = OpenOptions::new()
        .wait(Deadline::Now)
        .keep_open(true)
        .open_read(path)
        .unwrap();
    r.set_nonblocking(false).unwrap();
    let mut rx = r.into_atomic_receiver().unwrap();
    if step == "listening" {
        ctx.park(step);
    }
    ctx.checkpoint("bound");
    let mut buf = [0u8; 4092];
    let n = rx.recv(&mut buf).unwrap();
    let id = std::str::from_utf8(&buf[4..n]).unwrap().to_owned();
    if step == "hello-read" {
        ctx.park(step);
    }
    // The order `accept` opens them in: s2c's write end first, then c2s's read end.
    let _s2c = OpenOptions::new()
        .nonblocking(true)
        .open_write(format!("{}.{id}.s2c", path.display()))
        .unwrap();
    if step == "s2c-open" {
        ctx.park(step);
    }
    let _c2s = OpenOptions::new()
        .wait(Deadline::Now)
        .open_read(format!("{}.{id}.c2s", path.display()))
        .unwrap();
    ctx.park("c2s-open");
}

#[test]
fn a_server_killed_at_any_handshake_step_never_hangs_the_client() {
    for _ in 0..rounds() {
        for step in SERVER_STEPS {
            let dir = scratch();
            let path = dir.join("server");
            // The hand-rolled server reads a FIFO made here; the real listener makes its own.
            let fifo = (step != "mid-message").then(|| Fifo::create(&path).unwrap());
            let mut child = spawn("server_steps")
                .arg(format!("{} {step}", path.display()))
                .start();
            if step == "listening" {
                child.wait_checkpoint(step);
                assert!(child.kill_and_wait().killed());
                let e = ConnectOptions::new()
                    .deadline(Deadline::Now)
                    .connect(&path)
                    .map(drop)
                    .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NoPeer, "{e}");
                assert_eq!(entries(dir.path()), ["server"]);
                continue;
            }
            child.wait_checkpoint("bound");
            let p = path.clone();
            let client = std::thread::spawn(move || {
                ConnectOptions::new()
                    .timeout(ipc_testkit::watchdog())
                    .connect(&p)
            });
            child.wait_checkpoint(step);
            let conn: Option<Connection> = if step == "mid-message" {
                // Connected: the server is blocked sending to us; we do not read yet.
                let conn = client.join().unwrap().unwrap();
                let (tx, rx) = conn.split();
                wait_until_queued(
                    std::os::fd::AsFd::as_fd(&rx),
                    rx.get_ref().capacity().unwrap(),
                );
                assert!(child.kill_and_wait().killed());
                Some(Connection::from_parts(tx, rx))
            } else {
                assert!(child.kill_and_wait().killed());
                match within_watchdog("connect to a killed server", move || client.join().unwrap())
                {
                    Ok(conn) => Some(conn),
                    Err(e) => {
                        assert!(
                            matches!(e.kind(), ErrorKind::Disconnected | ErrorKind::NoPeer),
                            "{step}: {e}"
                        );
                        None
                    }
                }
            };
            if let Some(mut conn) = conn {
                let (e, mut conn) = within_watchdog("recv from a killed server", move || {
                    (conn.recv(&mut vec![0; 16 << 20]).unwrap_err(), conn)
                });
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{step}: {e}");
                let e = conn.send(b"anyone?").unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{step}: {e}");
            }
            drop(fifo);
            // The client unlinks its pair on every path out of connect.
            let left: Vec<String> = entries(dir.path())
                .into_iter()
                .filter(|n| n.ends_with(".c2s") || n.ends_with(".s2c"))
                .collect();
            assert!(left.is_empty(), "{step}: {left:?}");
        }
    }
}
