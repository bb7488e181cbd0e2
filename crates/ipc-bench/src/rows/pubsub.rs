//! Shared-memory patterns beside the 1:1 channel: `ipc-shm`'s publish-subscribe with 1, 4 and
//! 16 subscribers (`pubsub-1`, `pubsub-4`, `pubsub-16`) and its many-producer queue with 2 and
//! 4 producer places (`mpsc-2`, `mpsc-4`). They belong to the `shm` family, so the table
//! compares them with the 1:1 channel (`shm`) and the raw ring (`shm-raw`) of the same run.
//!
//! The engine measures two processes, so each row is a duplex link whose measured path is:
//! - pub-sub: the parent publishes (policy Block) to `N` subscribers in the child: the one the
//!   engine drives, and `N - 1` threads that read every message in place and check it as the
//!   engine's receiver does (stamps always, every byte of every 64th message and of every
//!   message up to 256 bytes). The main subscriber's reply comes back over a one-subscriber
//!   pub-sub; each extra subscriber acknowledges over an MPSC segment (32 bytes: the header of
//!   the message it got and how many it got since its last acknowledgement), and the parent's
//!   receive returns only once every acknowledgement is in and right. So:
//!   - **latency** is the time from a publish until the *last* subscriber has the message
//!     and its acknowledgement is back (every subscriber acknowledges every round trip);
//!   - **throughput** is per subscriber: a run ends when every subscriber acknowledged the
//!     end of the run having received every message of it (the aggregate delivered is `N`
//!     times the row's bytes/s).
//!
//!   The extra subscribers are threads of the child, pinned to its CPU: on a machine with
//!   fewer cores than subscribers they compete for it, so read the rows as "N readers on this
//!   machine".
//! - MPSC: `N` producers of the parent send at once: the one the engine drives, and `N - 1`
//!   threads each streaming its own numbered messages of the point's size for as long as the
//!   point runs. The child's consumer drains them all round-robin, in place
//!   (`MpscConsumer::recv_in_place`), and checks every stream (each producer's order is kept;
//!   the other streams are checked where they lie in the ring as the engine's receiver checks
//!   its own, and the engine's messages are copied out into its buffer, as the iceoryx2 peer
//!   does) while it waits for the engine's messages; the reply comes back over a
//!   one-place MPSC. So latency is a round trip through a consumer busy with `N - 1` other
//!   producers, and throughput is **the consumer's**: the messages it received per second,
//!   from all `N` producers. The engine's producer's messages are counted and acknowledged as
//!   for every row (the child's count must equal what the parent sent); the consumer counts
//!   the other streams' messages it checked after the engine's first message of the run and
//!   sends that count in a second acknowledgement ([`Row::counts_others`]), so only what it
//!   received within the run counts. The producers are threads of the parent, pinned to its
//!   CPU: read the rows as "N producers on this machine".
//!
//! The report prints iceoryx2 0.10's publish-subscribe numbers (one subscriber, from
//! `shared/reference/README.md`) beside these rows, labelled as a reference measured on this
//! kind of machine, not in the run: [`ICEORYX2_REFERENCE`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ipc_core::{Error, ErrorKind, MaxMessage, MessageReceiver, MessageSender, Properties, Result};
use ipc_shm::{
    MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions, Publisher, Segment, Subscriber,
};

use crate::engine::{Metric, Placement, point_metric};
use crate::message::{HEADER_LEN, Kind, Verifier};
use crate::row::{Duplex, Handoff, Inherited, ParentEnd, Row, RowInfo, RowKind};

/// One reference line the report prints beside the pub-sub rows.
#[derive(Clone, Copy, Debug)]
pub struct Reference {
    /// What was measured, as the report labels it.
    pub what: &'static str,
    /// The metric, message size and placement of the point it stands beside.
    pub metric: Metric,
    /// Bytes.
    pub size: usize,
    /// Where the processes ran.
    pub placement: Placement,
    /// Round trip in nanoseconds, or bytes per second.
    pub value: f64,
}

const GIB: f64 = (1u64 << 30) as f64;

