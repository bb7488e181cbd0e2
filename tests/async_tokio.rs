//! Async endpoints across real processes: one tokio `select!` over a pipe, a FIFO, a POSIX
//! queue and a shm channel; a SIGKILLed peer seen as `Disconnected` in async code; sends
//! cancelled in the middle of large messages; an idle async receiver that uses no CPU.

use std::time::Duration;

mod async_support;

use async_support::{adopt_fifo, adopt_pipe, adopt_queue, adopt_shm, four_kinds, runtime};
use ipc_core::tokio::AsyncEndpoint;
use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_pipe::{FrameMode, PipeReader, PipeWriter, pipe};
use ipc_testkit::{Ctx, roles, spawn};

/// Messages each kind carries in the select test.
const COUNT: u32 = 300;

/// Message `seq` of `kind`: a 4-byte sequence number, then `len(seq)` bytes of a pattern.
fn message(kind: u8, seq: u32) -> Vec<u8> {
    let len = 4 + (seq as usize * 37) % 3000;
    let mut m = vec![kind.wrapping_add(seq as u8); len];
    m[..4].copy_from_slice(&seq.to_le_bytes());
    m
}

fn check(kind: u8, expected: u32, got: &[u8]) {
    assert_eq!(
        got,
        message(kind, expected),
        "kind {kind}, message {expected}"
    );
}

/// The child: adopts the four senders, sends COUNT messages on each from async code
/// (interleaved), then parks until killed.
fn sender4(ctx: &Ctx) {
    let rt = runtime();
    rt.block_on(async {
        let mut p = AsyncEndpoint::new(adopt_pipe()).unwrap();
        let mut f = AsyncEndpoint::new(adopt_fifo()).unwrap();
        let mut q = AsyncEndpoint::new(adopt_queue()).unwrap();
        let mut s = AsyncEndpoint::new(adopt_shm()).unwrap();
        for seq in 0..COUNT {
            p.send(&message(0, seq)).await.unwrap();
            f.send(&message(1, seq)).await.unwrap();
            q.send(&message(2, seq)).await.unwrap();
            s.send(&message(3, seq)).await.unwrap();
        }
    });
    ctx.park("sent");
}

#[test]
fn one_select_over_four_kinds_then_a_killed_peer_is_disconnected() {
    let (child, rx) = four_kinds(spawn("sender4"));
    let mut child = child.start();
    runtime().block_on(async {
        let ((mut p, mut f, mut q, mut s), _names) = rx.into_async();
        let (mut bp, mut bf, mut bq, mut bs) = async_support::buffers();
        let mut next = [0u32; 4];
        // Every round drops the three futures that lost: receives are cancel safe, so each
        // kind still delivers every message, in order.
        while next.iter().any(|&n| n < COUNT) {
            tokio::select! {
                r = p.recv(&mut bp), if next[0] < COUNT => {
                    check(0, next[0], &bp[..r.unwrap()]); next[0] += 1;
                }
                r = f.recv(&mut bf), if next[1] < COUNT => {
                    check(1, next[1], &bf[..r.unwrap()]); next[1] += 1;
                }
                r = q.recv(&mut bq), if next[2] < COUNT => {
                    check(2, next[2], &bq[..r.unwrap()]); next[2] += 1;
                }
                r = s.recv(&mut bs), if next[3] < COUNT => {
                    check(3, next[3], &bs[..r.unwrap()]); next[3] += 1;
                }
            }
        }
        child.wait_checkpoint("sent");
        child.kill_and_wait();
        let within = Duration::from_secs(20);
        let dead = |r: Result<ipc_core::Result<usize>, _>, what: &str| match r {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}"),
            other => panic!("{what}: expected Disconnected, got {other:?}"),
        };
        dead(tokio::time::timeout(within, p.recv(&mut bp)).await, "pipe");
        dead(tokio::time::timeout(within, f.recv(&mut bf)).await, "fifo");
        dead(tokio::time::timeout(within, s.recv(&mut bs)).await, "shm");
        // A queue has no peer to lose: the receive just waits, and a timeout ends it.
        let r = tokio::time::timeout(Duration::from_millis(50), q.recv(&mut bq)).await;
        assert!(r.is_err(), "an empty queue has nothing to deliver: {r:?}");
    });
}

