//! Shared-memory patterns beside the 1:1 channel: `ipc-shm`'s publish-subscribe with 1, 4 and
//! 16 subscribers (`pubsub-1`, `pubsub-4`, `pubsub-16`) and its many-producer queue with 2 and
//! 4 producer places (`mpsc-2`, `mpsc-4`).
//!
//! The engine measures two processes, so each row is a duplex link whose measured path is:
//! - pub-sub: the parent publishes (policy Block) to the child's subscriber while the other
//!   `N - 1` subscribers are threads of the child that read every message in place and let it
//!   go; the publisher waits for the slowest of them, so the numbers are those of a message
//!   every subscriber has read. The reply comes back over a one-subscriber pub-sub. On a
//!   machine with fewer cores than subscribers, the extra threads compete for CPU with the
//!   measured one: read the rows as "N readers on this machine".
//! - MPSC: the parent sends through one producer place while the other `N - 1` places are held
//!   by attached, idle producers, so the consumer's round-robin looks at every place; the
//!   reply comes back over a one-place MPSC. (Several sending producers would interleave their
//!   messages, which a ping-pong cannot check.)

use std::sync::Arc;

use ipc_core::{MaxMessage, MessageReceiver, Properties, Result};
use ipc_shm::{
    MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions, Publisher, Segment, Subscriber,
};

use crate::row::{Duplex, Handoff, Inherited, ParentEnd, Row, RowInfo, RowKind, messages};

/// The most slots a pub-sub ring of the benchmark gets, and the bytes it aims for.
const MAX_SLOTS: usize = 256;
const RING_BYTES: usize = 4 << 20;

fn pubsub_options(size: usize, subscribers: usize) -> PubSubOptions {
    let slot = (size + 16).next_multiple_of(128);
    let slots = (RING_BYTES / slot).clamp(2, MAX_SLOTS);
    let slots = 1 << slots.ilog2();
    PubSubOptions::new()
        .slots(slots)
        .max_message(size.max(1))
        .subscribers(subscribers)
        .policy(Policy::Block)
}

fn mpsc_options(size: usize, producers: usize) -> MpscOptions {
    MpscOptions::new()
        .producers(producers)
        .capacity(crate::fixtures::shm_capacity(size))
}

fn properties(mechanism: &'static str, multi_producer: bool) -> Properties {
    Properties {
        mechanism,
        max_message: MaxMessage::PerObject {
            default: 4096 - 16,
            ceiling: "the slot size chosen at creation (pub-sub); half the ring (mpsc)",
        },
        multi_producer,
        multi_consumer: !multi_producer,
        ..ipc_shm::PROPERTIES
    }
}

fn memfd_of(seg: &Arc<Segment>, child: &mut Handoff, name: &str) -> Result<()> {
    child.fd(name, seg.fd().expect("a memfd segment has a descriptor"))
}

/// `pubsub-N`: one publisher to `N` subscribers.
#[derive(Debug)]
pub(crate) struct PubSub(pub(crate) usize, pub(crate) &'static str);

impl Row for PubSub {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: self.1,
            family: "shm",
            kind: RowKind::Library,
            properties: properties("shm pub-sub", false),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let down = Arc::new(pubsub_options(size, self.0).create_memfd("bench pub-sub down")?);
        let up = Arc::new(pubsub_options(size, 1).create_memfd("bench pub-sub up")?);
        let tx = Publisher::open(down.clone())?;
        let rx = Subscriber::open(up.clone())?;
        memfd_of(&down, child, "down")?;
        memfd_of(&up, child, "up")?;
        let n = self.0;
        // Publish only once every subscriber has joined (a subscriber starts at the messages
        // published after it joins).
        Ok(ParentEnd::AfterSpawn(Box::new(move || {
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while tx.subscribers() < n {
                if std::time::Instant::now() > give_up {
                    return Err(ipc_core::Error::timed_out().in_op("wait for the subscribers"));
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            Ok(messages(tx, rx))
        })))
    }

    fn adopt(&self, _size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let down = Arc::new(Segment::inherited("down")?);
        let up = Arc::new(Segment::inherited("up")?);
        let rx = Subscriber::open(down.clone())?;
        for _ in 1..self.0 {
            let mut extra = Subscriber::open(down.clone())?;
            std::thread::Builder::new()
                .name("pubsub-extra".into())
                .spawn(move || {
                    // Read every message in place until the publisher is gone.
                    while let Ok(m) = extra.recv_in_place() {
                        drop(m);
                    }
                })
                .map_err(|e| ipc_core::Error::from(e).in_op("spawn an extra subscriber"))?;
        }
        let tx = Publisher::open(up)?;
        Ok(messages(tx, rx))
    }
}

/// `mpsc-N`: `N` producer places into one consumer.
#[derive(Debug)]
pub(crate) struct Mpsc(pub(crate) usize, pub(crate) &'static str);

/// The parent's end of an MPSC row: the sending producer, the idle ones, the reply consumer.
struct MpscEnd {
    tx: MpscProducer,
    _idle: Vec<MpscProducer>,
    rx: MpscConsumer,
}

impl Duplex for MpscEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        ipc_core::MessageSender::send(&mut self.tx, msg)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.rx.recv(buf)
    }
}

impl Row for Mpsc {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: self.1,
            family: "shm",
            kind: RowKind::Library,
            properties: properties("shm mpsc", true),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let down = Arc::new(mpsc_options(size, self.0).create_memfd("bench mpsc down")?);
        let up = Arc::new(mpsc_options(size, 1).create_memfd("bench mpsc up")?);
        let tx = MpscProducer::open(down.clone())?;
        let idle = (1..self.0)
            .map(|_| MpscProducer::open(down.clone()))
            .collect::<Result<Vec<_>>>()?;
        let rx = MpscConsumer::open(up.clone())?;
        memfd_of(&down, child, "down")?;
        memfd_of(&up, child, "up")?;
        Ok(ParentEnd::Ready(Box::new(MpscEnd {
            tx,
            _idle: idle,
            rx,
        })))
    }

    fn adopt(&self, _size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let rx = MpscConsumer::open(Segment::inherited("down")?)?;
        let tx = MpscProducer::open(Segment::inherited("up")?)?;
        Ok(messages(tx, rx))
    }
}