/// iceoryx2 0.10's publish-subscribe, one subscriber, polling (`try_recv` in a loop), each
/// message stamped and checked like the benchmark's: the peer issue 14 asks to beat at every
/// point. Measured side by side on this kind of machine (2-vCPU KVM guest, AMD EPYC, parent
/// CPU0, child CPU1; median of 3, 2026-12-06; `shared/reference/README.md`), **not in this
/// run**: compare with care (absolute numbers move between runs and machines).
pub const ICEORYX2_REFERENCE: [Reference; 5] = {
    const fn r(metric: Metric, size: usize, value: f64) -> Reference {
        Reference {
            what: "iceoryx2 0.10 pub-sub, 1 subscriber, polling",
            metric,
            size,
            placement: Placement::CrossCore,
            value,
        }
    }
    [
        r(Metric::RoundTrip, 64, 591.0),
        r(Metric::Throughput, 64, 0.25 * GIB),
        r(Metric::Throughput, 4 << 10, 9.7 * GIB),
        r(Metric::Throughput, 64 << 10, 36.9 * GIB),
        r(Metric::Throughput, 1 << 20, 44.7 * GIB),
    ]
};

/// The most slots a pub-sub ring of the benchmark gets, and the bytes it aims for.
const MAX_SLOTS: usize = 256;
const RING_BYTES: usize = 4 << 20;

/// The slots of a pub-sub ring for messages of `size` bytes (a power of two, at least 4, so
/// the largest messages still have two in flight while two are read): also what the iceoryx2
/// peer row's subscriber buffer is sized from (`rows/peer.rs`, two fewer: the same messages in
/// flight).
pub(crate) fn ring_slots(size: usize) -> usize {
    let slot = (size + 16).next_multiple_of(128);
    let slots = (RING_BYTES / slot).clamp(4, MAX_SLOTS);
    1 << slots.ilog2()
}

fn pubsub_options(size: usize, subscribers: usize) -> PubSubOptions {
    PubSubOptions::new()
        .slots(ring_slots(size))
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

/// The bytes of an extra subscriber's acknowledgement: the header of the message it
/// acknowledges, then how many messages it received since its last acknowledgement.
pub(crate) const ACK_LEN: usize = HEADER_LEN + 8;

fn ack_options(extra: usize) -> MpscOptions {
    MpscOptions::new()
        .producers(extra)
        .capacity(1 << 10)
        .max_message(ACK_LEN)
}

fn mismatch(what: String) -> Error {
    Error::with_note(ErrorKind::Corrupted, what)
}

/// What the parent checks of the extra subscribers' acknowledgements, whatever carries them
/// (this row's MPSC segment, or the iceoryx2 peer's acknowledgement service): every extra
/// subscriber acknowledges once per receive, with the header of the last message published
/// and how many were published since the last receive.
pub(crate) struct AckTally {
    /// The header of the last message published, and how many were published since the last
    /// receive: what every acknowledgement must say.
    last: [u8; HEADER_LEN],
    since: u64,
    /// Which extra subscriber (by place) has acknowledged in this receive.
    got: Vec<bool>,
}

impl AckTally {
    /// For `extra` extra subscribers, at places `0..extra`.
    pub(crate) fn new(extra: usize) -> AckTally {
        AckTally {
            last: [0; HEADER_LEN],
            since: 0,
            got: vec![false; extra],
        }
    }

    /// Notes the message just published.
    pub(crate) fn sent(&mut self, msg: &[u8]) {
        self.last.copy_from_slice(&msg[..HEADER_LEN]);
        self.since += 1;
    }

    /// Takes one acknowledgement from every extra subscriber (`next` receives one into the
    /// buffer and returns its sender's place and its length) and checks each.
    pub(crate) fn collect(
        &mut self,
        mut next: impl FnMut(&mut [u8; ACK_LEN]) -> Result<(usize, usize)>,
    ) -> Result<()> {
        self.got.iter_mut().for_each(|g| *g = false);
        let mut ack = [0u8; ACK_LEN];
        for _ in 0..self.got.len() {
            let (place, len) = next(&mut ack)?;
            let count = u64::from_le_bytes(ack[HEADER_LEN..].try_into().expect("8 bytes"));
            if len != ACK_LEN || ack[..HEADER_LEN] != self.last || count != self.since {
                return Err(mismatch(format!(
                    "extra subscriber at place {place} acknowledged {count} messages ending \
                     with another message than the {} published",
                    self.since
                )));
            }
            let Some(got) = self.got.get_mut(place) else {
                return Err(mismatch(format!(
                    "an acknowledgement from unknown place {place}"
                )));
            };
            if std::mem::replace(got, true) {
                return Err(mismatch(format!(
                    "extra subscriber at place {place} acknowledged twice"
                )));
            }
        }
        self.since = 0;
        Ok(())
    }
}

/// The parent's end of a pub-sub row: the publisher, the main subscriber's reply path, and
/// the acknowledgements of the extra subscribers.
struct PubSubEnd {
    tx: Publisher,
    rx: Subscriber,
    acks: Option<MpscConsumer>,
    tally: AckTally,
}

impl Duplex for PubSubEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)?;
        self.tally.sent(msg);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self.rx.recv(buf)?;
        let acks = &mut self.acks;
        self.tally.collect(|ack| {
            acks.as_mut()
                .expect("a row with extra subscribers has their acknowledgements")
                .recv_from_deadline(ack, ipc_core::Deadline::Never)
        })?;
        Ok(n)
    }
}

