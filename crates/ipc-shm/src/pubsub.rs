//! Publish-subscribe in a segment: one [`Publisher`], up to [`PubSubOptions::subscribers`]
//! [`Subscriber`]s joining and leaving at any time, each reading every message in place from
//! one shared ring of fixed slots with a cursor of its own.
//!
//! # Layout
//!
//! ```text
//! offset    0  Meta       magic "IPCSHMPS", layout version, header size, policy, slots (N, a
//!                         power of two), slot size, max message, subscriber places (M), history
//! offset  128  tail       u64, written by the publisher only: messages ever published
//! offset  256  publisher  Side: owner word (state, pid, start time), CPU, sleeping flag, wake
//!                         word (the futex subscribers sleep on)
//! offset  384  shared     sleepers (u64: low half, subscribers asleep or going to sleep; high
//!                         half, naps: bumped by every sleep announced), space (u32: the futex a
//!                         blocked publisher sleeps on), joins (u32: bumped by every join), want
//!                         (u64: the cursor that wakes a publisher sleeping for room)
//! offset  512  places     M blocks of 128 bytes: a subscriber's Side and its cursor (u64: the
//!                         next sequence number it will read), written by that subscriber only
//! then         slots      N slots of `slot size` bytes (a multiple of 128): stamp (u64), length
//!                         (u32), 4 bytes pad, payload
//! ```
//!
//! Every line is its own cache line(s) (`CachePadded`), so the publisher's index, each cursor
//! and the words sleepers touch never share one. Message `s` (counted from 0) lives in slot
//! `s % N`; its stamp is `s + 1` once it is complete. The publisher writes a slot as a sequence
//! lock: stamp 0, a release fence, length and payload, then stamp `s + 1` (release), then
//! `tail = s + 1`. A subscriber at cursor `c` takes the slot when its stamp is `c + 1`; a stamp
//! that is anything else while `tail > c` means message `c` was overwritten: it was *missed*.
//!
//! # Slow subscribers: the policy
//!
//! - [`Policy::Block`]: before writing message `s` the publisher waits until every attached
//!   subscriber's cursor is past `s - N` (so nothing a subscriber has not read is overwritten,
//!   and a message read in place stays intact until its guard is dropped). The wait is bounded
//!   by the send's deadline: a subscriber that is alive but stuck makes `send` end with
//!   `TimedOut`, never hang; a subscriber whose process died is found (pidfd and start time,
//!   as the channel's peers are) and its place reclaimed, so it blocks nobody.
//! - [`Policy::Lossy`]: the publisher never waits. A subscriber more than `N` messages behind
//!   loses the oldest ones and [`Subscriber::missed`] counts exactly how many. Once overtaken it
//!   goes on from the oldest message that is surely intact, the last `N - 1` published (the
//!   publisher may be writing the next one over the `N`th from last as it looks); a copying
//!   receive that was overtaken while it copied retries (counting the miss), and a message
//!   read in place says whether it survived with [`PubSubGuard::intact`].
//!
//! # Joining and leaving
//!
//! Each step of a subscriber's life is one atomic write (the owner word has the format of the
//! channel's ends, `peer.rs`): a compare-and-swap of the place's owner word from free to
//! (attaching, this process), then the cursor, then (attached, this process), then a bump of
//! the shared join count (which makes the publisher scan the places again); leaving is one
//! compare-and-swap of the owner word back to free. The kill tests stop a join after each of
//! these writes (`testing::join_until`) and kill the process there. The publisher
//! and the other subscribers ignore a place that is not attached; a place whose process died at
//! any step is taken over (one compare-and-swap from the word found, so a race loses cleanly)
//! by the publisher when it would wait for it, or by a subscriber that finds no free place.
//!
//! A late joiner starts `history` messages back (at most what is still in the ring). A
//! publisher under `Block` that did not yet see the join may overwrite some of those history
//! messages; they are then counted in [`Subscriber::missed`]. After its join count the joiner
//! reads `tail` again and starts past the message the one in flight may overwrite (the
//! publisher's load of the join count follows its store of `tail`, both sequentially
//! consistent, so every later message is checked against the new cursor): a history message
//! read in place stays intact under its guard, as every other is. From its first message on,
//! a subscriber under `Block` sees every message, in order.
//!
//! # Trust
//!
//! Every word a peer can write is read once into a local and validated before use: slot
//! indices are taken modulo `N` of the validated header (kept locally), lengths are checked
//! against the slot's payload size, cursors against `tail`, `tail` against 2^63 (a count no
//! publisher reaches, and below which no `+ 1` overflows) and against the stamps (a slot
//! holding a later message than `tail` allows means `tail` was scribbled behind: a joiner
//! starting there and a publisher blocked for it would wait on each other forever), owner
//! words decoded as the channel's are. Anything inconsistent is [`ErrorKind::Corrupted`],
//! never a hang, a panic or an out-of-bounds access. Payload bytes read in place live in
//! memory the publisher can write; validate what you parse from them.
//!
//! # Waiting
//!
//! Waiters look again for up to 30 µs before they sleep, and never keep their CPU from another
//! runnable task meanwhile (`wait.rs`, `Spin`). When another CPU may serve them they spin for
//! 2 µs, then give the CPU up (`sched_yield`) after every slice of 64 looks: with nobody else
//! runnable the yield returns at once (a dedicated core loses a system call per slice), while
//! sibling subscribers sharing the CPU, which already have the message to handle, run instead of
//! waiting out the spin (rough, on a busy 2-CPU machine: the 64 B round trip to the last of 4 and
//! 16 subscriber threads on one CPU, fed from another, ~13-17 and ~75-170 µs instead of
//! ~130-290 µs and ~0.6-1.2 ms). A
//! yield that kept the waiter off the CPU for more than 1 ms (a busy task holds it) ends the
//! look, and the thread's next 15 waits spin out their budget without yielding, then sleep.
//! A subscriber with *siblings* (other subscribers of the segment pinned to its CPU) instead
//! counts only its own time on the CPU against the budget (what its yields give them does not
//! count, up to 200 µs or its deadline), and a long yield is them working, not a busy task: so
//! they take turns there as pollers do. Before this rule, 16 subscriber threads on one CPU
//! each spun its budget out on its siblings' work of 1 MiB messages and slept, at almost
//! every message (a futex wait, the publisher's wake-up and a liveness check each).
//! When everyone they wait for is pinned to their own CPU (spinning cannot pay there) they yield
//! before every look, long yields included (those waited for run only then), so a runnable peer
//! on that CPU publishes or drains a batch before either end announces a sleep (no wake-up
//! system call, no wake-up preemption per message).
//!
//! Then they sleep on a futex in the segment in growing slices (1 to 50 ms), checking the process
//! they wait for (the publisher, or under `Block` the subscribers holding the publisher back)
//! between slices: a death is seen within one slice. Subscribers sleep on the publisher's wake word
//! and announce it in the shared `sleepers` word (one atomic add: the count of sleepers up, and the
//! count of naps, each sleep announced, up), so a publisher makes a wake-up syscall only when
//! someone sleeps, and once per nap announced: having woken, it makes no more until a subscriber
//! announces a new sleep, however many messages it publishes before the woken ones run (on a shared
//! CPU they run only when the publisher yields it). A subscriber killed while asleep leaves the
//! count raised, which costs the publisher one needless wake-up, never a lost one (each sleep
//! re-reads the wake word first, so a wake-up after it announced its sleep ends it or its sleep
//! does not start). A publisher blocked under `Block` sleeps until half the ring is free (it writes
//! the cursor it wants in `want`; the *last* attached subscriber to pass it takes the publisher's
//! flag down and wakes it: each one that passes it looks at the others' cursors after storing its
//! own, so of two passing at once at least one sees the other), so a publisher that outpaces its
//! subscribers wakes once per half ring, not once per message nor once per subscriber (with the
//! first subscriber waking it, 16 subscribers woke it ~8 times per half ring, each wake-up a
//! liveness check of every subscriber still behind); it raises its flag before its last look, so
//! a subscriber that passed before that is seen by the look. A dead subscriber holding it back
//! wakes nobody: the publisher finds it at the end of its sleeping slice (1 ms, then longer).
//!
//! A publisher whose subscribers are all pinned to its own CPU runs alone there until it
//! yields: left to itself it fills the whole ring, then waits for room while they read it all.
//! When that ring outgrows a core's cache (at least 2 MiB) but half of it does not, a blocking
//! publish half a ring ahead of the slowest subscriber yields the CPU to them once
//! ([`Publisher::handovers`] counts it), so they read each half while it is still in the cache
//! (rough, on the busy 2-vCPU benchmark machine: 64 KiB messages through 32 slots on one CPU,
//! ~10% more per second; a ring of 16 slots, all of it cached, ~30% more than 32 without
//! the hand-over; in two quiet full benchmark runs after it, `pubsub-1` 64 KiB on one CPU
//! went from 1.00 / 0.98 to 0.86 / 0.88 of iceoryx2's time per message). Smaller rings stay
//! cached whole, and a hand-over there only adds a context
//! switch per half ring; a ring whose half outgrows the cache gains nothing either (1 MiB
//! messages through 4 slots measured no better).
//!
//! # Readiness
//!
//! Both ends implement [`Readiness`] with the channel's doorbell (an eventfd, readable when
//! the end may proceed, rung by a bell thread in this process that sleeps on the futex word
//! the end would sleep on; see the crate's "Async and poll loops"), so `poll`, `epoll` and
//! tokio (`AsyncEndpoint`) can wait on them:
//!
//! - a [`Subscriber`]'s rings when a message is published or the publisher closes or dies.
//!   [`arm`](Readiness::arm) announces a nap in the shared `sleepers` word, as a blocking
//!   receive does, and the publisher wakes the word only for a nap announced since its last
//!   wake-up: no system call per message while every subscriber keeps up, and one per wait
//!   while one does not. The publisher's process is watched (pidfd, the
//!   `ipc-shm-watch` thread), so its death rings at once.
//! - a [`Publisher`]'s rings, under [`Policy::Block`], when the subscribers it waits for moved
//!   on (the last of them, or one left, or died): `arm` raises the publisher's sleeping flag,
//!   which subscribers check before waking it. The processes of the subscribers holding it back are watched
//!   too (where they cannot be, the bell rings every 50 ms to look again). Under
//!   [`Policy::Lossy`] a publish never waits and `arm` says "ready" at once.

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crossbeam_utils::CachePadded;
use ipc_core::fd::Interest;
use ipc_core::inventory::Recognised;
use ipc_core::process::Presence;
use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, MessageReceiver, MessageSender, PosixName, Readiness,
    Result, futex,
};

