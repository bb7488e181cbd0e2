//! Peer row `spin-flag` (feature `peers`): a `shared_memory` 0.12 segment holding one ring each
//! way, signalled with `raw_sync` 0.1 [`BusyEvent`]s: the "shared memory plus a spin flag"
//! users assemble from those two crates, measured by the same engine and checks as `shm` and
//! `shm-raw` in the same run.
//!
//! Why a ring, not a one-slot mailbox: the crates give a mapping and an event, nothing that
//! queues, and the throughput the peer is quoted at (several GiB/s at 64 B) needs the producer
//! to run ahead of the consumer; a mailbox would make every message a round trip. So each
//! direction is a ring of fixed slots of the point's size (as many as `shm-raw` has, in as much
//! memory as the channel's ring), and two auto-reset `BusyEvent`s:
//!
//! - `data`: the producer copies a message into the slot at its count, stores the count
//!   (release), then sets `data`; a consumer that finds the ring empty waits on `data`
//!   (`raw_sync`'s busy wait: a compare-and-swap loop that reads the clock each turn, since a
//!   timeout is given), then reads the count again (acquire);
//! - `room`: the same the other way, for a producer that finds the ring full.
//!
//! The events are only signals: the counts decide, so a signal left from an earlier message
//! only costs one more look. The counts come from memory the other process writes, so the
//! consumer checks that the producer's count is at most a ring ahead of its own, the producer
//! that the consumer's is not ahead of its own nor more than a ring behind, before either is
//! used (a slot's offset comes from this end's own count only). The engine stamps and checks
//! every message exactly as for `shm` (sequence number, length, kind, tail and per-page stamps,
//! full compares; see [`crate::message`]).
//!
//! A wait that sees no progress for a second calls the other process gone, as the raw rows do
//! (`BusyEvent` has no notion of a peer). The segment is a POSIX name (`/ipcbench-spin-PID-N`)
//! that the parent creates and owns (`shared_memory` unlinks it when the parent's end drops);
//! the child unlinks it as soon as it has mapped it, so only a parent killed before the child
//! started can leave it behind.
//!
//! Layout of one direction (each field on its own 128-byte line; the slots from 512):
//! `data` event at 0, `room` event at 128, the producer's count at 256, the consumer's at 384.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_core::{Error, ErrorKind, MaxMessage, Properties, Result};
use raw_sync::Timeout;
use raw_sync::events::{BusyEvent, EventImpl, EventInit, EventState};
use shared_memory::{Shmem, ShmemConf};

use crate::fixtures::shm_capacity;
use crate::row::{Duplex, Handoff, Inherited, ParentEnd, Row, RowInfo, RowKind};

/// How long a wait sees no progress before it calls the other process gone.
const SILENCE: Duration = Duration::from_secs(1);

const DATA_EVENT: usize = 0;
const ROOM_EVENT: usize = 128;
const TAIL: usize = 256;
const HEAD: usize = 384;
const SLOTS: usize = 512;

/// `spin-flag`: shared_memory 0.12 + raw_sync 0.1 `BusyEvent`, a ring each way.
#[derive(Debug)]
pub(crate) struct SpinFlag;

const PROPERTIES: Properties = Properties {
    mechanism: "shared_memory 0.12 + raw_sync BusyEvent",
    keeps_boundaries: true,
    max_message: MaxMessage::Unbounded,
    multi_producer: false,
    multi_consumer: false,
    needs_related_process: false,
    namespace: Some("POSIX shared memory names"),
    kernel_copies_per_message: 0,
    crosses_machines: false,
};

fn peer_error(what: &'static str) -> impl FnOnce(Box<dyn std::error::Error>) -> Error {
    move |e| Error::with_note(ErrorKind::Io, format!("raw_sync: {what}: {e}"))
}

fn shmem_error(what: &'static str) -> impl FnOnce(shared_memory::ShmemError) -> Error {
    move |e| Error::with_note(ErrorKind::Io, format!("shared_memory: {what}: {e}"))
}

/// The slots of one direction for messages of `size` bytes: a power of two, as many as fit in
/// the channel's ring for that size (at least 2).
fn slots(size: usize) -> u64 {
    let fit = (shm_capacity(size) / size.max(1)).max(2);
    1u64 << fit.ilog2()
}

/// The bytes of one direction, rounded up to 128 so the second one starts 128-aligned too.
fn direction_len(size: usize) -> usize {
    (SLOTS + slots(size) as usize * size.max(1)).next_multiple_of(128)
}

/// The segment's name for one point: unique among this machine's processes.
fn next_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "/ipcbench-spin-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One direction of the link, in the segment at `base`.
struct Ring {
    data: Box<dyn EventImpl>,
    room: Box<dyn EventImpl>,
    tail: *const AtomicU64,
    head: *const AtomicU64,
    slots: *mut u8,
    n: u64,
    size: usize,
    /// Our own count (sent or received) and the latest seen of the other end's.
    mine: u64,
    theirs: u64,
}

impl Ring {
    /// The direction at `base`: its events made fresh (`create`) or taken as they are.
    ///
    /// # Safety
    ///
    /// `base` is 128-aligned and valid for [`direction_len`]`(size)` bytes for as long as the
    /// ring is used (the caller keeps the mapping alive), and only this ring's protocol or the
    /// other process touches it.
    unsafe fn new(base: *mut u8, size: usize, create: bool) -> Result<Ring> {
        // SAFETY: both events lie inside the direction (2 bytes at 0 and at 128), per the
        // caller's guarantee; `new` writes a fresh event, `from_existing` checks one.
        let (data, room) = unsafe {
            let event = |at: usize| {
                let mem = base.add(at);
                if create {
                    BusyEvent::new(mem, true)
                } else {
                    BusyEvent::from_existing(mem)
                }
                .map(|(e, _)| e)
                .map_err(peer_error("BusyEvent"))
            };
            (event(DATA_EVENT)?, event(ROOM_EVENT)?)
        };
        Ok(Ring {
            data,
            room,
            // SAFETY: 8-aligned words inside the direction (caller's guarantee).
            tail: unsafe { base.add(TAIL) }.cast(),
            // SAFETY: as above.
            head: unsafe { base.add(HEAD) }.cast(),
            // SAFETY: the slots start at 512 inside the direction.
            slots: unsafe { base.add(SLOTS) },
            n: slots(size),
            size,
            mine: 0,
            theirs: 0,
        })
    }

