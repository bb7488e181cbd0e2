//! A peer SIGKILLed while an async call is parked (the future polled once, `Pending`, its
//! descriptor in the reactor) ends the call with `Disconnected`, on every mechanism with a
//! peer: receives on a pipe (stream and atomic framing), a FIFO, a shm channel, a seqpacket
//! and a stream socket; sends into a full pipe and FIFO (a stream-framed one cut in the
//! middle of a message, which is then committed), a full shm channel, a full seqpacket
//! socket, a stream socket cut mid-frame. (A POSIX queue has no peer to lose; pub-sub and
//! many-to-one are covered in ipc-shm's `tests/async_patterns.rs`.)

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use ipc_core::tokio::AsyncEndpoint;
use ipc_core::{ErrorKind, MessageReceiver, MessageSender, Readiness};
use ipc_fifo::Fifo;
use ipc_pipe::{FrameMode, pipe};
use ipc_shm::{ChannelOptions, Segment};
use ipc_socket::{Seqpacket, Stream};
use ipc_testkit::{Child, Ctx, Spawn, TempDir, roles, spawn, watchdog};

const STREAM: FrameMode = FrameMode::Stream {
    max_message: 1 << 20,
};

/// Child: holds the inherited descriptor `end` (opening a shm end on it when the argument says
/// so) and parks, to be killed.
fn hold(ctx: &Ctx) {
    let _end: Box<dyn std::any::Any> = match ctx.arg() {
        "shm-sender" => {
            Box::new(ipc_shm::Sender::open(Segment::inherited("end").unwrap()).unwrap())
        }
        "shm-receiver" => {
            Box::new(ipc_shm::Receiver::open(Segment::inherited("end").unwrap()).unwrap())
        }
        _ => Box::new(ctx.take_fd("end")),
    };
    ctx.park("holding");
}

roles!(hold);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap()
}

/// Polls `call` once (it must park: `Pending`), SIGKILLs `child`, then awaits the call under
/// the watchdog: it must end with `Disconnected`.
fn parked_then_killed<T: std::fmt::Debug>(
    what: &str,
    mut child: Child,
    call: impl Future<Output = ipc_core::Result<T>>,
) {
    runtime().block_on(async {
        let mut call = pin!(call);
        let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "{what}: did not park: {first:?}");
        assert!(child.kill_and_wait().killed(), "{what}");
        match tokio::time::timeout(watchdog(), call).await {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}"),
            Ok(Ok(v)) => panic!("{what}: completed after the peer's death: {v:?}"),
            Err(_) => panic!("{what}: still parked after the peer's death"),
        }
    });
}

/// Starts the `hold` child on `end` (and `arg`), after which the parent drops its copy.
fn holder(end: impl std::os::fd::AsFd, arg: &str) -> Child {
    let child: Spawn = spawn("hold").fd("end", &end).arg(arg);
    let mut child = child.start();
    drop(end);
    child.wait_checkpoint("holding");
    child
}

/// A FIFO with both ends open (blocking), and what removes it.
fn fifo() -> (ipc_pipe::PipeReader, ipc_pipe::PipeWriter, (Fifo, TempDir)) {
    let dir = TempDir::new("async-killed");
    let fifo = Fifo::create(dir.join("fifo")).unwrap();
    let mut now = ipc_fifo::OpenOptions::new();
    now.wait(ipc_core::Deadline::Now);
    let r = now.open_read(fifo.path()).unwrap();
    let w = now.open_write(fifo.path()).unwrap();
    r.set_nonblocking(false).unwrap();
    w.set_nonblocking(false).unwrap();
    (r, w, (fifo, dir))
}

async fn recv<E: Readiness + MessageReceiver>(mut rx: AsyncEndpoint<E>) -> ipc_core::Result<usize> {
    let mut buf = vec![0u8; 1 << 20];
    rx.recv(&mut buf).await
}