use crate::peer::{self, AttachStep, Status, Watch, state_of};
use crate::ring::{STATE_ATTACHED, STATE_ATTACHING, STATE_CLOSED, Side};
use crate::segment::Segment;
use crate::shape::{Doorbell, Kind, flag_and_look, offset_in};
use crate::wait::{Rounds, Spin, nap, sleep_flagged};

/// `"IPCSHMPS"`, little-endian: the first 8 bytes of every publish-subscribe segment.
const MAGIC: u64 = u64::from_le_bytes(*b"IPCSHMPS");
/// The layout version `open` accepts. Bump on any change of the header or the slot format.
const VERSION: u32 = 3;
/// What a subscriber adds to the shared `sleepers` word before it sleeps: one sleeper more
/// (low half, taken back when it wakes) and one nap more (high half, never taken back).
const NAP: u64 = (1 << 32) | 1;
/// Bytes before a slot's payload: stamp (8), length (4), pad (4).
const SLOT_HEADER: usize = 16;
/// The most slots and subscriber places a segment may declare.
const MAX_SLOTS: usize = 1 << 20;
const MAX_SUBSCRIBERS: usize = 4096;
/// The largest slot (payload plus header).
const MAX_SLOT_SIZE: usize = 1 << 30;
/// A core's own (L2) cache on current x86 servers: a publisher sharing its CPU with every
/// subscriber hands the CPU over to them in halves of a ring (slots times slot size) at least
/// this large (written whole before they read it, it would not stay in the cache) whose half
/// is smaller (what they read then still is). A fixed figure (the benchmark machine's L2 per
/// core; 1 to 2 MiB on current x86 server cores), not read from the machine: on a core with
/// less, the 64 KiB rows' hand-over keeps less in the cache, and costs one yield per half ring.
const CORE_CACHE: usize = 2 << 20;
/// What the publisher does when a subscriber falls a whole ring behind; chosen at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The publisher waits for the slowest attached subscriber (bounded by its deadline).
    Block,
    /// The publisher overwrites; the slow subscriber counts what it missed.
    Lossy,
}

/// The first block: what `open` validates.
#[repr(C)]
struct Meta {
    magic: AtomicU64,
    version: AtomicU32,
    header_size: AtomicU32,
    policy: AtomicU32,
    slots: AtomicU32,
    slot_size: AtomicU32,
    max_message: AtomicU32,
    subscribers: AtomicU32,
    history: AtomicU32,
}

/// Words any subscriber may write.
#[repr(C)]
struct Shared {
    /// Low 32 bits: subscribers asleep or going to sleep; high 32 bits: naps, bumped by each
    /// announcement ([`NAP`]).
    sleepers: AtomicU64,
    space: AtomicU32,
    joins: AtomicU32,
    /// While the publisher sleeps for room (its sleeping flag up): the cursor a subscriber
    /// must reach before it wakes the publisher (a hint: a wrong value costs the publisher at
    /// most one sleeping slice, never a hang).
    want: AtomicU64,
}

#[repr(C)]
struct Header {
    meta: CachePadded<Meta>,
    tail: CachePadded<AtomicU64>,
    publisher: CachePadded<Side>,
    shared: CachePadded<Shared>,
}

/// One subscriber's place, written by that subscriber only (and taken over by compare-and-swap
/// once its process is found dead).
#[repr(C)]
struct Place {
    side: Side,
    cursor: AtomicU64,
}

const HEADER_SIZE: usize = std::mem::size_of::<Header>();

/// The largest `tail` believed: no publisher counts that far (2^63 messages), and below it
/// a cursor's `+ 1` and a publisher's next stamp never overflow; a larger one was scribbled.
const MAX_TAIL: u64 = u64::MAX / 2;

/// `tail`, a published count read from the header, unless it is above [`MAX_TAIL`]
/// (scribbled): then `Corrupted`.
fn plausible_tail(tail: u64) -> Result<u64> {
    if tail > MAX_TAIL {
        return Err(Error::corrupted(format!(
            "the published count {tail} is implausible"
        )));
    }
    Ok(tail)
}

const KIND: Kind = Kind {
    magic: MAGIC,
    version: VERSION,
    header_size: HEADER_SIZE,
    what: "pub-sub",
};
const PLACE_SIZE: usize = std::mem::size_of::<CachePadded<Place>>();

/// The shape of a publish-subscribe segment.
///
/// ```
/// use ipc_shm::{Policy, PubSubOptions};
/// let opts = PubSubOptions::new().slots(64).max_message(4096).policy(Policy::Lossy);
/// assert!(opts.segment_size() > 64 * 4096);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PubSubOptions {
    slots: usize,
    max_message: usize,
    subscribers: usize,
    history: usize,
    policy: Policy,
}

impl Default for PubSubOptions {
    fn default() -> PubSubOptions {
        PubSubOptions::new()
    }
}

impl PubSubOptions {
    /// 256 slots of 4 KiB messages, 64 subscriber places, no history, [`Policy::Block`].
    pub fn new() -> PubSubOptions {
        PubSubOptions {
            slots: 256,
            max_message: 4096 - SLOT_HEADER,
            subscribers: 64,
            history: 0,
            policy: Policy::Block,
        }
    }

    /// How many messages the ring holds: a power of two from 2 to 2^20.
    #[must_use]
    pub fn slots(mut self, slots: usize) -> PubSubOptions {
        self.slots = slots;
        self
    }

    /// The largest message (each slot is this plus 16 bytes, rounded up to 128).
    #[must_use]
    pub fn max_message(mut self, max_message: usize) -> PubSubOptions {
        self.max_message = max_message;
        self
    }

    /// How many subscribers can be attached at once: 1 to 4096.
    #[must_use]
    pub fn subscribers(mut self, subscribers: usize) -> PubSubOptions {
        self.subscribers = subscribers;
        self
    }

    /// How many of the last messages a late joiner starts with: less than the slot count.
    #[must_use]
    pub fn history(mut self, history: usize) -> PubSubOptions {
        self.history = history;
        self
    }

    /// The slow-subscriber policy.
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> PubSubOptions {
        self.policy = policy;
        self
    }

    fn slot_size(&self) -> usize {
        self.max_message
            .saturating_add(SLOT_HEADER)
            .saturating_add(127)
            & !127
    }

    /// The bytes a segment with these options needs (`usize::MAX` if none could hold it).
    pub fn segment_size(&self) -> usize {
        let places = self.subscribers.saturating_mul(PLACE_SIZE);
        let slots = self.slots.saturating_mul(self.slot_size());
        HEADER_SIZE.saturating_add(places).saturating_add(slots)
    }

    fn check(&self) -> std::result::Result<(), String> {
        geometry(
            self.segment_size(),
            self.slots,
            self.slot_size(),
            self.max_message,
            self.subscribers,
            self.history,
        )
        .map(|_| ())
    }

