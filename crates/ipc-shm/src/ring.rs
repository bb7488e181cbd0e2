//! The ring at the heart of the channel: its shared layout ([`Header`]) and the single-producer
//! single-consumer logic over it ([`Producer`], [`Consumer`]), written against a raw region so
//! it runs the same over a shared mapping and over heap memory (where Miri checks it).
//!
//! # Layout
//!
//! ```text
//! offset   0  Meta     magic "IPCSHMCH", layout version, header size, capacity, max message,
//!                      limit (bytes in flight), default wait policy and spin budget
//! offset 128  tail     u32, written by the producer only: bytes ever committed (wrapping);
//!                      read by a producer that attaches, to carry on where the last one stopped,
//!                      and by a consumer that waits, as a hint (`peek_hinted`)
//! offset 256  head     u32, written by the consumer only: bytes ever released (wrapping)
//! offset 384  tx Side  written by the producer only: owner word (state, pid, start time),
//!                      CPU, sleeping flag, wake word, published doorbell (key, fd, id),
//!                      writing mark at +64 (MPSC producers only, `mpsc.rs`)
//! offset 512  rx Side  written by the consumer only
//! offset 640  data     `capacity` bytes (a power of two), records back to back
//! ```
//!
//! Each line is a `CachePadded` block (128 bytes on x86-64), so the two indices never share a
//! cache line. The producer may have at most `limit` bytes (at most `capacity`) in flight:
//! a ring sized by messages ([`messages_limit`]) sets it so that exactly `n` records of the
//! largest size fit whatever the position, padding included. A record is an 8-byte header (`len: u32`, `mark: u32`) and `len` payload bytes,
//! padded to a multiple of 8. A record never wraps: when one does not fit before the end of the
//! data area, the producer first writes a padding record up to the end.
//!
//! A record is committed by its `mark`: its own position (the free-running byte count where it
//! starts) with the kind in the low bits, stored before `tail` (release). The consumer takes
//! the record at its `head` when the mark names exactly that position. The channel's consumer
//! waits by polling `tail` (a line the producer stores once per message) rather than the mark
//! (which would take the line the producer is writing away from it at every poll: measured
//! 1.7x slower at 64 B), and reads the mark only once `tail` moved; `tail` is a hint, the
//! mark the proof. What lies at `head` before the commit can never look committed: the producer
//! zeroes the next record's mark (if that space is free) before it commits a record, and a
//! header left from an earlier lap names a position one lap behind. A producer that dies
//! mid-write therefore leaves nothing visible.
//!
//! # Trust
//!
//! Every field of the header can be scribbled on by a peer. Each side keeps its own index in a
//! local (it never reads it back, except that a consumer about to wait compares it to put it
//! back, [`Consumer::restore_head`]). The producer reads the consumer's index once per refresh
//! into a local and validates it (aligned, at most `capacity` behind, never behind the last
//! one it saw: the consumer only moves on); the consumer copies each record header into
//! locals once and checks the length against the maximum and the end of the data area before
//! using it. Anything inconsistent is
//! [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted); no value from shared memory is used
//! as an offset or length before that check.
//!
//! Each [`Side`]'s owner word is read in one load and decoded: a state that names a process
//! is believed only after that process is found alive (a pidfd, and its start time compared),
//! so a claim left by a process that died at any step of `open`, detach or close is seen as
//! dead instead of being waited on; a word no endpoint writes is corrupted.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use ipc_core::{Error, Result};

/// `"IPCSHMCH"`, little-endian: the first 8 bytes of every channel segment.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"IPCSHMCH");
/// The layout version `open` accepts. Bump on any change of [`Header`] or the record format.
pub(crate) const VERSION: u32 = 5;
/// The smallest data area.
pub(crate) const MIN_CAPACITY: usize = 64;
/// The largest data area: indices are `u32` counters, so `capacity` must stay well below
/// 2^32 for "how far ahead" to be unambiguous.
pub(crate) const MAX_CAPACITY: usize = 1 << 30;
/// Bytes of a record header.
pub(crate) const RECORD_HEADER: usize = 8;
/// Low bits of a record's mark: what the record is (positions are multiples of 8, so the
/// three low bits are free). Both kinds have bit 2 set, so a zeroed mark (`0..=3` in the low
/// bits) is never a committed record, whatever position it seems to name.
const KIND_MESSAGE: u32 = 4;
const KIND_PADDING: u32 = 5;
const KIND_MASK: u32 = 7;
/// The low bits of a mark that was zeroed (or never written): not committed.
const KIND_NONE: u32 = 0;

/// Endpoint states: the low two bits of [`Side::owner`].
pub(crate) const STATE_FREE: u32 = 0;
pub(crate) const STATE_ATTACHED: u32 = 1;
pub(crate) const STATE_CLOSED: u32 = 2;
/// Claimed by a process that is still setting up its end: peers treat it as not attached yet
/// (or, once its process is gone, as dead, and the next `open` takes the place over).
pub(crate) const STATE_ATTACHING: u32 = 3;

/// The first block: what `open` validates.
#[repr(C)]
pub(crate) struct Meta {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) header_size: AtomicU32,
    pub(crate) capacity: AtomicU32,
    pub(crate) max_message: AtomicU32,
    /// The most bytes in flight (records and padding), at most `capacity`.
    pub(crate) limit: AtomicU32,
    /// The wait policy ends opened on this segment start with (a hint: `channel.rs` decodes
    /// and validates it at open).
    pub(crate) wait: AtomicU32,
    /// Their spin budget, in nanoseconds.
    pub(crate) spin_ns: AtomicU32,
}

/// One endpoint's block, written by that endpoint only (except that an `open` may take over
/// the owner word of a process that died while claiming it, by compare-and-swap).
#[repr(C)]
pub(crate) struct Side {
    /// The owner word: the state in bits 0..2 ([`STATE_FREE`], [`STATE_ATTACHING`],
    /// [`STATE_ATTACHED`], [`STATE_CLOSED`]) and, in every state but free, the process that
    /// owns it: its pid in bits 2..24 and its start time (clock ticks after boot,
    /// `/proc/PID/stat` field 22, low 40 bits) in bits 24..64. Free is exactly 0. One atomic
    /// word, so no state ever says "taken" without saying by whom: a claim is one
    /// compare-and-swap from 0 to (attaching, this process), and every later step is one store.
    pub(crate) owner: AtomicU64,
    /// The CPU the endpoint's process is pinned to, or `u32::MAX` if it may run on several.
    pub(crate) single_cpu: AtomicU32,
    /// 1 while this endpoint is going to sleep or asleep waiting for the peer.
    pub(crate) sleeping: AtomicU32,
    /// The futex word this endpoint bumps to wake the peer.
    pub(crate) wake: AtomicU32,
    /// The doorbell this endpoint publishes for a peer that may fetch it (`bell.rs`): the
    /// publisher's identity (its owner word without the state; 0 while none or while being
    /// rewritten, so a reader checks it before and after reading the two words below).
    pub(crate) bell_key: AtomicU64,
    /// The doorbell's descriptor number in the publisher's process.
    pub(crate) bell_fd: AtomicU32,
    /// The doorbell's `eventfd-id` (from `/proc/self/fdinfo`), which a fetched descriptor
    /// must show.
    pub(crate) bell_id: AtomicU32,
    /// The PID namespace of the process the owner word names ([`ipc_core::process::pid_namespace`]),
    /// written after its claim, when it holds its presence mark on this block; 0 when it holds
    /// none, or while unknown (before the claim's owner wrote it; reset to 0 on hand-over and
    /// on taking over a dead claim). A peer whose namespace is another checks the mark, not
    /// the pid (`peer.rs`). A hint: a wrong value only makes a check use one fact or the other.
    pub(crate) pidns: AtomicU64,
    /// Keeps [`writing`](Side::writing) off the cache line of the words above, which a
    /// waiting peer polls (the owner word).
    _line: [u32; 4],
    /// Nonzero while an MPSC producer copies a large message into its ring (`mpsc.rs`), a
    /// different value for each message: a hint that lets a waiting consumer keep looking
    /// rather than sleep. Never used as an index or a length; the channel leaves it 0. On a
    /// line of its own (offset 64), which the consumer reads once per wait, so the producer's
    /// two stores per message stay in its cache.
    pub(crate) writing: AtomicU32,
}

