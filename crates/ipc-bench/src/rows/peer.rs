//! Peer rows (feature `peers`): other IPC libraries measured by the same engine in the same
//! run, so the table compares this workspace with them at every point. Not built by default:
//! `cargo xtask bench --peers` (or `cargo build --release -p ipc-bench --features peers`).
//!
//! iceoryx2 0.10's publish-subscribe over its `ipc` service, built exactly as the `shm` pattern
//! rows it stands beside (`rows/pubsub.rs`: same roles, threads, placement and checks), so each
//! pair is like for like:
//! - `iceoryx2-pubsub`, `iceoryx2-pubsub-4`, `iceoryx2-pubsub-16` ([`Iceoryx2PubSub`]), the
//!   counterparts of `pubsub-1`, `pubsub-4`, `pubsub-16`: the parent publishes on a service
//!   `down` to `N` subscribers of the child, the one the engine drives and `N - 1` threads of
//!   the child (pinned to its CPU) that read every sample in place and check it as
//!   `pubsub-N`'s extra subscribers do ([`ExtraCheck`]). The main subscriber replies over a
//!   one-subscriber service `up`; the extra subscribers acknowledge over a service `acks`
//!   (`N - 1` publishers, one subscriber, the same 32-byte acknowledgement, told apart by
//!   publisher id), and the parent's receive returns only once every acknowledgement is in
//!   and right ([`AckTally`]). Latency is to the last subscriber, throughput per subscriber.
//! - `iceoryx2-mpsc-2`, `iceoryx2-mpsc-4` ([`Iceoryx2Mpsc`]), the counterparts of `mpsc-2`,
//!   `mpsc-4`: one service `down` with `N` publishers and one subscriber. The parent's
//!   publisher the engine drives and `N - 1` threads of the parent (pinned to its CPU), each
//!   with its own publisher streaming its own numbered messages ([`background_stream`]); the
//!   child's subscriber tells the streams apart by publisher id, checks the others'
//!   ([`Streams`]) and returns the engine's; the reply goes back over `up`. Samples come in
//!   the order iceoryx2's `receive()` gives them: it scans the publishers' connections in a
//!   fixed order and takes from the first that has one, and the engine's publisher, created
//!   first, comes first. So the measured producer is favoured where `mpsc-N`'s consumer
//!   drains its producers round-robin: in one check run (1 MiB, across cores) it got 80%
//!   (`iceoryx2-mpsc-2`) and 51% (`iceoryx2-mpsc-4`) of the consumer's messages against an
//!   even share for `mpsc-N`. Throughput is therefore, for both rows, **the consumer's**:
//!   the messages it received per second from all `N` publishers (the other streams'
//!   messages it checked in the run, counted as `mpsc-N` counts them,
//!   [`Row::counts_others`]), whatever share each publisher got.
//!
//! The engine stamps and checks every message exactly as for the `shm` rows (sequence number,
//! length, kind, tail and per-page stamps, full compares; see [`crate::message`]).
//!
//! Configuration, set explicitly on every service: payload `[u8]` with each publisher's
//! `initial_max_slice_len` set to the point's size (`loan_slice_uninit`, then one copy in: the
//! engine hands a `&[u8]`); history 0; `max_publishers` and `max_subscribers` as the row needs
//! (iceoryx2's defaults, 2 and 8, would refuse `iceoryx2-pubsub-16` and `iceoryx2-mpsc-4`) and
//! `max_nodes` for one node per thread (a port of the `ipc` service is not `Send`, so each
//! extra subscriber or producer thread has its own node). A pub-sub subscriber's buffer holds
//! two messages fewer than a `pubsub-N` ring has slots ([`pubsub_buffer`]: the same messages
//! in flight, since iceoryx2 keeps the one being written and the one being read outside the
//! buffer, where a ring slot holds each); an MPSC subscriber's
//! buffer, per publisher, as many as one `mpsc-N` producer ring holds ([`mpsc_buffer`]).
//! `RetryUntilDelivered` backpressure, so nothing is dropped. The engine's receivers copy the
//! sample out into the engine's buffer, as the `shm` rows' `recv` does; extra subscribers and
//! the MPSC consumer's check of the other streams read in place.
//!
//! Waiting: **polling**, as iceoryx2's publish-subscribe is used without its event service. A
//! receiver calls `receive()` in a loop; a poll that finds nothing spins, and yields the CPU
//! after [`SPINS_BEFORE_YIELD`] empty polls (on a shared core the other process or thread must
//! run to publish). The `shm` rows instead wait with `ipc-shm`'s waiting rule (spin, yield,
//! then a futex).
//!
//! Files: iceoryx2 keeps node and service descriptions under a root directory and the data
//! in `/dev/shm`. Each point gets its own root (`/tmp/ipc-bench-iceoryx2-PID-N`) and its own
//! `/dev/shm` prefix (`iox2_ipcbench_PID_N_`); iceoryx2 removes its files when the last user
//! drops them, and the parent's end, once its threads have stopped and the child has exited,
//! removes that root and every `/dev/shm` name with that prefix, so a crashed child leaves
//! nothing behind either.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use iceoryx2::port::BackpressureAction;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;
use ipc_core::{Error, ErrorKind, MaxMessage, Properties, Result};