    /// Writes a fresh header into `segment` (zero-filled, writable, at least
    /// [`segment_size`](PubSubOptions::segment_size) bytes).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for options out of range or a segment too small or
    /// read-only; [`ErrorKind::AlreadyExists`] if the segment already holds something.
    pub fn init(&self, segment: &Segment) -> Result<()> {
        let base = KIND.begin_init(segment, self.segment_size(), self.check())?;
        // SAFETY: the mapping is page-aligned and at least a header long (checked); the header
        // is atomics only.
        let h = unsafe { base.cast::<Header>().as_ref() };
        let m = &h.meta;
        m.policy.store(
            match self.policy {
                Policy::Block => 0,
                Policy::Lossy => 1,
            },
            Ordering::Relaxed,
        );
        m.slots.store(self.slots as u32, Ordering::Relaxed);
        m.slot_size
            .store(self.slot_size() as u32, Ordering::Relaxed);
        m.max_message
            .store(self.max_message as u32, Ordering::Relaxed);
        m.subscribers
            .store(self.subscribers as u32, Ordering::Relaxed);
        m.history.store(self.history as u32, Ordering::Relaxed);
        KIND.publish(base);
        Ok(())
    }

    /// Creates the POSIX segment `name` (exclusively, mode `0o600`) sized for these options
    /// and initialises it; unrelated processes open it with [`Segment::open`].
    ///
    /// Errors: those of [`init`](PubSubOptions::init) (checked before the segment is made) and
    /// [`Segment::create`].
    pub fn create_posix(&self, name: impl TryInto<PosixName, Error = Error>) -> Result<Segment> {
        KIND.create_posix(name, self.segment_size(), self.check(), |seg| {
            self.init(seg)
        })
    }

    /// Creates a sealed memfd segment sized for these options and initialises it, for related
    /// processes (inheritance or [`Segment::send_fd`]).
    pub fn create_memfd(&self, name: &str) -> Result<Segment> {
        KIND.create_memfd(name, self.segment_size(), self.check(), |seg| {
            self.init(seg)
        })
    }
}

/// Checks a shape; returns the segment bytes it needs.
fn geometry(
    len: usize,
    slots: usize,
    slot_size: usize,
    max_message: usize,
    subscribers: usize,
    history: usize,
) -> std::result::Result<usize, String> {
    if !slots.is_power_of_two() || !(2..=MAX_SLOTS).contains(&slots) {
        return Err(format!(
            "slot count {slots}: a power of two from 2 to {MAX_SLOTS}"
        ));
    }
    if slot_size % 128 != 0 || slot_size > MAX_SLOT_SIZE || max_message + SLOT_HEADER > slot_size {
        return Err(format!(
            "slot size {slot_size} for messages of {max_message} bytes: a multiple of 128 of \
             at most {MAX_SLOT_SIZE} holding 16 bytes more than the largest message"
        ));
    }
    if !(1..=MAX_SUBSCRIBERS).contains(&subscribers) {
        return Err(format!(
            "{subscribers} subscriber places: from 1 to {MAX_SUBSCRIBERS}"
        ));
    }
    if history >= slots {
        return Err(format!(
            "history {history}: less than the slot count {slots}"
        ));
    }
    let need = HEADER_SIZE
        .checked_add(subscribers * PLACE_SIZE)
        .and_then(|n| n.checked_add(slots.checked_mul(slot_size)?))
        .ok_or_else(|| "the layout does not fit in memory".to_owned())?;
    if need > len {
        return Err(format!(
            "the layout needs {need} bytes, the segment has {len}"
        ));
    }
    Ok(need)
}

/// A validated view of a pub-sub segment: pointers and the shape read once at open.
#[derive(Clone, Copy)]
struct View {
    base: NonNull<u8>,
    slots: u64,
    slot_size: usize,
    max_message: usize,
    subscribers: usize,
    history: u64,
    policy: Policy,
}

impl View {
    fn open(segment: &Segment) -> Result<View> {
        View::at(KIND.open(segment)?, segment.len())
    }

    /// [`open`](View::open) for `inspect`: any mapping, read-only included.
    fn inspect(segment: &Segment) -> Result<View> {
        View::at(KIND.header(segment)?, segment.len())
    }

    /// Validates the header at `base` (its prefix checked) of a mapping of `len` bytes.
    fn at(base: NonNull<u8>, len: usize) -> Result<View> {
        // SAFETY: at least a header long (checked); the header is atomics only.
        let h = unsafe { base.cast::<Header>().as_ref() };
        let m = &h.meta;
        let policy = match m.policy.load(Ordering::Relaxed) {
            0 => Policy::Block,
            1 => Policy::Lossy,
            p => return Err(Error::corrupted(format!("pub-sub policy {p} is unknown"))),
        };
        let slots = m.slots.load(Ordering::Relaxed) as usize;
        let slot_size = m.slot_size.load(Ordering::Relaxed) as usize;
        let max_message = m.max_message.load(Ordering::Relaxed) as usize;
        let subscribers = m.subscribers.load(Ordering::Relaxed) as usize;
        let history = m.history.load(Ordering::Relaxed) as usize;
        geometry(len, slots, slot_size, max_message, subscribers, history)
            .map_err(Error::corrupted)?;
        Ok(View {
            base,
            slots: slots as u64,
            slot_size,
            max_message,
            subscribers,
            history: history as u64,
            policy,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: validated at open to be at least a header long; kept mapped by the endpoint
        // (which holds the segment); atomics only.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    fn place(&self, i: usize) -> &Place {
        assert!(i < self.subscribers);
        // SAFETY: `i < subscribers` and the places follow the header (validated geometry);
        // each is a 128-aligned block of atomics.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(HEADER_SIZE + i * PLACE_SIZE)
                .cast::<Place>()
        }
    }

    /// The slot message `seq` goes to: its stamp word and its payload start.
    fn slot(&self, seq: u64) -> (&AtomicU64, &AtomicU32, *mut u8) {
        let i = (seq & (self.slots - 1)) as usize;
        let off = HEADER_SIZE + self.subscribers * PLACE_SIZE + i * self.slot_size;
        // SAFETY: `i < slots`, so the slot lies inside the validated layout; it starts
        // 128-aligned, so the stamp (u64) and length (u32) words are aligned.
        unsafe {
            let at = self.base.as_ptr().add(off);
            (
                &*at.cast::<AtomicU64>(),
                &*at.add(8).cast::<AtomicU32>(),
                at.add(SLOT_HEADER),
            )
        }
    }
}

// SAFETY: a `View` is pointers into a mapping its endpoint keeps alive (the `Arc<Segment>`
// beside it); every shared access is atomic or ordered by the stamp protocol.
unsafe impl Send for View {}

/// What `inspect` reports a pub-sub segment as.
const WHAT: &str = "ipc-shm pub-sub";

/// Recognises a pub-sub segment from the outside (for `ipc list` / `ipc inspect`), read-only:
/// `None` for another magic; otherwise its shape, the publisher's place and every subscriber
/// place that is not free (a free place is anybody's to take, and matters only while the
/// publisher may still publish). A publisher that closed or died ends the pub-sub for good
/// (a new `Publisher::open` is `Disconnected`), so with it and every subscriber named dead
/// the segment is provably stale.
pub(crate) fn recognise(segment: &Segment) -> Option<Recognised> {
    let mut r = crate::inspect::begin(segment, MAGIC, WHAT)?;
    let view = match View::inspect(segment) {
        Ok(view) => view,
        Err(e) => {
            r.corrupted = Some(e.to_string());
            return Some(r);
        }
    };
    let h = view.header();
    let published = match plausible_tail(h.tail.load(Ordering::Acquire)) {
        Ok(tail) => tail,
        Err(e) => {
            r.corrupted = Some(e.to_string());
            return Some(r);
        }
    };
    let policy = match view.policy {
        Policy::Block => "block",
        Policy::Lossy => "lossy",
    };
    for (k, v) in [
        ("policy", policy.to_owned()),
        ("slots", view.slots.to_string()),
        ("max message", view.max_message.to_string()),
        ("max subscribers", view.subscribers.to_string()),
        ("history", view.history.to_string()),
        ("published", published.to_string()),
    ] {
        r.facts.push((k.to_owned(), v));
    }
    let places = (0..view.subscribers).map(|i| (format!("subscriber {i}"), &view.place(i).side));
    let publisher = [("publisher".to_owned(), &*h.publisher)];
    crate::inspect::add_users(&mut r, segment, publisher, places);
    Some(r)
}

/// The sending end of a publish-subscribe segment: one at a time ([`open`](Publisher::open)
/// claims its place; dropping it closes the segment for good, so every subscriber gets
/// [`ErrorKind::Disconnected`] after draining what was published).
pub struct Publisher {
    segment: Arc<Segment>,
    name: Arc<str>,
    view: View,
    tail: u64,
    /// Under `Block`: the lowest cursor of the attached subscribers at the last scan, and the
    /// join count then; a send that stays below `min + N` with no new join needs no scan.
    min_cursor: u64,
    joins: u32,
    watches: Vec<Watch>,
    /// This publisher's presence mark on its place (`peer::claim`), dropped after its close.
    _presence: Option<Presence>,
    corrupted: Option<String>,
    /// The readiness doorbell, on the `space` word.
    ready: Doorbell,
    /// The CPU this end is pinned to (`u32::MAX`: not pinned), for the spin decision.
    cpu: u32,
    /// The subscribers' nap count at the last wake-up: a publish wakes only when it moved.
    woken: u32,
    /// Under `Block`, with every attached subscriber pinned to this end's CPU and a ring of
    /// at least [`CORE_CACHE`] bytes whose half is smaller (decided at each scan after a
    /// join): how far ahead of the slowest subscriber a blocking publish yields its CPU to
    /// them (half the ring), else 0. Written in one go and read back whole, a ring that outgrows the core's cache
    /// misses in it twice per message; in halves, what the subscribers read is still there.
    handover: u64,
    /// How many times a publish yielded for that reason (for the tests).
    handovers: u64,
}

impl Publisher {
    /// Opens the publisher's end of the pub-sub in `segment`: validates the header, then claims
    /// the publisher's place (the owner word of the channel's ends: one compare-and-swap from
    /// free to this process). Does not block.
    ///
    /// Errors: [`ErrorKind::WrongType`] for a segment that is not a pub-sub (or another
    /// layout version); [`ErrorKind::Corrupted`] for an inconsistent header (a published
    /// count no publisher reaches, 2^63, included); [`ErrorKind::AlreadyExists`] when a live
    /// publisher holds it; [`ErrorKind::Disconnected`] when a publisher closed it or died with
    /// it open (make a new one).
    pub fn open(segment: impl Into<Arc<Segment>>) -> Result<Publisher> {
        let segment = segment.into();
        let name = segment.shared_name();
        let view = View::open(&segment).map_err(|e| e.in_op("open publisher").on_shared(&name))?;
        let side = &view.header().publisher;
        let me = peer::me().map_err(|e| e.in_op("open publisher").on_shared(&name))?;
        let mark = loop {
            let claimed = peer::claim(&segment, side, me, AttachStep::Attached)
                .map_err(|e| e.in_op("open publisher").on_shared(&name))?;
            match claimed {
                Ok(mark) => break mark,
                Err(found) => {
                    let status = Watch::default().status_of((&segment, side), found);
                    if state_of(found) == STATE_ATTACHING
                        && matches!(status, Ok(Status::Dead))
                        && peer::reclaim(&segment, side, found)
                    {
                        continue;
                    }
                    let (kind, why) = match (state_of(found), status) {
                        (STATE_CLOSED, _) | (_, Ok(Status::Dead)) => (
                            ErrorKind::Disconnected,
                            "the publisher closed or died; make a new pub-sub segment",
                        ),
                        (_, Err(e)) => return Err(e.in_op("open publisher").on_shared(&name)),
                        _ => (ErrorKind::AlreadyExists, "a publisher is attached already"),
                    };
                    return Err(Error::with_note(kind, why)
                        .in_op("open publisher")
                        .on_shared(&name));
                }
            }
        };
        let tail = match plausible_tail(view.header().tail.load(Ordering::Acquire)) {
            Ok(tail) => tail,
            Err(e) => {
                peer::detach(&view.header().publisher);
                return Err(e.in_op("open publisher").on_shared(&name));
            }
        };
        let joins = view.header().shared.joins.load(Ordering::Acquire);
        let watches = (0..view.subscribers).map(|_| Watch::default()).collect();
        let ready = Doorbell::new(offset_in(&segment, &view.header().shared.space));
        Ok(Publisher {
            segment,
            name,
            view,
            tail,
            min_cursor: 0,
            joins: joins.wrapping_sub(1), // scan on the first send
            watches,
            _presence: mark,
            corrupted: None,
            ready,
            cpu: peer::single_cpu(),
            // Subscribers already asleep (waiting for a publisher) are woken by the first
            // publish.
            woken: (view.header().shared.sleepers.load(Ordering::Acquire) >> 32).wrapping_sub(1)
                as u32,
            handover: 0,
            handovers: 0,
        })
    }