const _: () = assert!(std::mem::offset_of!(Side, writing) == 64);

/// The header at the start of a channel segment; see the module docs.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) meta: CachePadded<Meta>,
    pub(crate) tail: CachePadded<AtomicU32>,
    pub(crate) head: CachePadded<AtomicU32>,
    pub(crate) tx: CachePadded<Side>,
    pub(crate) rx: CachePadded<Side>,
}

/// The shape of a ring: what [`Ring::init_with`] writes and [`Ring::open`] validates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Bytes of the data area (a power of two).
    pub(crate) capacity: usize,
    /// The largest message.
    pub(crate) max_message: usize,
    /// The most bytes in flight, at most `capacity`.
    pub(crate) limit: usize,
    /// The default wait policy and spin budget of the ends (opaque here).
    pub(crate) wait: u32,
    pub(crate) spin_ns: u32,
}

/// The bytes a record of `len` payload bytes takes.
pub(crate) fn record_size(len: usize) -> usize {
    RECORD_HEADER.saturating_add(align8(len))
}

/// The bytes in flight that hold exactly `n` records of `max_message` bytes wherever the ring
/// stands: `n` records and the longest padding (a record's size less 8), but not `n + 1`
/// records (saturating for absurd sizes, which the geometry check then refuses).
pub(crate) fn messages_limit(n: usize, max_message: usize) -> usize {
    let rec = record_size(max_message);
    n.saturating_add(1)
        .saturating_mul(rec)
        .saturating_sub(RECORD_HEADER)
}

/// Offsets in the segment of the producer's and the consumer's wake words (the futex words
/// the receiver and the sender sleep on).
pub(crate) const TX_WAKE: usize =
    std::mem::offset_of!(Header, tx) + std::mem::offset_of!(Side, wake);
pub(crate) const RX_WAKE: usize =
    std::mem::offset_of!(Header, rx) + std::mem::offset_of!(Side, wake);

/// Where the data area starts.
pub(crate) const DATA_OFFSET: usize = std::mem::size_of::<Header>();

/// The bytes a channel of `capacity` needs: header plus data (saturating: a capacity that
/// large is refused by [`check_geometry`] anyway).
pub(crate) fn region_size(capacity: usize) -> usize {
    DATA_OFFSET.saturating_add(capacity)
}

/// The largest message a ring of `capacity` can always make room for: a record must fit before
/// the end of the data area or, after padding, at its start, so at most half of it.
pub(crate) fn max_message_for(capacity: usize) -> usize {
    capacity / 2 - RECORD_HEADER
}

fn align8(n: usize) -> usize {
    n.saturating_add(7) & !7
}

/// A validated view of a ring in a region: the header, the data area and the capacity (read
/// once at open and kept locally; never re-read from shared memory).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ring {
    header: NonNull<Header>,
    data: NonNull<u8>,
    capacity: u32,
    max_message: u32,
    limit: u32,
}

// SAFETY: a `Ring` is a pair of pointers into a region whose owner (the endpoint, holding the
// segment) keeps it alive; all access through it is atomic or ordered by the release/acquire
// protocol on `tail` and `head`.
unsafe impl Send for Ring {}

impl Ring {
    /// Writes a fresh header for a ring of `capacity` bytes (a power of two) carrying messages
    /// of at most `max_message` bytes into `base`, and publishes it (magic last, release).
    ///
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes and aligned to 128;
    /// - no other process or thread accesses the region until this returns.
    pub(crate) unsafe fn init(
        base: NonNull<u8>,
        len: usize,
        capacity: usize,
        max_message: usize,
    ) -> Result<()> {
        let shape = Shape {
            capacity,
            max_message,
            limit: capacity,
            wait: 0,
            spin_ns: 0,
        };
        // SAFETY: the caller's guarantees are `init_with`'s.
        unsafe { Ring::init_with(base, len, shape) }
    }

    /// [`init`](Ring::init) with a limit below the capacity and the ends' wait defaults.
    ///
    /// # Safety
    ///
    /// As for [`init`](Ring::init).
    pub(crate) unsafe fn init_with(base: NonNull<u8>, len: usize, shape: Shape) -> Result<()> {
        let Shape {
            capacity,
            max_message,
            limit,
            ..
        } = shape;
        check_shape(len, capacity, max_message, limit)
            .map_err(|n| Error::with_note(ipc_core::ErrorKind::InvalidInput, n))?;
        // SAFETY: the caller guarantees `base` is valid, aligned and ours alone; the header
        // fits (checked above).
        let magic = unsafe { base.cast::<Header>().as_ref() }
            .meta
            .magic
            .load(Ordering::Acquire);
        if magic != 0 {
            return Err(Error::with_note(
                ipc_core::ErrorKind::AlreadyExists,
                "the segment already holds a channel (or other data): initialise a fresh one",
            ));
        }
        // Zero every header byte (fresh segments are zero anyway; this makes it explicit).
        // SAFETY: as above; no reference into the header is alive across this write.
        unsafe { std::ptr::write_bytes(base.as_ptr(), 0, DATA_OFFSET) };
        // SAFETY: as above.
        let h = unsafe { base.cast::<Header>().as_ref() };
        h.meta.version.store(VERSION, Ordering::Relaxed);
        h.meta
            .header_size
            .store(DATA_OFFSET as u32, Ordering::Relaxed);
        h.meta.capacity.store(capacity as u32, Ordering::Relaxed);
        h.meta
            .max_message
            .store(max_message as u32, Ordering::Relaxed);
        h.meta.limit.store(limit as u32, Ordering::Relaxed);
        h.meta.wait.store(shape.wait, Ordering::Relaxed);
        h.meta.spin_ns.store(shape.spin_ns, Ordering::Relaxed);
        h.meta.magic.store(MAGIC, Ordering::Release);
        Ok(())
    }

    /// Validates the header in `base` and returns a view of the ring.
    ///
    /// Errors: [`ErrorKind::WrongType`](crate::ErrorKind::WrongType) for a missing magic or
    /// another layout version; [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) for a
    /// capacity, header size or maximum that is out of range or does not fit in `len`.
    ///
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes, aligned to 128, and stays so for
    ///   as long as the returned `Ring` (or anything made from it) is used;
    /// - every access to the region by others is atomic or follows the ring protocol (or comes
    ///   from another process, which this code treats as untrusted).
    pub(crate) unsafe fn open(base: NonNull<u8>, len: usize) -> Result<Ring> {
        if len < DATA_OFFSET {
            return Err(Error::with_note(
                ipc_core::ErrorKind::WrongType,
                format!("{len} bytes cannot hold a channel header of {DATA_OFFSET} bytes"),
            ));
        }
        // SAFETY: valid and aligned (caller), and at least a header long (checked above).
        let h = unsafe { base.cast::<Header>().as_ref() };
        let magic = h.meta.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            let why = if magic == 0 {
                "no channel here: the segment is not initialised (yet)".to_owned()
            } else {
                format!("not a channel: magic {magic:#018x}, expected {MAGIC:#018x}")
            };
            return Err(Error::with_note(ipc_core::ErrorKind::WrongType, why));
        }
        let version = h.meta.version.load(Ordering::Relaxed);
        if version != VERSION {
            return Err(Error::with_note(
                ipc_core::ErrorKind::WrongType,
                format!("channel layout version {version}, this library speaks {VERSION}"),
            ));
        }
        let header_size = h.meta.header_size.load(Ordering::Relaxed) as usize;
        if header_size != DATA_OFFSET {
            return Err(Error::corrupted(format!(
                "header size {header_size}, expected {DATA_OFFSET}"
            )));
        }
        let capacity = h.meta.capacity.load(Ordering::Relaxed) as usize;
        let max_message = h.meta.max_message.load(Ordering::Relaxed) as usize;
        let limit = h.meta.limit.load(Ordering::Relaxed) as usize;
        check_shape(len, capacity, max_message, limit).map_err(Error::corrupted)?;
        Ok(Ring {
            header: base.cast(),
            // SAFETY: DATA_OFFSET < len (checked), so the pointer stays in the region.
            data: unsafe { base.add(DATA_OFFSET) },
            capacity: capacity as u32,
            max_message: max_message as u32,
            limit: limit as u32,
        })
    }

    /// The shared header.
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `open`'s caller keeps the region valid while the ring is used; the header
        // holds only atomics, which may be shared.
        unsafe { self.header.as_ref() }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    pub(crate) fn max_message(&self) -> usize {
        self.max_message as usize
    }

    /// The length word of the record header at `pos`.
    fn len_word(&self, pos: u32) -> &AtomicU32 {
        // SAFETY: `at` is 8-aligned (positions are multiples of 8, the data area starts
        // 128-aligned) and at least 8 bytes before the end of the data area.
        unsafe { &*self.at(pos).cast::<AtomicU32>() }
    }

    /// The mark word of the record header at `pos`.
    fn mark(&self, pos: u32) -> &AtomicU32 {
        // SAFETY: as in `len_word`, 4 bytes further.
        unsafe { &*self.at(pos).add(4).cast::<AtomicU32>() }
    }

    fn at(&self, pos: u32) -> *mut u8 {
        let off = (pos & (self.capacity - 1)) as usize;
        // SAFETY: `off < capacity` and the data area is `capacity` bytes.
        unsafe { self.data.as_ptr().add(off) }
    }
}

