//! Peer rows (feature `peers`): other IPC libraries measured by the same engine in the same
//! run, so the table compares this workspace with them at every point. Not built by default:
//! `cargo xtask bench --peers` (or `cargo build --release -p ipc-bench --features peers`).
//!
//! `iceoryx2-pubsub` is iceoryx2 0.10's publish-subscribe over its `ipc` service, one
//! subscriber, the counterpart of `pubsub-1`. The parent publishes on a service `down`, the
//! child's subscriber polls `receive()` in a loop and replies (echo or end-of-run
//! acknowledgement) over a second service `up`, which the parent polls the same way. The
//! engine stamps and checks every message exactly as for `pubsub-1` (sequence number, length,
//! kind, tail and per-page stamps, full compares; see [`crate::message`]).
//!
//! Configuration: payload `[u8]` with the publisher's `initial_max_slice_len` set to the point's
//! size (`loan_slice_uninit`, then one copy in: the engine hands a `&[u8]`); history 0; one
//! publisher and one subscriber per service; the subscriber's buffer holds as many messages as
//! a `pubsub-1` ring has slots; `RetryUntilDelivered` backpressure, so nothing is dropped. A
//! receiver copies the sample out into the engine's buffer, as `pubsub-1`'s `recv` does. A poll
//! that finds nothing spins, and yields the CPU after [`SPINS_BEFORE_YIELD`] empty polls (on a
//! shared core the other process must run to publish).
//!
//! Files: iceoryx2 keeps node and service descriptions under a root directory and the data
//! in `/dev/shm`. Each point gets its own root (`/tmp/ipc-bench-iceoryx2-PID-N`) and its own
//! `/dev/shm` prefix (`iox2_ipcbench_PID_N_`); iceoryx2 removes its files when the last user
//! drops them, and the parent's end, once the child has exited, removes that root and every
//! `/dev/shm` name with that prefix, so a crashed child leaves nothing behind either.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iceoryx2::port::BackpressureAction;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;
use ipc_core::{Error, ErrorKind, MaxMessage, Properties, Result};

use crate::row::{Duplex, Handoff, Inherited, ParentEnd, Row, RowInfo, RowKind, watch_child};
use crate::rows::pubsub::ring_slots;

/// Empty polls before a receiver yields the CPU once.
const SPINS_BEFORE_YIELD: u32 = 64;
/// Empty polls between two checks that the other process is still there.
const POLLS_PER_CHECK: u32 = 1024;

/// `iceoryx2-pubsub`: iceoryx2 0.10 publish-subscribe, one subscriber, polling.
#[derive(Debug)]
pub(crate) struct Iceoryx2PubSub;

const PROPERTIES: Properties = Properties {
    mechanism: "iceoryx2 0.10 pub-sub",
    keeps_boundaries: true,
    max_message: MaxMessage::PerObject {
        default: 1,
        ceiling: "the publisher's initial_max_slice_len (here the point's size)",
    },
    multi_producer: false,
    multi_consumer: true,
    needs_related_process: false,
    namespace: Some("iceoryx2 service names (files in its root and /dev/shm)"),
    kernel_copies_per_message: 0,
    crosses_machines: false,
};

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

/// Creates (parent) or opens (child) the service `dir` for messages of `size` bytes.
fn service(node: &Node<ipc::Service>, dir: &str, size: usize, create: bool) -> Result<Factory> {
    let name = ServiceName::new(&format!("ipc-bench/{dir}")).map_err(ice("service name"))?;
    let builder = node
        .service_builder(&name)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(ring_slots(size))
        .enable_safe_overflow(false);
    if create {
        builder.create().map_err(ice("create service"))
    } else {
        builder.open().map_err(ice("open service"))
    }
}

/// A publisher for messages of `size` bytes that retries until the subscriber has room, or
/// gives up once `gone` is set (the other process exited).
fn publisher(
    factory: &Factory,
    size: usize,
    gone: Arc<AtomicBool>,
) -> Result<Publisher<ipc::Service, [u8], ()>> {
    factory
        .publisher_builder()
        .initial_max_slice_len(size)
        .max_loaned_samples(1)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .set_backpressure_handler(move |_: &_| {
            if gone.load(Ordering::Acquire) {
                BackpressureAction::DiscardDataAndFail
            } else {
                BackpressureAction::Retry
            }
        })
        .create()
        .map_err(ice("create publisher"))
}