    /// The segment the pub-sub lives in.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// The policy chosen at creation.
    pub fn policy(&self) -> Policy {
        self.view.policy
    }

    /// How many subscribers are attached now (their processes not checked).
    pub fn subscribers(&self) -> usize {
        (0..self.view.subscribers)
            .filter(|&i| {
                state_of(self.view.place(i).side.owner.load(Ordering::Acquire)) == STATE_ATTACHED
            })
            .count()
    }

    /// Messages published so far.
    pub fn published(&self) -> u64 {
        self.tail
    }

    fn fail(&mut self, e: Error, op: &'static str) -> Error {
        if e.kind() == ErrorKind::Corrupted {
            self.corrupted = Some(e.to_string());
        }
        e.in_op(op).on_shared(&self.name)
    }

    /// Under `Block`: the lowest cursor among attached subscribers, reclaiming the places of
    /// dead ones when `check` (a pidfd poll per subscriber that holds the publisher back).
    fn scan(&mut self, check: bool) -> Result<u64> {
        let tail = self.tail;
        let mut min = tail;
        for i in 0..self.view.subscribers {
            let place = self.view.place(i);
            let word = place.side.owner.load(Ordering::Acquire);
            if state_of(word) != STATE_ATTACHED {
                continue;
            }
            let c = place.cursor.load(Ordering::Acquire);
            if c > tail {
                return Err(Error::corrupted(format!(
                    "subscriber place {i}: cursor {c} ahead of the {tail} messages published"
                )));
            }
            // Holding the publisher back: is its process gone (seen by the watcher thread, or
            // with `check` a pidfd poll)? Then nothing it holds matters any more.
            if c + self.view.slots <= tail
                && (self.ready.died(i, &place.side, word)
                    || (check
                        && Status::Dead
                            == self.watches[i].status_of((&self.segment, &place.side), word)?))
            {
                if peer::free_dead(&self.segment, &place.side, word) {
                    tracing::trace!(place = i, "reclaimed a dead subscriber's place");
                }
                continue;
            }
            min = min.min(c);
        }
        Ok(min)
    }

    /// Whether every attached subscriber is pinned to this end's CPU (spinning for them cannot
    /// pay: none can run while the publisher spins).
    fn subscribers_on_my_cpu(&self) -> bool {
        peer::all_on_cpu(
            self.cpu,
            (0..self.view.subscribers).map(|i| &self.view.place(i).side),
        )
    }

    /// Under `Block`: half the ring if every attached subscriber is pinned to this end's CPU
    /// and the ring holds at least [`CORE_CACHE`] bytes and its half less, else 0 (no
    /// hand-over).
    fn handover_distance(&self) -> u64 {
        let half = (self.view.slots as usize / 2).saturating_mul(self.view.slot_size);
        if self.view.policy == Policy::Block
            && self.cpu != u32::MAX
            && (CORE_CACHE / 2..CORE_CACHE).contains(&half)
            && self.subscribers_on_my_cpu()
        {
            self.view.slots / 2
        } else {
            0
        }
    }

    /// A publisher sharing its CPU with its subscribers, half a ring ahead of the slowest (by
    /// its last scan): scans again, and if still so far ahead, yields its CPU once, so they
    /// read the half just written while it is in the cache, rather than the publisher filling
    /// the whole ring first (then waiting for room, yielding too). Not for a publish that
    /// must not wait (`Deadline::Now`).
    fn hand_over(&mut self, deadline: Deadline) {
        if deadline == Deadline::Now {
            return;
        }
        // An error (a corrupted cursor) is reported by the scan of the wait for room.
        if let Ok(min) = self.scan(false) {
            self.min_cursor = min;
            if self.tail >= min + self.handover {
                self.handovers += 1;
                std::thread::yield_now();
            }
        }
    }

    /// Waits (under `Block`) until the slot for the next message is free of unread messages.
    fn room(&mut self, deadline: Deadline) -> Result<()> {
        if self.view.policy == Policy::Lossy {
            return Ok(());
        }
        let s = self.tail;
        // Sequentially consistent (a plain load on x86, as an acquire one), after the last
        // message's `tail` store (also SeqCst): a joiner that bumps `joins` and then reads
        // `tail` knows that every message past the one it saw in flight is checked against
        // its cursor (`Subscriber::join`).
        let joins = self.view.header().shared.joins.load(Ordering::SeqCst);
        if joins == self.joins && s < self.min_cursor + self.view.slots {
            if self.handover != 0 && s >= self.min_cursor + self.handover {
                self.hand_over(deadline);
            }
            return Ok(());
        }
        if joins != self.joins {
            self.handover = self.handover_distance();
        }
        self.joins = joins;
        let view = self.view;
        let h = view.header();
        let mut rounds = Rounds::default();
        loop {
            let mut spin = Spin::new(deadline, rounds.round);
            loop {
                self.min_cursor = self.scan(!rounds.first())?;
                if s < self.min_cursor + self.view.slots {
                    return Ok(());
                }
                if !spin.again(|| self.subscribers_on_my_cpu()) {
                    break;
                }
            }
            if deadline.has_passed() {
                return Err(deadline.expired_error(Blocked::Full));
            }
            // Sleep until half the ring is free, not one slot: a publisher that outpaces its
            // subscribers then sleeps and wakes once per half ring, not once per message.
            let free = (self.view.slots / 2).max(1);
            h.shared.want.store(
                (s + free).saturating_sub(self.view.slots),
                Ordering::Relaxed,
            );
            sleep_flagged(
                &h.publisher.sleeping,
                &h.shared.space,
                rounds.until(deadline),
                || Ok(s < self.scan(false)? + self.view.slots),
            )?;
            rounds.next();
        }
    }

