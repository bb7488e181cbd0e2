//! Shared-memory rows: `ipc-shm`'s channel (one ring each way, in sealed memfds: the shared
//! [`ShmChannel`](crate::fixtures::ShmChannel) fixture), and the raw
//! loops its performance targets are stated against, over the same kind of memory:
//!
//! - `shm-raw`: a copy-in/copy-out ring of fixed slots, busy-waiting (the throughput floor),
//!   its messages stamped and checked by the engine exactly like the channel's;
//! - `shm-raw-copy`: the C reference ring (`../shared/reference/c-baseline/thr.c`,
//!   `shmring`) in Rust: 4 MiB, `memcpy` in and out, spin-wait, and **no** stamps or checks
//!   in its data loop (only the count of messages is checked): the ceiling, so the cost of
//!   the benchmark's own checks shows as the gap between it and `shm-raw`. Throughput only;
//! - `shm-raw-spin`: a one-slot mailbox each way whose index is spun on (for small messages, a
//!   ping-pong on one shared cache line plus the payload: the cross-core round-trip floor);
//! - `shm-raw-futex`: the same mailbox, sleeping on a futex at once (the same-core floor).
//!
//! The raw rows are the plainest code that still moves every byte through the shared memory.
//! Beside them, `shm-spin` and `shm-sleep`: the channel with every end on
//! [`WaitPolicy::Spin`] / [`WaitPolicy::Sleep`] (`shm` itself is the default,
//! [`WaitPolicy::Adaptive`]).

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_core::{Deadline, Error, MaxMessage, Properties, Result};
use ipc_shm::{ChannelOptions, Segment, WaitPolicy};
use ipc_testkit::fixture::Fixture;
use ipc_testkit::{Ctx, Spawn};

use crate::engine::Metric;
use crate::fixtures::{ShmChannel, shm_capacity as capacity};
use crate::row::{Duplex, Handoff, Inherited, Link, ParentEnd, Row, RowInfo, RowKind};

impl Link for ShmChannel {}

/// The channel fixture with every end on one wait policy (0 spin, 1 sleep): the policy is
/// stored in the segment, so the ends the child opens follow it too.
#[derive(Debug)]
pub(crate) struct ShmPolicy<const P: u8>;

impl<const P: u8> ShmPolicy<P> {
    fn policy() -> WaitPolicy {
        if P == 0 {
            WaitPolicy::Spin
        } else {
            WaitPolicy::Sleep
        }
    }
}

impl<const P: u8> Fixture for ShmPolicy<P> {
    type Tx = ipc_shm::Sender;
    type Rx = ipc_shm::Receiver;
    type Guard = ();
    const NAME: &'static str = "shm channel (one wait policy)";
    const DETECTS_DISCONNECT: bool = true;

    fn properties() -> Properties {
        ShmChannel::properties()
    }
    fn max_message() -> Option<usize> {
        ShmChannel::max_message()
    }
    fn script_max() -> usize {
        ShmChannel::script_max()
    }
    fn channel(size: Option<usize>) -> Result<(Self::Tx, Self::Rx, ())> {
        let mut opts = ChannelOptions::new().wait(Self::policy());
        if let Some(size) = size {
            opts = opts.capacity(capacity(size));
        }
        let (tx, rx) = opts.pair()?;
        Ok((tx, rx, ()))
    }
    fn pass_tx(tx: Self::Tx, spawn: Spawn) -> Spawn {
        ShmChannel::pass_tx(tx, spawn)
    }
    fn adopt_tx(ctx: &Ctx) -> Result<Self::Tx> {
        ShmChannel::adopt_tx(ctx)
    }
    fn pass_rx(rx: Self::Rx, spawn: Spawn) -> Spawn {
        ShmChannel::pass_rx(rx, spawn)
    }
    fn adopt_rx(ctx: &Ctx) -> Result<Self::Rx> {
        ShmChannel::adopt_rx(ctx)
    }
}