use crate::engine::{Metric, point_metric};
use crate::row::{Duplex, Handoff, Inherited, ParentEnd, Row, RowInfo, RowKind, watch_child};
use crate::rows::pubsub::{
    ACK_LEN, AckTally, ExtraCheck, Failure, Sent, Step, Streams, background_stream, ring_slots,
};

/// Empty polls before a receiver yields the CPU once.
const SPINS_BEFORE_YIELD: u32 = 64;
/// Empty polls between two checks that the other process is still there.
const POLLS_PER_CHECK: u32 = 1024;
/// The buffer of the acknowledgement service's subscriber, per extra subscriber (one
/// acknowledgement is in flight at a time).
const ACK_BUFFER: usize = 16;
/// How long a parent waits for the child's subscribers to join.
const JOIN_LIMIT: Duration = Duration::from_secs(30);

/// `iceoryx2-pubsub` (`N = 1`), `iceoryx2-pubsub-N`: iceoryx2 0.10 publish-subscribe, one
/// publisher to `N` subscribers, polling; beside `pubsub-N`.
#[derive(Debug)]
pub(crate) struct Iceoryx2PubSub(pub(crate) usize, pub(crate) &'static str);

/// `iceoryx2-mpsc-N`: iceoryx2 0.10 publish-subscribe, `N` publishers to one subscriber,
/// polling; beside `mpsc-N`.
#[derive(Debug)]
pub(crate) struct Iceoryx2Mpsc(pub(crate) usize, pub(crate) &'static str);

fn properties(multi_producer: bool) -> Properties {
    Properties {
        mechanism: "iceoryx2 0.10 pub-sub",
        keeps_boundaries: true,
        max_message: MaxMessage::PerObject {
            default: 1,
            ceiling: "the publisher's initial_max_slice_len (here the point's size)",
        },
        multi_producer,
        multi_consumer: true,
        needs_related_process: false,
        namespace: Some("iceoryx2 service names (files in its root and /dev/shm)"),
        kernel_copies_per_message: 0,
        crosses_machines: false,
    }
}

fn ice<E: Debug>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::with_note(ErrorKind::Io, format!("iceoryx2: {what}: {e:?}"))
}

/// The names of one point's iceoryx2 objects: `PID-N`, unique in this machine's processes.
fn next_tag() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn root_dir(tag: &str) -> String {
    format!("/tmp/ipc-bench-iceoryx2-{tag}")
}

fn shm_prefix(tag: &str) -> String {
    format!("iox2_ipcbench_{tag}_")
}

/// A node whose files all live under the point's own root and `/dev/shm` prefix.
fn node(tag: &str) -> Result<Node<ipc::Service>> {
    let mut config = Config::default();
    config
        .global
        .set_root_path(&Path::new(root_dir(tag).as_bytes()).map_err(ice("root path"))?);
    config.global.prefix = FileName::new(shm_prefix(tag).as_bytes()).map_err(ice("prefix"))?;
    NodeBuilder::new()
        .config(&config)
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .map_err(ice("create node"))
}

type Factory = PubSubFactory<ipc::Service, [u8], ()>;
type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;

/// The shape of one service: its ports, each subscriber's buffer (per publisher), and how
/// many nodes (processes and threads) open it.
#[derive(Clone, Copy, Debug)]
struct Shape {
    publishers: usize,
    subscribers: usize,
    buffer: usize,
    nodes: usize,
}

impl Shape {
    /// One publisher, one subscriber: the reply path `up`.
    fn one_to_one(buffer: usize) -> Shape {
        Shape {
            publishers: 1,
            subscribers: 1,
            buffer,
            nodes: 2,
        }
    }
}

/// The buffer of an `iceoryx2-mpsc-N` subscriber, per publisher: as many messages of `size`
/// bytes as one producer ring of `mpsc-N` holds (8-byte record headers, 8-byte aligned).
fn mpsc_buffer(size: usize) -> usize {
    crate::fixtures::shm_capacity(size) / (8 + size.next_multiple_of(8))
}

/// Creates (parent) or opens (child, threads) the service `dir` of `shape`.
fn service(node: &Node<ipc::Service>, dir: &str, shape: Shape, create: bool) -> Result<Factory> {
    let name = ServiceName::new(&format!("ipc-bench/{dir}")).map_err(ice("service name"))?;
    let builder = node
        .service_builder(&name)
        .publish_subscribe::<[u8]>()
        .max_publishers(shape.publishers)
        .max_subscribers(shape.subscribers)
        .max_nodes(shape.nodes)
        .history_size(0)
        .subscriber_max_buffer_size(shape.buffer)
        .enable_safe_overflow(false);
    if create {
        builder.create().map_err(ice("create service"))
    } else {
        builder.open().map_err(ice("open service"))
    }
}

/// A publisher for messages of `size` bytes that retries until every subscriber has room, or
/// gives up once `give_up` says so (the other process exited, the point is over).
fn publisher(
    factory: &Factory,
    size: usize,
    give_up: impl Fn() -> bool + Send + 'static,
) -> Result<Pub> {
    factory
        .publisher_builder()
        .initial_max_slice_len(size)
        .max_loaned_samples(1)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .set_backpressure_handler(move |_: &_| {
            if give_up() {
                BackpressureAction::DiscardDataAndFail
            } else {
                BackpressureAction::Retry
            }
        })
        .create()
        .map_err(ice("create publisher"))
}

/// Whether `f` is set, as a backpressure handler's condition.
fn flag(f: &Arc<AtomicBool>) -> impl Fn() -> bool + Send + Clone + 'static {
    let f = f.clone();
    move || f.load(Ordering::Acquire)
}