/// The most bytes of a record [`Producer::commit_demoted`] demotes: a small message whole; of
/// a large one, the lines the consumer reads first (the copy of the rest streams anyway).
const DEMOTE_BYTES: u32 = 256;

/// The lines [`Producer::commit_demoted`] demotes for the record at positions `pos..end`:
/// the position of the line holding its first byte, and how many lines from there (every
/// line holding a byte of it, at most [`DEMOTE_BYTES`] worth).
fn record_lines(pos: u32, end: u32) -> (u32, u32) {
    let first = pos & !63;
    let last = end.wrapping_sub(1) & !63;
    (
        first,
        (last.wrapping_sub(first) / 64 + 1).min(DEMOTE_BYTES / 64),
    )
}

/// Hints the CPU to move the cache line holding `p` from this core's private caches to the
/// shared last-level cache (`cldemote`), where another core reads it without a snoop. A hint
/// only: no effect on what any load sees, nothing emitted off x86-64, and a NOP on x86-64
/// CPUs without the instruction (its encoding lies in the hint-NOP space).
#[inline(always)]
pub(crate) fn demote(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `cldemote` reads and writes no memory the program can see and changes no flags
    // or registers; `p` is an address inside this process's live mapping.
    unsafe {
        std::arch::asm!("cldemote [{0}]", in(reg) p, options(nostack, preserves_flags));
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    let _ = p;
}

/// Checks a ring's shape (capacity, maximum message) and that it fits in `len` bytes.
pub(crate) fn check_geometry(
    len: usize,
    capacity: usize,
    max_message: usize,
) -> std::result::Result<(), String> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(format!(
            "capacity {capacity} is not a power of two from {MIN_CAPACITY} to {MAX_CAPACITY}"
        ));
    }
    if region_size(capacity) > len {
        return Err(format!(
            "a capacity of {capacity} needs {} bytes, the segment has {len}",
            region_size(capacity)
        ));
    }
    if max_message == 0 || max_message > max_message_for(capacity) {
        return Err(format!(
            "max message {max_message} is not within 1..={} for capacity {capacity}",
            max_message_for(capacity)
        ));
    }
    Ok(())
}

/// [`check_geometry`] and the limit of bytes in flight: a multiple of 8, at most the capacity,
/// and room for the largest record behind the longest padding (so a drained ring always takes
/// a message of the maximum size).
pub(crate) fn check_shape(
    len: usize,
    capacity: usize,
    max_message: usize,
    limit: usize,
) -> std::result::Result<(), String> {
    check_geometry(len, capacity, max_message)?;
    let least = (2 * record_size(max_message)).saturating_sub(RECORD_HEADER);
    if limit % 8 != 0 || limit > capacity || limit < least {
        return Err(format!(
            "limit {limit} of bytes in flight is not a multiple of 8 from {least} (two records \
             of the max message {max_message}, less 8) to the capacity {capacity}"
        ));
    }
    Ok(())
}

/// Room reserved by [`Producer::reserve`]: write the payload at [`ptr`](Reservation::ptr),
/// then [`Producer::commit`].
#[derive(Debug)]
pub(crate) struct Reservation {
    /// Padding to write before the record (0 if none).
    pad: u32,
    /// Where the record header goes (ring position).
    pos: u32,
    /// The most payload bytes that fit.
    len: u32,
}

/// The producer's side: its own `tail` (never read back from shared memory) and a cached copy
/// of the consumer's `head`.
#[derive(Debug)]
pub(crate) struct Producer {
    ring: Ring,
    tail: u32,
    head: u32,
}

impl Producer {
    /// Takes the producer's role on `ring`, starting at the tail in shared memory (validated
    /// against the head).
    pub(crate) fn new(ring: Ring) -> Result<Producer> {
        let h = ring.header();
        let tail = h.tail.load(Ordering::Acquire);
        let head = h.head.load(Ordering::Acquire);
        let mut p = Producer { ring, tail, head };
        if tail % 8 != 0 {
            return Err(Error::corrupted(format!(
                "tail {tail} is not 8-byte aligned"
            )));
        }
        p.check_head(head)?;
        Ok(p)
    }

    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    fn check_head(&mut self, head: u32) -> Result<()> {
        let used = self.tail.wrapping_sub(head);
        // The consumer only moves on: an index behind the last one seen (or past the tail)
        // was scribbled, and believing it, this producer could wait for room it was given
        // while the consumer waits for a message.
        let moved = head.wrapping_sub(self.head);
        if head % 8 != 0 || used > self.ring.limit || moved > self.tail.wrapping_sub(self.head) {
            return Err(Error::corrupted(format!(
                "consumer index {head} is inconsistent with producer index {} (at most {} \
                 bytes in flight) or behind the last one seen, {}",
                self.tail, self.ring.limit, self.head
            )));
        }
        self.head = head;
        Ok(())
    }

    /// Re-reads the consumer's index (acquire) into the local cache, validating it.
    fn refresh(&mut self) -> Result<()> {
        let head = self.ring.header().head.load(Ordering::Acquire);
        self.check_head(head)
    }

    /// The bytes of ring a record of `len` payload bytes takes at the current tail: the
    /// padding before it and the record itself.
    fn need(&self, len: usize) -> (u32, u32) {
        let rec = (RECORD_HEADER + align8(len)) as u32;
        let pos = self.tail & (self.ring.capacity - 1);
        let to_end = self.ring.capacity - pos;
        if rec <= to_end {
            (0, rec)
        } else {
            (to_end, rec)
        }
    }

    /// Reserves room for a message of `len` bytes (at most the ring's maximum), or `None` if
    /// there is no room now. Nothing is visible to the consumer until [`commit`](Producer::commit).
    pub(crate) fn reserve(&mut self, len: usize) -> Result<Option<Reservation>> {
        if let Some(r) = self.reserve_cached(len) {
            return Ok(Some(r));
        }
        self.refresh()?;
        Ok(self.reserve_cached(len))
    }

    /// [`reserve`](Producer::reserve) by the cached consumer index alone (no shared load):
    /// `None` when that shows no room, though a [`refresh`](Producer::refresh) might. The
    /// message path's first try; changes nothing.
    #[inline]
    pub(crate) fn reserve_cached(&self, len: usize) -> Option<Reservation> {
        debug_assert!(len <= self.ring.max_message());
        let (pad, rec) = self.need(len);
        let room = self.ring.limit - self.tail.wrapping_sub(self.head);
        if pad + rec > room {
            return None;
        }
        Some(Reservation {
            pad,
            pos: self.tail.wrapping_add(pad),
            len: len as u32,
        })
    }