impl<const P: u8> Link for ShmPolicy<P> {}

fn raw_properties(mechanism: &'static str) -> Properties {
    Properties {
        mechanism,
        max_message: MaxMessage::Unbounded,
        ..ipc_shm::PROPERTIES
    }
}

/// How long a raw row waits for its peer before it calls the peer gone (raw rows have no
/// liveness check; a child that failed its checks and exited must not hang the parent).
const SILENCE: Duration = Duration::from_secs(1);

/// One direction of a raw row: the producer's count of messages at 0, the consumer's at 128
/// (each on its own cache line, each a futex word), fixed slots from 256.
const TAIL: usize = 0;
const HEAD: usize = 128;
const DATA: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Spin,
    Futex,
}

/// One direction of a raw ring (a mailbox when it has one slot).
struct RawRing {
    seg: Segment,
    slots: u32,
    size: usize,
    /// Our own count (sent or received) and the latest seen of the peer's.
    mine: u32,
    theirs: u32,
    wait: Wait,
}

impl RawRing {
    fn new(seg: Segment, size: usize, wait: Wait) -> RawRing {
        // A power of two, so slot numbers stay continuous when the counts wrap.
        let fit = ((seg.len() - DATA) / size.max(1)).max(1);
        let slots = 1u32 << fit.ilog2();
        RawRing {
            seg,
            slots,
            size,
            mine: 0,
            theirs: 0,
            wait,
        }
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        self.seg.atomic_u32(at).expect("in bounds")
    }

    /// Waits until the peer's count at `at` satisfies `ready`, at most [`SILENCE`] without
    /// progress. The clock is read once per 64 Ki spins (a spin-wait shorter than that reads
    /// it never); a futex sleep's timeout lies a second out, past the next timer tick, so
    /// arming it costs no timer reprogramming.
    fn wait_for(&mut self, at: usize, ready: impl Fn(u32) -> bool) -> Result<()> {
        let mut deadline = None;
        let mut give_up = || *deadline.get_or_insert_with(|| Instant::now() + SILENCE);
        let silent =
            || Error::disconnected().in_op("raw shm row: the peer made no progress for 1 s");
        let mut spins = 0u32;
        loop {
            let v = self.word(at).load(Ordering::Acquire);
            if ready(v) {
                self.theirs = v;
                return Ok(());
            }
            match self.wait {
                Wait::Spin => {
                    spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins % (1 << 16) == 0 && Instant::now() >= give_up() {
                        return Err(silent());
                    }
                }
                Wait::Futex => {
                    if let Err(e) = ipc_sync::futex::wait(self.word(at), v, Deadline::At(give_up()))
                    {
                        if e.kind() == ipc_core::ErrorKind::TimedOut {
                            return Err(silent());
                        }
                    }
                }
            }
        }
    }

    fn publish(&self, at: usize) {
        self.word(at).store(self.mine, Ordering::Release);
        if self.wait == Wait::Futex {
            ipc_sync::futex::wake(self.word(at), 1);
        }
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let (tail, slots) = (self.mine, self.slots);
        if tail.wrapping_sub(self.theirs) == slots {
            self.wait_for(HEAD, |head| tail.wrapping_sub(head) < slots)?;
        }
        let at = DATA + (tail % slots) as usize * self.size;
        self.seg.write_at(at, msg)?;
        self.mine = tail.wrapping_add(1);
        self.publish(TAIL);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let head = self.mine;
        if self.theirs == head {
            self.wait_for(TAIL, |tail| tail != head)?;
        }
        let at = DATA + (head % self.slots) as usize * self.size;
        self.seg.read_at(at, buf)?;
        self.mine = head.wrapping_add(1);
        self.publish(HEAD);
        Ok(buf.len())
    }
}

struct RawDuplex {
    tx: RawRing,
    rx: RawRing,
}

impl Duplex for RawDuplex {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.rx.recv(buf)
    }
}

