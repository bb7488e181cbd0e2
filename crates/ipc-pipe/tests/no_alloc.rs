//! The expected path of every pipe endpoint allocates nothing: a `try_send` on a full pipe, a
//! `try_recv` on an empty one and their timed-out forms (message senders and receivers, atomic
//! and stream, the duplex channel, and the raw ends' `*_deadline` calls), while the error
//! still names the pipe when it is displayed.

use std::time::Duration;

use ipc_pipe::prelude::*;
use ipc_pipe::{FrameMode, PipeReader, PipeWriter, duplex_channel};
use ipc_testkit::alloc::{Counting, allocations};

#[global_allocator]
static ALLOC: Counting = Counting;

const MSG: [u8; 1000] = [7; 1000];
const SHORT: Duration = Duration::from_millis(2);

/// Sends `MSG` until the pipe is full.
fn fill(tx: &mut impl MessageSender) {
    while tx.try_send(&MSG).is_ok() {}
}

/// Checks an expected-path error: its kind, and that it names the pipe.
fn check(e: Error, kind: ErrorKind) {
    assert_eq!(e.kind(), kind, "{e}");
    assert!(e.to_string().contains("pipe:["), "{e}");
}

fn full_sender_does_not_allocate(tx: &mut impl MessageSender) {
    fill(tx);
    let mut errs = Vec::with_capacity(2);
    let n = allocations(|| {
        errs.push((tx.try_send(&MSG).unwrap_err(), ErrorKind::WouldBlock));
        errs.push((
            tx.send_timeout(&MSG, SHORT).unwrap_err(),
            ErrorKind::TimedOut,
        ));
    });
    assert_eq!(n, 0, "a full send allocated {n} times");
    for (e, kind) in errs {
        check(e, kind);
    }
}

fn empty_receiver_does_not_allocate(rx: &mut impl MessageReceiver) {
    let mut buf = vec![0; 4096];
    let mut errs = Vec::with_capacity(2);
    let n = allocations(|| {
        errs.push((rx.try_recv(&mut buf).unwrap_err(), ErrorKind::WouldBlock));
        errs.push((
            rx.recv_timeout(&mut buf, SHORT).unwrap_err(),
            ErrorKind::TimedOut,
        ));
    });
    assert_eq!(n, 0, "an empty receive allocated {n} times");
    for (e, kind) in errs {
        check(e, kind);
    }
}

#[test]
fn message_channels_atomic_and_stream() {
    for mode in [
        FrameMode::Atomic,
        FrameMode::Stream {
            max_message: 1 << 20,
        },
    ] {
        let (mut tx, mut rx) = ipc_pipe::channel(mode).unwrap();
        empty_receiver_does_not_allocate(&mut rx);
        full_sender_does_not_allocate(&mut tx);
    }
}

#[test]
fn duplex_channels() {
    let (mut a, mut b) = duplex_channel(FrameMode::default()).unwrap();
    empty_receiver_does_not_allocate(&mut a);
    full_sender_does_not_allocate(&mut b);
}

#[test]
fn raw_ends_with_deadlines() {
    let (mut r, mut w): (PipeReader, PipeWriter) = ipc_pipe::pipe().unwrap();
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
    for (e, kind) in errs.into_iter().zip(kinds.into_iter().cycle()) {
        check(e, kind);
    }
}