    /// Reserves room for a message of `len` bytes at the start of the data area, before the
    /// tail reaches its end: a padding record from the tail to the end, then the record. Only
    /// when both, and `keep` bytes more, fit in the room the consumer's index (re-read,
    /// validated) leaves now: the record then overlaps no byte still in flight, and the
    /// producer has `keep` bytes to go on with before it needs the consumer past the padding.
    /// `None` otherwise, or when the tail is at the start already. These are the records of a
    /// wrap at the end (the consumer skips the padding as ever), so nothing changes for a
    /// consumer, a producer that attaches later, or one killed at any step. For a producer
    /// that keeps its large messages in memory it just had back (`mpsc.rs`, "Where a producer
    /// writes").
    pub(crate) fn reserve_at_start(
        &mut self,
        len: usize,
        keep: usize,
    ) -> Result<Option<Reservation>> {
        self.refresh()?;
        let pos = self.offset();
        if pos == 0 {
            return Ok(None);
        }
        let pad = self.ring.capacity - pos as u32;
        let room = self.ring.limit - self.tail.wrapping_sub(self.head);
        if (pad as usize)
            .saturating_add(record_size(len))
            .saturating_add(keep)
            > room as usize
        {
            return Ok(None);
        }
        Ok(Some(Reservation {
            pad,
            pos: self.tail.wrapping_add(pad),
            len: len as u32,
        }))
    }

    /// The offset in the data area where the next record goes if it fits before the end.
    pub(crate) fn offset(&self) -> usize {
        (self.tail & (self.ring.capacity - 1)) as usize
    }

    /// Where the payload of `r` goes: `r.len` writable bytes.
    pub(crate) fn payload(&self, r: &Reservation) -> *mut u8 {
        // SAFETY: the record (header and payload) lies inside the data area: `need` placed it
        // before the end or, after padding, at the start.
        unsafe { self.ring.at(r.pos).add(RECORD_HEADER) }
    }

    pub(crate) fn reserved_len(r: &Reservation) -> usize {
        r.len as usize
    }

    /// Publishes the reserved record with `len` payload bytes (at most what was reserved).
    ///
    /// Order: zero the mark where the next record will start (if that space is free, so stale
    /// bytes there can never look committed), write the length, store the record's mark, then
    /// the padding's mark if there is padding before it (the consumer meets the padding first,
    /// and finds the message committed behind it). Marks are stored sequentially consistent:
    /// release for the bytes before them, and ordered before the caller's SeqCst load of the
    /// consumer's sleeping flag (on x86-64 one `xchg`, cheaper than a store and an `mfence`).
    /// Last, `tail` for a producer that attaches later.
    pub(crate) fn commit(&mut self, r: Reservation, len: usize) {
        self.commit_ordered(r, len, Ordering::SeqCst);
    }

    /// [`commit`](Producer::commit) with the marks stored with `order` (`Release` or
    /// `SeqCst`): a caller that orders its later load of the consumer's sleeping flag by
    /// other means (a fence, or the sleeper's `membarrier`) stores them release only.
    pub(crate) fn commit_ordered(&mut self, r: Reservation, len: usize, order: Ordering) {
        self.commit_inner(r, len, order, false);
    }

    /// [`commit_ordered`](Producer::commit_ordered), then [`demote`] the lines of the record
    /// (its first [`DEMOTE_BYTES`]): a consumer on another CPU then reads them from the
    /// shared last-level cache instead of snooping them out of this core's private caches,
    /// one line transfer shorter once it saw `tail` move. For a message a consumer waits for:
    /// in a stream it costs the producer a refetch of the line it goes on writing in (measured
    /// about half the 64-byte message rate). Never for a consumer on this very CPU (it would
    /// miss its own caches).
    pub(crate) fn commit_demoted(&mut self, r: Reservation, len: usize, order: Ordering) {
        self.commit_inner(r, len, order, true);
    }

    #[inline]
    fn commit_inner(&mut self, r: Reservation, len: usize, order: Ordering, demoted: bool) {
        debug_assert!(len <= r.len as usize);
        let rec = (RECORD_HEADER + align8(len)) as u32;
        let end = r.pos.wrapping_add(rec);
        // Free space after the record (by the cached head, which can only be behind: then the
        // space is free all the more). If none, `end` is the consumer's unread head record,
        // whose mark names a position one lap behind `end`.
        if end.wrapping_sub(self.head) < self.ring.capacity {
            self.ring.mark(end).store(0, Ordering::Relaxed);
        }
        self.ring
            .len_word(r.pos)
            .store(len as u32, Ordering::Relaxed);
        self.ring.mark(r.pos).store(r.pos | KIND_MESSAGE, order);
        if r.pad != 0 {
            self.ring
                .len_word(self.tail)
                .store(r.pad - RECORD_HEADER as u32, Ordering::Relaxed);
            self.ring
                .mark(self.tail)
                .store(self.tail | KIND_PADDING, order);
        }
        self.tail = end;
        self.ring.header().tail.store(end, Ordering::Release);
        if demoted {
            let (first, lines) = record_lines(r.pos, end);
            let at = self.ring.at(first);
            for k in 0..lines as usize {
                // SAFETY: `record_lines` gives lines that hold bytes of the record, which lies
                // inside the data area (it never wraps; the data area starts 128-aligned and
                // is a multiple of 64 long, so each such line is inside it too).
                demote(unsafe { at.add(64 * k) });
            }
        }
    }

    /// Whether every committed byte has been released by the consumer (refreshes the cache).
    pub(crate) fn is_drained(&mut self) -> Result<bool> {
        self.refresh()?;
        Ok(self.head == self.tail)
    }
}

/// A message found by [`Consumer::peek`]: its payload's place and length, all validated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Message {
    ptr: *const u8,
    len: usize,
    rec: u32,
}

impl Message {
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn ptr(&self) -> *const u8 {
        self.ptr
    }
}

/// The consumer's side: its own `head` (never read back from shared memory), and the last
/// `tail` seen ([`peek_hinted`](Consumer::peek_hinted)).
#[derive(Debug)]
pub(crate) struct Consumer {
    ring: Ring,
    head: u32,
    tail: u32,
}