fn raw_connect(size: usize, slots: usize, wait: Wait, child: &mut Handoff) -> Result<ParentEnd> {
    let len = DATA + slots * size.max(1);
    let down = Segment::memfd("bench-raw-down", len)?;
    let up = Segment::memfd("bench-raw-up", len)?;
    child.fd("down", down.fd().expect("a memfd has a descriptor"))?;
    child.fd("up", up.fd().expect("a memfd has a descriptor"))?;
    Ok(ParentEnd::Ready(Box::new(RawDuplex {
        tx: RawRing::new(down, size, wait),
        rx: RawRing::new(up, size, wait),
    })))
}

fn raw_adopt(size: usize, wait: Wait) -> Result<Box<dyn Duplex>> {
    Ok(Box::new(RawDuplex {
        tx: RawRing::new(Segment::inherited("up")?, size, wait),
        rx: RawRing::new(Segment::inherited("down")?, size, wait),
    }))
}

/// A copy-in/copy-out ring of fixed slots (as much memory as the channel's ring), busy-waiting.
pub(crate) struct RawShmRing;

impl Row for RawShmRing {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "shm-raw",
            family: "shm",
            kind: RowKind::Raw,
            properties: raw_properties("shm ring, raw"),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        raw_connect(size, capacity(size) / size.max(1), Wait::Spin, child)
    }

    fn adopt(&self, size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        raw_adopt(size, Wait::Spin)
    }
}

/// A one-slot mailbox each way, spinning on the peer's count.
pub(crate) struct RawShmSpin;

impl Row for RawShmSpin {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "shm-raw-spin",
            family: "shm-spin",
            kind: RowKind::Raw,
            properties: raw_properties("shm mailbox, spin, raw"),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        raw_connect(size, 1, Wait::Spin, child)
    }

    fn adopt(&self, size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        raw_adopt(size, Wait::Spin)
    }
}

/// The same mailbox, sleeping on a futex (no spinning): a raw futex ping-pong.
pub(crate) struct RawShmFutex;

impl Row for RawShmFutex {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "shm-raw-futex",
            family: "shm-futex",
            kind: RowKind::Raw,
            properties: raw_properties("shm mailbox, futex, raw"),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        raw_connect(size, 1, Wait::Futex, child)
    }

    fn adopt(&self, size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        raw_adopt(size, Wait::Futex)
    }
}

/// The C reference ring's data area: 4 MiB (larger for messages over 2 MiB).
const COPY_RING: usize = 4 << 20;
/// Its header: the consumer's position at 0, the producer's at 128, the unchecked burst's
/// range at 256 (end) and 264 (start), each on its own cache line; data from 4096.
const COPY_HEAD: usize = 0;
const COPY_TAIL: usize = 128;
const COPY_BURST_TO: usize = 256;
const COPY_BURST_FROM: usize = 264;
const COPY_DATA: usize = 4096;

/// One direction of `shm-raw-copy`: `thr.c`'s `shmring` (u64 positions, a cached copy of the
/// peer's, `memcpy` in and out, a release store of the position after every message, spin
/// with `pause`). Messages that do not divide the ring are copied in two pieces at its end.
struct CopyRing {
    seg: Segment,
    data: *mut u8,
    /// The two positions, found once (the segment checks each lookup's bounds).
    head: *const std::sync::atomic::AtomicU64,
    tail: *const std::sync::atomic::AtomicU64,
    ring: u64,
    size: u64,
    /// Our position and the latest seen of the peer's.
    mine: u64,
    theirs: u64,
    /// The receiver's view of the current unchecked burst's end (`u64::MAX`: still open).
    burst_to: u64,
    /// Unchecked messages received since [`Duplex::take_unchecked`].
    unchecked: u64,
}

fn copy_ring_len(size: usize) -> usize {
    COPY_RING.max(size.next_power_of_two() * 2)
}

