//! The expected path of every pipe endpoint allocates nothing: a `try_send` on a full pipe, a
//! `try_recv` on an empty one and their timed-out forms (message senders and receivers, atomic
//! and stream, the duplex channel, and the raw ends' `*_deadline` calls), while the error
//! still names the pipe when it is displayed.

use std::time::Duration;

use ipc_pipe::prelude::*;
use ipc_pipe::{FrameMode, PipeReader, PipeWriter, duplex_channel};
use ipc_testkit::alloc::{
    Counting, allocations, check_expected, empty_receiver_does_not_allocate,
    full_sender_does_not_allocate,
};

#[global_allocator]
static ALLOC: Counting = Counting;

const MSG: [u8; 1000] = [7; 1000];
const SHORT: Duration = Duration::from_millis(2);

#[test]
fn message_channels_atomic_and_stream() {
    for mode in [
        FrameMode::Atomic,
        FrameMode::Stream {
            max_message: 1 << 20,
        },
    ] {
        let (mut tx, mut rx) = ipc_pipe::channel(mode).unwrap();
        empty_receiver_does_not_allocate(&mut rx, "pipe:[");
        full_sender_does_not_allocate(&mut tx, &MSG, "pipe:[");
    }
}

#[test]
fn duplex_channels() {
    let (mut a, mut b) = duplex_channel(FrameMode::default()).unwrap();
    empty_receiver_does_not_allocate(&mut a, "pipe:[");
    full_sender_does_not_allocate(&mut b, &MSG, "pipe:[");
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
        check_expected(&e, kind, "pipe:[");
    }
}