/// The slow reader of the cancellation test: receives every message, checks it is whole,
/// and reports its sequence number back (sync code: the peer's side does not matter).
fn slow_reader(_: &Ctx) {
    let mut rx = PipeReader::from_inherited("rx")
        .unwrap()
        .into_receiver(1 << 20)
        .unwrap();
    let mut back = PipeWriter::from_inherited("back")
        .unwrap()
        .into_sender(FrameMode::Atomic)
        .unwrap();
    let mut buf = vec![0; 1 << 20];
    loop {
        match rx.recv(&mut buf) {
            Ok(n) => {
                let seq = u32::from_le_bytes(buf[..4].try_into().unwrap());
                assert_eq!(&buf[..n], big(seq), "message {seq} arrived torn");
                back.send(&seq.to_le_bytes()).unwrap();
                // After every even message a pause longer than the parent's longest timeout
                // (1.9 ms, and tokio's 1 ms timer granularity): the next send fills the pipe
                // and must be cut mid-message, however fast the machine and the pipe are.
                let pause = if seq % 2 == 0 { 5_000 } else { 200 };
                std::thread::sleep(Duration::from_micros(pause));
            }
            Err(e) if e.kind() == ErrorKind::Disconnected => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Large message `seq`: 300 KiB or more, far above `PIPE_BUF` and the pipe's capacity.
fn big(seq: u32) -> Vec<u8> {
    let mut m: Vec<u8> = (0..300_000 + seq as usize * 1000)
        .map(|i| (i as u32 ^ seq) as u8)
        .collect();
    m[..4].copy_from_slice(&seq.to_le_bytes());
    m
}

#[test]
fn sends_cancelled_mid_message_deliver_whole_messages_or_nothing() {
    let (r, w) = pipe().unwrap();
    let (back_r, back_w) = pipe().unwrap();
    let mut child = spawn("slow_reader")
        .fd("rx", &r)
        .fd("back", &back_w)
        .start();
    drop((r, back_w));
    let (mut ok, mut cancelled) = (Vec::new(), Vec::new());
    runtime().block_on(async {
        let mut tx = AsyncEndpoint::new(
            w.into_sender(FrameMode::Stream {
                max_message: 1 << 20,
            })
            .unwrap(),
        )
        .unwrap();
        for seq in 0..40u32 {
            // Short timeouts cut most sends: before their first byte (nothing sent) or in the
            // middle (the message is committed; the next call finishes it).
            let t = Duration::from_micros(100 + u64::from(seq % 7) * 300);
            match tokio::time::timeout(t, tx.send(&big(seq))).await {
                Ok(r) => {
                    r.unwrap();
                    ok.push(seq);
                }
                Err(_) => cancelled.push(seq),
            }
        }
        tx.flush().await.unwrap();
    });
    let mut back = back_r.into_receiver(4).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4];
    loop {
        match back.recv(&mut b) {
            Ok(_) => got.push(u32::from_le_bytes(b)),
            Err(e) if e.kind() == ErrorKind::Disconnected => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(child.wait().success(), "the reader found a torn message");
    // The reader checked every message whole. Each completed send arrived, in order; a
    // cancelled one arrived whole (it was cut mid-message and finished by the next call) or
    // not at all (it was cut before its first byte).
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    assert!(
        ok.iter().all(|s| got.contains(s)),
        "lost a completed send: {ok:?} vs {got:?}"
    );
    assert!(got.iter().all(|s| ok.contains(s) || cancelled.contains(s)));
    assert!(
        cancelled.iter().any(|s| got.contains(s)),
        "no send was cut mid-message and completed later; the test proves nothing \
         (cancelled {cancelled:?}, received {got:?})"
    );
}

/// The slow receiver of the send test: takes COUNT messages from each kind in turn, pausing
/// now and then so that the parent's sends find the channels full, and checks each.
fn slow_receiver4(_: &Ctx) {
    let (mut p, mut f, mut q, mut s) = async_support::adopt_receivers();
    let mut buf = vec![0u8; 1 << 20];
    for seq in 0..COUNT {
        let n = p.recv(&mut buf).unwrap();
        check(0, seq, &buf[..n]);
        let n = f.recv(&mut buf).unwrap();
        check(1, seq, &buf[..n]);
        let n = MessageReceiver::recv(&mut q, &mut buf).unwrap();
        check(2, seq, &buf[..n]);
        let n = s.recv(&mut buf).unwrap();
        check(3, seq, &buf[..n]);
        if seq % 16 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Async senders wait for room on all four kinds at once (one task, `join!`), the receiver
/// being slow, and every message arrives whole and in order.
#[test]
fn async_senders_wait_for_room_on_four_kinds_at_once() {
    let (child, tx) = async_support::four_kinds_to_child(spawn("slow_receiver4"));
    let child = child.start();
    runtime().block_on(async {
        let mut p = AsyncEndpoint::new(tx.pipe).unwrap();
        let mut f = AsyncEndpoint::new(tx.fifo).unwrap();
        let mut q = AsyncEndpoint::new(tx.queue).unwrap();
        let mut s = AsyncEndpoint::new(tx.shm).unwrap();
        let (rp, rf, rq, rs) = tokio::join!(
            async {
                for seq in 0..COUNT {
                    p.send(&message(0, seq)).await?;
                }
                p.flush().await
            },
            async {
                for seq in 0..COUNT {
                    f.send(&message(1, seq)).await?;
                }
                f.flush().await
            },
            async {
                for seq in 0..COUNT {
                    q.send(&message(2, seq)).await?;
                }
                Ok::<_, ipc_core::Error>(())
            },
            async {
                for seq in 0..COUNT {
                    s.send(&message(3, seq)).await?;
                }
                Ok::<_, ipc_core::Error>(())
            },
        );
        rp.unwrap();
        rf.unwrap();
        rq.unwrap();
        rs.unwrap();
    });
    assert!(child.wait_success().success());
}

/// Takes the receiving ends and never reads.
fn deaf_receiver4(ctx: &Ctx) {
    let _ends = async_support::adopt_receivers();
    ctx.park("deaf");
}

/// Async sends on channels filled until a send times out: once the receiver is SIGKILLed,
/// pipe, FIFO and shm senders see `Disconnected` (that a cancelled send sent nothing is
/// checked in ipc-shm's `tests/async_channel.rs`, where the receiver can count).
#[test]
fn async_senders_see_a_killed_receiver_as_disconnected() {
    let (child, tx) = async_support::four_kinds_to_child(spawn("deaf_receiver4"));
    let mut child = child.start();
    child.wait_checkpoint("deaf");
    runtime().block_on(async {
        let mut p = AsyncEndpoint::new(tx.pipe).unwrap();
        let mut f = AsyncEndpoint::new(tx.fifo).unwrap();
        let mut q = AsyncEndpoint::new(tx.queue).unwrap();
        let mut s = AsyncEndpoint::new(tx.shm).unwrap();
        let small = [7u8; 1000];
        let short = Duration::from_millis(20);
        // Fill each: atomic messages (1000 bytes, below PIPE_BUF) until a send times out.
        macro_rules! fill {
            ($e:expr) => {
                loop {
                    match tokio::time::timeout(short, $e.send(&small)).await {
                        Ok(r) => r.unwrap(),
                        Err(_) => break,
                    }
                }
            };
        }
        fill!(p);
        fill!(f);
        fill!(q);
        fill!(s);
        assert!(!s.get_mut().is_drained().unwrap());
        child.kill_and_wait();
        let within = Duration::from_secs(20);
        let dead = |r: Result<ipc_core::Result<()>, _>, what: &str| match r {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}"),
            other => panic!("{what}: expected Disconnected, got {other:?}"),
        };
        dead(tokio::time::timeout(within, p.send(&small)).await, "pipe");
        dead(tokio::time::timeout(within, f.send(&small)).await, "fifo");
        dead(tokio::time::timeout(within, s.send(&small)).await, "shm");
        // A queue has no peer: it stays full, and the timeout ends the wait.
        assert!(tokio::time::timeout(short, q.send(&small)).await.is_err());
    });
}

roles!(sender4, slow_reader, slow_receiver4, deaf_receiver4);
