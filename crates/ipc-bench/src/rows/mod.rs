//! Every row of the benchmark, in table order.
//!
//! To add a mechanism:
//! 1. describe it once as a fixture in [`crate::fixtures`] (an [`ipc_testkit::fixture::Fixture`]:
//!    how to make a channel for messages of a given size, hand either end to a child and adopt
//!    it there, its `Properties` and cleanup guard), and run the conformance suite over it
//!    (`tests/conformance_foo.rs` at the repository root:
//!    `ipc_testkit::conformance_suite!(ipc_bench::fixtures::Foo);`);
//! 2. `impl Link for Foo {}` in `rows/foo.rs` (override its methods only for a link with no
//!    end-of-stream, which must wake a blocked end when the other process is gone, with
//!    [`watch_child`](crate::row::watch_child): see `mq.rs`), and list
//!    `&LibraryRow::<Foo>::new("foo", "foo")` in [`ROWS`];
//! 3. for the plain syscall loop over the same kernel object, a unit struct implementing
//!    [`Row`] with `kind: RowKind::Raw` (`row::raw_stream` for byte streams; `pipe.rs` has
//!    one). `socket.rs` holds baselines that are not library endpoints at all.
//!
//! A peer row (feature `peers`, `peer.rs`) is another library measured by the same engine:
//! `kind: RowKind::Peer`, listed beside the rows it is compared with.
//!
//! An async row (`foo-async`, [`asynch::AsyncRow`]) runs the same fixture with both ends
//! through `ipc_core::tokio::AsyncEndpoint`, listed right after the sync row.
//!
//! `cargo test -p ipc-bench --test integrity` then checks the new rows deliver every message,
//! fail when one is dropped, and let a child left waiting exit when the parent gives up;
//! `cargo xtask bench --filter foo` measures them.

pub mod asynch;
mod fifo;
mod mq;
#[cfg(feature = "peers")]
mod peer;
#[cfg(feature = "peers")]
mod peer_spin;
mod pipe;
mod pubsub;
mod shm;
mod socket;

use crate::fixtures::{
    AtomicFifo, PosixQueue, SeqpacketSocket, ShmChannel, StreamFifo, StreamPipe, SysvQueue,
};
use crate::row::{LibraryRow, Row};
use asynch::AsyncRow;
pub use pubsub::{ICEORYX2_REFERENCE, Reference};

/// The rows, in the order the table prints them within each size group.
pub static ROWS: &[&dyn Row] = &[
    &LibraryRow::<StreamPipe>::new("pipe", "pipe"),
    &AsyncRow::<StreamPipe>::new("pipe-async", "pipe"),
    &pipe::RawPipe,
    &pipe::RawFramedPipe,
    &LibraryRow::<ShmChannel>::new("shm", "shm"),
    &LibraryRow::<shm::ShmPolicy<0>>::new("shm-spin", "shm"),
    &LibraryRow::<shm::ShmPolicy<1>>::new("shm-sleep", "shm"),
    &AsyncRow::<ShmChannel>::new("shm-async", "shm"),
    &shm::RawShmRing,
    &shm::RawShmCopy,
    &shm::RawShmSpin,
    &shm::RawShmFutex,
    #[cfg(feature = "peers")]
    &peer_spin::SpinFlag,
    &pubsub::PubSub(1, "pubsub-1"),
    #[cfg(feature = "peers")]
    &peer::Iceoryx2PubSub(1, "iceoryx2-pubsub"),
    &pubsub::PubSub(4, "pubsub-4"),
    #[cfg(feature = "peers")]
    &peer::Iceoryx2PubSub(4, "iceoryx2-pubsub-4"),
    &pubsub::PubSub(16, "pubsub-16"),
    #[cfg(feature = "peers")]
    &peer::Iceoryx2PubSub(16, "iceoryx2-pubsub-16"),
    &pubsub::Mpsc(2, "mpsc-2"),
    #[cfg(feature = "peers")]
    &peer::Iceoryx2Mpsc(2, "iceoryx2-mpsc-2"),
    &pubsub::Mpsc(4, "mpsc-4"),
    #[cfg(feature = "peers")]
    &peer::Iceoryx2Mpsc(4, "iceoryx2-mpsc-4"),
    &LibraryRow::<AtomicFifo>::new("fifo", "fifo"),
    &LibraryRow::<StreamFifo>::new("fifo-stream", "fifo"),
    &AsyncRow::<StreamFifo>::new("fifo-stream-async", "fifo"),
    &fifo::RawFifo,
    &LibraryRow::<PosixQueue>::new("mq-posix", "mq-posix"),
    &mq::AsyncPosixMq,
    &mq::RawPosixMq,
    &LibraryRow::<SysvQueue>::new("mq-sysv", "mq-sysv"),
    &mq::RawSysvMq,
    &socket::Unix,
    &socket::RawUnix,
    &socket::UNIX_LIB,
    &LibraryRow::<SeqpacketSocket>::new("uds-seqpacket", "uds-seqpacket"),
    &socket::TypedSeqpacket,
    &socket::RawSeqpacket,
    &socket::Tcp,
    &socket::RawTcp,
    &socket::TCP_LIB,
];

/// The row every other row is compared with in the "vs socket" column.
pub const SOCKET_BASELINE: &str = "uds";

/// The row named `id`.
pub fn find(id: &str) -> Option<&'static dyn Row> {
    ROWS.iter().copied().find(|r| r.info().id == id)
}