    /// Publishes a message of `len` bytes written in place by `write` (which gets exactly
    /// `len` bytes of the slot, zero-copy), waiting for room under [`Policy::Block`] until
    /// `deadline`.
    ///
    /// Errors: as [`send_deadline`](MessageSender::send_deadline).
    pub fn publish_with(
        &mut self,
        len: usize,
        deadline: Deadline,
        write: impl FnOnce(&mut [u8]),
    ) -> Result<()> {
        if let Some(why) = &self.corrupted {
            return Err(Error::corrupted(why.clone()).on_shared(&self.name));
        }
        if len > self.view.max_message {
            return Err(
                Error::message_too_large(len, self.view.max_message, "pub-sub slot")
                    .in_op("publish")
                    .on_shared(&self.name),
            );
        }
        if let Err(e) = self.room(deadline) {
            return Err(self.fail(e, "publish"));
        }
        self.commit(len, write);
        Ok(())
    }

    /// Writes message `tail` into its slot and publishes it (after [`room`](Self::room)).
    #[inline(always)]
    fn commit(&mut self, len: usize, write: impl FnOnce(&mut [u8])) {
        let s = self.tail;
        let (stamp, len_word, payload) = self.view.slot(s);
        stamp.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        len_word.store(len as u32, Ordering::Relaxed);
        // SAFETY: the payload area of a slot is `slot_size - 16 >= max_message >= len` bytes
        // inside the mapping; under `Block` no subscriber reads it (every cursor is past the
        // message it held), under `Lossy` a reader checks the stamp after reading.
        write(unsafe { std::slice::from_raw_parts_mut(payload, len) });
        stamp.store(s + 1, Ordering::Release);
        self.tail = s + 1;
        let h = self.view.header();
        h.tail.store(s + 1, Ordering::SeqCst);
        // Wake only for a nap announced since the last wake-up: a subscriber that announced
        // its sleep before that one read the wake word before it, so that wake-up ended its
        // sleep (or its sleep will not start); one that announces later sees this message in
        // its last look (its add and our load are ordered one way or the other).
        let word = h.shared.sleepers.load(Ordering::SeqCst);
        let naps = (word >> 32) as u32;
        if word as u32 != 0 && naps != self.woken {
            self.woken = naps;
            h.publisher.wake.fetch_add(1, Ordering::Release);
            futex::wake_all(&h.publisher.wake);
        }
    }
}

impl MessageSender for Publisher {
    /// Copies `msg` into the next slot and publishes it to every subscriber.
    ///
    /// Under [`Policy::Block`] waits (spinning briefly, then sleeping on a futex in the
    /// segment in slices, checking the processes of the subscribers it waits for) until every
    /// attached subscriber has read the message this one overwrites, or `deadline` passes;
    /// dead subscribers' places are reclaimed on the way. Under [`Policy::Lossy`] never waits.
    ///
    /// Errors: [`ErrorKind::MessageTooLarge`] above the maximum; [`ErrorKind::WouldBlock`] /
    /// [`ErrorKind::TimedOut`] (a live subscriber did not keep up); [`ErrorKind::Corrupted`]
    /// for a subscriber's cursor that is out of range.
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.publish_with(msg.len(), deadline, |buf| buf.copy_from_slice(msg))
    }

    fn max_message_size(&self) -> usize {
        self.view.max_message
    }
}

/// The doorbell: an eventfd that becomes **readable** when a publish may succeed (under
/// [`Policy::Block`]: the subscribers the next message waits for moved on, left or died).
///
/// [`arm`](Readiness::arm) raises the publisher's sleeping flag, the one a blocked send
/// raises; a subscriber wakes the publisher only while it is up, so a publisher that never
/// waits costs the subscribers nothing. The processes of the subscribers that hold it back
/// are watched (pidfd), so one that dies rings too and its place is reclaimed at the next
/// try; if one cannot be watched, the bell rings every 50 ms to look again. Under
/// [`Policy::Lossy`] a publish never waits: `arm` returns `true` at once.
impl Readiness for Publisher {
    /// Makes the doorbell at the first call: an eventfd and its bell thread (see the crate's
    /// "Async and poll loops" section).
    ///
    /// Errors: `eventfd(2)` or the bell thread could not be made.
    #[doc(alias = "eventfd")]
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        self.ready.fd(&self.segment)
    }

    fn send_interest(&self) -> Interest {
        Interest::Readable
    }

    fn arm(&mut self) -> Result<bool> {
        if self.view.policy == Policy::Lossy || self.corrupted.is_some() {
            return Ok(true);
        }
        self.ready.fd(&self.segment)?;
        let view = self.view;
        let h = view.header();
        // With the flag up, a subscriber that moves on from now wakes the word; one that
        // moved before is seen by the last look, which also reclaims dead subscribers holding
        // the publisher back (a pidfd poll each).
        h.shared.want.store(
            (self.tail + 1).saturating_sub(view.slots),
            Ordering::Relaxed,
        );
        let Some(seen) = flag_and_look(
            self.subscribers_on_my_cpu(),
            &h.shared.space,
            || h.publisher.sleeping.store(1, Ordering::SeqCst),
            || h.publisher.sleeping.store(0, Ordering::Relaxed),
            |last| self.has_room(last),
        ) else {
            return Ok(true);
        };
        // Watch the processes of those it waits for: a death bumps `space`.
        let mut watched = true;
        for i in 0..view.subscribers {
            let place = view.place(i);
            if state_of(place.side.owner.load(Ordering::Acquire)) == STATE_ATTACHED
                // (Read again since `has_room` checked it: saturating, as a peer may have
                // scribbled it past any count meanwhile.)
                && place.cursor.load(Ordering::Acquire).saturating_add(view.slots) <= self.tail
            {
                watched &= self
                    .ready
                    .watch(i, &place.side, &mut self.watches[i], &self.segment);
            }
        }
        self.ready.arm(seen, !watched);
        Ok(false)
    }

    fn disarm(&self) {
        if self.ready.disarm() {
            self.view
                .header()
                .publisher
                .sleeping
                .store(0, Ordering::Relaxed);
        }
    }
}

impl Publisher {
    /// How many times subscribers have woken this publisher so far (the futex word it sleeps
    /// on while blocked for room under [`Policy::Block`]; also bumped when a subscriber leaves
    /// or one it waits for is found dead). A publisher that outpaces its subscribers sleeps
    /// until half the ring is free, so this grows by at most one per half ring it waited for.
    pub fn wakeups(&self) -> u32 {
        self.view.header().shared.space.load(Ordering::Relaxed)
    }

    /// How many times a blocking publish of this end gave its CPU to its subscribers
    /// (`sched_yield(2)`) because it was half a ring ahead of the slowest of them: only under
    /// [`Policy::Block`], with every attached subscriber pinned to this end's CPU (one CPU in
    /// their affinity masks, the same as this end's, at open) and a ring (slots times slot
    /// size) of at least 2 MiB (a fixed figure for a core's cache) whose half is less (see the
    /// module's "Waiting").
    pub fn handovers(&self) -> u64 {
        self.handovers
    }

    /// Under `Block`: whether the next message has room now (scanning the cursors, and with
    /// `check` reclaiming the places of dead subscribers that hold it back). An error (a
    /// corrupted cursor) counts as ready: the next try reports it.
    fn has_room(&mut self, check: bool) -> bool {
        match self.scan(check) {
            Ok(min) => {
                self.min_cursor = min;
                self.tail < min + self.view.slots
            }
            Err(_) => true,
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let h = self.view.header();
        peer::close(&h.publisher);
        h.publisher.wake.fetch_add(1, Ordering::Release);
        futex::wake_all(&h.publisher.wake);
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("segment", self.segment.kind())
            .field("policy", &self.view.policy)
            .field("published", &self.tail)
            .finish_non_exhaustive()
    }
}

/// How far [`Subscriber::open`] goes; each step is one atomic write a process can be killed
/// after (for the kill tests: [`testing::join_until`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum JoinStep {
    /// The place's owner word says (attaching, this process).
    Claimed,
    /// The cursor is stored.
    Positioned,
    /// The owner word says (attached, this process); the join count is not bumped yet, so a
    /// publisher may not have scanned the place.
    Attached,
    /// The join count is bumped: a full join.
    Joined,
}

/// A receiving end of a publish-subscribe segment: any number (up to the places the segment
/// was made with) at once, in any processes; each sees every message from where it joined
/// (see the module docs for the policies).
pub struct Subscriber {
    segment: Arc<Segment>,
    name: Arc<str>,
    view: View,
    index: usize,
    /// This place's owner word while this subscriber holds it.
    mine: u64,
    cursor: u64,
    missed: u64,
    watch: Watch,
    /// This subscriber's presence mark on its place (`peer::claim`), dropped after it leaves.
    presence: Option<Presence>,
    /// When a non-blocking receive that found nothing checks the publisher's process.
    polls: crate::wait::PollCheck,
    corrupted: Option<String>,
    /// The readiness doorbell, on the publisher's wake word.
    ready: Doorbell,
    /// The CPU this end is pinned to (`u32::MAX`: not pinned), for the spin decision.
    cpu: u32,
}