#[test]
fn a_receive_parked_when_its_sender_is_killed_is_disconnected() {
    for mode in ["stream", "atomic"] {
        let (r, w) = pipe().unwrap();
        let child = holder(w, "");
        let rx = AsyncEndpoint::new(r.into_receiver(1 << 20).unwrap()).unwrap();
        parked_then_killed(&format!("pipe ({mode})"), child, recv(rx));
    }
    let (r, w, _names) = fifo();
    let child = holder(w, "");
    let rx = AsyncEndpoint::new(r.into_receiver(1 << 20).unwrap()).unwrap();
    parked_then_killed("fifo", child, recv(rx));

    let (tx, rx) = ChannelOptions::new().capacity(1 << 13).pair().unwrap();
    let segment = tx.detach();
    let child = holder(segment.fd().unwrap(), "shm-sender");
    parked_then_killed("shm", child, recv(AsyncEndpoint::new(rx).unwrap()));

    let (mine, theirs) = Seqpacket::pair(1 << 16).unwrap();
    let child = holder(theirs, "");
    parked_then_killed("seqpacket", child, recv(AsyncEndpoint::new(mine).unwrap()));

    let (mine, theirs) = Stream::pair(1 << 20).unwrap();
    let child = holder(theirs, "");
    parked_then_killed(
        "stream socket",
        child,
        recv(AsyncEndpoint::new(mine).unwrap()),
    );
}

/// Fills `tx` with `msg` (synchronous tries) until one would block, or is cut mid-frame (a
/// stream socket: the rest is then the sender's message in progress).
fn fill<E: MessageSender>(tx: &mut E, msg: &[u8]) {
    loop {
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Incomplete) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

async fn send<E: Readiness + MessageSender>(
    mut tx: AsyncEndpoint<E>,
    len: usize,
) -> ipc_core::Result<()> {
    tx.send(&vec![3u8; len]).await
}

#[test]
fn a_send_parked_when_its_receiver_is_killed_is_disconnected() {
    // Stream framing, a message four times the pipe's capacity: the first try writes what
    // fits and the message is committed, the rest parked.
    let (r, w) = pipe().unwrap();
    let child = holder(r, "");
    let tx = AsyncEndpoint::new(w.into_sender(STREAM).unwrap()).unwrap();
    parked_then_killed("pipe (stream, mid-message)", child, send(tx, 1 << 18));

    let (r, w) = pipe().unwrap();
    let child = holder(r, "");
    let mut tx = w.into_sender(FrameMode::Atomic).unwrap();
    fill(&mut tx, &[1; 1000]);
    parked_then_killed(
        "pipe (atomic, full)",
        child,
        send(AsyncEndpoint::new(tx).unwrap(), 1000),
    );

    let (r, w, _names) = fifo();
    let child = holder(r, "");
    let tx = AsyncEndpoint::new(w.into_sender(STREAM).unwrap()).unwrap();
    parked_then_killed("fifo (stream, mid-message)", child, send(tx, 1 << 18));

    let (mut tx, rx) = ChannelOptions::new().capacity(1 << 13).pair().unwrap();
    let segment = rx.detach();
    let child = holder(segment.fd().unwrap(), "shm-receiver");
    fill(&mut tx, &[1; 1000]);
    parked_then_killed(
        "shm (full)",
        child,
        send(AsyncEndpoint::new(tx).unwrap(), 1000),
    );

    let (mut mine, theirs) = Seqpacket::pair(1 << 16).unwrap();
    let child = holder(theirs, "");
    fill(&mut mine, &[1; 1000]);
    parked_then_killed(
        "seqpacket (full)",
        child,
        send(AsyncEndpoint::new(mine).unwrap(), 1000),
    );

    // Filled until a frame is cut: the next send must first finish it.
    let (mut mine, theirs) = Stream::pair(1 << 20).unwrap();
    let child = holder(theirs, "");
    fill(&mut mine, &[1; 100_000]);
    parked_then_killed(
        "stream socket (mid-frame)",
        child,
        send(AsyncEndpoint::new(mine).unwrap(), 100_000),
    );
}
