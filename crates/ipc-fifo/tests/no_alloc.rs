//! The expected path of every FIFO endpoint allocates nothing: a `try_send` on a full FIFO, a
//! `try_recv` on an empty one and their timed-out forms (senders and receivers, atomic and
//! stream, both directions of a duplex [`Connection`], a listener with no client, and the raw
//! ends' `*_deadline` calls), while the error still names the FIFO's path when displayed.

use std::time::Duration;

use ipc_fifo::prelude::*;
use ipc_fifo::{Connection, Fifo, FifoReader, FifoWriter, Listener, OpenOptions};
use ipc_testkit::TempDir;
use ipc_testkit::alloc::{
    Counting, allocations, check_expected, empty_receiver_does_not_allocate,
    full_sender_does_not_allocate,
};

#[global_allocator]
static ALLOC: Counting = Counting;

const MSG: [u8; 1000] = [7; 1000];
const SHORT: Duration = Duration::from_millis(2);

/// An open FIFO in a private directory: reader first, so neither open waits.
fn ends(dir: &TempDir) -> (FifoReader, FifoWriter, Fifo) {
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let now = OpenOptions::new().wait(Deadline::Now).clone();
    let r = now.open_read(&fifo).unwrap();
    let w = now.open_write(&fifo).unwrap();
    r.set_nonblocking(false).unwrap();
    w.set_nonblocking(false).unwrap();
    (r, w, fifo)
}

#[test]
fn atomic_and_stream_senders_and_receivers() {
    for atomic in [true, false] {
        let dir = TempDir::new("fifo-no-alloc");
        let (r, w, fifo) = ends(&dir);
        let name = fifo.path().display().to_string();
        let (mut tx, mut rx) = if atomic {
            (
                w.into_atomic_sender().unwrap(),
                r.into_atomic_receiver().unwrap(),
            )
        } else {
            (
                w.into_stream_sender(1 << 20).unwrap(),
                r.into_receiver(1 << 20).unwrap(),
            )
        };
        empty_receiver_does_not_allocate(&mut rx, &name);
        full_sender_does_not_allocate(&mut tx, &MSG, &name);
    }
}

#[test]
fn raw_ends_with_deadlines() {
    let dir = TempDir::new("fifo-no-alloc-raw");
    let (mut r, mut w, fifo) = ends(&dir);
    let name = fifo.path().display().to_string();
    let mut buf = [0u8; 64];
    let mut errs = Vec::with_capacity(4);
    let n = allocations(|| {
        errs.push(r.read_deadline(&mut buf, Deadline::Now).unwrap_err());
        errs.push(
            r.read_deadline(&mut buf, Deadline::after(SHORT))
                .unwrap_err(),
        );
    });
    assert_eq!(n, 0);
    while w.write_deadline(&MSG, Deadline::Now).is_ok() {}
    let n = allocations(|| {
        errs.push(w.write_deadline(&MSG, Deadline::Now).unwrap_err());
        errs.push(w.write_deadline(&MSG, Deadline::after(SHORT)).unwrap_err());
    });
    assert_eq!(n, 0);
    let kinds = [ErrorKind::WouldBlock, ErrorKind::TimedOut];
    for (e, kind) in errs.iter().zip(kinds.into_iter().cycle()) {
        check_expected(e, kind, &name);
    }
}

#[test]
fn duplex_connection_both_ways_and_an_idle_listener() {
    let dir = TempDir::new("fifo-no-alloc-duplex");
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let listener_name = path.display().to_string();
    let mut errs = Vec::with_capacity(2);
    let n = allocations(|| {
        errs.push(listener.accept_deadline(Deadline::Now).unwrap_err());
        errs.push(listener.accept_timeout(SHORT).unwrap_err());
    });
    assert_eq!(n, 0, "an idle accept allocated {n} times");
    check_expected(&errs[0], ErrorKind::WouldBlock, &listener_name);
    check_expected(&errs[1], ErrorKind::TimedOut, &listener_name);

    let client_path = path.clone();
    let client = std::thread::spawn(move || Connection::connect(&client_path).unwrap());
    let mut server = listener.accept().unwrap();
    let mut client = client.join().unwrap();
    // Each direction is named after the FIFO it runs through, beside the listener's path.
    empty_receiver_does_not_allocate(&mut server, &listener_name);
    empty_receiver_does_not_allocate(&mut client, &listener_name);
    full_sender_does_not_allocate(&mut client, &MSG, &listener_name);
    full_sender_does_not_allocate(&mut server, &MSG, &listener_name);
}