impl Subscriber {
    /// Joins the pub-sub in `segment`: validates the header, claims a free subscriber place
    /// (taking over one whose process died if none is free), positions its cursor `history`
    /// messages back and says it is attached. Does not block.
    ///
    /// Errors: [`ErrorKind::WrongType`] / [`ErrorKind::Corrupted`] as
    /// [`Publisher::open`]; [`ErrorKind::AlreadyExists`] when every place is held by a live
    /// subscriber (or one being opened by a live process).
    pub fn open(segment: impl Into<Arc<Segment>>) -> Result<Subscriber> {
        Subscriber::join(segment.into(), JoinStep::Joined, &mut || {})
            .map(|s| s.expect("a full join returns the subscriber"))
    }

    /// Joins up to `stop`; short of attached, leaves the place as a process killed there
    /// would and returns `None`.
    /// `attached` runs once the place says attached, before the join count is bumped (tests
    /// run a publisher's steps there).
    fn join(
        segment: Arc<Segment>,
        stop: JoinStep,
        attached: &mut dyn FnMut(),
    ) -> Result<Option<Subscriber>> {
        let name = segment.shared_name();
        let err = |e: Error| e.in_op("open subscriber").on_shared(&name);
        let view = View::open(&segment).map_err(err)?;
        let me = peer::me().map_err(err)?;
        let mut index = None;
        let mut mark = None;
        'search: for pass in 0..2 {
            for i in 0..view.subscribers {
                let side = &view.place(i).side;
                let word = side.owner.load(Ordering::Acquire);
                if word != 0 {
                    // Second pass: take over places whose process is gone.
                    if pass == 0
                        || !matches!(
                            Watch::default().status_of((&segment, side), word),
                            Ok(Status::Dead)
                        )
                        || !peer::free_dead(&segment, side, word)
                    {
                        continue;
                    }
                }
                if let Ok(m) = peer::claim(&segment, side, me, AttachStep::Claimed).map_err(err)? {
                    (index, mark) = (Some(i), m);
                    break 'search;
                }
            }
        }
        let Some(index) = index else {
            return Err(err(Error::with_note(
                ErrorKind::AlreadyExists,
                format!(
                    "all {} subscriber places are held by live subscribers (more are made \
                     with PubSubOptions::subscribers when the segment is created)",
                    view.subscribers
                ),
            )));
        };
        let place = view.place(index);
        // Read before anything is written to the place, so a refusal leaves it free.
        let tail = match plausible_tail(view.header().tail.load(Ordering::Acquire)) {
            Ok(tail) => tail,
            Err(e) => {
                peer::detach(&place.side);
                return Err(err(e));
            }
        };
        let ready = Doorbell::new(offset_in(&segment, &view.header().publisher.wake));
        let mut sub = Subscriber {
            segment,
            name,
            view,
            index,
            mine: peer::pack(STATE_ATTACHED, me),
            cursor: 0,
            missed: 0,
            watch: Watch::default(),
            presence: mark,
            polls: crate::wait::PollCheck::default(),
            corrupted: None,
            ready,
            cpu: peer::single_cpu(),
        };
        place.side.single_cpu.store(sub.cpu, Ordering::Relaxed);
        if stop == JoinStep::Claimed {
            // As a process stopped here: nothing is undone, and its mark stays while it runs
            // (a process killed here takes it along).
            std::mem::forget(sub.presence.take());
            std::mem::forget(sub);
            return Ok(None);
        }
        let start = tail - tail.min(view.history);
        sub.cursor = start;
        place.cursor.store(start, Ordering::SeqCst);
        if stop == JoinStep::Positioned {
            // As a process stopped here: nothing is undone, and its mark stays while it runs
            // (a process killed here takes it along).
            std::mem::forget(sub.presence.take());
            std::mem::forget(sub);
            return Ok(None);
        }
        place.side.owner.store(sub.mine, Ordering::SeqCst);
        if stop == JoinStep::Attached {
            // As a process stopped here: nothing is undone, and its mark stays while it runs
            // (a process killed here takes it along).
            std::mem::forget(sub.presence.take());
            std::mem::forget(sub);
            return Ok(None);
        }
        attached();
        view.header().shared.joins.fetch_add(1, Ordering::SeqCst);
        if view.policy == Policy::Block {
            // A publisher that did not see this join yet checks every message after the one
            // in flight against this cursor: it loads `joins` (SeqCst) after storing each
            // message's `tail` (SeqCst), so a check that missed the bump above came before a
            // `tail` store this load sees. Message `tail`, in flight, may still overwrite
            // message `tail - N` unchecked: a history message read in place there would change
            // under its guard, so start past it (counted missed, as history overwritten
            // during the join is). `tail` read at the start of the join may be older.
            let tail = match plausible_tail(view.header().tail.load(Ordering::SeqCst)) {
                Ok(tail) => tail,
                // Dropping `sub` leaves the place.
                Err(e) => return Err(e.in_op("open subscriber").on_shared(&sub.name)),
            };
            let safe = (tail + 1).saturating_sub(view.slots);
            if sub.cursor < safe {
                sub.missed += safe - sub.cursor;
                sub.set_cursor(safe);
            }
        }
        Ok(Some(sub))
    }

    /// The segment the pub-sub lives in.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// How many messages this subscriber lost so far: overwritten before it read them (under
    /// [`Policy::Lossy`], or history overwritten while it joined).
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The sequence number (from 0, counted by the publisher) of the next message this
    /// subscriber will read.
    pub fn position(&self) -> u64 {
        self.cursor
    }

    /// How many times the publisher has woken its subscribers so far (its wake word: futex
    /// wakes and doorbell rings alike, for every subscriber of the segment, plus one when it
    /// closes or is found dead). The publisher wakes only while some subscriber sleeps or
    /// waits on its doorbell, so a stream every subscriber keeps up with adds nothing here.
    pub fn doorbell_rings(&self) -> u32 {
        self.view.header().publisher.wake.load(Ordering::Relaxed)
    }

    fn fail(&mut self, e: Error) -> Error {
        if e.kind() == ErrorKind::Corrupted {
            self.corrupted = Some(e.to_string());
        }
        e.in_op("recv").on_shared(&self.name)
    }

    /// The next message if one is there: its sequence number, length and payload pointer.
    fn peek(&mut self) -> Result<Option<(u64, usize, *const u8)>> {
        loop {
            let c = self.cursor;
            let (stamp, len_word, payload) = self.view.slot(c);
            let st = stamp.load(Ordering::Acquire);
            if st == c + 1 {
                let len = len_word.load(Ordering::Relaxed) as usize;
                if len > self.view.max_message {
                    if self.intact(c) {
                        return Err(Error::corrupted(format!(
                            "message {c}: length {len} above the maximum {}",
                            self.view.max_message
                        )));
                    }
                    continue; // overwritten while we looked: the next round counts it
                }
                return Ok(Some((c, len, payload)));
            }
            let tail = self.view.header().tail.load(Ordering::Acquire);
            if tail <= c {
                // A later message's stamp here (read first, acquire) means the publisher
                // stored `tail` past this message before it (each stamp follows the last
                // message's `tail`): an index behind it was scribbled, and waiting for it to
                // move would wait on a publisher that may itself wait for this cursor.
                if st > c + 1 {
                    return Err(Error::corrupted(format!(
                        "slot of message {c} holds message {}, yet the publisher's index \
                         says {tail} messages are published",
                        st - 1
                    )));
                }
                return Ok(None);
            }
            if tail - c > 1 << 48 || tail > MAX_TAIL {
                return Err(Error::corrupted(format!(
                    "the publisher's tail {tail} is implausibly far ahead of message {c}"
                )));
            }
            // `tail > c`: message `c` was complete (its stamp is stored before `tail`). The
            // stamp read first may predate it (a slot from the last lap), so read it again.
            let st = stamp.load(Ordering::Acquire);
            if st == c + 1 {
                continue;
            }
            if st != 0 && st < c + 1 {
                return Err(Error::corrupted(format!(
                    "slot of message {c}: stamp {st} older than the message, yet {tail} \
                     messages are published"
                )));
            }
            // Overwritten (a later stamp, or 0: a later message being written). Skip to the
            // oldest message that is surely intact (the publisher may be writing `tail` over
            // `tail - N` now).
            let next = (tail + 1).saturating_sub(self.view.slots).max(c + 1);
            self.missed += next - c;
            self.set_cursor(next);
        }
    }

    /// Whether message `seq` is still the one in its slot (the stamp re-read after a fence).
    fn intact(&self, seq: u64) -> bool {
        fence(Ordering::Acquire);
        self.view.slot(seq).0.load(Ordering::Relaxed) == seq + 1
    }

    fn set_cursor(&mut self, next: u64) {
        let prev = std::mem::replace(&mut self.cursor, next);
        let h = self.view.header();
        self.view
            .place(self.index)
            .cursor
            .store(next, Ordering::SeqCst);
        // The last subscriber to pass what the sleeping publisher wants takes its flag down
        // and wakes it (one wake per sleep, however many subscribers it waits for): each one
        // that passes it looks at the others' cursors after storing its own, so of two that
        // pass at once at least one sees the other's (both orders are sequentially
        // consistent). The publisher raises the flag before its last look, so one that
        // passed before that is seen by the look.
        if h.publisher.sleeping.load(Ordering::SeqCst) != 0 {
            let want = h.shared.want.load(Ordering::Relaxed);
            if prev < want
                && next >= want
                && self.all_past(want)
                && h.publisher.sleeping.swap(0, Ordering::SeqCst) != 0
            {
                self.wake_publisher();
            }
        }
    }

    /// Whether every other attached subscriber's cursor is at `want` or past it (a hint: a
    /// scribbled word costs the sleeping publisher at most one sleeping slice).
    fn all_past(&self, want: u64) -> bool {
        (0..self.view.subscribers).all(|i| {
            let place = self.view.place(i);
            i == self.index
                || state_of(place.side.owner.load(Ordering::SeqCst)) != STATE_ATTACHED
                || place.cursor.load(Ordering::SeqCst) >= want
        })
    }

    /// Whether another attached subscriber is pinned to this one's CPU (a hint, see
    /// [`peer::on_cpu`]): then its waits take turns with them (`Spin::again_among`).
    fn siblings_on_my_cpu(&self) -> bool {
        (0..self.view.subscribers).any(|i| {
            let side = &self.view.place(i).side;
            i != self.index
                && state_of(side.owner.load(Ordering::Relaxed)) == STATE_ATTACHED
                && peer::on_cpu(self.cpu, side)
        })
    }

    /// Before a wait: stores this subscriber's cursor again if its place says otherwise (a
    /// peer scribbled it), unless the place is no longer this subscriber's, and wakes a
    /// publisher that waits (its doorbell wait would otherwise look again only after a second
    /// or two). A cursor left behind would hold a blocked publisher back while this
    /// subscriber waits for it: two live ends waiting on each other. One shared load per
    /// wait, none per message.
    fn restore_cursor(&self) {
        let place = self.view.place(self.index);
        if place.cursor.load(Ordering::Relaxed) != self.cursor
            && place.side.owner.load(Ordering::Acquire) == self.mine
        {
            place.cursor.store(self.cursor, Ordering::SeqCst);
            if self.view.header().publisher.sleeping.load(Ordering::SeqCst) != 0 {
                self.wake_publisher();
            }
        }
    }

    /// Bumps the publisher's `space` word and wakes whoever sleeps on it.
    fn wake_publisher(&self) {
        let h = self.view.header();
        h.shared.space.fetch_add(1, Ordering::Release);
        // Every waiter: a blocked send, or the publisher's bell thread (possibly still
        // asleep from an async wait that was given up).
        futex::wake_all(&h.shared.space);
    }

    /// Waits for the next message until `deadline`.
    fn next(&mut self, deadline: Deadline) -> Result<(u64, usize, *const u8)> {
        if let Some(why) = &self.corrupted {
            return Err(Error::corrupted(why.clone()).on_shared(&self.name));
        }
        let own = self
            .view
            .place(self.index)
            .side
            .owner
            .load(Ordering::Acquire);
        // Our own word, attached and naming this process (kept from the join: no `getpid`
        // and no lock per receive).
        if own != self.mine {
            return Err(self.fail(Error::with_note(
                ErrorKind::Disconnected,
                "this subscriber's place was taken over (its process was thought dead)",
            )));
        }
        let view = self.view;
        let h = view.header();
        let cpu = self.cpu;
        let mut rounds = Rounds::default();
        loop {
            let mut spin = Spin::new(deadline, rounds.round);
            loop {
                match self.peek() {
                    Ok(Some(m)) => return Ok(m),
                    Ok(None) => {}
                    Err(e) => return Err(self.fail(e)),
                }
                if !spin.again_among(
                    || peer::on_cpu(cpu, &h.publisher),
                    || self.siblings_on_my_cpu(),
                ) {
                    break;
                }
            }
            let word = h.publisher.owner.load(Ordering::Acquire);
            // The publisher's process is checked (a pidfd poll) after a first sleep, or on
            // non-blocking calls that find nothing as `PollCheck` says, so a quick poll
            // costs no syscall.
            let check = if deadline == Deadline::Now {
                self.polls.due(self.ready.take_timed())
            } else {
                !rounds.first()
            };
            // A word no end writes (one free yet naming a process, too) is `Corrupted`:
            // waiting on, this subscriber would never see the publisher die.
            let gone = state_of(word) == STATE_CLOSED
                || self.watch.known_dead(&h.publisher, word)
                || self.ready.died(0, &h.publisher, word)
                || (check
                    && match self
                        .watch
                        .dead_or_corrupt((&self.segment, &self.view.header().publisher), word)
                    {
                        Ok(dead) => dead,
                        Err(e) => return Err(self.fail(e)),
                    });
            if gone {
                // Drain first: everything published before the close or death is visible.
                return match self.peek() {
                    Ok(Some(m)) => Ok(m),
                    Ok(None) => Err(self.fail(Error::disconnected())),
                    Err(e) => Err(self.fail(e)),
                };
            }
            if deadline.has_passed() {
                return Err(self.fail(deadline.expired_error(Blocked::Empty)));
            }
            self.restore_cursor();
            let wake = h.publisher.wake.load(Ordering::Acquire);
            h.shared.sleepers.fetch_add(NAP, Ordering::SeqCst);
            let ready = matches!(self.peek(), Ok(Some(_)) | Err(_));
            if !ready {
                nap(&h.publisher.wake, wake, rounds.until(deadline)).map_err(|e| self.fail(e))?;
            }
            h.shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            rounds.next();
        }
    }

    /// Takes the next message in place, waiting until `deadline`: the guard dereferences to
    /// its bytes in the slot (no copy) and moves this subscriber's cursor on when dropped.
    ///
    /// Under [`Policy::Block`] the bytes stay intact until the guard is dropped. Under
    /// [`Policy::Lossy`] a publisher that laps this subscriber may overwrite them while they
    /// are read: check [`PubSubGuard::intact`] after using them.
    ///
    /// Errors: as [`recv_deadline`](MessageReceiver::recv_deadline), except that no buffer
    /// can be too small.
    pub fn recv_in_place_deadline(&mut self, deadline: Deadline) -> Result<PubSubGuard<'_>> {
        let (seq, len, ptr) = self.next(deadline)?;
        Ok(PubSubGuard {
            sub: self,
            seq,
            len,
            ptr,
            vouched: Cell::new(false),
        })
    }

    /// [`recv_in_place_deadline`](Subscriber::recv_in_place_deadline) waiting as long as it
    /// takes.
    pub fn recv_in_place(&mut self) -> Result<PubSubGuard<'_>> {
        self.recv_in_place_deadline(Deadline::Never)
    }

    /// [`recv_in_place_deadline`](Subscriber::recv_in_place_deadline) without waiting.
    pub fn try_recv_in_place(&mut self) -> Result<PubSubGuard<'_>> {
        self.recv_in_place_deadline(Deadline::Now)
    }

    /// Whether a message is there to take, without taking it (the async in-place receive's
    /// try): `Ok` when one is, the errors of
    /// [`try_recv_in_place`](Subscriber::try_recv_in_place) otherwise.
    #[cfg(feature = "tokio")]
    pub(crate) fn probe(&mut self) -> Result<()> {
        self.next(Deadline::Now).map(drop)
    }
}

