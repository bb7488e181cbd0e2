//! Endpoints dropped around a parked async call: a task aborted, or a runtime shut down,
//! while a receive is parked in it drops its endpoint, and the sender process then sees `Disconnected` (the adapter's
//! duplicate descriptor and its registration go with it); a peer end in this process dropped
//! by another task while a call is parked ends the call with `Disconnected`. Pipes, a FIFO,
//! the shm channel, pub-sub, MPSC and sockets.

use std::sync::Arc;
use std::time::Duration;

use ipc_core::tokio::AsyncEndpoint;
use ipc_core::{ErrorKind, MessageReceiver, MessageSender, Readiness};
use ipc_pipe::{FrameMode, PipeWriter, pipe};
use ipc_shm::{
    ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions, Publisher,
    Segment, Subscriber,
};
use ipc_socket::{Seqpacket, Stream};
use ipc_testkit::{Ctx, roles, spawn, watchdog};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap()
}

/// Child: sends on the end of its kind until a send fails, which must be `Disconnected`.
fn send_until_gone(ctx: &Ctx) {
    let mut tx: Box<dyn MessageSender> = match ctx.arg() {
        "pipe" => Box::new(
            PipeWriter::from_inherited("end")
                .unwrap()
                .into_sender(FrameMode::Atomic)
                .unwrap(),
        ),
        "shm" => Box::new(ipc_shm::Sender::open(Segment::inherited("end").unwrap()).unwrap()),
        "mpsc" => Box::new(MpscProducer::open(Segment::inherited("end").unwrap()).unwrap()),
        "seqpacket" => Box::new(Seqpacket::from_fd(ctx.take_fd("end"), 1 << 16).unwrap()),
        "stream" => Box::new(Stream::from_fd(ctx.take_fd("end"), 1 << 16).unwrap()),
        other => panic!("no kind {other}"),
    };
    ctx.checkpoint("open");
    // Sends nothing at first: the parent's receive parks on an empty channel and is dropped
    // there (the sends then find the receiver gone; if the pause was too short for that,
    // the test still holds, it proves less).
    std::thread::sleep(Duration::from_millis(60));
    loop {
        match tx.send_timeout(&[9; 100], watchdog()) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                return;
            }
        }
    }
}

roles!(send_until_gone);

/// How the parked receive's task ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `JoinHandle::abort`.
    Abort,
    /// The runtime is dropped (shut down) with the task parked in it.
    Shutdown,
}

/// Parks a receive on `rx` in a task, ends the task as `how` says (dropping the endpoint),
/// and checks that the sender `child` (which sends until a send fails) ends with
/// `Disconnected`.
fn end_parked_receive<E>(what: &str, ending: Ending, rx: E, mut child: ipc_testkit::Child)
where
    E: Readiness + MessageReceiver + Send + 'static,
{
    child.wait_checkpoint("open");
    let rt = runtime();
    let task = rt.spawn(async move {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            rx.recv(&mut buf).await.unwrap();
        }
    });
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    match ending {
        Ending::Abort => {
            task.abort();
            let e = rt.block_on(task).unwrap_err();
            assert!(e.is_cancelled(), "{what}: {e}");
        }
        Ending::Shutdown => drop(rt),
    }
    let status = child.wait();
    assert!(
        status.success(),
        "{what} ({ending:?}): the sender did not see Disconnected"
    );
}

#[test]
fn a_task_ended_while_its_receive_is_parked_disconnects_the_sender() {
    for ending in [Ending::Abort, Ending::Shutdown] {
        let (r, w) = pipe().unwrap();
        let child = spawn("send_until_gone").arg("pipe").fd("end", &w).start();
        drop(w);
        end_parked_receive("pipe", ending, r.into_receiver(1 << 16).unwrap(), child);

        let (tx, rx) = ChannelOptions::new().capacity(1 << 13).pair().unwrap();
        let segment = tx.detach();
        let child = spawn("send_until_gone")
            .arg("shm")
            .fd("end", segment.fd().unwrap())
            .start();
        drop(segment);
        end_parked_receive("shm channel", ending, rx, child);

        let options = MpscOptions::new()
            .producers(2)
            .capacity(1 << 12)
            .max_message(200);
        let segment = Arc::new(options.create_memfd("async-drop").unwrap());
        let rx = MpscConsumer::open(segment.clone()).unwrap();
        let child = spawn("send_until_gone")
            .arg("mpsc")
            .fd("end", segment.fd().unwrap())
            .start();
        drop(segment);
        end_parked_receive("mpsc", ending, rx, child);

        let (mine, theirs) = Seqpacket::pair(1 << 16).unwrap();
        let child = spawn("send_until_gone")
            .arg("seqpacket")
            .fd("end", &theirs)
            .start();
        drop(theirs);
        end_parked_receive("seqpacket", ending, mine, child);

        let (mine, theirs) = Stream::pair(1 << 16).unwrap();
        let child = spawn("send_until_gone")
            .arg("stream")
            .fd("end", &theirs)
            .start();
        drop(theirs);
        end_parked_receive("stream socket", ending, mine, child);
    }
}