    fn word(&self, p: *const AtomicU64) -> &AtomicU64 {
        // SAFETY: `tail` and `head` point into the mapping the owner keeps alive (`new`).
        unsafe { &*p }
    }

    /// Where the slot of count `c` starts (the offset from our own count only).
    fn slot(&self, c: u64) -> *mut u8 {
        // SAFETY: `c % n < n` slots of `size` bytes follow `slots` in the direction.
        unsafe { self.slots.add((c % self.n) as usize * self.size) }
    }

    /// Waits on `event` until `ready` accepts the other end's count at `at` (re-read after
    /// every signal), at most [`SILENCE`] without one.
    fn wait(
        &mut self,
        at: *const AtomicU64,
        event: fn(&Ring) -> &dyn EventImpl,
        ready: impl Fn(u64, u64) -> Result<bool>,
    ) -> Result<()> {
        let mut give_up = None;
        loop {
            let v = self.word(at).load(Ordering::Acquire);
            if ready(self.mine, v)? {
                self.theirs = v;
                return Ok(());
            }
            match event(self).wait(Timeout::Val(SILENCE)) {
                Ok(()) => {}
                Err(_) => {
                    let now = Instant::now();
                    if now >= *give_up.get_or_insert(now) {
                        return Err(Error::disconnected()
                            .in_op("spin-flag: the other process made no progress for 1 s"));
                    }
                }
            }
        }
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let n = self.n;
        if self.mine - self.theirs >= n {
            self.wait(
                self.head,
                |r| &*r.room,
                |mine, head| {
                    if head > mine || mine - head > n {
                        return Err(Error::corrupted(format!(
                            "spin-flag: consumer count {head}, producer count {mine}"
                        )));
                    }
                    Ok(mine - head < n)
                },
            )?;
        }
        let len = msg.len().min(self.size);
        // SAFETY: the slot has `size` bytes and is ours until the count below publishes it.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.slot(self.mine), len) };
        self.mine += 1;
        self.word(self.tail).store(self.mine, Ordering::Release);
        self.data
            .set(EventState::Signaled)
            .map_err(peer_error("set"))
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self.n;
        if self.theirs == self.mine {
            self.wait(
                self.tail,
                |r| &*r.data,
                |mine, tail| {
                    if tail < mine || tail - mine > n {
                        return Err(Error::corrupted(format!(
                            "spin-flag: producer count {tail}, consumer count {mine}"
                        )));
                    }
                    Ok(tail != mine)
                },
            )?;
        }
        let len = buf.len().min(self.size);
        // SAFETY: the slot has `size` bytes, published by the count read (acquire) in `wait`
        // and not reused by the producer until our count says so; `buf` is our own memory.
        unsafe { std::ptr::copy_nonoverlapping(self.slot(self.mine), buf.as_mut_ptr(), len) };
        self.mine += 1;
        self.word(self.head).store(self.mine, Ordering::Release);
        self.room
            .set(EventState::Signaled)
            .map_err(peer_error("set"))?;
        Ok(len)
    }
}

/// One end: a ring each way, and the mapping they live in (dropped last: the parent's unlinks
/// the name).
struct End {
    tx: Ring,
    rx: Ring,
    _shm: Shmem,
}

impl Duplex for End {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.rx.recv(buf)
    }
}

/// The two directions of the segment `shm` (parent to child first), made fresh or taken.
fn end(shm: Shmem, size: usize, parent: bool) -> Result<End> {
    let dir = direction_len(size);
    if shm.len() < 2 * dir {
        return Err(Error::with_note(
            ErrorKind::InvalidInput,
            format!(
                "spin-flag: a segment of {} bytes, {} needed",
                shm.len(),
                2 * dir
            ),
        ));
    }
    let base = shm.as_ptr();
    // SAFETY: the mapping (page-aligned, at least `2 * dir` bytes, checked above) lives in
    // `End` beside the rings and is dropped after them.
    let (down, up) = unsafe {
        (
            Ring::new(base, size, parent)?,
            Ring::new(base.add(dir), size, parent)?,
        )
    };
    let (tx, rx) = if parent { (down, up) } else { (up, down) };
    Ok(End { tx, rx, _shm: shm })
}

impl Row for SpinFlag {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "spin-flag",
            family: "shm",
            kind: RowKind::Peer,
            properties: PROPERTIES,
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let name = next_name();
        let shm = ShmemConf::new()
            .os_id(&name)
            .size(2 * direction_len(size))
            .create()
            .map_err(shmem_error("create"))?;
        let end = end(shm, size, true)?;
        child.arg(name)?;
        Ok(ParentEnd::Ready(Box::new(end)))
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let shm = ShmemConf::new()
            .os_id(parent.arg())
            .open()
            .map_err(shmem_error("open"))?;
        // Both mappings are made now: the name is no longer needed, so it goes at once, and
        // a parent killed from here on leaves nothing in /dev/shm (its own drop, which
        // unlinks it too, then finds it gone).
        let _ = ipc_shm::Segment::unlink(parent.arg());
        Ok(Box::new(end(shm, size, false)?))
    }
}
