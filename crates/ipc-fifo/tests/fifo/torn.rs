//! A stream writer killed in the middle of a large message must never make a reader deliver a
//! torn message. With `keep_open` there is no end-of-file to drop the partial frame on, and
//! several writers can interleave any frame above `PIPE_BUF`: so a keep-open reader refuses to
//! become a receiver of messages larger than one atomic frame, and one that meets such a frame
//! anyway reports `Corrupted` rather than a message.

use std::os::fd::AsFd;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::{Fifo, FifoReader, MAX_ATOMIC_PAYLOAD, OpenOptions};
use ipc_testkit::script::{check_message, message};
use ipc_testkit::{Ctx, spawn, within_watchdog};

use crate::scratch;

const BIG: usize = 200_000;
const SMALL: usize = 4_000;
const SMALL_COUNT: u32 = 60;

/// Role: `path`: a stream sender sends one message of 200,000 bytes (blocks after 64 KiB
/// until killed).
pub(crate) fn big_stream_writer(ctx: &Ctx) {
    let mut tx = OpenOptions::new()
        .open_write(ctx.arg())
        .unwrap()
        .into_stream_sender(1 << 20)
        .unwrap();
    ctx.checkpoint("sending");
    tx.send(&message(1, 0, BIG)).unwrap();
    panic!("a 200,000-byte send into a full FIFO nobody reads returned");
}

/// Role: `path`: a stream sender sends 60 messages of 4,000 bytes and exits.
pub(crate) fn small_stream_writer(ctx: &Ctx) {
    let mut tx = OpenOptions::new()
        .open_write(ctx.arg())
        .unwrap()
        .into_stream_sender(1 << 20)
        .unwrap();
    for seq in 0..SMALL_COUNT {
        tx.send(&message(2, seq, SMALL)).unwrap();
    }
}

/// Waits (under the watchdog) until `reader`'s FIFO holds at least `bytes`.
fn wait_until_queued(reader: &FifoReader, bytes: usize) {
    let fd = rustix::io::fcntl_dupfd_cloexec(reader.as_fd(), 0).unwrap();
    within_watchdog("the FIFO to fill", move || {
        while (rustix::io::ioctl_fionread(&fd).unwrap() as usize) < bytes {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Writer A is killed mid-frame, then writer B starts sending its messages (the caller reads
/// them while B runs, then waits for B): the keep-open reader meets A's partial frame followed
/// by B's frames.
fn kill_a_mid_frame_then_start_b(fifo: &Fifo, reader: &FifoReader) -> ipc_testkit::Child {
    let path = fifo.path().display().to_string();
    let mut a = spawn("big_stream_writer").arg(&path).start();
    a.wait_checkpoint("sending");
    wait_until_queued(reader, reader.capacity().unwrap());
    assert!(a.kill_and_wait().killed());
    spawn("small_stream_writer").arg(&path).start()
}

#[test]
fn a_stream_writer_killed_mid_message_never_tears_a_keep_open_readers_message() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let open = || {
        let r = OpenOptions::new()
            .wait(Deadline::Now)
            .keep_open(true)
            .open_read(&fifo)
            .unwrap();
        r.set_nonblocking(false).unwrap();
        r
    };
    let reader = open();
    let probe = rustix::io::fcntl_dupfd_cloexec(reader.as_fd(), 0).unwrap();
    match reader.into_receiver(BIG) {
        Ok(mut rx) => {
            // Accepted: then the partial frame must be dropped and B's messages delivered.
            let reader_view = FifoReader::from(probe);
            let b = kill_a_mid_frame_then_start_b(&fifo, &reader_view);
            within_watchdog("B's messages", move || {
                let mut buf = vec![0; BIG];
                for seq in 0..SMALL_COUNT {
                    let n = rx
                        .recv(&mut buf)
                        .unwrap_or_else(|e| panic!("message {seq} of B: {e}"));
                    assert_ne!(n, BIG, "a torn 200,000-byte message was delivered");
                    check_message(2, seq, SMALL, &buf[..n]).unwrap();
                }
            });
            b.wait_success();
        }
        Err(e) => {
            // Refused where the combination is made, with a typed error that says why.
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("keep_open"), "{e}");
            drop(probe);
            // A receiver of atomic records on the same kind of reader meets A's oversized
            // frame: a typed error, never a message.
            let reader = open();
            let probe =
                FifoReader::from(rustix::io::fcntl_dupfd_cloexec(reader.as_fd(), 0).unwrap());
            let mut rx = reader.into_atomic_receiver().unwrap();
            let mut b = kill_a_mid_frame_then_start_b(&fifo, &probe);
            let e = within_watchdog("recv", move || {
                let mut buf = vec![0; MAX_ATOMIC_PAYLOAD];
                rx.recv(&mut buf).unwrap_err()
            });
            // B may be blocked on the full FIFO nobody reads any more.
            b.kill();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
            assert!(e.to_string().contains("PIPE_BUF"), "{e}");
        }
    }
}

/// The refusal is about the message size only: a keep-open reader still makes an atomic
/// receiver, and one that stopped keeping open may take messages of any size.
#[test]
fn keep_open_refuses_only_receivers_of_messages_above_one_atomic_frame() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let opts = OpenOptions::new()
        .wait(Deadline::Now)
        .keep_open(true)
        .clone();
    assert!(
        opts.open_read(&fifo)
            .unwrap()
            .into_receiver(MAX_ATOMIC_PAYLOAD)
            .is_ok()
    );
    let e = opts
        .open_read(&fifo)
        .unwrap()
        .into_receiver(MAX_ATOMIC_PAYLOAD + 1)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let r = opts.open_read(&fifo).unwrap();
    r.stop_keeping_open();
    let mut rx = r.into_receiver(BIG).unwrap();
    let mut w = OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap()
        .into_stream_sender(BIG)
        .unwrap();
    w.send(b"any size now").unwrap();
    let mut buf = [0u8; 32];
    assert_eq!(rx.recv(&mut buf).unwrap(), 12);
}
