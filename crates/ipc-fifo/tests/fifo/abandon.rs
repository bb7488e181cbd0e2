//! A server that gives up a handshake after it read the hello (its handshake timeout
//! passed) never leaves the client waiting: the client of that hello is told, whatever
//! deadline it connects with. A client that probes with
//! `Deadline::Now` leaves the server nothing to trip over.

use std::path::Path;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver};
use ipc_fifo::{ConnectOptions, Connection, Listener};
use ipc_testkit::{Ctx, spawn};
use rustix::fs::{CWD, Mode, OFlags, openat};

use crate::scratch;

/// Role: `path`: connects without a deadline. The server gives its handshake up: the
/// connect fails with `Disconnected`, or (if it caught the server's ends in time) the
/// connection it made is disconnected at once.
pub(crate) fn connect_without_deadline(ctx: &Ctx) {
    match Connection::connect(ctx.arg()) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}"),
        Ok(mut conn) => {
            let e = conn.recv(&mut [0; 16]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        }
    }
}

/// Bytes queued in the FIFO at `path`, seen through a reader of our own that takes none.
fn queued(path: &Path) -> u64 {
    let peek = openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    rustix::io::ioctl_fionread(&peek).unwrap()
}

#[test]
fn a_client_whose_handshake_the_server_gave_up_is_told_not_left_waiting() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    // Every handshake is given up as soon as it is checked (unless the client was quicker).
    listener.handshake_timeout(Duration::ZERO);
    let client = spawn("connect_without_deadline")
        .arg(path.to_str().unwrap())
        .start();
    // Wait for the hello, then accept it: the accept reads it, opens the client's pair and
    // gives up before the client opened its end (or, rarely, finishes).
    let deadline = Deadline::after(ipc_testkit::watchdog());
    while queued(&path) == 0 {
        assert!(!deadline.has_passed(), "no hello came");
        std::thread::sleep(Duration::from_millis(1));
    }
    match listener.accept_deadline(Deadline::Now) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
        Ok(conn) => drop(conn),
    }
    // The listener stays open (its end is what a client watches for a server that died):
    // the client must learn of the abandoned handshake some other way.
    client.wait_success();
    drop(listener);
}

/// Role: `path`: probes the listener at `path` with `Deadline::Now`: a server is there, so
/// the answer is `WouldBlock` (a missing server is `NoPeer`).
pub(crate) fn probe_now(ctx: &Ctx) {
    let e = ConnectOptions::new()
        .deadline(Deadline::Now)
        .connect(ctx.arg())
        .map(drop)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
}

/// "With `Deadline::Now` a missing server is `NoPeer` at once; [...] use it only to probe":
/// a probe of a listening server must tell it from a missing one, and leave nothing for the
/// server to trip over. Before the fix the probe sent its hello, gave up for want of an
/// answer and said `NoPeer`, as for no server at all; the server's next `accept` then took
/// the stale hello and failed with `NotFound` for the pair the probe had removed.
#[test]
fn a_probe_with_deadline_now_tells_a_listening_server_and_leaves_it_nothing() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    spawn("probe_now")
        .arg(path.to_str().unwrap())
        .start()
        .wait_success();
    assert_eq!(crate::entries(dir.path()), ["server"]);
    let e = listener.accept_deadline(Deadline::Now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    drop(listener);
    // The FIFO with no server reading it: NoPeer.
    let _fifo = ipc_fifo::Fifo::create(&path).unwrap();
    let e = ConnectOptions::new()
        .deadline(Deadline::Now)
        .connect(&path)
        .map(drop)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoPeer, "{e}");
}