impl MessageReceiver for Subscriber {
    /// Copies the next message into `buf` and moves on.
    ///
    /// Blocks only while nothing new is published: spinning briefly, then sleeping on the
    /// publisher's futex word in slices, checking the publisher's process (pidfd) each time.
    ///
    /// Errors: [`ErrorKind::MessageTooLarge`] if `buf` is too small (the message stays
    /// next); [`ErrorKind::Disconnected`] once the publisher closed or died and everything it
    /// published was read (or this place was taken over); [`ErrorKind::WouldBlock`] /
    /// [`ErrorKind::TimedOut`]; [`ErrorKind::Corrupted`] for an inconsistent slot.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        loop {
            let (seq, len, ptr) = self.next(deadline)?;
            if len > buf.len() {
                // Under `Lossy` the length may be the next lap's, read while the publisher
                // overwrote the slot: then message `seq` is missed, not too large.
                if !self.intact(seq) {
                    continue;
                }
                return Err(Error::message_too_large(len, buf.len(), "receive buffer")
                    .in_op("recv")
                    .on_shared(&self.name));
            }
            // SAFETY: `ptr` is `len <= max_message` bytes inside the slot's payload area of the
            // mapping (validated); `buf` is a distinct buffer of at least `len` bytes. The
            // publisher may write the slot concurrently only under `Lossy`, which the stamp
            // check below detects.
            unsafe { std::ptr::copy_nonoverlapping(ptr, buf.as_mut_ptr(), len) };
            if self.intact(seq) {
                self.set_cursor(seq + 1);
                return Ok(len);
            }
            // Overwritten while copying: counted by the next peek.
        }
    }

    fn max_message_size(&self) -> usize {
        self.view.max_message
    }
}