impl Consumer {
    /// Takes the consumer's role on `ring`, starting at the head in shared memory.
    pub(crate) fn new(ring: Ring) -> Result<Consumer> {
        let h = ring.header();
        let head = h.head.load(Ordering::Acquire);
        if head % 8 != 0 {
            return Err(Error::corrupted(format!(
                "head {head} is not 8-byte aligned"
            )));
        }
        Ok(Consumer {
            ring,
            head,
            tail: head,
        })
    }

    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Bytes ever released (this consumer's own `head`, never read back from shared memory).
    pub(crate) fn position(&self) -> u32 {
        self.head
    }

    /// [`peek`](Consumer::peek), looking at the producer's `tail` first while the last one
    /// seen says the ring is empty: a consumer waiting for a message then polls the header's
    /// tail line, not the record the producer is writing (which would take that line away
    /// from the producer at every poll). `tail` is only a hint: the record's mark still
    /// decides what is committed, so a wrong `tail` (garbage, or left behind by a producer
    /// killed between its commit and its tail store) can only hide messages, never show a
    /// torn one; after the producer is gone, drain with [`peek`](Consumer::peek). One ahead
    /// of nothing committed is caught before a wait by [`check_hint`](Consumer::check_hint).
    pub(crate) fn peek_hinted(&mut self) -> Result<Option<Message>> {
        if self.hint_spent() {
            self.tail = self.ring.header().tail.load(Ordering::Acquire);
            if self.tail == self.head {
                return Ok(None);
            }
        }
        self.peek()
    }

    /// Whether the last `tail` seen shows nothing ahead of the head: equal to it, or behind
    /// it, which it is once [`peek`](Consumer::peek) (by the marks) took records committed
    /// after that `tail` was read. Kept behind, the hint would count ever further behind, and
    /// 4 GiB later ([`check_hint`](Consumer::check_hint)'s wrapping distance) look a little
    /// ahead of a head with nothing committed.
    #[inline]
    fn hint_spent(&self) -> bool {
        self.tail.wrapping_sub(self.head).wrapping_sub(1) >= self.ring.limit
    }

    /// After a [`peek_hinted`](Consumer::peek_hinted) that found nothing, for a consumer about
    /// to wait: a `tail` hint ahead of the head (within the bytes in flight) with nothing
    /// committed at the head is [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted). A
    /// producer stores its marks before its `tail`, so every record below a `tail` it stored
    /// is visible; a producer that opened on such a `tail` (scribbled) writes where this
    /// consumer never looks, and each would wait for the other. Kept out of `peek_hinted`,
    /// which a spinning receiver repeats: with the check in it, a cross-core round trip of
    /// 64 B measured ~40 ns slower.
    #[cold]
    pub(crate) fn check_hint(&self) -> Result<()> {
        let ahead = self.tail.wrapping_sub(self.head);
        if ahead != 0 && ahead <= self.ring.limit {
            return Err(Error::corrupted(format!(
                "the producer's index {} is {ahead} bytes ahead of the consumer's {}, yet no \
                 record is committed there",
                self.tail, self.head
            )));
        }
        Ok(())
    }

    /// The message path's first try, inlined: [`peek_hinted`](Consumer::peek_hinted) for the
    /// common case only, a committed message record at `head` whose length passes the same
    /// checks as in [`peek`](Consumer::peek) (at most the maximum, inside the data area before
    /// its end). `None` for anything else (nothing committed, padding, or a header that fails
    /// them), which the caller then hands to `peek_hinted`: it reads the header again, and
    /// reports what is wrong.
    #[inline]
    pub(crate) fn peek_message(&mut self) -> Option<Message> {
        if self.hint_spent() {
            self.tail = self.ring.header().tail.load(Ordering::Acquire);
            if self.tail == self.head {
                return None;
            }
        }
        let mark = self.ring.mark(self.head).load(Ordering::Acquire);
        if mark != self.head | KIND_MESSAGE {
            return None;
        }
        // Copied once; from here on only the local is used.
        let len = self.ring.len_word(self.head).load(Ordering::Relaxed) as usize;
        let pos = (self.head & (self.ring.capacity - 1)) as usize;
        let rec = RECORD_HEADER + align8(len);
        if len > self.ring.max_message() || rec > self.ring.capacity as usize - pos {
            return None;
        }
        let at = self.ring.at(self.head);
        Some(Message {
            // SAFETY: the payload `at + 8 .. at + 8 + len` is inside the record, which is
            // inside the data area (checked above).
            ptr: unsafe { at.add(RECORD_HEADER) },
            len,
            rec: rec as u32,
        })
    }

    /// The next message, if one is committed; skips padding. The message stays in the ring
    /// until [`release`](Consumer::release).
    pub(crate) fn peek(&mut self) -> Result<Option<Message>> {
        loop {
            let mark = self.ring.mark(self.head).load(Ordering::Acquire);
            if mark & !KIND_MASK != self.head || mark & KIND_MASK == KIND_NONE {
                return Ok(None);
            }
            let pos = (self.head & (self.ring.capacity - 1)) as usize;
            let to_end = self.ring.capacity as usize - pos;
            // Copy the length once; from here on only the local is used.
            let len = self.ring.len_word(self.head).load(Ordering::Relaxed) as usize;
            match mark & KIND_MASK {
                KIND_PADDING => {
                    if RECORD_HEADER + len != to_end {
                        return Err(Error::corrupted(format!(
                            "padding record of {len} bytes at ring offset {pos} does not end at \
                             the end of the ring ({to_end} bytes on)"
                        )));
                    }
                    self.advance(to_end as u32);
                }
                KIND_MESSAGE => {
                    let rec = RECORD_HEADER + align8(len);
                    if len > self.ring.max_message() || rec > to_end {
                        return Err(Error::corrupted(format!(
                            "message record of {len} bytes at ring offset {pos} exceeds the \
                             maximum {} or the {to_end} bytes before the end of the ring",
                            self.ring.max_message(),
                        )));
                    }
                    let at = self.ring.at(self.head);
                    return Ok(Some(Message {
                        // SAFETY: the payload `at + 8 .. at + 8 + len` is inside the record,
                        // which is inside the data area (checked above).
                        ptr: unsafe { at.add(RECORD_HEADER) },
                        len,
                        rec: rec as u32,
                    }));
                }
                other => {
                    return Err(Error::corrupted(format!(
                        "record at ring offset {pos} has unknown kind {other}"
                    )));
                }
            }
        }
    }

    /// Stores this consumer's index again if the shared one says otherwise (a peer scribbled
    /// it), for a consumer about to wait: a producer that reads an index behind it sees less
    /// room than it was given, and may wait for room while this consumer waits for messages.
    /// One shared load; for the wait path, not per message. Returns whether it stored (then
    /// the caller wakes a producer that waits for room).
    pub(crate) fn restore_head(&self) -> bool {
        let head = &self.ring.header().head;
        if head.load(Ordering::Relaxed) == self.head {
            return false;
        }
        head.store(self.head, Ordering::SeqCst);
        true
    }

    fn advance(&mut self, bytes: u32) {
        self.head = self.head.wrapping_add(bytes);
        self.ring.header().head.store(self.head, Ordering::SeqCst);
    }

    /// Gives the space of `m` (the message [`peek`](Consumer::peek) returned) back to the
    /// producer: stores `head` (sequentially consistent, so the caller's SeqCst load of the
    /// producer's sleeping flag cannot move before it).
    pub(crate) fn release(&mut self, m: Message) {
        self.advance(m.rec);
    }

    /// [`release`](Consumer::release) storing `head` with release ordering only, for a caller
    /// that orders its later load of the producer's sleeping flag by other means.
    pub(crate) fn release_relaxed(&mut self, m: Message) {
        self.head = self.head.wrapping_add(m.rec);
        self.ring.header().head.store(self.head, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::Layout;
    use std::collections::VecDeque;

    /// Heap memory laid out like a segment.
    pub(crate) struct HeapRegion {
        ptr: NonNull<u8>,
        layout: Layout,
    }

    // SAFETY: the region is plain heap memory, shared between test threads only through the
    // ring protocol.
    unsafe impl Send for HeapRegion {}
    // SAFETY: as above.
    unsafe impl Sync for HeapRegion {}

    impl HeapRegion {
        pub(crate) fn new(len: usize) -> HeapRegion {
            let layout = Layout::from_size_align(len, 128).unwrap();
            // SAFETY: `layout` has a non-zero size.
            let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
            HeapRegion { ptr, layout }
        }
        pub(crate) fn ring(capacity: usize, max: usize) -> (HeapRegion, Ring) {
            let r = HeapRegion::new(region_size(capacity));
            // SAFETY: fresh, aligned, exclusively ours.
            unsafe { Ring::init(r.ptr, r.layout.size(), capacity, max).unwrap() };
            // SAFETY: the region outlives every use in the tests (dropped last).
            let ring = unsafe { Ring::open(r.ptr, r.layout.size()).unwrap() };
            (r, ring)
        }
        fn word(&self, offset: usize) -> &AtomicU32 {
            // SAFETY: tests pass aligned offsets inside the region.
            unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
        }
    }

    impl Drop for HeapRegion {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }

    fn send(p: &mut Producer, msg: &[u8]) -> bool {
        match p.reserve(msg.len()).unwrap() {
            None => false,
            Some(r) => {
                // SAFETY: the reservation has room for `msg.len()` bytes.
                unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), p.payload(&r), msg.len()) };
                p.commit(r, msg.len());
                true
            }
        }
    }

    fn recv(c: &mut Consumer) -> Option<Vec<u8>> {
        let m = c.peek().unwrap()?;
        // SAFETY: a peeked message is `len` readable bytes until released.
        let v = unsafe { std::slice::from_raw_parts(m.ptr(), m.len()) }.to_vec();
        c.release(m);
        Some(v)
    }

