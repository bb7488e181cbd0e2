//! Frames above the receiver's maximum through every read path of `FrameReceiver` (small
//! messages read several at a time, the rest of a message of 4 KiB or more read straight into
//! the caller's buffer, the prefix-first `readv` after a message of 32 KiB or more), under
//! every read-ahead policy and receive form: each is one `MessageTooLarge` naming its size,
//! then the message after it, also when the caller's buffer is too small for that message at
//! first (`MessageTooLarge` naming the buffer, kept).

use std::os::fd::OwnedFd;

use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender, ReadAhead};
use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_testkit::within_watchdog;

/// The receiver's largest message.
const MAX: usize = 64 << 10;

/// Message sizes; those above [`MAX`] are dropped. Small and direct-read sizes after a large
/// message, prefix-first sizes after each other, oversized ones back to back, one of exactly
/// `MAX + 1`, one just above an atomic record.
const SIZES: [usize; 16] = [
    40_000,
    100_000,
    3000,
    50_000,
    MAX + 1,
    5000,
    40_000,
    200_000,
    MAX + 1,
    7,
    0,
    4093,
    40_000,
    1 << 20,
    12,
    MAX,
];

/// Message `i` of `len` bytes: every byte depends on both, so a torn or shifted message shows.
fn msg(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j * 31 + i * 7 + 1) as u8).collect()
}

/// How the test receives.
#[derive(Clone, Copy, Debug)]
enum Form {
    Blocking,
    Timeout,
    Try,
}

fn recv(rx: &mut FrameReceiver<OwnedFd>, buf: &mut [u8], form: Form) -> ipc_core::Result<usize> {
    match form {
        Form::Blocking => rx.recv(buf),
        Form::Timeout => rx.recv_deadline(buf, Deadline::after(ipc_testkit::watchdog())),
        Form::Try => loop {
            match rx.try_recv(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    ipc_core::fd::wait(
                        std::os::fd::AsFd::as_fd(rx.get_ref()),
                        ipc_core::fd::Interest::Readable,
                        Deadline::Never,
                    )
                    .unwrap();
                }
                r => break r,
            }
        },
    }
}

#[test]
fn every_read_path_drops_frames_above_the_maximum_and_goes_on() {
    for policy in [ReadAhead::Adaptive, ReadAhead::Always, ReadAhead::Never] {
        for form in [Form::Blocking, Form::Timeout, Form::Try] {
            within_watchdog("a receiver", move || one(policy, form));
        }
    }
}

fn one(policy: ReadAhead, form: Form) {
    let what = format!("{policy:?} {form:?}");
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut tx = FrameSender::new(
        w,
        FrameMode::Stream {
            max_message: 1 << 20,
        },
        "pipe",
    )
    .unwrap();
    let mut rx = FrameReceiver::new(r, MAX, "pipe").unwrap();
    rx.set_read_ahead(policy);
    let writer = std::thread::spawn(move || {
        for (i, &len) in SIZES.iter().enumerate() {
            tx.send(&msg(i, len)).unwrap();
        }
    });
    let mut buf = vec![0u8; MAX];
    let mut after_drop = false;
    for (i, &len) in SIZES.iter().enumerate() {
        if len > MAX {
            let e = recv(&mut rx, &mut buf, form).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{what} #{i}: {e}");
            assert_eq!(e.message_size(), Some((len, MAX)), "{what} #{i}: {e}");
            after_drop = true;
            continue;
        }
        if after_drop && len > 10 {
            // A buffer too small for the message after a dropped one: kept for a larger one.
            let e = recv(&mut rx, &mut buf[..10], form).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{what} #{i}: {e}");
            assert_eq!(e.message_size(), Some((len, 10)), "{what} #{i}: {e}");
        }
        after_drop = false;
        let n = recv(&mut rx, &mut buf, form).unwrap_or_else(|e| panic!("{what} #{i}: {e}"));
        assert_eq!(n, len, "{what} #{i}");
        assert!(buf[..n] == msg(i, len)[..], "{what} #{i}: torn or shifted");
    }
    writer.join().unwrap();
    let e = recv(&mut rx, &mut buf, form).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}");
}

/// A length prefix of `MAX_DROPPED_FRAME` (the largest a decoder drops) is one
/// `MessageTooLarge` naming it, allocates nothing for it, and the writer closing with the
/// frame unfinished is `Disconnected` saying how much never came; one of `u32::MAX` (no sender
/// makes one; a hostile writer, or bytes of text, can) is `Corrupted`, for good.
#[test]
fn the_largest_dropped_prefix_is_dropped_and_its_end_says_so_and_u32_max_is_corrupted() {
    use ipc_core::frame::MAX_DROPPED_FRAME;
    for form in [Form::Blocking, Form::Timeout, Form::Try] {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut rx = FrameReceiver::new(r, MAX, "pipe").unwrap();
        let mut wire = (MAX_DROPPED_FRAME as u32).to_le_bytes().to_vec();
        wire.extend_from_slice(&[9; 1000]);
        assert_eq!(rustix::io::write(&w, &wire).unwrap(), wire.len());
        drop(w);
        let mut buf = vec![0u8; MAX];
        let e = recv(&mut rx, &mut buf, form).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{form:?}: {e}");
        assert_eq!(e.message_size(), Some((MAX_DROPPED_FRAME, MAX)), "{e}");
        let e = recv(&mut rx, &mut buf, form).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{form:?}: {e}");
        let never = MAX_DROPPED_FRAME - 1000;
        assert!(
            e.to_string().contains(&format!("{never} of its bytes")),
            "{e}"
        );

        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut rx = FrameReceiver::new(r, MAX, "pipe").unwrap();
        let mut wire = u32::MAX.to_le_bytes().to_vec();
        wire.extend_from_slice(&[9; 1000]);
        assert_eq!(rustix::io::write(&w, &wire).unwrap(), wire.len());
        drop(w);
        for _ in 0..2 {
            let e = recv(&mut rx, &mut buf, form).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{form:?}: {e}");
        }
    }
}
