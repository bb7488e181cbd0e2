//! Both ends of a channel as tasks of one current-thread runtime: neither side can progress
//! while the other runs, so a wait that spun instead of parking (an `arm` that kept saying
//! "ready" to a try that kept finding nothing) would hang the runtime. Small capacities make
//! both sides park in turn; a stream-framed pipe, FIFO and stream socket carry messages
//! larger than their buffers, cut mid-message on every send. Every message arrives whole and
//! in order, then the receiver sees `Disconnected` when the sender's end is dropped.

use std::sync::Arc;

use ipc_core::tokio::AsyncEndpoint;
use ipc_core::{ErrorKind, MessageReceiver, MessageSender, Readiness};
use ipc_fifo::Fifo;
use ipc_mq::posix::{Access, Queue};
use ipc_pipe::{FrameMode, PipeReader, pipe};
use ipc_shm::{
    ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions, Publisher,
    Subscriber,
};
use ipc_socket::{Seqpacket, Stream};
use ipc_testkit::{TempDir, unique_posix_name, within_watchdog};

const COUNT: u32 = 60;

fn message(seq: u32, max: usize) -> Vec<u8> {
    let len = 4 + (seq as usize * 7919) % (max - 4);
    let mut m: Vec<u8> = (0..len).map(|i| (i as u32 ^ seq) as u8).collect();
    m[..4].copy_from_slice(&seq.to_le_bytes());
    m
}

/// Runs a sending task and a receiving task on one current-thread runtime under the
/// watchdog; `has_peer`: whether the receiver ends with `Disconnected` once the sender is
/// dropped (a queue ends empty).
fn one_thread<S, R>(what: &'static str, tx: S, rx: R, max: usize, has_peer: bool)
where
    S: Readiness + MessageSender + Send + 'static,
    R: Readiness + MessageReceiver + Send + 'static,
{
    within_watchdog(what, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut tx = AsyncEndpoint::new(tx).unwrap();
            let mut rx = AsyncEndpoint::new(rx).unwrap();
            let sending = async move {
                for seq in 0..COUNT {
                    tx.send(&message(seq, max)).await.unwrap();
                }
                tx.flush().await.unwrap();
                drop(tx);
            };
            let receiving = async {
                let mut buf = vec![0u8; max];
                for seq in 0..COUNT {
                    let n = rx.recv(&mut buf).await.unwrap();
                    assert!(buf[..n] == message(seq, max), "{what}: message {seq}");
                }
                if has_peer {
                    let e = rx.recv(&mut buf).await.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}");
                }
            };
            tokio::join!(sending, receiving);
            let stats = rx.wait_stats();
            assert!(
                stats.parks > 0,
                "{what}: the receiver never parked: {stats:?}"
            );
        });
    });
}

#[test]
fn pipes_and_a_fifo_on_one_thread() {
    let stream = FrameMode::Stream {
        max_message: 1 << 20,
    };
    let (r, w) = pipe().unwrap();
    let (tx, rx) = (
        w.into_sender(stream).unwrap(),
        r.into_receiver(1 << 20).unwrap(),
    );
    one_thread("pipe (stream)", tx, rx, 150_000, true);

    let (r, w) = pipe().unwrap();
    w.set_capacity(4096).unwrap();
    let tx = w.into_sender(FrameMode::Atomic).unwrap();
    one_thread(
        "pipe (atomic)",
        tx,
        r.into_receiver(4096).unwrap(),
        4000,
        true,
    );

    let dir = TempDir::new("async-one-thread");
    let fifo = Fifo::create(dir.join("fifo")).unwrap();
    let mut now = ipc_fifo::OpenOptions::new();
    now.wait(ipc_core::Deadline::Now);
    let r: PipeReader = now.open_read(fifo.path()).unwrap();
    let w = now.open_write(fifo.path()).unwrap();
    let (tx, rx) = (
        w.into_sender(stream).unwrap(),
        r.into_receiver(1 << 20).unwrap(),
    );
    one_thread("fifo (stream)", tx, rx, 150_000, true);
}

#[test]
fn a_posix_queue_on_one_thread() {
    let name = unique_posix_name("async-one-thread");
    let rx = Queue::create(name.as_str(), 2, 4096).unwrap();
    let _remove = rx.remove_guard().unwrap();
    let tx = Queue::open(name.as_str(), Access::WriteOnly).unwrap();
    one_thread("queue", tx, rx, 4096, false);
}

#[test]
fn shared_memory_on_one_thread() {
    let (tx, rx) = ChannelOptions::new().capacity(1 << 13).pair().unwrap();
    one_thread("shm channel", tx, rx, 3000, true);

    let options = PubSubOptions::new()
        .slots(4)
        .max_message(256)
        .subscribers(2)
        .policy(Policy::Block);
    let segment = Arc::new(options.create_memfd("async-one-thread-ps").unwrap());
    let sub = Subscriber::open(segment.clone()).unwrap();
    let publisher = Publisher::open(segment).unwrap();
    one_thread("pub-sub", publisher, sub, 256, true);

    let options = MpscOptions::new()
        .producers(2)
        .capacity(1 << 12)
        .max_message(1000);
    let segment = Arc::new(options.create_memfd("async-one-thread-mpsc").unwrap());
    let rx = MpscConsumer::open(segment.clone()).unwrap();
    let tx = MpscProducer::open(segment).unwrap();
    one_thread("mpsc", tx, rx, 1000, true);
}

#[test]
fn sockets_on_one_thread() {
    let (a, b) = Seqpacket::pair(1 << 16).unwrap();
    one_thread("seqpacket", a, b, 1 << 16, true);
    let (a, b) = Stream::pair(1 << 20).unwrap();
    one_thread("stream socket", a, b, 300_000, true);
}
