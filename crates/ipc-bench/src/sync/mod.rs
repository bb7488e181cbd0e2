//! The synchronisation section of the benchmark: `ipc-sync`'s primitives beside the plainest
//! futex loops that do the same job, measured in one process (uncontended lock/unlock) or
//! between two (hand-offs), on both placements.
//!
//! Synchronisation carries no payload, so these rows are not [`Row`](crate::row::Row)s:
//!
//! - an [`UncontendedRow`] opens a [`Locker`] and is timed doing lock+unlock in one process;
//! - a [`HandOffRow`] gives each of two processes a [`Turns`]: the turn passes back and forth,
//!   and every hand-off is checked (see [`engine`]).
//!
//! Every row is listed in [`SYNC_ROWS`] with its [`SyncInfo`]. Library rows are in [`rows`],
//! raw futex rows in [`raw`]. Both processes share a [`Shm`]: a sealed memfd holding the
//! engine's hand-off counter and a few futex words for raw rows; library rows create their
//! primitives in memfds of their own ([`ipc_sync::Shared`]) and hand the child the
//! descriptors.

pub mod chart;
pub mod engine;
pub mod raw;
pub mod report;
pub mod rows;

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Instant;

use ipc_core::{Error, ErrorKind, Result, ResultExt};
use rustix::fs::{MemfdFlags, SealFlags};

use crate::row::{Handoff, Inherited, RowKind};

/// Which table a row is in, and which rows its "x best" compares it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// One process: lock and unlock a mutex nobody else wants. Time per lock+unlock.
    Uncontended,
    /// Two processes pass the turn under a mutex, waiting on a condition variable.
    MutexCondvar,
    /// Two processes pass the turn by signalling each other (semaphore, event, futex word).
    PingPong,
}

impl Group {
    /// Short name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Uncontended => "uncontended",
            Group::MutexCondvar => "mutex-condvar",
            Group::PingPong => "ping-pong",
        }
    }

    /// What one measured unit is.
    pub fn unit(self) -> &'static str {
        match self {
            Group::Uncontended => "lock+unlock",
            Group::MutexCondvar | Group::PingPong => "hand-off",
        }
    }
}

/// Whether a waiter spins before it sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpinPolicy {
    /// Nobody waits (uncontended rows).
    None,
    /// Sleeps at once.
    Never,
    /// Spins up to [`ipc_sync::SPIN_BUDGET`], then sleeps.
    Always,
    /// `ipc-sync`'s default: spins only if the other side last ran on another CPU.
    Adaptive,
}

impl SpinPolicy {
    /// Short name, as in the table and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SpinPolicy::None => "-",
            SpinPolicy::Never => "never",
            SpinPolicy::Always => "always",
            SpinPolicy::Adaptive => "adaptive",
        }
    }
}

/// The static description of a synchronisation row.
#[derive(Clone, Copy, Debug)]
pub struct SyncInfo {
    /// Identifier on the command line and in the JSON.
    pub id: &'static str,
    /// `--filter FAMILY` selects every row of a family (`mutex`, `sem`, `event`).
    pub family: &'static str,
    /// The table it is in.
    pub group: Group,
    /// Library or raw.
    pub kind: RowKind,
    /// How its waiters behave.
    pub spin: SpinPolicy,
    /// The raw futex rows it is compared with in "x raw": the fastest of them on the same
    /// placement (the one with the same spin policy; both for an adaptive row). Empty for raw
    /// rows.
    pub raw: &'static [&'static str],
    /// For a row with adaptive spinning: the rows that spin always and never over the same
    /// object, for the verdict "is adaptive as good as the better fixed policy?".
    pub fixed: Option<(&'static str, &'static str)>,
    /// One line: what is measured.
    pub what: &'static str,
}

/// A row timed in one process: lock and unlock a mutex nobody else wants.
pub trait UncontendedRow: Sync {
    /// The row's description.
    fn info(&self) -> SyncInfo;

    /// Creates the lock (in `shm`, or in a memfd of its own) with its guarded counter at 0.
    fn open<'a>(&self, shm: &'a Shm) -> Result<Box<dyn Locker + 'a>>;
}

/// A lock with a counter it guards.
pub trait Locker {
    /// `n` times: lock, add one to the guarded counter, unlock.
    fn lock_unlock(&mut self, n: u64) -> std::result::Result<(), String>;

    /// The guarded counter, read under the lock.
    fn count(&mut self) -> std::result::Result<u64, String>;

    /// Locks, checks that a second attempt to lock fails while it is held, unlocks, and checks
    /// that it can be taken again: the lock excludes.
    fn check_exclusion(&mut self) -> std::result::Result<(), String>;
}

/// A row timed between two processes passing a turn back and forth.
///
/// The parent calls [`connect`](HandOffRow::connect) before it starts the child, and the child
/// [`adopt`](HandOffRow::adopt)s what it handed over. The parent holds the turn first.
pub trait HandOffRow: Sync {
    /// The row's description.
    fn info(&self) -> SyncInfo;

    /// In the parent: creates the row's objects, hands the child what it needs through
    /// `child`, and returns the parent's side.
    fn connect<'a>(&self, shm: &'a Shm, child: &mut Handoff) -> Result<Box<dyn Turns + 'a>>;

    /// In the child: opens what the parent handed over and returns the child's side.
    fn adopt<'a>(&self, shm: &'a Shm, parent: &Inherited<'_>) -> Result<Box<dyn Turns + 'a>>;
}

/// One side of a hand-off row.
pub trait Turns {
    /// Waits until the peer hands this side the turn: `Ok(true)`; or until `deadline`
    /// passes: `Ok(false)`, and the caller may wait again.
    fn wait_turn(&mut self, deadline: Instant) -> std::result::Result<bool, String>;