impl CopyRing {
    fn new(seg: Segment, size: usize) -> Result<CopyRing> {
        let ring = copy_ring_len(size);
        if seg.len() < COPY_DATA + ring {
            return Err(Error::with_note(
                ipc_core::ErrorKind::InvalidInput,
                "segment too small for the copy ring",
            ));
        }
        // SAFETY: the data area `COPY_DATA..COPY_DATA + ring` is inside the mapping (checked
        // above), which `seg` keeps alive as long as this ring.
        let data = unsafe { seg.as_ptr().add(COPY_DATA) };
        let head: *const _ = seg.atomic_u64(COPY_HEAD)?;
        let tail: *const _ = seg.atomic_u64(COPY_TAIL)?;
        Ok(CopyRing {
            seg,
            data,
            head,
            tail,
            ring: ring as u64,
            size: size as u64,
            mine: 0,
            theirs: 0,
            burst_to: 0,
            unchecked: 0,
        })
    }

    fn word(&self, at: usize) -> &std::sync::atomic::AtomicU64 {
        self.seg.atomic_u64(at).expect("in bounds")
    }

    /// The consumer's position word.
    #[inline]
    fn head(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: found in bounds by `new` in the mapping `seg` keeps alive; atomics only.
        unsafe { &*self.head }
    }

    /// The producer's position word.
    #[inline]
    fn tail(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: as in `head`.
        unsafe { &*self.tail }
    }

    /// Copies between `buf` and the ring at position `pos`, in two pieces across the end.
    #[inline]
    fn copy(&self, pos: u64, buf: *mut u8, into_ring: bool) {
        // The ring is a power of two.
        let off = (pos & (self.ring - 1)) as usize;
        let first = (self.size as usize).min(self.ring as usize - off);
        let rest = self.size as usize - first;
        // SAFETY: `off + first <= ring` and `rest < ring`: both pieces lie inside the data
        // area; `buf` is a distinct buffer of `size` bytes (the callers pass one).
        unsafe {
            if into_ring {
                std::ptr::copy_nonoverlapping(buf, self.data.add(off), first);
                if rest > 0 {
                    std::ptr::copy_nonoverlapping(buf.add(first), self.data, rest);
                }
            } else {
                std::ptr::copy_nonoverlapping(self.data.add(off), buf, first);
                if rest > 0 {
                    std::ptr::copy_nonoverlapping(self.data, buf.add(first), rest);
                }
            }
        }
    }

    /// Waits for room for one message (spinning, [`SILENCE`] without progress at most).
    #[inline]
    fn wait_room(&mut self) -> Result<()> {
        let mut spins = 0u32;
        while self.mine - self.theirs + self.size > self.ring {
            self.theirs = self.head().load(Ordering::Acquire);
            if self.mine - self.theirs + self.size > self.ring {
                spin_loop();
                spins = spins.wrapping_add(1);
                if spins % (1 << 20) == 0 && spins >> 20 > 64 {
                    return Err(Error::disconnected().in_op("raw copy ring: no room for long"));
                }
            }
        }
        Ok(())
    }

