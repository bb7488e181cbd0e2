//! What the async tests share: the four kinds of endpoint made in the parent and adopted in a
//! child, and a current-thread runtime.

#![allow(dead_code)]

use ipc_core::Deadline;
use ipc_core::tokio::AsyncEndpoint;
use ipc_fifo::{Fifo, FifoReceiver, FifoSender};
use ipc_mq::posix::{Access, Queue};
use ipc_pipe::{FrameMode, PipeReader, PipeReceiver, PipeSender, PipeWriter, pipe};
use ipc_shm::{ChannelOptions, Segment};
use ipc_testkit::{Spawn, TempDir, unique_posix_name};

pub(crate) const STREAM: FrameMode = FrameMode::Stream {
    max_message: 1 << 20,
};

/// The four objects, both ends of each, and what removes the named ones.
struct Objects {
    pipe: (PipeReader, PipeWriter),
    fifo: (PipeReader, PipeWriter),
    queue_name: String,
    queue: Queue,
    shm: (ipc_shm::Sender, ipc_shm::Receiver),
    names: (Fifo, TempDir, ipc_core::RemoveGuard),
}

/// A pipe, a FIFO (both ends open, blocking), a POSIX queue of `queue_len` messages and a shm
/// channel of `shm_capacity` bytes.
fn objects(queue_len: usize, shm_capacity: usize) -> Objects {
    let dir = TempDir::new("async");
    let fifo = Fifo::create(dir.join("fifo")).unwrap();
    let mut now = ipc_fifo::OpenOptions::new();
    now.wait(Deadline::Now);
    let fr = now.open_read(fifo.path()).unwrap();
    let fw = now.open_write(fifo.path()).unwrap();
    fr.set_nonblocking(false).unwrap();
    fw.set_nonblocking(false).unwrap();
    let queue_name = unique_posix_name("async");
    let queue = Queue::create(queue_name.as_str(), queue_len, 8192).unwrap();
    let guard = queue.remove_guard().unwrap();
    Objects {
        pipe: pipe().unwrap(),
        fifo: (fr, fw),
        queue_name,
        queue,
        shm: ChannelOptions::new().capacity(shm_capacity).pair().unwrap(),
        names: (fifo, dir, guard),
    }
}

/// The FIFO, its directory and the queue's name, removed on drop.
pub(crate) type Names = (Fifo, TempDir, ipc_core::RemoveGuard);

/// The four receiving ends, async.
pub(crate) type AsyncReceivers = (
    AsyncEndpoint<PipeReceiver>,
    AsyncEndpoint<FifoReceiver>,
    AsyncEndpoint<Queue>,
    AsyncEndpoint<ipc_shm::Receiver>,
);

/// The receiving ends the parent keeps, and what keeps the named objects alive.
pub(crate) struct Receivers {
    pub(crate) pipe: PipeReceiver,
    pub(crate) fifo: FifoReceiver,
    pub(crate) queue: Queue,
    pub(crate) shm: ipc_shm::Receiver,
    _names: (Fifo, TempDir, ipc_core::RemoveGuard),
}

impl Receivers {
    /// All four as async endpoints (inside a runtime), and what keeps the names: keep it
    /// until the child has opened them.
    pub(crate) fn into_async(self) -> (AsyncReceivers, Names) {
        let ends = (
            AsyncEndpoint::new(self.pipe).unwrap(),
            AsyncEndpoint::new(self.fifo).unwrap(),
            AsyncEndpoint::new(self.queue).unwrap(),
            AsyncEndpoint::new(self.shm).unwrap(),
        );
        (ends, self._names)
    }
}

/// A pipe, a FIFO, a POSIX queue and a shm channel; their sending ends go to `child` (by fd
/// `pipe`, `fifo`, `shm`, the queue by name), the receiving ends stay here.
pub(crate) fn four_kinds(child: Spawn) -> (Spawn, Receivers) {
    let o = objects(10, ipc_shm::DEFAULT_CAPACITY);
    let segment = o.shm.0.detach();
    let child = child
        .fd("pipe", &o.pipe.1)
        .fd("fifo", &o.fifo.1)
        .fd("shm", segment.fd().unwrap())
        .env("ASYNC_QUEUE", &o.queue_name);
    let receivers = Receivers {
        pipe: o.pipe.0.into_receiver(1 << 20).unwrap(),
        fifo: o.fifo.0.into_receiver(1 << 20).unwrap(),
        queue: o.queue,
        shm: o.shm.1,
        _names: o.names,
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

/// A receive buffer for each of the four kinds (pipe, FIFO, queue, shm).
pub(crate) fn buffers() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        vec![0; 1 << 20],
        vec![0; 1 << 20],
        vec![0; 8192],
        vec![0; 1 << 20],
    )
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
    let o = objects(4, 1 << 13);
    let queue_tx = Queue::open(o.queue_name.as_str(), Access::WriteOnly).unwrap();
    let segment = o.shm.1.detach();
    let child = child
        .fd("pipe", &o.pipe.0)
        .fd("fifo", &o.fifo.0)
        .fd("shm", segment.fd().unwrap())
        .env("ASYNC_QUEUE", &o.queue_name);
    let senders = Senders {
        pipe: o.pipe.1.into_sender(STREAM).unwrap(),
        fifo: o.fifo.1.into_sender(STREAM).unwrap(),
        queue: queue_tx,
        shm: o.shm.0,
        _names: o.names,
    };
    (child, senders)
}

/// The receiving ends [`four_kinds_to_child`] handed over, in the child.
pub(crate) fn adopt_receivers() -> (PipeReceiver, FifoReceiver, Queue, ipc_shm::Receiver) {
    let pipe = PipeReader::from_inherited("pipe")
        .unwrap()
        .into_receiver(1 << 20)
        .unwrap();
    let fifo = PipeReader::from_inherited("fifo")
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