    /// A receive by the marks (the thorough look) can take records committed after the last
    /// `tail` read, leaving that hint behind the head. It was never read again while it did
    /// not equal the head, and 4 GiB of positions later its wrapping distance looked like a
    /// hint a little ahead of nothing committed: a healthy channel was `Corrupted` (the
    /// benchmark's `shm-sleep` row at 64 KiB, about 61,500 messages into a run).
    #[test]
    fn a_hint_left_behind_by_a_receive_by_the_marks_is_read_again_not_wrapped() {
        let cap = 1 << 20;
        let max = cap / 2 - RECORD_HEADER;
        let r = HeapRegion::new(region_size(cap));
        let shape = Shape {
            capacity: cap,
            max_message: max,
            limit: cap,
            wait: 0,
            spin_ns: 0,
        };
        // SAFETY: fresh, aligned, exclusively ours.
        unsafe { Ring::init_with(r.ptr, r.layout.size(), shape).unwrap() };
        // SAFETY: the region outlives every use below.
        let ring = unsafe { Ring::open(r.ptr, r.layout.size()).unwrap() };
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        // The hint is read with nothing sent, then a message is taken by its mark.
        assert!(c.peek_hinted().unwrap().is_none());
        let commit = |p: &mut Producer, len: usize| {
            let res = p.reserve(len).unwrap().expect("room");
            p.commit(res, len);
        };
        commit(&mut p, 64);
        let m = c.peek().unwrap().expect("committed");
        c.release(m);
        // 4 GiB of records (no payload written: only the positions matter).
        let len = max;
        let rounds = (1u64 << 32) / (RECORD_HEADER + len) as u64 + 2;
        for _ in 0..rounds {
            commit(&mut p, len);
            let m = c.peek_hinted().unwrap().expect("committed");
            c.release(m);
            assert!(c.peek_hinted().unwrap().is_none());
            c.check_hint().unwrap();
        }
    }

    #[test]
    fn header_layout_is_what_the_docs_say() {
        assert_eq!(std::mem::offset_of!(Header, tail), 128);
        assert_eq!(std::mem::offset_of!(Header, head), 256);
        assert_eq!(std::mem::offset_of!(Header, tx), 384);
        assert_eq!(std::mem::offset_of!(Header, rx), 512);
        assert_eq!(DATA_OFFSET, 640);
    }

    #[test]
    fn a_limit_holds_exactly_n_records_of_the_maximum_from_any_position() {
        for (n, max) in [(1usize, 40usize), (3, 24), (5, 100)] {
            let limit = messages_limit(n, max);
            let cap = limit.next_power_of_two().max(MIN_CAPACITY);
            let r = HeapRegion::new(region_size(cap));
            let shape = Shape {
                capacity: cap,
                max_message: max,
                limit,
                wait: 0,
                spin_ns: 0,
            };
            // SAFETY: fresh, aligned, exclusively ours.
            unsafe { Ring::init_with(r.ptr, r.layout.size(), shape).unwrap() };
            // SAFETY: the region outlives every use below.
            let ring = unsafe { Ring::open(r.ptr, r.layout.size()).unwrap() };
            let mut p = Producer::new(ring).unwrap();
            let mut c = Consumer::new(ring).unwrap();
            for shift in 0..40 {
                let mut sent = 0;
                while send(&mut p, &vec![9; max]) {
                    sent += 1;
                }
                assert_eq!(sent, n, "{n} x {max} B, shift {shift}");
                while recv(&mut c).is_some() {}
                assert!(send(&mut p, &vec![1; shift % (max + 1)]));
                recv(&mut c).unwrap();
            }
        }
    }