    /// Waits for a message at our position (spinning; gives up after [`SILENCE`]).
    #[inline]
    fn wait_message(&mut self) -> Result<()> {
        // The clock is read only once a wait lasts 64 Ki spins (a catch-up costs none).
        let mut give_up = None;
        let mut spins = 0u32;
        while self.theirs == self.mine {
            self.theirs = self.tail().load(Ordering::Acquire);
            if self.theirs == self.mine {
                spin_loop();
                spins = spins.wrapping_add(1);
                if spins % (1 << 16) == 0
                    && Instant::now() >= *give_up.get_or_insert_with(|| Instant::now() + SILENCE)
                {
                    return Err(Error::disconnected()
                        .in_op("raw copy ring: the peer made no progress for 1 s"));
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.wait_room()?;
        self.copy(self.mine, msg.as_ptr().cast_mut(), true);
        self.mine += self.size;
        self.tail().store(self.mine, Ordering::Release);
        Ok(())
    }

    /// The receiver: unchecked messages of a burst are copied out into `buf` and counted,
    /// the next message after the burst is returned.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            self.wait_message()?;
            // Published before the message's position: seen now if it covers it.
            if self.mine >= self.word(COPY_BURST_FROM).load(Ordering::Acquire) {
                self.burst_to = self.word(COPY_BURST_TO).load(Ordering::Acquire);
            } else {
                self.burst_to = 0;
            }
            let burst = self.mine < self.burst_to;
            self.copy(self.mine, buf.as_mut_ptr(), false);
            self.mine += self.size;
            self.head().store(self.mine, Ordering::Release);
            if !burst {
                return Ok(buf.len());
            }
            self.unchecked += 1;
            // The burst's data loop: the C consumer's, with a look at the burst's end only
            // when the cached producer position runs out.
            while self.mine < self.burst_to {
                if self.theirs == self.mine {
                    self.wait_message()?;
                    self.burst_to = self.word(COPY_BURST_TO).load(Ordering::Acquire);
                    if self.mine >= self.burst_to {
                        break;
                    }
                }
                self.copy(self.mine, buf.as_mut_ptr(), false);
                self.mine += self.size;
                self.head().store(self.mine, Ordering::Release);
                self.unchecked += 1;
            }
        }
    }

    /// The sender's burst: opens the range at our position, streams copies of `msg` until
    /// `end` (the clock read every 64 messages below 4 KiB, as `thr.c` does), closes it.
    fn burst(&mut self, msg: &[u8], end: Instant, min: u64) -> Result<u64> {
        self.word(COPY_BURST_TO).store(u64::MAX, Ordering::Relaxed);
        self.word(COPY_BURST_FROM)
            .store(self.mine, Ordering::Release);
        let mask: u64 = if self.size >= 4096 { 0 } else { 63 };
        let mut n = 0u64;
        loop {
            self.wait_room()?;
            self.copy(self.mine, msg.as_ptr().cast_mut(), true);
            self.mine += self.size;
            self.tail().store(self.mine, Ordering::Release);
            n += 1;
            if n & mask == 0 && n >= min && Instant::now() >= end {
                break;
            }
        }
        // Closed before the next (checked) message's position is published.
        self.word(COPY_BURST_TO).store(self.mine, Ordering::Release);
        Ok(n)
    }
}

struct CopyDuplex {
    tx: CopyRing,
    rx: CopyRing,
}

impl Duplex for CopyDuplex {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.rx.recv(buf)
    }

    fn stream_unchecked(&mut self, msg: &[u8], end: Instant, min: u64) -> Option<Result<u64>> {
        Some(self.tx.burst(msg, end, min))
    }

    fn take_unchecked(&mut self) -> u64 {
        std::mem::take(&mut self.rx.unchecked)
    }
}

/// `thr.c`'s `shmring` in Rust, unchecked: see the module docs.
pub(crate) struct RawShmCopy;

impl Row for RawShmCopy {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "shm-raw-copy",
            family: "shm-copy",
            kind: RowKind::Raw,
            properties: raw_properties("shm ring, unchecked (C shmring)"),
            max_message: None,
        }
    }

    fn measures(&self, metric: Metric) -> bool {
        metric == Metric::Throughput
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let len = COPY_DATA + copy_ring_len(size);
        let down = Segment::memfd("bench-copy-down", len)?;
        let up = Segment::memfd("bench-copy-up", len)?;
        child.fd("down", down.fd().expect("a memfd has a descriptor"))?;
        child.fd("up", up.fd().expect("a memfd has a descriptor"))?;
        Ok(ParentEnd::Ready(Box::new(CopyDuplex {
            tx: CopyRing::new(down, size)?,
            rx: CopyRing::new(up, size)?,
        })))
    }

    fn adopt(&self, size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(CopyDuplex {
            tx: CopyRing::new(Segment::inherited("up")?, size)?,
            rx: CopyRing::new(Segment::inherited("down")?, size)?,
        }))
    }
}
