//! Every row of the benchmark, in table order.
//!
//! To add a mechanism:
//! 1. add its crate to the root `Cargo.toml` `[dev-dependencies]` (`ipc-foo.workspace = true`);
//! 2. write `rows/foo.rs` with a unit struct implementing [`Mechanism`]: `info()` (id, family,
//!    kind, the crate's `Properties` constant, largest message), `connect()` in the parent
//!    (create the link for messages of `size` bytes, hand the child its ends with
//!    `Handoff::fd` or an object name with `Handoff::arg`, return the parent's end, wrapping
//!    the library's sender and receiver with `registry::messages`; `ParentEnd::AfterSpawn` if
//!    opening blocks until the child opens too) and `adopt()` in the child; a second struct
//!    with `kind: RowKind::Raw` for the plain syscall loop (`registry::raw_stream` for byte
//!    streams). `pipe.rs` is a library row with its raw row; `socket.rs` meets by address and
//!    `fifo.rs` by path; a link with no end-of-stream (a queue, shared memory) must wake a
//!    blocked end when the other process is gone, with `registry::watch_child` (`mq.rs`);
//! 3. `mod foo;` below and `&foo::Foo` in [`ROWS`].
//!
//! `cargo test -p ipc --test bench_integrity` then checks the new rows deliver every message,
//! fail when one is dropped, and let a child left waiting exit when the parent gives up;
//! `cargo xtask bench --filter foo` measures them.

mod fifo;
mod mq;
mod pipe;
mod shm;
mod socket;

use crate::registry::Mechanism;

/// The rows, in the order the table prints them within each size group.
pub static ROWS: &[&dyn Mechanism] = &[
    &pipe::Pipe,
    &pipe::RawPipe,
    &shm::Shm,
    &shm::RawShmRing,
    &shm::RawShmSpin,
    &shm::RawShmFutex,
    &fifo::FifoAtomic,
    &fifo::FifoStream,
    &fifo::RawFifo,
    &mq::PosixMq,
    &mq::RawPosixMq,
    &mq::SysvMq,
    &mq::RawSysvMq,
    &socket::Unix,
    &socket::RawUnix,
    &socket::Tcp,
    &socket::RawTcp,
];

/// The row every other row is compared with in the "vs socket" column.
pub const SOCKET_BASELINE: &str = "uds";

/// The row named `id`.
pub fn find(id: &str) -> Option<&'static dyn Mechanism> {
    ROWS.iter().copied().find(|r| r.info().id == id)
}