fn subscriber(factory: &Factory, buffer: usize) -> Result<Sub> {
    factory
        .subscriber_builder()
        .buffer_size(buffer)
        .create()
        .map_err(ice("create subscriber"))
}

/// Publishes `msg` in one sample: loan, copy in, send; returns to how many subscribers.
fn publish(tx: &Pub, msg: &[u8]) -> std::result::Result<usize, String> {
    let sample = tx
        .loan_slice_uninit(msg.len())
        .map_err(|e| format!("loan a sample: {e:?}"))?;
    sample
        .write_from_slice(msg)
        .send()
        .map_err(|e| format!("send: {e:?}"))
}

/// Polls `rx` until a sample comes and hands it to `f`; calls `check` every
/// [`POLLS_PER_CHECK`] empty polls (its error ends the wait).
fn poll<T>(
    rx: &Sub,
    mut check: impl FnMut() -> Result<()>,
    f: impl FnOnce(&Sample<ipc::Service, [u8], ()>) -> Result<T>,
) -> Result<T> {
    let mut empty = 0u32;
    loop {
        if let Some(sample) = rx.receive().map_err(ice("receive"))? {
            return f(&sample);
        }
        empty = empty.wrapping_add(1);
        if empty % POLLS_PER_CHECK == 0 {
            check()?;
        }
        if empty % SPINS_BEFORE_YIELD == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Copies a received payload into the engine's buffer.
fn copy_out(got: &[u8], buf: &mut [u8]) -> Result<usize> {
    let Some(dst) = buf.get_mut(..got.len()) else {
        return Err(Error::with_note(
            ErrorKind::MessageTooLarge,
            format!(
                "iceoryx2 sample of {} bytes, buffer of {}",
                got.len(),
                buf.len()
            ),
        ));
    };
    dst.copy_from_slice(got);
    Ok(got.len())
}

/// One end of the link: the publisher of one service and the subscriber of the other. Fields
/// drop in order: ports, then services, then the node.
struct End {
    tx: Pub,
    rx: Sub,
    /// The service this end receives on: its publisher count tells the child the parent left.
    rx_service: Factory,
    tx_service: Factory,
    node: Node<ipc::Service>,
    /// Set once the other process is gone (the parent's child watch); the child instead
    /// looks at `rx_service`'s publishers.
    gone: Arc<AtomicBool>,
    is_parent: bool,
}

impl End {
    /// The parent's end (creating the point's services `down` and `up`: it publishes on
    /// `down`) or the child's (opening them: it subscribes to `down`), for messages of `size`
    /// bytes; a subscriber's buffer is its service's.
    fn open(tag: &str, down: Shape, up: Shape, size: usize, is_parent: bool) -> Result<End> {
        let node = node(tag)?;
        let down_service = service(&node, "down", down, is_parent)?;
        let up_service = service(&node, "up", up, is_parent)?;
        let ((tx_service, _), (rx_service, rx_shape)) = if is_parent {
            ((down_service, down), (up_service, up))
        } else {
            ((up_service, up), (down_service, down))
        };
        let gone = Arc::new(AtomicBool::new(false));
        Ok(End {
            tx: publisher(&tx_service, size, flag(&gone))?,
            rx: subscriber(&rx_service, rx_shape.buffer)?,
            rx_service,
            tx_service,
            node,
            gone,
            is_parent,
        })
    }

    fn peer_gone(&self) -> bool {
        if self.is_parent {
            self.gone.load(Ordering::Acquire)
        } else {
            let gone = self.rx_service.dynamic_config().number_of_publishers() == 0;
            if gone {
                self.gone.store(true, Ordering::Release);
            }
            gone
        }
    }

    fn check_peer(&self) -> Result<()> {
        if self.peer_gone() {
            return Err(Error::disconnected().in_op("iceoryx2 receive"));
        }
        Ok(())
    }

    fn send(&self, msg: &[u8]) -> Result<()> {
        match publish(&self.tx, msg) {
            Ok(_) => Ok(()),
            Err(_) if self.peer_gone() => Err(Error::disconnected().in_op("iceoryx2 send")),
            Err(e) => Err(Error::with_note(ErrorKind::Io, format!("iceoryx2: {e}"))),
        }
    }
}

/// Waits until `factory` has `n` subscribers, or fails once `give_up` says so.
fn joined(factory: &Factory, n: usize, give_up: impl Fn() -> bool) -> Result<()> {
    let limit = Instant::now() + JOIN_LIMIT;
    while factory.dynamic_config().number_of_subscribers() < n {
        if give_up() {
            return Err(Error::disconnected().in_op("wait for the iceoryx2 subscribers"));
        }
        if Instant::now() > limit {
            return Err(Error::timed_out().in_op("wait for the iceoryx2 subscribers"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// The parent's side of the extra subscribers' acknowledgements (`iceoryx2-pubsub-N`, `N > 1`):
/// the subscriber of `acks`, and the publisher ids seen so far, whose index is the place
/// [`AckTally`] checks.
struct Acks {
    rx: Sub,
    _service: Factory,
    places: Vec<u128>,
}

/// The parent's end of a point: the publisher the engine drives and the reply subscriber, the
/// acknowledgements of a pub-sub row's extra subscribers, the threads of an MPSC row's other
/// publishers. On drop: stops the threads, then, once the child has exited, sweeps the
/// point's files.
struct ParentSide {
    end: Option<End>,
    acks: Option<Acks>,
    tally: AckTally,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Whether the child was started (only then is there an exit to wait for).
    started: bool,
    tag: String,
}

impl ParentSide {
    fn new(tag: &str, end: End, acks: Option<Acks>, extra: usize) -> ParentSide {
        ParentSide {
            end: Some(end),
            acks,
            tally: AckTally::new(extra),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            started: false,
            tag: tag.to_owned(),
        }
    }

    fn end(&self) -> &End {
        self.end.as_ref().expect("present until drop")
    }

    /// Watches the child and hands it `arg`; returns the parent's end, ready once the child
    /// has started and `subscribers` have joined the service the parent publishes on (history
    /// 0: a message published before a subscriber joins is not delivered to it). Called once
    /// iceoryx2 has opened its files, so the descriptor handed over keeps its number.
    fn start(mut self, child: &mut Handoff, arg: String, subscribers: usize) -> Result<ParentEnd> {
        let on_exit = self.end().gone.clone();
        watch_child(child, move || on_exit.store(true, Ordering::Release))?;
        child.arg(arg)?;
        Ok(ParentEnd::AfterSpawn(Box::new(move || {
            self.started = true;
            let end = self.end();
            joined(&end.tx_service, subscribers, || {
                end.gone.load(Ordering::Acquire)
            })?;
            Ok(Box::new(self) as Box<dyn Duplex>)
        })))
    }
}

impl Duplex for ParentSide {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.end().send(msg)?;
        self.tally.sent(msg);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let end = self.end.as_ref().expect("present until drop");
        let n = poll(&end.rx, || end.check_peer(), |s| copy_out(s.payload(), buf))?;
        let acks = &mut self.acks;
        self.tally.collect(|ack| {
            let a = acks
                .as_mut()
                .expect("a row with extra subscribers has their acknowledgements");
            poll(
                &a.rx,
                || end.check_peer(),
                |s| {
                    let id = s.header().publisher_id().value();
                    let place = match a.places.iter().position(|&p| p == id) {
                        Some(p) => p,
                        None => {
                            a.places.push(id);
                            a.places.len() - 1
                        }
                    };
                    let got = s.payload();
                    let len = got.len().min(ACK_LEN);
                    ack[..len].copy_from_slice(&got[..len]);
                    Ok((place, got.len()))
                },
            )
        })?;
        Ok(n)
    }
}

impl Drop for ParentSide {
    fn drop(&mut self) {
        // Once every publisher of the parent is gone, the child sees it and exits if still
        // waiting.
        self.stop.store(true, Ordering::Release);
        drop(self.acks.take());
        let gone = self.end.as_ref().map(|e| e.gone.clone());
        drop(self.end.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(gone) = gone.filter(|_| self.started) {
            let give_up = Instant::now() + Duration::from_secs(10);
            while !gone.load(Ordering::Acquire) && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        remove_files(&self.tag);
    }
}

/// Removes what iceoryx2 may have left of point `tag` (a process that exited without dropping
/// its objects): its root directory and its `/dev/shm` names.
fn remove_files(tag: &str) {
    let _ = std::fs::remove_dir_all(root_dir(tag));
    let prefix = shm_prefix(tag);
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The publishers of an MPSC row as the child's subscriber tells them apart: the engine's, and
/// the others, whose streams it checks.
struct Senders {
    main: u128,
    others: Vec<u128>,
    streams: Streams,
}

/// The child's end of a point: the subscriber the engine drives and the reply publisher;
/// failing as soon as a pub-sub row's extra subscriber found a wrong message; for an MPSC
/// row, checking the other publishers' streams while it waits for the engine's message.
struct ChildSide {
    end: End,
    failure: Arc<Failure>,
    senders: Option<Senders>,
}

impl Duplex for ChildSide {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.failure.check()?;
        self.end.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let (end, failure, senders) = (&self.end, &self.failure, &mut self.senders);
        loop {
            failure.check()?;
            let check = || {
                failure.check()?;
                end.check_peer()
            };
            let got = poll(&end.rx, check, |s| {
                let Some(p) = senders.as_mut() else {
                    return copy_out(s.payload(), buf).map(Some);
                };
                let id = s.header().publisher_id().value();
                if id == p.main {
                    p.streams.engine_message();
                    return copy_out(s.payload(), buf).map(Some);
                }
                let Some(place) = p.others.iter().position(|&o| o == id) else {
                    return Err(Error::with_note(
                        ErrorKind::Corrupted,
                        format!("a sample from unknown publisher {id:x}"),
                    ));
                };
                p.streams.check(place, s.payload()).map(|()| None)
            })?;
            if let Some(n) = got {
                return Ok(n);
            }
        }
    }

    fn take_others(&mut self) -> u64 {
        self.senders
            .as_mut()
            .map_or(0, |p| p.streams.take_counted())
    }
}

/// The buffer of an `iceoryx2-pubsub-N` subscriber: as many messages in flight as a
/// `pubsub-N` ring of [`ring_slots`] slots holds. A `pubsub-N` slot is taken from the moment
/// the publisher starts writing a message until the slowest subscriber has finished reading it
/// in place, so the ring's slots hold the message being written, those queued and the one
/// being read. An iceoryx2 publisher writes into a loaned sample before `send` meets a full
/// buffer, and a subscriber's `receive` takes the sample out of its buffer before reading it:
/// those two are outside the buffer, which so holds only the queued ones, two fewer.
fn pubsub_buffer(size: usize) -> usize {
    ring_slots(size) - 2
}

/// The service `down` of `iceoryx2-pubsub-N`: one publisher, `n` subscribers, each with a
/// buffer of [`pubsub_buffer`]; the parent's node, the child's and its threads'.
fn pubsub_shape(n: usize, size: usize) -> Shape {
    Shape {
        publishers: 1,
        subscribers: n,
        buffer: pubsub_buffer(size),
        nodes: n + 1,
    }
}

/// The service `acks` of `iceoryx2-pubsub-N`: one publisher per extra subscriber, the parent's
/// subscriber.
fn ack_shape(n: usize) -> Shape {
    Shape {
        publishers: n - 1,
        subscribers: 1,
        buffer: ACK_BUFFER,
        nodes: n,
    }
}

/// The service `down` of `iceoryx2-mpsc-N`: `n` publishers (the parent's and its threads'
/// nodes), one subscriber (the child's).
fn mpsc_shape(n: usize, size: usize) -> Shape {
    Shape {
        publishers: n,
        subscribers: 1,
        buffer: mpsc_buffer(size),
        nodes: n + 1,
    }
}

/// The point's tag and the rest of the child's argument.
fn split_arg<'a>(parent: &'a Inherited<'_>) -> (&'a str, std::str::Split<'a, char>) {
    let mut it = parent.arg().split(' ');
    (it.next().unwrap_or_default(), it)
}

fn bad_arg(what: &str) -> Error {
    Error::with_note(
        ErrorKind::InvalidInput,
        format!("iceoryx2 row argument: {what}"),
    )
}

/// An extra subscriber of the child (`iceoryx2-pubsub-N`, a thread with its own node): joins
/// `down` and `acks`, says so on `ready`, then reads every sample in place and checks it
/// ([`ExtraCheck`]), acknowledging as `pubsub-N`'s extra subscribers do; stops at `Done` or
/// when the publisher is gone.
fn extra_subscriber(
    tag: &str,
    n: usize,
    size: usize,
    every: bool,
    ready: &mpsc::Sender<Result<()>>,
) -> std::result::Result<(), String> {
    let gone = Arc::new(AtomicBool::new(false));
    let setup = (|| {
        let node = node(tag)?;
        let down = service(&node, "down", pubsub_shape(n, size), false)?;
        let acks = service(&node, "acks", ack_shape(n), false)?;
        let sub = subscriber(&down, pubsub_buffer(size))?;
        let ack = publisher(&acks, ACK_LEN, flag(&gone))?;
        Ok((sub, ack, down, acks, node))
    })();
    let (sub, ack, down, _acks, _node) = match setup {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let parent_left = || {
        if down.dynamic_config().number_of_publishers() == 0 {
            gone.store(true, Ordering::Release);
            return Err(Error::disconnected());
        }
        Ok(())
    };
    let mut check = ExtraCheck::new(size, every);
    loop {
        let seq = check.seq();
        let c = &mut check;
        let step = poll(&sub, parent_left, move |s| {
            c.on_message(s.payload())
                .map_err(|m| Error::with_note(ErrorKind::Corrupted, m))
        });
        match step {
            Ok(Step::Next) => {}
            Ok(Step::Done) => return Ok(()),
            Ok(Step::Ack(reply)) => match publish(&ack, reply) {
                Ok(_) => {}
                Err(_) if gone.load(Ordering::Acquire) => return Ok(()),
                Err(e) => return Err(format!("acknowledge message {seq}: {e}")),
            },
            Err(e) if e.kind() == ErrorKind::Disconnected => return Ok(()),
            Err(e) => return Err(format!("message {seq}: {e}")),
        }
    }
}

impl Row for Iceoryx2PubSub {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: self.1,
            family: "iceoryx2",
            kind: RowKind::Peer,
            properties: properties(false),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let n = self.0;
        let tag = next_tag();
        let built = (|| -> Result<ParentSide> {
            let up = Shape::one_to_one(pubsub_buffer(size));
            let end = End::open(&tag, pubsub_shape(n, size), up, size, true)?;
            let acks = if n > 1 {
                let service = service(&end.node, "acks", ack_shape(n), true)?;
                Some(Acks {
                    rx: subscriber(&service, ACK_BUFFER)?,
                    _service: service,
                    places: Vec::with_capacity(n - 1),
                })
            } else {
                None
            };
            Ok(ParentSide::new(&tag, end, acks, n - 1))
        })();
        let side = built.inspect_err(|_| remove_files(&tag))?;
        side.start(child, tag, n)
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let n = self.0;
        let (tag, _) = split_arg(parent);
        let up = Shape::one_to_one(pubsub_buffer(size));
        let end = End::open(tag, pubsub_shape(n, size), up, size, false)?;
        let failure = Arc::new(Failure::default());
        let every = point_metric(parent.ctx()) == Some(Metric::RoundTrip);
        let (ready, joined) = mpsc::channel();
        for k in 1..n {
            let (tag, failure, ready) = (tag.to_owned(), failure.clone(), ready.clone());
            std::thread::Builder::new()
                .name("iceoryx2-extra".into())
                .spawn(move || {
                    if let Err(e) = extra_subscriber(&tag, n, size, every, &ready) {
                        failure.set(format!("extra subscriber {k}: {e}"));
                    }
                })
                .map_err(|e| Error::from(e).in_op("spawn an extra subscriber"))?;
        }
        drop(ready);
        for _ in 1..n {
            joined
                .recv()
                .map_err(|_| bad_arg("an extra subscriber ended before it joined"))??;
        }
        Ok(Box::new(ChildSide {
            end,
            failure,
            senders: None,
        }))
    }
}

/// Another publisher of the parent (`iceoryx2-mpsc-N`, a thread with its own node): joins
/// `down`, sends its id on `id`, waits for the child's subscriber, then streams its own
/// numbered messages ([`background_stream`]) until `stop` or the child is gone.
fn background_publisher(
    tag: &str,
    n: usize,
    size: usize,
    stop: &Arc<AtomicBool>,
    gone: &Arc<AtomicBool>,
    id: &mpsc::Sender<Result<u128>>,
) {
    let over = {
        let (stop, gone) = (flag(stop), flag(gone));
        move || stop() || gone()
    };
    let setup = (|| {
        let node = node(tag)?;
        let down = service(&node, "down", mpsc_shape(n, size), false)?;
        let tx = publisher(&down, size, over.clone())?;
        Ok((tx, down, node))
    })();
    let (tx, down, _node) = match setup {
        Ok(s) => {
            let _ = id.send(Ok(s.0.id().value()));
            s
        }
        Err(e) => {
            let _ = id.send(Err(e));
            return;
        }
    };
    if joined(&down, 1, &over).is_err() {
        return;
    }
    background_stream(size, stop, |out| match publish(&tx, out) {
        Ok(_) => Sent::Yes,
        Err(_) => Sent::Over, // given up (the point is over) or broken: stop streaming
    });
}

impl Row for Iceoryx2Mpsc {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: self.1,
            family: "iceoryx2",
            kind: RowKind::Peer,
            properties: properties(true),
            max_message: None,
        }
    }

    fn counts_others(&self) -> bool {
        true
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let n = self.0;
        let tag = next_tag();
        let up = Shape::one_to_one(mpsc_buffer(size));
        let built = End::open(&tag, mpsc_shape(n, size), up, size, true)
            .map(|end| ParentSide::new(&tag, end, None, 0));
        let mut side = built.inspect_err(|_| remove_files(&tag))?;
        // The other publishers: each thread's id, in order, for the child to tell them apart
        // (the side, dropped on an error, stops and joins the threads started so far).
        let (ids, id_rx) = mpsc::channel();
        let mut arg = format!("{tag} {}", side.end().tx.id().value());
        for _ in 1..n {
            let (tag, stop, gone, ids) = (
                tag.clone(),
                side.stop.clone(),
                side.end().gone.clone(),
                ids.clone(),
            );
            let t = std::thread::Builder::new()
                .name("iceoryx2-producer".into())
                .spawn(move || background_publisher(&tag, n, size, &stop, &gone, &ids))
                .map_err(|e| Error::from(e).in_op("spawn a publisher"))?;
            side.threads.push(t);
            let id = id_rx
                .recv()
                .map_err(|_| bad_arg("a publisher thread ended before it joined"))??;
            arg.push_str(&format!(" {id}"));
        }
        side.start(child, arg, 1)
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let n = self.0;
        let (tag, rest) = split_arg(parent);
        let ids = rest
            .map(|s| s.parse::<u128>().map_err(|_| bad_arg("a publisher id")))
            .collect::<Result<Vec<_>>>()?;
        let [main, others @ ..] = &ids[..] else {
            return Err(bad_arg("the engine's publisher id is missing"));
        };
        if others.len() != n - 1 {
            return Err(bad_arg("one id per publisher"));
        }
        let up = Shape::one_to_one(mpsc_buffer(size));
        Ok(Box::new(ChildSide {
            end: End::open(tag, mpsc_shape(n, size), up, size, false)?,
            failure: Arc::new(Failure::default()),
            senders: Some(Senders {
                main: *main,
                others: others.to_vec(),
                streams: Streams::new(n - 1, size),
            }),
        }))
    }
}