    /// Hands the turn to the peer (taking a lock on the way, if the row has one, at most
    /// until `deadline`). Fails if the peer had not taken the previous hand-off.
    fn give_turn(&mut self, deadline: Instant) -> std::result::Result<(), String>;

    /// Whether a hand-off to this side is waiting, not taken. After the last hand-off there
    /// must be none: more hand-offs given than waited for means a wait returned without one.
    /// (Rows whose turn is a value, not a count, have nothing to leave over: `false`.)
    fn pending(&self) -> bool;
}

/// A row of the synchronisation section.
#[derive(Clone, Copy)]
pub enum SyncRow {
    /// Timed in one process.
    Uncontended(&'static dyn UncontendedRow),
    /// Timed between two processes.
    HandOff(&'static dyn HandOffRow),
}

impl SyncRow {
    /// The row's description.
    pub fn info(&self) -> SyncInfo {
        match self {
            SyncRow::Uncontended(r) => r.info(),
            SyncRow::HandOff(r) => r.info(),
        }
    }
}

impl fmt::Debug for SyncRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().id)
    }
}

/// The rows, in table order.
pub static SYNC_ROWS: &[SyncRow] = &[
    SyncRow::Uncontended(&rows::MutexLock),
    SyncRow::Uncontended(&raw::RawMutexLock),
    SyncRow::HandOff(&rows::MutexCondvar(ipc_sync::Spin::Adaptive)),
    SyncRow::HandOff(&rows::MutexCondvar(ipc_sync::Spin::Always)),
    SyncRow::HandOff(&rows::MutexCondvar(ipc_sync::Spin::Never)),
    SyncRow::HandOff(&raw::RawMutexCondvar(raw::Wait::Sleep)),
    SyncRow::HandOff(&raw::RawMutexCondvar(raw::Wait::Spin)),
    SyncRow::HandOff(&rows::SemPair(ipc_sync::Spin::Adaptive)),
    SyncRow::HandOff(&rows::SemPair(ipc_sync::Spin::Always)),
    SyncRow::HandOff(&rows::SemPair(ipc_sync::Spin::Never)),
    SyncRow::HandOff(&rows::EventPair),
    SyncRow::HandOff(&raw::RawPingPong(raw::Wait::Sleep)),
    SyncRow::HandOff(&raw::RawPingPong(raw::Wait::Spin)),
];

/// `--filter sync` selects every row of this section.
pub const SECTION: &str = "sync";

/// The row named `id`.
pub fn find(id: &str) -> Option<SyncRow> {
    SYNC_ROWS.iter().copied().find(|r| r.info().id == id)
}

/// A padded cache line, so that the words of [`ShmLayout`] do not share one.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct Line<T>(pub T);

/// What [`Shm`] holds. All zero when created.
#[repr(C)]
#[derive(Debug)]
pub struct ShmLayout {
    /// The engine's hand-off counter (see [`engine`]).
    pub seq: Line<AtomicU64>,
    /// Futex words for raw rows, each on its own cache line.
    pub words: [Line<AtomicU32>; 4],
    /// The counter a raw lock guards.
    pub counter: Line<AtomicU64>,
}

/// A sealed memfd mapped shared, holding a [`ShmLayout`]: created by the parent, handed to the
/// child under [`Shm::FD`].
pub struct Shm {
    map: memmap2::MmapRaw,
    fd: OwnedFd,
}

impl Shm {
    /// The name the child adopts the descriptor by.
    pub const FD: &'static str = "sync-shm";

    /// Creates a zeroed, sealed memfd of the layout's size and maps it.
    pub fn create() -> Result<Shm> {
        let size = std::mem::size_of::<ShmLayout>();
        let fd = rustix::fs::memfd_create(
            "ipc-bench-sync",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .ctx("memfd_create", "ipc-bench sync region")?;
        rustix::fs::ftruncate(&fd, size as u64).ctx("ftruncate", "ipc-bench sync region")?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .ctx("seal", "ipc-bench sync region")?;
        Shm::map(fd)
    }

    /// Maps the region the parent created, after checking it is sealed against shrinking and
    /// large enough.
    pub fn open(fd: OwnedFd) -> Result<Shm> {
        let seals = rustix::fs::fcntl_get_seals(&fd).ctx("F_GET_SEALS", "ipc-bench sync region")?;
        let st = rustix::fs::fstat(&fd).ctx("fstat", "ipc-bench sync region")?;
        let size = std::mem::size_of::<ShmLayout>();
        if !seals.contains(SealFlags::SHRINK) || u64::try_from(st.st_size).ok() != Some(size as u64)
        {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!("not a sealed memfd of {size} bytes"),
            )
            .on("ipc-bench sync region"));
        }
        Shm::map(fd)
    }

    fn map(fd: OwnedFd) -> Result<Shm> {
        let map = memmap2::MmapOptions::new()
            .len(std::mem::size_of::<ShmLayout>())
            .map_raw(&fd)
            .ctx("mmap", "ipc-bench sync region")?;
        Ok(Shm { map, fd })
    }

    /// The shared layout.
    pub fn get(&self) -> &ShmLayout {
        // SAFETY: the mapping is page-aligned (more than `ShmLayout`'s 128), exactly
        // `size_of::<ShmLayout>()` bytes of a memfd sealed against shrinking (no SIGBUS), lives
        // as long as `self`, and is only ever accessed through the atomics of `ShmLayout`, for
        // which every bit pattern (including the memfd's initial zeros) is valid.
        unsafe { &*self.map.as_ptr().cast::<ShmLayout>() }
    }
}

impl AsFd for Shm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Shm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shm").field("layout", self.get()).finish()
    }
}
