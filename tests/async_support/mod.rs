//! What the async tests share: the four kinds of endpoint made in the parent and adopted in a
//! child, and a current-thread runtime.

#![allow(dead_code)]

use ipc_core::Deadline;
use ipc_fifo::{Fifo, FifoReceiver, FifoSender};
use ipc_mq::posix::{Access, Queue};
use ipc_pipe::{FrameMode, PipeReceiver, PipeSender, PipeWriter, pipe};
use ipc_shm::{ChannelOptions, Segment};
use ipc_testkit::{Spawn, TempDir, unique_posix_name};

pub(crate) const STREAM: FrameMode = FrameMode::Stream {
    max_message: 1 << 20,
};

/// The receiving ends the parent keeps, and what keeps the named objects alive.
pub(crate) struct Receivers {
    pub(crate) pipe: PipeReceiver,
    pub(crate) fifo: FifoReceiver,
    pub(crate) queue: Queue,
    pub(crate) shm: ipc_shm::Receiver,
    pub(crate) _names: (Fifo, TempDir, ipc_core::RemoveGuard),
}

/// A pipe, a FIFO, a POSIX queue and a shm channel; their sending ends go to `child` (by fd
/// `pipe`, `fifo`, `shm`, the queue by name), the receiving ends stay here.
pub(crate) fn four_kinds(child: Spawn) -> (Spawn, Receivers) {
    let (pr, pw) = pipe().unwrap();
    let dir = TempDir::new("async");
    let fifo = Fifo::create(dir.join("fifo")).unwrap();
    let mut now = ipc_fifo::OpenOptions::new();
    now.wait(Deadline::Now);
    let fr = now.open_read(fifo.path()).unwrap();
    let fw = now.open_write(fifo.path()).unwrap();
    fr.set_nonblocking(false).unwrap();
    fw.set_nonblocking(false).unwrap();
    let name = unique_posix_name("async");
    let queue = Queue::create(name.as_str(), 10, 8192).unwrap();
    let guard = queue.remove_guard().unwrap();
    let (stx, srx) = ChannelOptions::new().pair().unwrap();
    let segment = stx.detach();
    let child = child
        .fd("pipe", &pw)
        .fd("fifo", &fw)
        .fd("shm", segment.fd().unwrap())
        .env("ASYNC_QUEUE", &name);
    let receivers = Receivers {
        pipe: pr.into_receiver(1 << 20).unwrap(),
        fifo: fr.into_receiver(1 << 20).unwrap(),
        queue,
        shm: srx,
        _names: (fifo, dir, guard),
    };
    (child, receivers)
}

pub(crate) fn adopt_pipe() -> PipeSender {
    PipeWriter::from_inherited("pipe")
        .unwrap()
        .into_sender(STREAM)
        .unwrap()
}
pub(crate) fn adopt_fifo() -> FifoSender {
    PipeWriter::from_inherited("fifo")
        .unwrap()
        .into_sender(STREAM)
        .unwrap()
}
pub(crate) fn adopt_queue() -> Queue {
    Queue::open(
        std::env::var("ASYNC_QUEUE").unwrap().as_str(),
        Access::WriteOnly,
    )
    .unwrap()
}
pub(crate) fn adopt_shm() -> ipc_shm::Sender {
    ipc_shm::Sender::open(Segment::inherited("shm").unwrap()).unwrap()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap()
}

/// The sending ends the parent keeps (the other way round from [`four_kinds`]).
pub(crate) struct Senders {
    pub(crate) pipe: PipeSender,
    pub(crate) fifo: FifoSender,
    pub(crate) queue: Queue,
    pub(crate) shm: ipc_shm::Sender,
    _names: (Fifo, TempDir, ipc_core::RemoveGuard),
}

/// The four kinds with small capacities (so that sends wait for room), receiving ends to
/// `child` (by fd `pipe`, `fifo`, `shm`, the queue by name), sending ends here.
pub(crate) fn four_kinds_to_child(child: Spawn) -> (Spawn, Senders) {
    let (pr, pw) = pipe().unwrap();
    let dir = TempDir::new("async");
    let fifo = Fifo::create(dir.join("fifo")).unwrap();
    let mut now = ipc_fifo::OpenOptions::new();
    now.wait(Deadline::Now);
    let fr = now.open_read(fifo.path()).unwrap();
    let fw = now.open_write(fifo.path()).unwrap();
    fr.set_nonblocking(false).unwrap();
    fw.set_nonblocking(false).unwrap();
    let name = unique_posix_name("async");
    let queue = Queue::create(name.as_str(), 4, 8192).unwrap();
    let guard = queue.remove_guard().unwrap();
    let queue_tx = Queue::open(name.as_str(), Access::WriteOnly).unwrap();
    drop(queue);
    let (stx, srx) = ChannelOptions::new().capacity(1 << 13).pair().unwrap();
    let segment = srx.detach();
    let child = child
        .fd("pipe", &pr)
        .fd("fifo", &fr)
        .fd("shm", segment.fd().unwrap())
        .env("ASYNC_QUEUE", &name);
    let senders = Senders {
        pipe: pw.into_sender(STREAM).unwrap(),
        fifo: fw.into_sender(STREAM).unwrap(),
        queue: queue_tx,
        shm: stx,
        _names: (fifo, dir, guard),
    };
    (child, senders)
}

/// The receiving ends [`four_kinds_to_child`] handed over, in the child.
pub(crate) fn adopt_receivers() -> (PipeReceiver, FifoReceiver, Queue, ipc_shm::Receiver) {
    let pipe = ipc_pipe::PipeReader::from_inherited("pipe")
        .unwrap()
        .into_receiver(1 << 20)
        .unwrap();
    let fifo = ipc_pipe::PipeReader::from_inherited("fifo")
        .unwrap()
        .into_receiver(1 << 20)
        .unwrap();
    let queue = Queue::open(
        std::env::var("ASYNC_QUEUE").unwrap().as_str(),
        Access::ReadOnly,
    )
    .unwrap();
    let shm = ipc_shm::Receiver::open(Segment::inherited("shm").unwrap()).unwrap();
    (pipe, fifo, queue, shm)
}