fn subscriber(factory: &Factory, size: usize) -> Result<Subscriber<ipc::Service, [u8], ()>> {
    factory
        .subscriber_builder()
        .buffer_size(ring_slots(size))
        .create()
        .map_err(ice("create subscriber"))
}

/// One end of the link: the publisher of one service and the subscriber of the other. Fields
/// drop in order: ports, then services, then the node.
struct End {
    tx: Publisher<ipc::Service, [u8], ()>,
    rx: Subscriber<ipc::Service, [u8], ()>,
    /// The service this end receives on: its publisher count tells the child the parent left.
    rx_service: Factory,
    tx_service: Factory,
    _node: Node<ipc::Service>,
    /// Set once the other process is gone (the parent's child watch); the child instead
    /// looks at `rx_service`'s publishers.
    gone: Arc<AtomicBool>,
    is_parent: bool,
}

impl End {
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
}

impl Duplex for End {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let sample = self
            .tx
            .loan_slice_uninit(msg.len())
            .map_err(ice("loan a sample"))?;
        let sample = sample.write_from_slice(msg);
        match sample.send() {
            Ok(_) => Ok(()),
            Err(_) if self.peer_gone() => Err(Error::disconnected().in_op("iceoryx2 send")),
            Err(e) => Err(ice("send")(e)),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut empty = 0u32;
        loop {
            if let Some(sample) = self.rx.receive().map_err(ice("receive"))? {
                let got = sample.payload();
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
                return Ok(got.len());
            }
            empty = empty.wrapping_add(1);
            if empty % POLLS_PER_CHECK == 0 && self.peer_gone() {
                return Err(Error::disconnected().in_op("iceoryx2 receive"));
            }
            if empty % SPINS_BEFORE_YIELD == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// The parent's end: an [`End`], and on drop the sweep of the point's files once the child
/// has exited.
struct ParentSide {
    end: Option<End>,
    tag: String,
}

impl Duplex for ParentSide {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.end.as_mut().expect("present until drop").send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.end.as_mut().expect("present until drop").recv(buf)
    }
}

impl Drop for ParentSide {
    fn drop(&mut self) {
        let gone = self.end.as_ref().map(|e| e.gone.clone());
        drop(self.end.take()); // the child now sees no publisher and exits if still waiting
        if let Some(gone) = gone {
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

impl Row for Iceoryx2PubSub {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "iceoryx2-pubsub",
            family: "iceoryx2",
            kind: RowKind::Peer,
            properties: PROPERTIES,
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let tag = next_tag();
        let built = (|| {
            let node = node(&tag)?;
            let down = service(&node, "down", size, true)?;
            let up = service(&node, "up", size, true)?;
            let gone = Arc::new(AtomicBool::new(false));
            let tx = publisher(&down, size, gone.clone())?;
            let rx = subscriber(&up, size)?;
            Ok((node, down, up, gone, tx, rx))
        })();
        let (node, down, up, gone, tx, rx) = match built {
            Ok(b) => b,
            Err(e) => {
                remove_files(&tag);
                return Err(e);
            }
        };
        let on_exit = gone.clone();
        watch_child(child, move || on_exit.store(true, Ordering::Release))?;
        child.arg(tag.clone())?;
        let end = End {
            tx,
            rx,
            rx_service: up,
            tx_service: down,
            _node: node,
            gone,
            is_parent: true,
        };
        let side = ParentSide {
            end: Some(end),
            tag,
        };
        // Publish only once the child's subscriber is there (history 0: a message published
        // before it joins is not delivered to it).
        Ok(ParentEnd::AfterSpawn(Box::new(move || {
            let end = side.end.as_ref().expect("present until drop");
            let give_up = Instant::now() + Duration::from_secs(30);
            while end.tx_service.dynamic_config().number_of_subscribers() < 1 {
                if end.gone.load(Ordering::Acquire) {
                    return Err(Error::disconnected().in_op("wait for the iceoryx2 subscriber"));
                }
                if Instant::now() > give_up {
                    return Err(Error::timed_out().in_op("wait for the iceoryx2 subscriber"));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(Box::new(side) as Box<dyn Duplex>)
        })))
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let tag = parent.arg();
        let node = node(tag)?;
        let down = service(&node, "down", size, false)?;
        let up = service(&node, "up", size, false)?;
        let gone = Arc::new(AtomicBool::new(false));
        let rx = subscriber(&down, size)?;
        let tx = publisher(&up, size, gone.clone())?;
        Ok(Box::new(End {
            tx,
            rx,
            rx_service: down,
            tx_service: up,
            _node: node,
            gone,
            is_parent: false,
        }))
    }
}
