//! Receives cancelled at random points lose nothing and tear nothing, on every mechanism: a
//! sender process sends numbered messages with random pauses, and the async receiver drops
//! its `recv` futures at random (a `tokio::time::timeout` of random length, a future dropped
//! after one to three polls, a `select!` lost to a timer), then must have received every
//! message once, whole, in order, and then `Disconnected` (a POSIX queue, which has no peer,
//! is empty instead). Pipes in stream and atomic framing, a FIFO, a POSIX queue, a shm
//! channel, a pub-sub subscriber, an MPSC consumer, seqpacket and stream sockets.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ipc_core::tokio::AsyncEndpoint;
use ipc_core::{ErrorKind, MessageReceiver, MessageSender, Readiness};
use ipc_fifo::Fifo;
use ipc_mq::posix::{Access, Queue};
use ipc_pipe::{FrameMode, PipeReader, PipeWriter, pipe};
use ipc_shm::{
    ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions, Publisher,
    Segment, Subscriber,
};
use ipc_socket::{Seqpacket, Stream};
use ipc_testkit::{Ctx, Rng, TempDir, roles, spawn, unique_posix_name, watchdog, within_watchdog};

/// Messages per run.
const COUNT: u32 = 200;
/// The largest message of each run (the pub-sub's slots hold 256 bytes).
const SMALL: usize = 256;
const LARGE: usize = 3000;
const MAX: usize = 1 << 16;

/// Message `seq`: its number, then a pattern of a length that varies up to `max`.
fn message(seq: u32, max: usize) -> Vec<u8> {
    let len = 4 + (seq as usize * 37) % (max - 4);
    let mut m: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(seq | 1) as u8)
        .collect();
    m[..4].copy_from_slice(&seq.to_le_bytes());
    m
}

/// Child: sends `COUNT` messages of at most `max` bytes on the end named by `kind` (the
/// descriptor or segment `end`, or the queue named in the third argument), pausing at
/// random so that the receiver parks often, then leaves (closing its end).
fn send_numbered(ctx: &Ctx) {
    let args = ctx.args();
    let (kind, max): (&str, usize) = (args[0], args[1].parse().unwrap());
    let mut tx: Box<dyn MessageSender> = match kind {
        "pipe" | "fifo" => Box::new(
            PipeWriter::from_inherited("end")
                .unwrap()
                .into_sender(FrameMode::Stream { max_message: MAX })
                .unwrap(),
        ),
        "atomic" => Box::new(
            PipeWriter::from_inherited("end")
                .unwrap()
                .into_sender(FrameMode::Atomic)
                .unwrap(),
        ),
        "queue" => Box::new(Queue::open(args[2], Access::WriteOnly).unwrap()),
        "shm" => Box::new(ipc_shm::Sender::open(Segment::inherited("end").unwrap()).unwrap()),
        "pubsub" => Box::new(Publisher::open(Segment::inherited("end").unwrap()).unwrap()),
        "mpsc" => Box::new(MpscProducer::open(Segment::inherited("end").unwrap()).unwrap()),
        "seqpacket" => Box::new(Seqpacket::from_fd(ctx.take_fd("end"), MAX).unwrap()),
        "stream" => Box::new(Stream::from_fd(ctx.take_fd("end"), MAX).unwrap()),
        other => panic!("no kind {other}"),
    };
    let mut rng = Rng::new("async-cancel sender");
    for seq in 0..COUNT {
        tx.send_timeout(&message(seq, max), watchdog()).unwrap();
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(1500)));
        }
    }
}

roles!(send_numbered);

/// Receives `COUNT` messages on `rx`, cancelling receives at random, then expects the end.
fn receive_cancelling<E: Readiness + MessageReceiver + Send + 'static>(
    what: &'static str,
    rx: E,
    max: usize,
    has_peer: bool,
) {
    within_watchdog(what, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut rx = AsyncEndpoint::new(rx).unwrap();
            let mut rng = Rng::new(what);
            let mut buf = vec![0u8; MAX];
            let mut next = 0u32;
            let (mut cut, mut rounds) = (0u32, 0u32);
            while next < COUNT {
                rounds += 1;
                let got = match rng.below(4) {
                    // A timeout of up to 1.5 ms (0: often before the first poll completes).
                    0 => {
                        let t = Duration::from_micros(rng.below(1500));
                        tokio::time::timeout(t, rx.recv(&mut buf)).await.ok()
                    }
                    // Dropped after one to three polls (yielding to the runtime between).
                    1 => {
                        let polls = 1 + rng.below(3);
                        let mut recv = pin!(rx.recv(&mut buf));
                        let mut got = None;
                        for _ in 0..polls {
                            let p = std::future::poll_fn(|cx| Poll::Ready(recv.as_mut().poll(cx)))
                                .await;
                            if let Poll::Ready(r) = p {
                                got = Some(r);
                                break;
                            }
                            tokio::task::yield_now().await;
                        }
                        got
                    }
                    // Racing a timer in `select!`.
                    2 => {
                        let t = Duration::from_micros(rng.below(1000));
                        tokio::select! {
                            r = rx.recv(&mut buf) => Some(r),
                            () = tokio::time::sleep(t) => None,
                        }
                    }
                    _ => Some(rx.recv(&mut buf).await),
                };
                match got {
                    Some(r) => {
                        let n = r.unwrap_or_else(|e| panic!("{what}: message {next}: {e}"));
                        assert!(
                            buf[..n] == message(next, max),
                            "{what}: message {next} lost, torn or out of order (got {n} \
                             bytes, numbered {:?})",
                            buf.get(..4)
                        );
                        next += 1;
                    }
                    None => cut += 1,
                }
            }
            // Nothing more: the sender is gone.
            let end = tokio::time::timeout(Duration::from_millis(200), rx.recv(&mut buf)).await;
            match end {
                Ok(Err(e)) if has_peer => {
                    assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}")
                }
                Err(_) if !has_peer => {}
                other => panic!("{what}: after the last message: {other:?}"),
            }
            assert!(
                cut > 0,
                "{what}: no receive was cancelled in {rounds} rounds"
            );
        })
    });
}

