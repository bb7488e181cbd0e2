//! A hostile writer process against `FrameReceiver` over a pipe and a stream socket: frames
//! trickled in pieces (the length prefix byte by byte, the payload in parts) in lockstep with
//! a receiver that keeps timing out or polling between them, then a prefix cut in the middle
//! and the writer killed.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use ipc_core::stream::FrameReceiver;
use ipc_core::{ErrorKind, MessageReceiver};
use ipc_testkit::{Ctx, roles, spawn, within_watchdog};

/// Message sizes: small, past the direct-read size, past the prefix-first size (twice, so the
/// second is read by the prefix-and-payload `readv`), and small after those.
const SIZES: [usize; 6] = [10, 5000, 40_000, 40_000, 0, 7];

/// The receiver's largest message.
const MAX: usize = 50_000;

/// Message `i` of `len` bytes: every byte depends on both, so a torn or shifted message shows.
fn msg(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j * 31 + i * 7 + 1) as u8).collect()
}

/// The frames of every message, back to back, and where each frame ends.
fn wire() -> (Vec<u8>, Vec<usize>) {
    let mut wire = Vec::new();
    let mut ends = Vec::new();
    for (i, &len) in SIZES.iter().enumerate() {
        wire.extend_from_slice(&(len as u32).to_le_bytes());
        wire.extend_from_slice(&msg(i, len));
        ends.push(wire.len());
    }
    (wire, ends)
}

/// Where the writer cuts the wire: every byte of each length prefix apart, the payload in
/// three parts (the first part a single byte).
fn pieces() -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = 0;
    for &len in &SIZES {
        for b in 1..=4 {
            cuts.push(at + b);
        }
        if len > 2 {
            cuts.push(at + 5);
            cuts.push(at + 4 + len / 2);
        }
        at += 4 + len;
        cuts.push(at);
    }
    cuts.dedup();
    cuts
}

/// Role: writes the wire to `tx` one piece at a time, each after a byte on `go`, reporting
/// each as a checkpoint; then, after one more `go`, the first 2 bytes of another prefix, and
/// parks to be killed.
fn trickler(ctx: &Ctx) {
    let mut tx = std::fs::File::from(ctx.take_fd("tx"));
    let mut go = std::fs::File::from(ctx.take_fd("go"));
    let (wire, _) = wire();
    let mut at = 0;
    for (k, cut) in pieces().into_iter().enumerate() {
        go.read_exact(&mut [0]).unwrap();
        tx.write_all(&wire[at..cut]).unwrap();
        at = cut;
        ctx.checkpoint(&format!("piece {k}"));
    }
    go.read_exact(&mut [0]).unwrap();
    tx.write_all(&[0x10, 0x00]).unwrap();
    ctx.park("cut prefix");
}

/// Drives one trickled stream: after each piece, receives until the receiver says nothing
/// complete is there (a 2 ms deadline, or `try_recv`, alternating), checking that every
/// message whose frame is complete arrives whole and in order, and none before. Then the
/// writer is killed with half a prefix written: `Disconnected`, saying so.
fn trickle_through(rx_fd: impl std::os::fd::AsFd + Send + 'static, tx_fd: OwnedFd) {
    let (go_r, go_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut child = spawn("trickler").fd("tx", &tx_fd).fd("go", &go_r).start();
    drop((tx_fd, go_r));
    let mut go = std::fs::File::from(go_w);
    let (_, ends) = wire();
    let mut rx = FrameReceiver::new(rx_fd, MAX, "trickled stream").unwrap();
    let mut buf = vec![0u8; MAX];
    let mut delivered = 0;
    let mut form = 0usize;
    for (k, cut) in pieces().into_iter().enumerate() {
        go.write_all(&[1]).unwrap();
        child.wait_checkpoint(&format!("piece {k}"));
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        loop {
            form += 1;
            let r = if form % 2 == 0 {
                rx.recv_timeout(&mut buf, std::time::Duration::from_millis(2))
            } else {
                rx.try_recv(&mut buf)
            };
            match r {
                Ok(n) => {
                    assert!(
                        delivered < complete,
                        "message {delivered} delivered after {cut} bytes, before its frame \
                         ended at {}",
                        ends[delivered]
                    );
                    assert_eq!(n, SIZES[delivered], "message {delivered}: wrong length");
                    assert!(
                        buf[..n] == msg(delivered, n)[..],
                        "message {delivered} torn"
                    );
                    delivered += 1;
                }
                Err(e) => {
                    let want = if form % 2 == 0 {
                        ErrorKind::TimedOut
                    } else {
                        ErrorKind::WouldBlock
                    };
                    assert_eq!(e.kind(), want, "after {cut} bytes: {e}");
                    assert_eq!(
                        delivered, complete,
                        "after {cut} bytes: a message is missing"
                    );
                    break;
                }
            }
        }
    }
    assert_eq!(delivered, SIZES.len());
    go.write_all(&[1]).unwrap();
    child.wait_checkpoint("cut prefix");
    // The 2 prefix bytes are there to read; the receiver must still wait for the rest.
    let e = rx
        .recv_timeout(&mut buf, std::time::Duration::from_millis(2))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(child.kill_and_wait().killed());
    let e = within_watchdog("receive after the writer was killed", move || {
        rx.recv(&mut buf).unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert!(e.to_string().contains("middle of a frame header"), "{e}");
}

/// A writer trickling frames (each prefix byte by byte, each payload in parts) against a
/// receiver that times out or polls between the pieces, over a pipe and a stream socket:
/// every deadline ends the receive with nothing delivered until the frame is complete, then
/// the message arrives whole; no receive resynchronises into the middle of a frame (the part
/// of a large message read straight into the caller's buffer is put back), on the decoder's
/// path, the direct path and the prefix-and-payload path. The writer killed after half a
/// prefix is `Disconnected` naming the cut header.
///
/// Passed on the unchanged code: it pins the promises of the receive side of `stream.rs`
/// against a hostile writer process, which were tested with threads or a single cut before.
#[test]
fn a_trickling_writer_never_gets_a_torn_or_early_message_through() {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    trickle_through(r, w);
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    trickle_through(a, OwnedFd::from(b));
}

roles!(trickler);