/// Parks `call` (on an async endpoint), drops `peer` from another task once it parked, and
/// expects `Disconnected`.
fn peer_dropped_while_parked<T: std::fmt::Debug, P>(
    what: &str,
    peer: P,
    call: impl std::future::Future<Output = ipc_core::Result<T>>,
) {
    runtime().block_on(async {
        let dropper = async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(peer);
        };
        let (r, ()) = tokio::join!(tokio::time::timeout(watchdog(), call), dropper);
        match r {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}"),
            other => panic!("{what}: expected Disconnected, got {other:?}"),
        }
    });
}

async fn recv<E: Readiness + MessageReceiver>(rx: E) -> ipc_core::Result<usize> {
    let mut rx = AsyncEndpoint::new(rx)?;
    let mut buf = vec![0u8; 1 << 16];
    rx.recv(&mut buf).await
}

/// Fills `tx` (synchronous tries), then sends once more, async: it parks.
async fn send_full<E: Readiness + MessageSender>(mut tx: E, msg: Vec<u8>) -> ipc_core::Result<()> {
    loop {
        match tx.try_send(&msg) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    AsyncEndpoint::new(tx)?.send(&msg).await
}

#[test]
fn a_peer_dropped_by_another_task_ends_a_parked_call() {
    let (tx, rx) = ipc_pipe::channel(FrameMode::Atomic).unwrap();
    peer_dropped_while_parked("pipe receive", tx, recv(rx));
    let (tx, rx) = ipc_pipe::channel(FrameMode::Atomic).unwrap();
    peer_dropped_while_parked("pipe send", rx, send_full(tx, vec![1; 1000]));

    let (tx, rx) = ChannelOptions::new().capacity(1 << 13).pair().unwrap();
    peer_dropped_while_parked("shm receive", tx, recv(rx));
    let (tx, rx) = ChannelOptions::new().capacity(1 << 13).pair().unwrap();
    peer_dropped_while_parked("shm send", rx, send_full(tx, vec![1; 1000]));

    let options = MpscOptions::new()
        .producers(2)
        .capacity(1 << 12)
        .max_message(200);
    let segment = Arc::new(options.create_memfd("async-drop-peer").unwrap());
    let rx = MpscConsumer::open(segment.clone()).unwrap();
    let tx = MpscProducer::open(segment.clone()).unwrap();
    peer_dropped_while_parked("mpsc receive", tx, recv(rx));
    let segment = Arc::new(options.create_memfd("async-drop-peer").unwrap());
    let rx = MpscConsumer::open(segment.clone()).unwrap();
    let tx = MpscProducer::open(segment).unwrap();
    peer_dropped_while_parked("mpsc send", rx, send_full(tx, vec![1; 200]));

    let options = PubSubOptions::new()
        .slots(8)
        .max_message(256)
        .subscribers(2)
        .policy(Policy::Block);
    let segment = Arc::new(options.create_memfd("async-drop-ps").unwrap());
    let sub = Subscriber::open(segment.clone()).unwrap();
    let publisher = Publisher::open(segment).unwrap();
    peer_dropped_while_parked("pub-sub receive", publisher, recv(sub));

    let (a, b) = Seqpacket::pair(1 << 16).unwrap();
    peer_dropped_while_parked("seqpacket receive", b, recv(a));
    let (a, b) = Stream::pair(1 << 16).unwrap();
    peer_dropped_while_parked("stream receive", b, recv(a));
}