    #[test]
    fn the_tail_hint_never_shows_what_the_marks_do_not() {
        let tail_off = std::mem::offset_of!(Header, tail);
        let (r, ring) = HeapRegion::ring(256, 100);
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        // A garbage tail ahead: the marks still say nothing is committed, and a tail ahead
        // of a head with nothing at it was scribbled (every mark is stored before the tail).
        r.word(tail_off).store(64, Ordering::Release);
        assert!(c.peek_hinted().unwrap().is_none());
        let e = c.check_hint().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupted, "{e}");
        // Behind the head (a lap back, beyond the bytes in flight): only a hint, nothing shown.
        r.word(tail_off)
            .store(0u32.wrapping_sub(256), Ordering::Release);
        let mut behind = Consumer::new(ring).unwrap();
        assert!(behind.peek_hinted().unwrap().is_none());
        behind.check_hint().unwrap();
        // A tail left behind a commit (a producer killed before its tail store): the hint
        // hides the message, the marks show it.
        assert!(send(&mut p, b"committed"));
        r.word(tail_off).store(0, Ordering::Release);
        let mut c2 = Consumer::new(ring).unwrap();
        assert!(c2.peek_hinted().unwrap().is_none());
        assert_eq!(c2.peek().unwrap().map(|m| m.len()), Some(9));
        assert_eq!(recv(&mut c).unwrap(), b"committed");
    }

    #[test]
    fn demoted_lines_are_the_record_s_own() {
        // Positions anywhere in the u32 space (wrapping included), records of every length
        // from 8 bytes to more than the demoted span, never wrapping in a ring of `cap`.
        let cap = 1024u32;
        for base in [0u32, cap * 1000, 0u32.wrapping_sub(2 * cap)] {
            for off in (0..cap).step_by(8) {
                for rec in (8..=(cap - off).min(600)).step_by(8) {
                    let pos = base.wrapping_add(off);
                    let end = pos.wrapping_add(rec);
                    let (first, lines) = record_lines(pos, end);
                    let from = first.wrapping_sub(pos & !63);
                    assert_eq!(from, 0, "first line of the record at {pos}");
                    let span = 64 * lines;
                    // Every line holds a byte of the record: the last one starts before `end`.
                    assert!(
                        span - 64 < end.wrapping_sub(first),
                        "{pos}+{rec}: {lines} lines"
                    );
                    // Every line of the record, unless capped.
                    assert!(
                        span >= end.wrapping_sub(first) || span == DEMOTE_BYTES,
                        "{pos}+{rec}: {lines} lines"
                    );
                    // Inside the data area.
                    assert!((first % cap) + span <= cap, "{pos}+{rec}: {lines} lines");
                }
            }
        }
    }

    #[test]
    fn demoted_commits_read_back_like_plain_ones() {
        let (_r, ring) = HeapRegion::ring(512, max_message_for(512));
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        for round in 0..400usize {
            let len = (round * 13) % 200;
            let msg: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
            let r = p.reserve(len).unwrap().expect("a drained ring has room");
            // SAFETY: the reservation has room for `len` bytes.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), p.payload(&r), len) };
            if round % 2 == 0 {
                p.commit_demoted(r, len, Ordering::Release);
            } else {
                p.commit(r, len);
            }
            assert_eq!(recv(&mut c), Some(msg), "round {round}");
        }
    }

    #[test]
    fn fills_wraps_and_keeps_order() {
        let (_r, ring) = HeapRegion::ring(256, max_message_for(256));
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        let mut model = VecDeque::new();
        let mut n = 0u8;
        for round in 0..200 {
            let len = (round * 7) % 60;
            let msg = vec![n; len];
            if send(&mut p, &msg) {
                model.push_back(msg);
                n = n.wrapping_add(1);
            } else {
                assert!(
                    !model.is_empty(),
                    "a ring with nothing in it refused {len} bytes"
                );
            }
            if round % 3 == 0 {
                assert_eq!(recv(&mut c), model.pop_front());
            }
        }
        while let Some(m) = model.pop_front() {
            assert_eq!(recv(&mut c), Some(m));
        }
        assert_eq!(recv(&mut c), None);
    }

    /// The channel's receive: the hinted look first, then the check before a wait and a look
    /// by the marks.
    fn recv_hinted(c: &mut Consumer) -> Option<Vec<u8>> {
        let m = match c.peek_hinted().unwrap() {
            Some(m) => m,
            None => {
                c.check_hint().unwrap();
                c.peek().unwrap()?
            }
        };
        // SAFETY: a peeked message is `len` readable bytes until released.
        let v = unsafe { std::slice::from_raw_parts(m.ptr(), m.len()) }.to_vec();
        c.release(m);
        Some(v)
    }

    /// Positions are free-running `u32` byte counts: indices that start just below 2^32 cross
    /// the wrap with every kind of step (records, padding, a jump back to the start, a full
    /// ring, the consumer's `tail` hint and its check) as they do after 4 GiB of traffic.
    /// (No bug: what the search for the hint's kind found correct, kept so.)
    #[test]
    fn positions_cross_the_u32_wrap_like_any_other() {
        let cap = 256usize;
        let max = max_message_for(cap);
        for start in [
            0u32.wrapping_sub(cap as u32),
            0u32.wrapping_sub(8),
            0u32.wrapping_sub(3 * cap as u32 / 2 + 40),
        ] {
            let (r, ring) = HeapRegion::ring(cap, max);
            r.word(std::mem::offset_of!(Header, tail))
                .store(start, Ordering::Relaxed);
            r.word(std::mem::offset_of!(Header, head))
                .store(start, Ordering::Relaxed);
            let mut p = Producer::new(ring).unwrap();
            let mut c = Consumer::new(ring).unwrap();
            let mut model = VecDeque::new();
            for round in 0..600usize {
                let msg = vec![round as u8; (round * 11) % (max + 1)];
                let sent = if round % 5 == 0 {
                    send_at_start(&mut p, &msg, 0) || send(&mut p, &msg)
                } else {
                    send(&mut p, &msg)
                };
                if sent {
                    model.push_back(msg);
                } else {
                    assert!(!model.is_empty(), "start {start}, round {round}: refused");
                }
                if round % 2 == 1 {
                    assert_eq!(recv_hinted(&mut c), model.pop_front(), "start {start}");
                }
            }
            while let Some(m) = model.pop_front() {
                assert_eq!(recv_hinted(&mut c), Some(m), "start {start}");
            }
            assert_eq!(recv_hinted(&mut c), None);
            assert!(p.is_drained().unwrap());
            assert!(c.position() < start, "the wrap was crossed");
        }
    }

    /// Sends `msg` at the ring's start if `reserve_at_start` allows it (keeping `keep` bytes).
    fn send_at_start(p: &mut Producer, msg: &[u8], keep: usize) -> bool {
        match p.reserve_at_start(msg.len(), keep).unwrap() {
            None => false,
            Some(r) => {
                // SAFETY: the reservation has room for `msg.len()` bytes.
                unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), p.payload(&r), msg.len()) };
                p.commit(r, msg.len());
                true
            }
        }
    }

    #[test]
    fn a_record_goes_back_to_the_start_only_over_free_bytes_and_reads_back_in_order() {
        let (_r, ring) = HeapRegion::ring(256, max_message_for(256));
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        // At the start already: nothing to jump over.
        assert!(!send_at_start(&mut p, &[1; 24], 0));
        // Two records of 32 bytes in flight (offset 64): the start holds them.
        assert!(send(&mut p, &[1; 24]) && send(&mut p, &[2; 24]));
        assert_eq!(p.offset(), 64);
        assert!(!send_at_start(&mut p, &[3; 24], 0));
        // The first one had back: its 32 bytes take a record of 32, not one more byte.
        assert_eq!(recv(&mut c), Some(vec![1; 24]));
        assert!(!send_at_start(&mut p, &[3; 24], 8));
        assert!(send_at_start(&mut p, &[3; 24], 0));
        assert_eq!(p.offset(), 32);
        // The consumer skips the padding and reads on in order; the room comes back whole.
        assert_eq!(recv(&mut c), Some(vec![2; 24]));
        assert_eq!(recv(&mut c), Some(vec![3; 24]));
        assert_eq!(recv(&mut c), None);
        let mut n = 0;
        while send(&mut p, &[4; 24]) {
            n += 1;
        }
        assert_eq!(n, 256 / 32);
        // A scribbled consumer index is Corrupted here too (the jump re-reads it).
        ring.header().head.store(3, Ordering::SeqCst);
        let e = p.reserve_at_start(24, 0).unwrap_err();
        assert_eq!(e.kind(), ipc_core::ErrorKind::Corrupted, "{e}");
    }

    #[test]
    fn a_maximum_message_always_fits_in_a_drained_ring() {
        let cap = 256;
        let max = max_message_for(cap);
        let (_r, ring) = HeapRegion::ring(cap, max);
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        for offset in 0..40 {
            let small = vec![1; offset % 17];
            assert!(send(&mut p, &small));
            recv(&mut c).unwrap();
            let big = vec![2; max];
            assert!(
                send(&mut p, &big),
                "max message refused at offset step {offset}"
            );
            assert_eq!(recv(&mut c).unwrap(), big);
        }
    }

    #[test]
    fn uncommitted_records_are_invisible() {
        let (_r, ring) = HeapRegion::ring(256, 100);
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        let r = p.reserve(50).unwrap().unwrap();
        // SAFETY: 50 bytes reserved.
        unsafe { std::ptr::write_bytes(p.payload(&r), 0xAB, 50) };
        assert!(c.peek().unwrap().is_none());
        let _abandoned = r; // never committed: the next reservation reuses the space
        assert!(send(&mut p, b"next"));
        assert_eq!(recv(&mut c).unwrap(), b"next");
    }

    #[test]
    fn garbage_indices_and_records_are_corrupted_not_ub() {
        let head_off = std::mem::offset_of!(Header, head);
        let tail_off = std::mem::offset_of!(Header, tail);
        for garbage in [1u32, 7, 257, 1 << 20, u32::MAX, 0x8000_0000] {
            let (r, ring) = HeapRegion::ring(256, 100);
            let mut p = Producer::new(ring).unwrap();
            let mut c = Consumer::new(ring).unwrap();
            r.word(tail_off).store(garbage, Ordering::Release);
            // The consumer goes by record marks, not by `tail`: nothing is committed.
            assert!(c.peek().unwrap().is_none(), "tail {garbage}");
            // A producer attaching now validates `tail` against `head`.
            if garbage % 8 != 0 || garbage > 256 {
                let e = Producer::new(ring).unwrap_err();
                assert_eq!(
                    e.kind(),
                    ipc_core::ErrorKind::Corrupted,
                    "tail {garbage}: {e}"
                );
            }
            r.word(head_off).store(garbage, Ordering::Release);
            // Fill until the producer must look at head.
            let e = loop {
                match p.reserve(100) {
                    Ok(Some(res)) => p.commit(res, 100),
                    Ok(None) => panic!("garbage head {garbage} accepted as full"),
                    Err(e) => break e,
                }
            };
            assert_eq!(
                e.kind(),
                ipc_core::ErrorKind::Corrupted,
                "head {garbage}: {e}"
            );
        }
        // Record headers: a length past the committed bytes, an unknown kind, bad padding.
        for (len, kind) in [
            (200u32, KIND_MESSAGE),
            (u32::MAX, KIND_MESSAGE),
            (8, 3),
            (8, 6),
            (8, KIND_PADDING),
            (u32::MAX - 7, KIND_PADDING),
        ] {
            let (r, ring) = HeapRegion::ring(256, 100);
            let mut p = Producer::new(ring).unwrap();
            let mut c = Consumer::new(ring).unwrap();
            assert!(send(&mut p, &[0; 16]));
            r.word(DATA_OFFSET).store(len, Ordering::Relaxed);
            r.word(DATA_OFFSET + 4).store(kind, Ordering::Relaxed);
            let e = c.peek().unwrap_err();
            assert_eq!(
                e.kind(),
                ipc_core::ErrorKind::Corrupted,
                "({len}, {kind:#x}): {e}"
            );
        }
    }

    #[test]
    fn the_fast_paths_take_only_what_the_checked_paths_would() {
        let (r, ring) = HeapRegion::ring(256, 100);
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        assert!(c.peek_message().is_none(), "an empty ring");
        // By the cached head alone: no room once full, though the consumer made some.
        while send(&mut p, &[3; 40]) {}
        assert!(p.reserve_cached(40).is_none());
        recv(&mut c).unwrap();
        assert!(p.reserve_cached(40).is_none(), "the cache is not refreshed");
        assert!(
            p.reserve(40).unwrap().is_some(),
            "the checked path refreshes"
        );
        while recv(&mut c).is_some() {}
        // A committed record whose length a peer scribbled: the fast path declines, the
        // checked path reports it.
        for len in [101u32, 249, u32::MAX] {
            let (r, ring) = HeapRegion::ring(256, 100);
            let mut p = Producer::new(ring).unwrap();
            let mut c = Consumer::new(ring).unwrap();
            assert!(send(&mut p, &[1; 16]));
            r.word(DATA_OFFSET).store(len, Ordering::Relaxed);
            assert!(c.peek_message().is_none(), "length {len}");
            let e = c.peek().unwrap_err();
            assert_eq!(
                e.kind(),
                ipc_core::ErrorKind::Corrupted,
                "length {len}: {e}"
            );
        }
        // Padding is left to the checked path, which skips it.
        let (_r, ring) = HeapRegion::ring(256, 100);
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        for _ in 0..2 {
            // Records of 112 bytes at 0 and 112: the third does not fit before the end.
            assert!(send(&mut p, &[2; 100]));
            assert_eq!(recv(&mut c).unwrap().len(), 100);
        }
        assert!(send(&mut p, &[4; 100]), "wraps after a padding record");
        assert!(c.peek_message().is_none(), "padding first");
        assert_eq!(c.peek().unwrap().map(|m| m.len()), Some(100));
        drop(r);
    }

    #[test]
    fn open_validates_the_header() {
        let (r, _ring) = HeapRegion::ring(256, 100);
        let len = region_size(256);
        let meta = |off: usize| r.word(off);
        // SAFETY: the region is valid, aligned and alive for the whole test.
        let open = |len: usize| unsafe { Ring::open(r.ptr, len) };
        meta(16).store(512, Ordering::Relaxed); // capacity larger than the region
        let e = open(len).unwrap_err();
        assert_eq!(e.kind(), ipc_core::ErrorKind::Corrupted, "{e}");
        meta(16).store(100, Ordering::Relaxed); // not a power of two
        let e = open(len).unwrap_err();
        assert_eq!(e.kind(), ipc_core::ErrorKind::Corrupted, "{e}");
        meta(16).store(256, Ordering::Relaxed);
        meta(20).store(200, Ordering::Relaxed); // max message over half the ring
        let e = open(len).unwrap_err();
        assert_eq!(e.kind(), ipc_core::ErrorKind::Corrupted, "{e}");
        meta(20).store(100, Ordering::Relaxed);
        // Bytes in flight: not a multiple of 8, over the capacity, too few for two records.
        for limit in [250, 264, 200] {
            meta(24).store(limit, Ordering::Relaxed);
            let e = open(len).unwrap_err();
            assert_eq!(
                e.kind(),
                ipc_core::ErrorKind::Corrupted,
                "limit {limit}: {e}"
            );
        }
        meta(24).store(256, Ordering::Relaxed);
        open(len).unwrap();
        meta(8).store(VERSION + 1, Ordering::Relaxed);
        let e = open(len).unwrap_err();
        assert_eq!(e.kind(), ipc_core::ErrorKind::WrongType, "{e}");
        meta(8).store(VERSION, Ordering::Relaxed);
        // SAFETY: the magic is the region's first, 8-aligned word.
        let magic = unsafe { &*r.ptr.as_ptr().cast::<AtomicU64>() };
        magic.store(0xdead, Ordering::Relaxed);
        let e = open(len).unwrap_err();
        assert_eq!(e.kind(), ipc_core::ErrorKind::WrongType, "{e}");
        let e = open(DATA_OFFSET - 1).unwrap_err();
        assert_eq!(e.kind(), ipc_core::ErrorKind::WrongType, "{e}");
    }

    #[test]
    fn threads_pass_messages_in_order() {
        // Under Miri this checks the release/acquire protocol for data races.
        let count: u32 = if cfg!(miri) { 200 } else { 20_000 };
        let (region, ring) = HeapRegion::ring(512, 200);
        let mut p = Producer::new(ring).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..count {
                    let len = (i as usize * 13) % 200;
                    let mut msg = vec![(i % 251) as u8; len.max(4)];
                    msg[..4].copy_from_slice(&i.to_le_bytes());
                    while !send(&mut p, &msg) {
                        std::thread::yield_now();
                    }
                }
            });
            for i in 0..count {
                let msg = loop {
                    if let Some(m) = recv(&mut c) {
                        break m;
                    }
                    std::thread::yield_now();
                };
                assert_eq!(&msg[..4], &i.to_le_bytes());
                assert!(msg[4..].iter().all(|&b| b == (i % 251) as u8));
            }
        });
        drop(region);
    }

    /// Sends a message of `len` bytes whose payload is made of fake record headers: at every
    /// 8-aligned ring position `q` it covers, an empty message committed at `q`, or at `q` one
    /// lap later. If stale bytes could ever pass for a commit, the consumer would take one.
    fn send_forged(p: &mut Producer, len: usize, cap: u32) -> bool {
        let Some(r) = p.reserve(len).unwrap() else {
            return false;
        };
        let payload = p.payload(&r);
        for o in (0..len / 8 * 8).step_by(8) {
            let q = r.pos.wrapping_add((RECORD_HEADER + o) as u32);
            let lap = if o % 16 == 0 { 0 } else { cap };
            let words = [0u32, q.wrapping_add(lap) | KIND_MESSAGE];
            // SAFETY: `o + 8 <= len`, inside the reservation.
            unsafe { payload.add(o).cast::<[u32; 2]>().write_unaligned(words) };
        }
        p.commit(r, len);
        true
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: if cfg!(miri) { 4 } else { 256 },
            failure_persistence: None,
            ..Default::default()
        })]
        /// Payloads forged to look like committed records never surface as messages.
        #[test]
        fn forged_payloads_never_look_committed(ops in proptest::collection::vec((proptest::bool::ANY, 0usize..120), 1..80)) {
            let cap = 256u32;
            let (_r, ring) = HeapRegion::ring(cap as usize, max_message_for(cap as usize));
            let mut p = Producer::new(ring).unwrap();
            let mut c = Consumer::new(ring).unwrap();
            let mut model: VecDeque<usize> = VecDeque::new();
            for (is_send, len) in ops {
                if is_send {
                    if send_forged(&mut p, len, cap) {
                        model.push_back(len);
                    }
                } else {
                    let got = c.peek().unwrap();
                    proptest::prop_assert_eq!(got.map(|m| m.len()), model.pop_front());
                    if let Some(m) = got {
                        c.release(m);
                    }
                }
            }
            while let Some(len) = model.pop_front() {
                let m = c.peek().unwrap();
                proptest::prop_assert_eq!(m.map(|m| m.len()), Some(len));
                c.release(m.unwrap());
            }
            proptest::prop_assert!(c.peek().unwrap().is_none());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: if cfg!(miri) { 4 } else { 256 },
            failure_persistence: None,
            ..Default::default()
        })]
        /// Any interleaving of sends and receives matches a VecDeque model.
        #[test]
        fn matches_the_model(ops in proptest::collection::vec((proptest::bool::ANY, 0usize..120), 1..80)) {
            let (_r, ring) = HeapRegion::ring(256, max_message_for(256));
            let mut p = Producer::new(ring).unwrap();
            let mut c = Consumer::new(ring).unwrap();
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            for (i, (is_send, len)) in ops.into_iter().enumerate() {
                if is_send {
                    let msg = vec![i as u8; len];
                    if send(&mut p, &msg) {
                        model.push_back(msg);
                    } else {
                        // A message of at most the maximum always fits a drained ring.
                        proptest::prop_assert!(!model.is_empty());
                    }
                } else {
                    proptest::prop_assert_eq!(recv(&mut c), model.pop_front());
                }
            }
        }
    }
}