/// Why the child's extra subscribers failed, if one did: the child's end reports it.
#[derive(Default)]
pub(crate) struct Failure {
    failed: AtomicBool,
    why: Mutex<String>,
}

impl Failure {
    pub(crate) fn set(&self, why: String) {
        let mut w = self.why.lock().unwrap_or_else(|p| p.into_inner());
        if w.is_empty() {
            *w = why;
        }
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn check(&self) -> Result<()> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let why = self.why.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Err(mismatch(why))
    }
}

/// The child's end of a pub-sub row: the main subscriber and its reply publisher, failing as
/// soon as an extra subscriber found a wrong message.
struct PubSubChild {
    tx: Publisher,
    rx: Subscriber,
    failure: Arc<Failure>,
}

impl Duplex for PubSubChild {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.failure.check()?;
        self.tx.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.failure.check()?;
        self.rx.recv(buf)
    }
}

/// What an extra subscriber of a pub-sub row does with each message it reads, whatever
/// carries it (this row's subscriber, or the iceoryx2 peer's): checks it as the engine's
/// receiver does (stamps always, every byte of every 64th message and of every message up to
/// 256 bytes) and says when to acknowledge: under a round trip every message, under a stream
/// each end of run.
pub(crate) struct ExtraCheck {
    verifier: Verifier,
    size: usize,
    every: bool,
    seq: u64,
    count: u64,
    reply: [u8; ACK_LEN],
}

/// What an extra subscriber does after a message: read the next, send an acknowledgement, or
/// stop (the run is over).
pub(crate) enum Step<'a> {
    Next,
    Ack(&'a [u8; ACK_LEN]),
    Done,
}

impl ExtraCheck {
    /// For messages of `size` bytes; `every`: acknowledge every message (a round trip).
    pub(crate) fn new(size: usize, every: bool) -> ExtraCheck {
        ExtraCheck {
            verifier: Verifier::new(size),
            size,
            every,
            seq: 0,
            count: 0,
            reply: [0; ACK_LEN],
        }
    }

    /// The sequence number of the next message expected.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Checks `m`, the next message read.
    pub(crate) fn on_message(&mut self, m: &[u8]) -> std::result::Result<Step<'_>, String> {
        let seq = self.seq;
        let full = self.size <= 256 || seq % 64 == 0;
        let kind = self.verifier.check(m, seq, full).map_err(|m| m.0)?;
        self.reply[..HEADER_LEN].copy_from_slice(&m[..HEADER_LEN]);
        self.seq += 1;
        self.count += 1;
        match kind {
            Kind::Done => Ok(Step::Done),
            Kind::Data if !self.every => Ok(Step::Next),
            Kind::Data | Kind::EndRun => {
                self.reply[HEADER_LEN..].copy_from_slice(&self.count.to_le_bytes());
                self.count = 0;
                Ok(Step::Ack(&self.reply))
            }
            k => Err(format!("message {seq}: unexpected {k:?}")),
        }
    }
}