#[test]
fn cancelled_receives_lose_nothing_on_pipes() {
    for (kind, max) in [("pipe", LARGE), ("atomic", LARGE)] {
        let (r, w) = pipe().unwrap();
        let mut child = spawn("send_numbered")
            .arg(format!("{kind} {max}"))
            .fd("end", &w)
            .start();
        drop(w);
        let rx: ipc_pipe::PipeReceiver = r.into_receiver(MAX).unwrap();
        receive_cancelling(
            if kind == "pipe" {
                "pipe"
            } else {
                "atomic pipe"
            },
            rx,
            max,
            true,
        );
        assert!(child.wait().success());
    }
}

#[test]
fn cancelled_receives_lose_nothing_on_a_fifo() {
    let dir = TempDir::new("async-cancel");
    let fifo = Fifo::create(dir.join("fifo")).unwrap();
    let mut now = ipc_fifo::OpenOptions::new();
    now.wait(ipc_core::Deadline::Now);
    let r: PipeReader = now.open_read(fifo.path()).unwrap();
    let w = now.open_write(fifo.path()).unwrap();
    w.set_nonblocking(false).unwrap();
    let mut child = spawn("send_numbered")
        .arg(format!("fifo {LARGE}"))
        .fd("end", &w)
        .start();
    drop(w);
    receive_cancelling("fifo", r.into_receiver(MAX).unwrap(), LARGE, true);
    assert!(child.wait().success());
}

#[test]
fn cancelled_receives_lose_nothing_on_a_posix_queue() {
    let name = unique_posix_name("async-cancel");
    let queue = Queue::create(name.as_str(), 4, 8192).unwrap();
    let _remove = queue.remove_guard().unwrap();
    let mut child = spawn("send_numbered")
        .arg(format!("queue {LARGE} {name}"))
        .start();
    receive_cancelling("queue", queue, LARGE, false);
    assert!(child.wait().success());
}

#[test]
fn cancelled_receives_lose_nothing_on_shared_memory() {
    let (tx, rx) = ChannelOptions::new().capacity(1 << 13).pair().unwrap();
    let segment = tx.detach();
    let mut child = spawn("send_numbered")
        .arg(format!("shm {LARGE}"))
        .fd("end", segment.fd().unwrap())
        .start();
    drop(segment);
    receive_cancelling("shm channel", rx, LARGE, true);
    assert!(child.wait().success());

    let options = PubSubOptions::new()
        .slots(8)
        .max_message(SMALL)
        .subscribers(2)
        .policy(Policy::Block);
    let segment = Arc::new(options.create_memfd("async-cancel-ps").unwrap());
    let sub = Subscriber::open(segment.clone()).unwrap();
    let mut child = spawn("send_numbered")
        .arg(format!("pubsub {SMALL}"))
        .fd("end", segment.fd().unwrap())
        .start();
    drop(segment);
    receive_cancelling("pub-sub", sub, SMALL, true);
    assert!(child.wait().success());

    let options = MpscOptions::new()
        .producers(2)
        .capacity(1 << 13)
        .max_message(LARGE);
    let segment = Arc::new(options.create_memfd("async-cancel-mpsc").unwrap());
    let rx = MpscConsumer::open(segment.clone()).unwrap();
    let mut child = spawn("send_numbered")
        .arg(format!("mpsc {LARGE}"))
        .fd("end", segment.fd().unwrap())
        .start();
    drop(segment);
    receive_cancelling("mpsc", rx, LARGE, true);
    assert!(child.wait().success());
}

#[test]
fn cancelled_receives_lose_nothing_on_sockets() {
    let (mine, theirs) = Seqpacket::pair(MAX).unwrap();
    let mut child = spawn("send_numbered")
        .arg(format!("seqpacket {LARGE}"))
        .fd("end", &theirs)
        .start();
    drop(theirs);
    receive_cancelling("seqpacket", mine, LARGE, true);
    assert!(child.wait().success());

    let (mine, theirs) = Stream::pair(MAX).unwrap();
    let mut child = spawn("send_numbered")
        .arg(format!("stream {LARGE}"))
        .fd("end", &theirs)
        .start();
    drop(theirs);
    receive_cancelling("stream socket", mine, LARGE, true);
    assert!(child.wait().success());
}