/// The doorbell: an eventfd that becomes **readable** when a receive may succeed (a message
/// was published, or the publisher closed or died).
///
/// [`arm`](Readiness::arm) announces a nap in the shared `sleepers` word, as a blocking
/// receive does before its futex wait; the publisher makes a wake-up call only for a nap
/// announced since its last one. So while every subscriber keeps up there is no system call
/// per message, and at most one per wait otherwise. The publisher's
/// process is watched (pidfd, the `ipc-shm-watch` thread), so its death rings at once; while
/// no publisher is attached yet, the bell rings every 50 ms to look again.
impl Readiness for Subscriber {
    /// Makes the doorbell at the first call: an eventfd and its bell thread (see the crate's
    /// "Async and poll loops" section).
    ///
    /// Errors: `eventfd(2)` or the bell thread could not be made.
    #[doc(alias = "eventfd")]
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        self.ready.fd(&self.segment)
    }

    fn arm(&mut self) -> Result<bool> {
        self.ready.fd(&self.segment)?;
        self.restore_cursor();
        let view = self.view;
        let h = view.header();
        let Some(seen) = flag_and_look(
            peer::on_cpu(self.cpu, &h.publisher),
            &h.publisher.wake,
            || {
                h.shared.sleepers.fetch_add(NAP, Ordering::SeqCst);
            },
            || {
                h.shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            },
            |_| self.can_recv(),
        ) else {
            return Ok(true);
        };
        let watched = self
            .ready
            .watch(0, &h.publisher, &mut self.watch, &self.segment);
        self.ready.arm(seen, !watched);
        Ok(false)
    }

    fn disarm(&self) {
        if self.ready.disarm() {
            self.view
                .header()
                .shared
                .sleepers
                .fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Subscriber {
    /// Whether a receive would not wait now: a message (or a corrupted slot) is there, the
    /// publisher closed or is known dead, or this place was taken over. Takes nothing.
    fn can_recv(&mut self) -> bool {
        if self.corrupted.is_some() {
            return true;
        }
        let h = self.view.header();
        let own = self
            .view
            .place(self.index)
            .side
            .owner
            .load(Ordering::Acquire);
        let word = h.publisher.owner.load(Ordering::Acquire);
        own != self.mine
            || state_of(word) == STATE_CLOSED
            || self.watch.known_dead(&h.publisher, word)
            || self.ready.died(0, &h.publisher, word)
            || !matches!(self.peek(), Ok(None))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.disarm();
        let place = self.view.place(self.index);
        // Leave in one step, unless our place was taken over meanwhile.
        let _ =
            place
                .side
                .owner
                .compare_exchange(self.mine, 0, Ordering::AcqRel, Ordering::Relaxed);
        if self.view.header().publisher.sleeping.load(Ordering::SeqCst) != 0 {
            self.wake_publisher();
        }
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("segment", self.segment.kind())
            .field("place", &self.index)
            .field("position", &self.cursor)
            .field("missed", &self.missed)
            .finish_non_exhaustive()
    }
}

/// A message read in place from [`Subscriber::recv_in_place`]: dereferences to its bytes in
/// the slot; dropping it moves the subscriber on.
pub struct PubSubGuard<'a> {
    sub: &'a mut Subscriber,
    seq: u64,
    len: usize,
    ptr: *const u8,
    /// Whether [`intact`](PubSubGuard::intact) said so: the caller kept the message, which
    /// is then read, not missed, however soon after the publisher overwrites it.
    vouched: Cell<bool>,
}

impl PubSubGuard<'_> {
    /// The message's sequence number (from 0, counted by the publisher).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether the bytes are still the message's: always under [`Policy::Block`]; under
    /// [`Policy::Lossy`], false once the publisher lapped this subscriber and overwrote the
    /// slot (discard what was read from it then; it is counted as missed). Once it said
    /// true, the message counts as read, not missed, even if the publisher overwrites the
    /// slot before the guard is dropped (what was read before the call is the message).
    pub fn intact(&self) -> bool {
        let intact = self.sub.intact(self.seq);
        if intact {
            self.vouched.set(true);
        }
        intact
    }
}

impl Deref for PubSubGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= max_message` bytes inside the slot's payload area of the mapping,
        // which the guard's subscriber keeps mapped; under `Block` the publisher does not
        // write it until the guard is dropped (under `Lossy` see `intact`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for PubSubGuard<'_> {
    fn drop(&mut self) {
        if self.vouched.get() || self.sub.intact(self.seq) {
            self.sub.set_cursor(self.seq + 1);
        }
        // Otherwise the next peek finds it overwritten and counts it missed.
    }
}

impl fmt::Debug for PubSubGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSubGuard")
            .field("seq", &self.seq)
            .field("len", &self.len)
            .finish()
    }
}

/// Test support, not part of the API: a subscriber's join stopped after a chosen step (what a
/// process killed there leaves), and where the words are for tests that scribble on them.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// Stops a join after the claim (`0`), after the cursor (`1`), after "attached" but before
    /// the join count (`2`), or after a full join (`3`), leaving the place as a process killed
    /// there would. (Leaving is one compare-and-swap of the owner word back to free: there is
    /// no step inside it to stop at.)
    pub fn join_until(segment: Arc<Segment>, step: u32) -> Result<()> {
        let stop = match step {
            0 => JoinStep::Claimed,
            1 => JoinStep::Positioned,
            2 => JoinStep::Attached,
            _ => JoinStep::Joined,
        };
        // A subscriber that joined fully is kept open (never dropped), like a process that
        // is killed with it open.
        Subscriber::join(segment, stop, &mut || {}).map(std::mem::forget)
    }

    /// A full join that runs `attached` after the place says attached and before the join
    /// count is bumped: the window in which a publisher does not yet check this subscriber's
    /// cursor on its fast path.
    pub fn join_with(segment: Arc<Segment>, mut attached: impl FnMut()) -> Result<Subscriber> {
        Subscriber::join(segment, JoinStep::Joined, &mut attached)
            .map(|s| s.expect("a full join returns the subscriber"))
    }

    /// The first half of a publish under [`Policy::Block`]: waits for room for the next
    /// message, as `publish_with` does, and returns; [`commit`] writes it. Between the two
    /// the publisher is where a process preempted after its room check would be.
    pub fn room(publisher: &mut Publisher) -> Result<()> {
        publisher.room(Deadline::Never)
    }

    /// The second half of a publish begun with [`room`]: writes `msg` into the next slot and
    /// publishes it.
    pub fn commit(publisher: &mut Publisher, msg: &[u8]) {
        assert!(msg.len() <= publisher.view.max_message);
        publisher.commit(msg.len(), |buf| buf.copy_from_slice(msg));
    }

    /// Offset of the publisher's tail word.
    pub const TAIL: usize = std::mem::offset_of!(Header, tail);
    /// Offset of the publisher's owner word.
    pub const PUBLISHER: usize = std::mem::offset_of!(Header, publisher);
    /// Offset of the subscribers' `sleepers` word (sleepers low, naps high): what the
    /// publisher reads to decide whether to wake them.
    pub const SLEEPERS: usize =
        std::mem::offset_of!(Header, shared) + std::mem::offset_of!(Shared, sleepers);
    /// Offset of the cursor a publisher blocked for room wants (a hint subscribers read).
    pub const WANT: usize =
        std::mem::offset_of!(Header, shared) + std::mem::offset_of!(Shared, want);
    /// The owner word a process killed while opening (`attached` false) or after opening an
    /// end leaves: it names a process that cannot exist (a pid above `PID_MAX_LIMIT`).
    pub fn dead_owner(attached: bool) -> u64 {
        let state = if attached {
            STATE_ATTACHED
        } else {
            STATE_ATTACHING
        };
        peer::pack(
            state,
            peer::Identity {
                pid: (1 << 22) - 1,
                start_time: 1,
            },
        )
    }
    /// Offset of the subscriber place table; each place is [`PLACE`] bytes (owner word, then
    /// at [`CURSOR`] the cursor).
    pub const PLACES: usize = HEADER_SIZE;
    /// Bytes per place.
    pub const PLACE: usize = PLACE_SIZE;
    /// Offset of the cursor in a place.
    pub const CURSOR: usize = std::mem::offset_of!(Place, cursor);
    /// Offset of the first slot for a segment with `subscribers` places.
    pub fn slots_at(subscribers: usize) -> usize {
        HEADER_SIZE + subscribers * PLACE_SIZE
    }
}