/// An extra subscriber of the child: reads every message in place and checks it
/// ([`ExtraCheck`]); stops at `Done` or when the publisher is gone.
fn extra_subscriber(
    mut sub: Subscriber,
    mut ack: MpscProducer,
    size: usize,
    every: bool,
) -> std::result::Result<(), String> {
    let mut check = ExtraCheck::new(size, every);
    loop {
        let seq = check.seq();
        let step = match sub.recv_in_place() {
            Ok(m) => check.on_message(&m)?,
            Err(e) if e.kind() == ErrorKind::Disconnected => return Ok(()),
            Err(e) => return Err(format!("receive message {seq}: {e}")),
        };
        match step {
            Step::Next => {}
            Step::Done => return Ok(()),
            Step::Ack(reply) => match ack.send(reply) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Disconnected => return Ok(()),
                Err(e) => return Err(format!("acknowledge message {seq}: {e}")),
            },
        }
    }
}

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
        let n = self.0;
        let down = Arc::new(pubsub_options(size, n).create_memfd("bench pub-sub down")?);
        let up = Arc::new(pubsub_options(size, 1).create_memfd("bench pub-sub up")?);
        let tx = Publisher::open(down.clone())?;
        let rx = Subscriber::open(up.clone())?;
        memfd_of(&down, child, "down")?;
        memfd_of(&up, child, "up")?;
        let acks = if n > 1 {
            let seg = Arc::new(ack_options(n - 1).create_memfd("bench pub-sub acks")?);
            memfd_of(&seg, child, "acks")?;
            Some(MpscConsumer::open(seg)?)
        } else {
            None
        };
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
            Ok(Box::new(PubSubEnd {
                tx,
                rx,
                acks,
                tally: AckTally::new(n - 1),
            }) as Box<dyn Duplex>)
        })))
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let down = Arc::new(Segment::inherited("down")?);
        let up = Arc::new(Segment::inherited("up")?);
        let rx = Subscriber::open(down.clone())?;
        let failure = Arc::new(Failure::default());
        let every = point_metric(parent.ctx()) == Some(Metric::RoundTrip);
        if self.0 > 1 {
            let acks = Arc::new(Segment::inherited("acks")?);
            for k in 1..self.0 {
                let sub = Subscriber::open(down.clone())?;
                let ack = MpscProducer::open(acks.clone())?;
                let failure = failure.clone();
                std::thread::Builder::new()
                    .name("pubsub-extra".into())
                    .spawn(move || {
                        if let Err(e) = extra_subscriber(sub, ack, size, every) {
                            failure.set(format!("extra subscriber {k}: {e}"));
                        }
                    })
                    .map_err(|e| ipc_core::Error::from(e).in_op("spawn an extra subscriber"))?;
            }
        }
        let tx = Publisher::open(up)?;
        Ok(Box::new(PubSubChild { tx, rx, failure }))
    }
}

/// `mpsc-N`: `N` producers sending into one consumer.
#[derive(Debug)]
pub(crate) struct Mpsc(pub(crate) usize, pub(crate) &'static str);

/// The parent's end of an MPSC row: the producer the engine drives, the reply consumer, and
/// the flag that stops the other producers' threads when the point ends.
struct MpscEnd {
    tx: MpscProducer,
    rx: MpscConsumer,
    stop: Arc<AtomicBool>,
}

impl Duplex for MpscEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.rx.recv(buf)
    }
}

impl Drop for MpscEnd {
    fn drop(&mut self) {
        // The other producers stop within one send's wait and drop their places, so the
        // child's consumer sees every producer gone.
        self.stop.store(true, Ordering::Release);
    }
}

/// What one send of a background producer came to.
pub(crate) enum Sent {
    /// The message is in.
    Yes,
    /// Not yet (the consumer is behind): try again unless the point is over.
    Again,
    /// The consumer is gone: the point is over.
    Over,
}

/// Another producer of the parent: streams its own numbered messages (stamped as the engine
/// stamps its own, sequence from 0) through `send` until `stop` is set or the consumer is
/// gone. Shared with the iceoryx2 peer's MPSC row.
pub(crate) fn background_stream(
    size: usize,
    stop: &AtomicBool,
    mut send: impl FnMut(&[u8]) -> Sent,
) {
    let mut out = crate::message::pattern(size);
    'stream: for seq in 0u64.. {
        crate::message::stamp(&mut out, seq, Kind::Data);
        loop {
            if stop.load(Ordering::Acquire) {
                break 'stream;
            }
            match send(&out) {
                Sent::Yes => break,
                Sent::Again => {}
                Sent::Over => break 'stream,
            }
        }
    }
}

/// Another producer of the parent, over this row's MPSC segment: waits at most 20 ms per
/// try, so it sees the end of the point soon.
fn background_producer(mut tx: MpscProducer, size: usize, stop: &AtomicBool) {
    let wait = std::time::Duration::from_millis(20);
    background_stream(size, stop, |out| match tx.send_timeout(out, wait) {
        Ok(()) => Sent::Yes,
        Err(e) if e.kind() == ErrorKind::TimedOut => Sent::Again,
        Err(_) => Sent::Over,
    });
}

/// The other producers' streams an MPSC row's consumer checks while it waits for the engine's
/// messages: per place, the next sequence number expected and the checker of that stream; and
/// how many of their messages it checked in the current run, for the consumer's throughput
/// ([`Row::counts_others`](crate::row::Row::counts_others)).
pub(crate) struct Streams {
    streams: Vec<(u64, Verifier)>,
    /// Whether the engine's first message of the run has come: only what the consumer
    /// receives after it (so after the run's clock started) counts.
    in_run: bool,
    counted: u64,
}

impl Streams {
    /// For producers at places `0..places`, messages of `size` bytes.
    pub(crate) fn new(places: usize, size: usize) -> Streams {
        Streams {
            streams: (0..places).map(|_| (0, Verifier::new(size))).collect(),
            in_run: false,
            counted: 0,
        }
    }

    /// Notes that the consumer received a message of the engine's producer: from the first of
    /// a run on, the other streams' messages count.
    pub(crate) fn engine_message(&mut self) {
        self.in_run = true;
    }

    /// How many of the other streams' messages were checked since the engine's first message
    /// after the last call ([`Duplex::take_others`](crate::row::Duplex::take_others)).
    pub(crate) fn take_counted(&mut self) -> u64 {
        self.in_run = false;
        std::mem::take(&mut self.counted)
    }

    /// Checks `msg`, the next message of the producer at `place` (every byte of every 64th
    /// message and of every message up to 256 bytes, the stamps of the others).
    pub(crate) fn check(&mut self, place: usize, msg: &[u8]) -> Result<()> {
        let Some((next, verifier)) = self.streams.get_mut(place) else {
            return Err(mismatch(format!(
                "a message from unknown producer place {place}"
            )));
        };
        let full = msg.len() <= 256 || *next % 64 == 0;
        verifier
            .check(msg, *next, full)
            .map_err(|m| mismatch(format!("producer place {place}: {}", m.0)))?;
        *next += 1;
        self.counted += u64::from(self.in_run);
        Ok(())
    }
}

/// The child's end of an MPSC row: receives in place until a message of the engine's producer
/// comes (copied out into the engine's buffer, for its checks, as the iceoryx2 peer's
/// subscriber copies the engine's sample out), checking on the way every message of the other
/// producers where it lies in the ring (each its own numbered stream), as the iceoryx2 peer
/// checks the other publishers' samples.
struct MpscChild {
    tx: MpscProducer,
    rx: MpscConsumer,
    main: usize,
    others: Streams,
}

impl Duplex for MpscChild {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            let m = self.rx.recv_in_place()?;
            if m.place() != self.main {
                self.others.check(m.place(), &m)?;
                continue;
            }
            let n = m.copy_into(buf)?;
            self.others.engine_message();
            return Ok(n);
        }
    }

    fn take_others(&mut self) -> u64 {
        self.others.take_counted()
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

    fn counts_others(&self) -> bool {
        true
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let down = Arc::new(mpsc_options(size, self.0).create_memfd("bench mpsc down")?);
        let up = Arc::new(mpsc_options(size, 1).create_memfd("bench mpsc up")?);
        let tx = MpscProducer::open(down.clone())?;
        child.arg(tx.place().to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 1..self.0 {
            let other = MpscProducer::open(down.clone())?;
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("mpsc-producer".into())
                .spawn(move || background_producer(other, size, &stop))
                .map_err(|e| ipc_core::Error::from(e).in_op("spawn a producer"))?;
        }
        let rx = MpscConsumer::open(up.clone())?;
        memfd_of(&down, child, "down")?;
        memfd_of(&up, child, "up")?;
        Ok(ParentEnd::Ready(Box::new(MpscEnd { tx, rx, stop })))
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let main = parent.arg().parse().map_err(|_| {
            Error::with_note(
                ErrorKind::InvalidInput,
                "the main producer's place is missing",
            )
        })?;
        let rx = MpscConsumer::open(Segment::inherited("down")?)?;
        let tx = MpscProducer::open(Segment::inherited("up")?)?;
        let others = Streams::new(self.0, size);
        Ok(Box::new(MpscChild {
            tx,
            rx,
            main,
            others,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{pattern, stamp};

    fn data(size: usize, seq: u64) -> Vec<u8> {
        let mut m = pattern(size);
        stamp(&mut m, seq, Kind::Data);
        m
    }

    #[test]
    fn streams_count_only_what_comes_after_the_engine_s_first_message_of_a_run() {
        let mut s = Streams::new(2, 64);
        // Before the run's first engine message: checked, not counted.
        s.check(1, &data(64, 0)).unwrap();
        s.engine_message();
        s.check(0, &data(64, 0)).unwrap();
        s.check(1, &data(64, 1)).unwrap();
        s.check(1, &data(64, 2)).unwrap();
        assert_eq!(s.take_counted(), 3);
        // Between runs: checked (the order goes on), not counted.
        s.check(0, &data(64, 1)).unwrap();
        assert_eq!(s.take_counted(), 0);
        s.engine_message();
        s.check(0, &data(64, 2)).unwrap();
        assert_eq!(s.take_counted(), 1);
        // A message out of order, or from an unknown place, fails and is not counted.
        s.engine_message();
        assert!(s.check(0, &data(64, 9)).is_err());
        assert!(s.check(2, &data(64, 0)).is_err());
        assert_eq!(s.take_counted(), 0);
    }
}
