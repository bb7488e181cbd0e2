//! Many producers to one consumer in a segment: up to [`MpscOptions::producers`]
//! [`MpscProducer`]s (any processes, joining and leaving at any time) into one [`MpscConsumer`],
//! each producer's messages in its order.
//!
//! # The choice: one SPSC ring per producer
//!
//! Every producer place is a complete single-producer ring of the channel (`ring.rs`, the
//! same records, marks and validation), and the consumer drains them round-robin, one message
//! from a place before looking at the next, so a busy producer cannot starve the others.
//! Nothing on the message path is shared between producers: no lock, no compare-and-swap, no
//! cache line two producers write; a producer killed mid-message leaves an uncommitted record
//! in its own ring only, which nobody sees, and blocks nobody.
//!
//! The cost: memory grows with the number of places (each has its own capacity), an empty
//! poll looks at every place (one cache line each), and there is no total order across
//! producers (only each producer's own order), which a shared multi-producer ring would give
//! at the price of a compare-and-swap per message and a producer that dies between claiming
//! and committing stalling everyone behind it.
//!
//! # Layout
//!
//! ```text
//! offset   0  Meta      magic "IPCSHMMP", layout version, header size, producer places (P),
//!                       ring capacity, max message, ring stride
//! offset 128  consumer  Side: owner word (state, pid, start time), CPU, sleeping flag, wake
//! offset 256  doorbell  u32 the consumer sleeps on; producers bump it when it sleeps
//! offset 384  places    P channel rings (ring.rs layout: header, then `capacity` bytes), one
//!                       every `stride` bytes (a multiple of 128); a ring's tx Side is the
//!                       producer's owner word, its rx wake word what a producer waits on
//! ```
//!
//! # Joining and leaving
//!
//! A producer claims a free place with one compare-and-swap of its owner word (the channel's
//! format, `peer.rs`), carries on from the ring's tail (which a free place has at the
//! consumer's index: any other tail was scribbled, and is `Corrupted`), and is attached;
//! leaving closes the word (one store). The consumer drains a closed place, or one whose process died (pidfd and
//! start time) at any step, then gives it back: it sets the ring's tail to its own head (a
//! producer killed between its commit and its tail store leaves the tail behind what was
//! committed) and stores free with a compare-and-swap from the word it found.
//!
//! # Waiting
//!
//! A blocked producer (its ring full) or the consumer (every ring empty) looks again for up to
//! 30 µs before it sleeps while another CPU may serve it (`wait.rs`, `Spin`): spinning for
//! 2 µs, then yielding its CPU (`sched_yield`) between slices of 64 looks, so producer threads
//! sharing a CPU, or a consumer sharing one with other work, let each other run instead of
//! spinning out the budget. A yield that kept it off the CPU for more than 1 ms (a busy
//! task holds it) ends the look, and the thread's next 15 waits spin out their budget without
//! yielding, then sleep: served at spin speed, rather than queued behind that task for its
//! time slice. When everyone it waits for
//! is pinned to its own CPU it sleeps at once (producers streaming into a consumer on their
//! CPU would otherwise yield to each other while the consumer waits for the CPU). It sleeps
//! with its sleeping flag up (`doorbell` for the consumer, its ring's rx wake word for a
//! producer) in slices of 1 to 50 ms, checking the processes it waits for between them.
//!
//! A producer copying a message of 16 KiB or more raises a **writing mark** in its ring's tx
//! side first (a new odd value per message) and takes it down after the commit: two stores
//! to a cache line of its own that the consumer reads once per wait (not while it polls),
//! against a copy of microseconds. A consumer whose 30 µs budget
//! ran out while spinning (another CPU serves it) looks at the marks once before it sleeps:
//! if a producer that is attached, not known dead and not pinned to the consumer's CPU has its
//! mark up, the message is coming, and the consumer keeps looking (the same spin, yielding
//! between slices) for up to 250 µs more, or to its deadline. Without it a consumer faster than
//! its producers slept between large messages (measured: 0.73 futex sleeps per 1 MiB
//! message with 4 producers sharing the other CPU; 0.007 with the marks), and each sleep cost
//! the producer that committed next a `futex` wake and the consumer a cross-CPU wake-up. The
//! cost: up to 280 µs of the consumer's own CPU per wait while a large message is being
//! written; never on a CPU a producer it waits for is pinned to (it sleeps at once there, as
//! before), never after a first sleep, and a receive that does not wait does not even look
//! at the marks. The mark is a hint only (never an index or a length):
//! a mark that stays up through an extension without a message (scribbled, or its producer
//! stopped or killed mid-copy), whether the extension ran its course or a busy task on the
//! consumer's CPU cut it short, is noted stale and ignored until it changes, so it costs one
//! extension at most; a killed producer's place is then found dead after the first sleep
//! slice, as before. [`MpscConsumer::sleeps`] and [`MpscConsumer::kept_spinning`] count both.
//!
//! The consumer wakes a producer blocked in `send` as it gives room back, except one pinned
//! to the consumer's CPU: that one is woken once its ring is drained, or as soon as the
//! consumer stops taking messages (a look finds none: it is about to spin, sleep or return
//! `WouldBlock` / `TimedOut`; a receive fails; it arms its doorbell; it is dropped). Woken at
//! the first message given back, it would take the shared CPU from the consumer after a
//! message or two, and the ring would never drain in batches (one wake-up per ~9 messages of
//! a 15-message ring was measured, and 45% of the time in sleeping and waking). A consumer
//! that woke such a producer yields its CPU once before it sleeps, so the producer refills
//! its ring first instead of waking the consumer at its first message. A producer waiting on
//! its doorbell (`arm`), or on another CPU, is woken at once. A consumer that stops receiving
//! without any of those (it holds the consumer and does something else) leaves a same-CPU
//! producer to find its room at the end of its sleep slice.
//!
//! # Where a producer writes
//!
//! A ring's records go one after the other, so a producer would walk its whole ring (16 MiB
//! for 1 MiB messages) even while the consumer keeps up, and copy every message into memory
//! its core's caches lost long ago. A producer of a message of 16 KiB or more whose consumer
//! is not pinned to its CPU therefore goes back to the start of its ring as soon as the
//! record fits there over bytes the consumer has had back, with an eighth of the ring still
//! free after it: a padding record to the end, as at any wrap, then the message at the start.
//! A stream the consumer keeps up with then stays in the first part of the ring (three places
//! of 64 KiB in a 1 MiB ring, where it used all 15), the memory the consumer has just read.
//! Measured with a throwaway driver on the 2-vCPU machine (4 producer threads on one CPU,
//! the consumer on the other reading in place, 1 MiB messages; rough, others compiling):
//! the median `send` 62-85 -> 54-66 us over four alternated pairs (13,500 -> 17,100
//! messages/s in the quietest). The cost: one load of the consumer's index per large
//! message, and a consumer that stops taking right after such a jump leaves its producer an
//! eighth of its ring (at least) instead of all of it, until it passes the padding, which it
//! does at its next look at that place. On the consumer's CPU the whole ring is a batch (the consumer
//! drains it only when the producer gives the CPU up), so a producer pinned there walks it as
//! before; and so do messages under 16 KiB. The records are the ring's own (a padding, then
//! a message), so validation, a producer killed at any step and one joining later are as
//! at any wrap.
//!
//! # Readiness
//!
//! Both ends implement [`Readiness`] with the channel's doorbell (an eventfd rung by a bell
//! thread in this process that sleeps on the futex word the end would sleep on; see the
//! crate's "Async and poll loops"), so `poll`, `epoll` and tokio (`AsyncEndpoint`) can wait
//! on them:
//!
//! - the [`MpscConsumer`]'s rings when a producer commits a message, closes or dies: `arm`
//!   raises the consumer's sleeping flag and producers wake the `doorbell` word only while it
//!   is up, the first to see it taking it down (no system call per message while the
//!   consumer keeps up, and one per sleep, not per message, while a woken consumer waits for
//!   its CPU); the attached producers'
//!   processes are watched (pidfd, the `ipc-shm-watch` thread), so a death rings at once.
//!   While no producer is attached the bell rings every 50 ms to look again (a producer that
//!   joins and dies before sending must still end the wait).
//! - an [`MpscProducer`]'s rings when the consumer makes room in its ring, closes or dies
//!   (its ring's rx wake word, bumped only while the producer's flag is up, which the
//!   consumer takes down as it wakes it; the consumer's
//!   process is watched).

use std::fmt;
use std::ops::Deref;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use ipc_core::fd::Interest;
use ipc_core::inventory::Recognised;
use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, MessageReceiver, MessageSender, PosixName, Readiness,
    Result, futex,
};

use crate::bell::{SLEEPING_ON_BELL, SLEEPING_ON_FUTEX};
use crate::peer::{self, AttachStep, Status, Watch, state_of};
use crate::ring::{
    self, Consumer, Producer, Ring, STATE_ATTACHED, STATE_ATTACHING, STATE_CLOSED, Side,
};
use crate::segment::Segment;
use crate::shape::{Doorbell, Kind, flag_and_look, offset_in};
use crate::wait::{Rounds, Spin, sleep_flagged, wake_flagged};
use ipc_core::process::Presence;

/// `"IPCSHMMP"`, little-endian: the first 8 bytes of every MPSC segment.
const MAGIC: u64 = u64::from_le_bytes(*b"IPCSHMMP");
/// The layout version `open` accepts.
const VERSION: u32 = 1;
const MAX_PRODUCERS: usize = 1024;

/// Messages from this size on are copied with the producer's writing mark up (`# Waiting`):
/// their copy takes microseconds, against two stores to a line the consumer reads once per
/// wait.
const MARK_MIN: usize = 16 << 10;

/// Messages from this size on go back to the start of their producer's ring when the consumer
/// has had back everything there (`# Where a producer writes`): a message this large pays
/// the extra load of the consumer's index on its way.
const REWIND_MIN: usize = 16 << 10;

/// The part of its ring (a divisor) a producer keeps free when it goes back to the start:
/// room for its next messages before the consumer has passed the padding.
const REWIND_KEEP: usize = 8;

/// How long past its spin budget the consumer keeps looking, once per wait, while a producer
/// on another CPU has its writing mark up (`# Waiting`): about the copy of a 1 MiB message
/// by a producer sharing its CPU with others.
const MARK_SPIN: std::time::Duration = std::time::Duration::from_micros(250);

/// A producer's send looks at the consumer's process (a pidfd poll) once every this many
/// sends that find room, as the channel's sender does: a consumer that died is
/// `Disconnected` within that many sends even while its ring has room.
const CHECK_EVERY: u32 = 1024;

#[repr(C)]
struct Meta {
    magic: AtomicU64,
    version: AtomicU32,
    header_size: AtomicU32,
    producers: AtomicU32,
    capacity: AtomicU32,
    max_message: AtomicU32,
    stride: AtomicU32,
}

#[repr(C)]
struct Header {
    meta: CachePadded<Meta>,
    consumer: CachePadded<Side>,
    doorbell: CachePadded<AtomicU32>,
}

const HEADER_SIZE: usize = std::mem::size_of::<Header>();
const KIND: Kind = Kind {
    magic: MAGIC,
    version: VERSION,
    header_size: HEADER_SIZE,
    what: "mpsc",
};

fn stride_for(capacity: usize) -> usize {
    ring::region_size(capacity).saturating_add(127) & !127
}

/// The shape of an MPSC segment: producer places, and each place's ring.
///
/// ```
/// use ipc_shm::MpscOptions;
/// let opts = MpscOptions::new().producers(4).capacity(1 << 16);
/// assert!(opts.segment_size() > 4 << 16);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpscOptions {
    producers: usize,
    capacity: usize,
    max_message: Option<usize>,
}

impl Default for MpscOptions {
    fn default() -> MpscOptions {
        MpscOptions::new()
    }
}

impl MpscOptions {
    /// 8 producer places of 256 KiB each, messages up to half of that.
    pub fn new() -> MpscOptions {
        MpscOptions {
            producers: 8,
            capacity: 1 << 18,
            max_message: None,
        }
    }

    /// How many producers can be attached at once: 1 to 1024.
    #[must_use]
    pub fn producers(mut self, producers: usize) -> MpscOptions {
        self.producers = producers;
        self
    }

    /// Each producer's ring capacity in bytes: a power of two from 64 bytes to 1 GiB.
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> MpscOptions {
        self.capacity = capacity;
        self
    }

    /// The largest message, at most `capacity / 2 - 8` (the default).
    #[must_use]
    pub fn max_message(mut self, max_message: usize) -> MpscOptions {
        self.max_message = Some(max_message);
        self
    }

    fn max(&self) -> usize {
        self.max_message
            .unwrap_or_else(|| ring::max_message_for(self.capacity.max(ring::MIN_CAPACITY)))
    }

    /// The bytes a segment with these options needs (`usize::MAX` if none could hold it).
    pub fn segment_size(&self) -> usize {
        HEADER_SIZE.saturating_add(self.producers.saturating_mul(stride_for(self.capacity)))
    }

    fn check(&self) -> std::result::Result<(), String> {
        if !(1..=MAX_PRODUCERS).contains(&self.producers) {
            return Err(format!(
                "{} producer places: from 1 to {MAX_PRODUCERS}",
                self.producers
            ));
        }
        ring::check_geometry(stride_for(self.capacity), self.capacity, self.max())?;
        if self.segment_size() == usize::MAX || self.segment_size() > u32::MAX as usize * 4 {
            return Err("the layout does not fit in memory".into());
        }
        Ok(())
    }

    /// Writes a fresh header and every place's ring into `segment` (zero-filled, writable,
    /// at least [`segment_size`](MpscOptions::segment_size) bytes).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for options out of range or a segment too small or
    /// read-only; [`ErrorKind::AlreadyExists`] if the segment already holds something.
    pub fn init(&self, segment: &Segment) -> Result<()> {
        let base = KIND.begin_init(segment, self.segment_size(), self.check())?;
        // SAFETY: page-aligned, at least a header long (checked); atomics only.
        let h = unsafe { base.cast::<Header>().as_ref() };
        let stride = stride_for(self.capacity);
        for i in 0..self.producers {
            // SAFETY: place `i` lies inside the segment (size checked above), starts
            // 128-aligned (header and stride are multiples of 128) and nobody else uses the
            // fresh segment yet.
            unsafe {
                let base = NonNull::new_unchecked(segment.as_ptr().add(HEADER_SIZE + i * stride));
                Ring::init(base, stride, self.capacity, self.max())
            }
            .map_err(|e| e.in_op("init mpsc").on(segment.kind()))?;
        }
        let m = &h.meta;
        m.producers.store(self.producers as u32, Ordering::Relaxed);
        m.capacity.store(self.capacity as u32, Ordering::Relaxed);
        m.max_message.store(self.max() as u32, Ordering::Relaxed);
        m.stride.store(stride as u32, Ordering::Relaxed);
        KIND.publish(base);
        Ok(())
    }

    /// Creates the POSIX segment `name` (exclusively, mode `0o600`) and initialises it;
    /// unrelated processes open it with [`Segment::open`].
    pub fn create_posix(&self, name: impl TryInto<PosixName, Error = Error>) -> Result<Segment> {
        KIND.create_posix(name, self.segment_size(), self.check(), |seg| {
            self.init(seg)
        })
    }

    /// Creates a sealed memfd segment and initialises it, for related processes.
    pub fn create_memfd(&self, name: &str) -> Result<Segment> {
        KIND.create_memfd(name, self.segment_size(), self.check(), |seg| {
            self.init(seg)
        })
    }
}

/// A validated view: the header and every place's ring (each validated by `Ring::open`).
struct View {
    header: NonNull<Header>,
    rings: Vec<Ring>,
    max_message: usize,
}

// SAFETY: pointers into a mapping the endpoint keeps alive beside the view; every shared
// access is atomic or follows the ring protocol.
unsafe impl Send for View {}

impl View {
    fn open(segment: &Segment) -> Result<View> {
        View::at(KIND.open(segment)?, segment.len())
    }

    /// [`open`](View::open) for `inspect`: any mapping, read-only included.
    fn inspect(segment: &Segment) -> Result<View> {
        View::at(KIND.header(segment)?, segment.len())
    }

    /// Validates the header and the rings at `base` (its prefix checked) of a mapping of
    /// `len` bytes.
    fn at(base: NonNull<u8>, len: usize) -> Result<View> {
        // SAFETY: at least a header long (checked); atomics only.
        let h = unsafe { base.cast::<Header>().as_ref() };
        let m = &h.meta;
        let producers = m.producers.load(Ordering::Relaxed) as usize;
        let stride = m.stride.load(Ordering::Relaxed) as usize;
        if !(1..=MAX_PRODUCERS).contains(&producers)
            || stride % 128 != 0
            || stride < ring::DATA_OFFSET
            || producers
                .checked_mul(stride)
                .and_then(|n| n.checked_add(HEADER_SIZE))
                .is_none_or(|n| n > len)
        {
            return Err(Error::corrupted(format!(
                "{producers} producer places of {stride} bytes do not fit in {len} bytes"
            )));
        }
        let mut rings = Vec::with_capacity(producers);
        for i in 0..producers {
            // SAFETY: place `i` is `stride` bytes inside the mapping (checked above), 128-aligned;
            // the endpoint keeps the mapping alive while the ring is used.
            let r = unsafe {
                Ring::open(
                    NonNull::new_unchecked(base.as_ptr().add(HEADER_SIZE + i * stride)),
                    stride,
                )
            }
            .map_err(|e| Error::corrupted(format!("producer place {i}: {e}")))?;
            // Every place was made with the segment's shape: a ring saying otherwise (each
            // shape valid on its own) was scribbled, and a message the segment allows might
            // not fit it, or fail its checks.
            let (capacity, max) = (
                m.capacity.load(Ordering::Relaxed) as usize,
                m.max_message.load(Ordering::Relaxed) as usize,
            );
            if (r.capacity(), r.max_message()) != (capacity, max) {
                return Err(Error::corrupted(format!(
                    "producer place {i}: a ring of {} bytes for messages up to {}, in a segment \
                     of rings of {capacity} for messages up to {max}",
                    r.capacity(),
                    r.max_message()
                )));
            }
            rings.push(r);
        }
        let max_message = rings[0].max_message();
        Ok(View {
            header: base.cast(),
            rings,
            max_message,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: validated at open; kept mapped by the endpoint; atomics only.
        unsafe { self.header.as_ref() }
    }
}

/// What `inspect` reports an MPSC segment as.
const WHAT: &str = "ipc-shm mpsc";

/// Recognises an MPSC segment from the outside (for `ipc list` / `ipc inspect`), read-only:
/// `None` for another magic; otherwise its shape, the consumer's place and every producer
/// place that is not free (a free place is anybody's to take, and matters only while the
/// consumer may still receive). A consumer that closed or died ends the segment for good (a
/// new `MpscConsumer::open` is `Disconnected`, producers' sends too), so with it and every
/// producer named dead the segment is provably stale.
pub(crate) fn recognise(segment: &Segment) -> Option<Recognised> {
    let mut r = crate::inspect::begin(segment, MAGIC, WHAT)?;
    let view = match View::inspect(segment) {
        Ok(view) => view,
        Err(e) => {
            r.corrupted = Some(e.to_string());
            return Some(r);
        }
    };
    r.facts
        .push(("max producers".to_owned(), view.rings.len().to_string()));
    if let Some(ring) = view.rings.first() {
        r.facts
            .push(("capacity".to_owned(), ring.capacity().to_string()));
    }
    r.facts
        .push(("max message".to_owned(), view.max_message.to_string()));
    let places = view
        .rings
        .iter()
        .enumerate()
        .map(|(i, ring)| (format!("producer {i}"), &*ring.header().tx));
    let consumer = [("consumer".to_owned(), &*view.header().consumer)];
    crate::inspect::add_users(&mut r, segment, consumer, places);
    Some(r)
}

/// One producer of an MPSC segment: holds one place (its own ring) until dropped.
pub struct MpscProducer {
    segment: Arc<Segment>,
    name: Arc<str>,
    view: View,
    index: usize,
    producer: Producer,
    watch: Watch,
    /// This producer's presence mark on its place (`peer::claim`), dropped after its close.
    _presence: Option<Presence>,
    corrupted: Option<String>,
    /// When a non-blocking send that found no room checks the consumer's process.
    polls: crate::wait::PollCheck,
    /// The length of the last message that found no room: what [`Readiness::arm`] waits for.
    wanted: usize,
    /// The readiness doorbell, on this ring's rx wake word.
    ready: Doorbell,
    /// The CPU this end is pinned to (`u32::MAX`: not pinned), for the spin decision.
    cpu: u32,
    /// The last writing mark this producer raised (odd, so never 0; a new one per message).
    mark: u32,
    /// Sends left before the next look at the consumer's process
    /// ([`consumer_gone`](MpscProducer::consumer_gone)).
    checks_due: u32,
}

impl MpscProducer {
    /// Joins the MPSC in `segment`: validates it, claims a free producer place (one
    /// compare-and-swap; a place whose claimer died before attaching is taken over), carries
    /// on from that ring's tail. Does not block.
    ///
    /// Errors: [`ErrorKind::WrongType`] / [`ErrorKind::Corrupted`] for a segment that is not a
    /// valid MPSC, or a free place whose ring's tail is not at the consumer's index;
    /// [`ErrorKind::AlreadyExists`] when every place is held (or still being drained by the
    /// consumer after its producer left: retry later);
    /// [`ErrorKind::Disconnected`] when no place is free and the consumer closed or died, so
    /// nobody will ever give one back. (With a place free, a producer joins a segment whose
    /// consumer is gone, and its first send says `Disconnected`.)
    pub fn open(segment: impl Into<Arc<Segment>>) -> Result<MpscProducer> {
        MpscProducer::join(segment.into(), AttachStep::Attached)
            .map(|p| p.expect("a full join returns the producer"))
    }

    fn join(segment: Arc<Segment>, stop: AttachStep) -> Result<Option<MpscProducer>> {
        let name = segment.shared_name();
        let err = |e: Error| e.in_op("open mpsc producer").on_shared(&name);
        let view = View::open(&segment).map_err(err)?;
        let me = peer::me().map_err(err)?;
        let mut index = None;
        let mut mark = None;
        for (i, r) in view.rings.iter().enumerate() {
            let side = &r.header().tx;
            let claim = |stop| peer::claim(&segment, side, me, stop).map_err(err);
            match claim(AttachStep::Claimed)? {
                Ok(m) => {
                    (index, mark) = (Some(i), m);
                    break;
                }
                Err(found) => {
                    if matches!(
                        Watch::default().status_of((&segment, side), found),
                        Ok(Status::Dead)
                    ) && peer::reclaim(&segment, side, found)
                    {
                        if let Ok(m) = claim(AttachStep::Claimed)? {
                            (index, mark) = (Some(i), m);
                            break;
                        }
                    }
                }
            }
        }
        let Some(index) = index else {
            // Places held by producers that left are given back by the consumer once it
            // drained them: with the consumer closed or dead, never. Say so, as a send would,
            // rather than "held" to a joiner that may retry for ever.
            let consumer = &*view.header().consumer;
            let word = consumer.owner.load(Ordering::Acquire);
            if state_of(word) == STATE_CLOSED
                || matches!(
                    Watch::default().status_of((&segment, consumer), word),
                    Ok(Status::Dead)
                )
            {
                return Err(err(Error::with_note(
                    ErrorKind::Disconnected,
                    format!(
                        "no producer place is free and the consumer {} (pid {}): nobody will \
                         drain the places left; make a new segment",
                        if state_of(word) == STATE_CLOSED {
                            "closed"
                        } else {
                            "died"
                        },
                        peer::identity_of(word).pid
                    ),
                )));
            }
            return Err(err(Error::with_note(
                ErrorKind::AlreadyExists,
                format!(
                    "all {} producer places are held (or being drained; more are made with \
                     MpscOptions::producers when the segment is created)",
                    view.rings.len()
                ),
            )));
        };
        let ring = view.rings[index];
        let side = &ring.header().tx;
        if stop == AttachStep::Claimed {
            // Stopped here (`testing`): the mark stays while this process runs, as an open's.
            std::mem::forget(mark);
            return Ok(None);
        }
        side.single_cpu.store(peer::single_cpu(), Ordering::Relaxed);
        side.sleeping.store(0, Ordering::Relaxed);
        side.writing.store(0, Ordering::Relaxed);
        if stop == AttachStep::Prepared {
            std::mem::forget(mark);
            return Ok(None);
        }
        // A place is free only once drained (the consumer gives it back with the tail at its
        // head; a fresh one has both at 0), so a joiner finds them equal: any other tail was
        // scribbled, and carrying on from it would put every message where the consumer never
        // looks, both ends then waiting on each other forever.
        let producer = match Producer::new(ring).and_then(|mut p| {
            if p.is_drained()? {
                Ok(p)
            } else {
                Err(Error::corrupted(format!(
                    "producer place {index}: its tail is not at the consumer's index, as a free \
                     place's must be (scribbled)"
                )))
            }
        }) {
            Ok(p) => p,
            Err(e) => {
                peer::detach(side);
                return Err(err(e));
            }
        };
        side.owner
            .store(peer::pack(STATE_ATTACHED, me), Ordering::SeqCst);
        let ready = Doorbell::new(offset_in(&segment, &ring.header().rx.wake));
        Ok(Some(MpscProducer {
            segment,
            name,
            view,
            index,
            producer,
            watch: Watch::default(),
            _presence: mark,
            corrupted: None,
            polls: crate::wait::PollCheck::default(),
            wanted: 0,
            ready,
            cpu: peer::single_cpu(),
            mark: 1,
            checks_due: 1,
        }))
    }

    /// The segment the MPSC lives in.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// Which producer place this producer holds.
    pub fn place(&self) -> usize {
        self.index
    }

    /// How many times the consumer has woken this producer's place so far (its ring's wake
    /// word: one per sleep or doorbell wait the consumer ended by giving room back, plus one
    /// when a consumer leaves). A producer that keeps finding room adds nothing here.
    pub fn doorbell_rings(&self) -> u32 {
        self.view.rings[self.index]
            .header()
            .rx
            .wake
            .load(Ordering::Relaxed)
    }

    fn fail(&mut self, e: Error) -> Error {
        if e.kind() == ErrorKind::Corrupted {
            self.corrupted = Some(e.to_string());
        }
        e.in_op("send").on_shared(&self.name)
    }

    /// Whether the consumer (owner word `word`) closed or its process is gone: the send's
    /// check when the consumer closed or every [`CHECK_EVERY`] sends (a pidfd poll, unless the
    /// death is known already). Once gone, the next send looks again (no syscall then), so
    /// every later send says so too.
    #[cold]
    #[inline(never)]
    fn consumer_gone(&mut self, word: u64) -> Result<bool> {
        self.checks_due = CHECK_EVERY;
        let consumer = (&*self.segment, &*self.view.header().consumer);
        let gone = state_of(word) == STATE_CLOSED || self.watch.known_dead(consumer.1, word) || {
            self.watch
                .dead_or_corrupt(consumer, word)
                .map_err(|e| self.fail(e))?
        };
        if gone {
            self.checks_due = 1;
        }
        Ok(gone)
    }
}

impl MessageSender for MpscProducer {
    /// Copies `msg` into this producer's ring and publishes it.
    ///
    /// A message of 16 KiB or more goes back to the ring's start when the consumer has had
    /// back the room there (off the consumer's CPU; the module's "Where a producer writes"):
    /// the padding it leaves at the end counts as full until the consumer passes it.
    ///
    /// Blocks only while the ring is full: spinning briefly, then sleeping on the ring's
    /// futex word in slices until the consumer makes room (pinned to the consumer's CPU: until
    /// it drained the ring or stopped taking messages, or this slice ends with room; see the
    /// module docs), `deadline` passes or the consumer is gone (closed, or its process dead:
    /// checked by pidfd each slice).
    ///
    /// Errors: [`ErrorKind::MessageTooLarge`]; [`ErrorKind::Disconnected`] once the consumer
    /// closed (seen at once) or its process died (seen through its pidfd: at once while
    /// waiting, otherwise within 1024 sends: messages sent to a consumer that died in between
    /// are lost, as in a pipe's buffer); [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`];
    /// [`ErrorKind::Corrupted`] for an inconsistent index or a consumer owner word no end
    /// writes.
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        if let Some(why) = &self.corrupted {
            return Err(Error::corrupted(why.clone()).on_shared(&self.name));
        }
        if msg.len() > self.view.max_message {
            return Err(
                Error::message_too_large(msg.len(), self.view.max_message, "mpsc ring")
                    .in_op("send")
                    .on_shared(&self.name),
            );
        }
        let ring = self.view.rings[self.index];
        let h = ring.header();
        // SAFETY: the header lives in the mapping `self.segment` keeps alive; atomics only.
        let hdr = unsafe { self.view.header.as_ref() };
        let consumer = &hdr.consumer;
        // A closed consumer at once, a dead one within `CHECK_EVERY` sends: a message into a
        // ring nobody reads any more is `Disconnected`, not `Ok` (the word is on the line the
        // commit's look at the consumer's sleeping flag loads anyway).
        let word = consumer.owner.load(Ordering::Acquire);
        self.checks_due = self.checks_due.wrapping_sub(1);
        if (state_of(word) == STATE_CLOSED || self.checks_due == 0) && self.consumer_gone(word)? {
            return Err(self.fail(Error::disconnected()));
        }
        let cpu = self.cpu;
        // A large message may go back to the ring's start; not on the consumer's CPU, where the
        // ring's whole depth is a batch (the consumer drains it only when this producer gives
        // the CPU up). A small one costs no look at the consumer's CPU.
        let rewind = msg.len() >= REWIND_MIN && !peer::on_cpu(cpu, consumer);
        let mut rounds = Rounds::default();
        let r = loop {
            let mut spin = Spin::new(deadline, rounds.round).cross_cpu_only();
            let mut got = None;
            loop {
                match reserve(&mut self.producer, msg.len(), rewind) {
                    Ok(Some(r)) => {
                        got = Some(r);
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(self.fail(e)),
                }
                if !spin.again(|| peer::on_cpu(cpu, consumer)) {
                    break;
                }
            }
            if let Some(r) = got {
                break r;
            }
            self.wanted = msg.len();
            let word = consumer.owner.load(Ordering::Acquire);
            // The consumer's process is checked (a pidfd poll) after a first sleep, or on
            // non-blocking calls that find nothing as `PollCheck` says, so a quick poll
            // costs no syscall.
            let check = if deadline == Deadline::Now {
                self.polls.due(self.ready.take_timed())
            } else {
                !rounds.first()
            };
            // A word no end writes is `Corrupted`: waiting on, this producer would never see
            // the consumer die.
            if state_of(word) == STATE_CLOSED
                || self.watch.known_dead(consumer, word)
                || self.ready.died(0, consumer, word)
                || (check
                    && match self
                        .watch
                        .dead_or_corrupt((&self.segment, &self.view.header().consumer), word)
                    {
                        Ok(dead) => dead,
                        Err(e) => return Err(self.fail(e)),
                    })
            {
                return Err(self.fail(Error::disconnected()));
            }
            if deadline.has_passed() {
                return Err(self.fail(deadline.expired_error(Blocked::Full)));
            }
            // (A reservation is only a cursor computation: dropping it reserves nothing.)
            let producer = &mut self.producer;
            let r = sleep_flagged(&h.tx.sleeping, &h.rx.wake, rounds.until(deadline), || {
                Ok(producer.reserve(msg.len())?.is_some())
            });
            r.map_err(|e| self.fail(e))?;
            rounds.next();
        };
        // A large copy outlasts the consumer's spin budget: the mark tells a consumer waiting
        // for it to keep looking rather than sleep (a hint only; see `# Waiting`).
        let marked = msg.len() >= MARK_MIN;
        if marked {
            self.mark = self.mark.wrapping_add(2);
            h.tx.writing.store(self.mark, Ordering::Relaxed);
        }
        // SAFETY: the reservation has room for `msg.len()` bytes at `payload`, which nobody
        // else reads until `commit`.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.producer.payload(&r), msg.len())
        };
        self.producer.commit(r, msg.len());
        if marked {
            h.tx.writing.store(0, Ordering::Relaxed);
        }
        // The first producer to see the consumer asleep takes its flag down and wakes it; the
        // others, and this one's next messages, make no system call until the consumer has
        // run and raised the flag again (on a shared CPU it runs only when we yield it). A
        // message committed meanwhile is found by the consumer's look after it raises the flag
        // (SeqCst on both sides), so no wake-up is lost.
        // (Every waiter is woken: a blocked receive, or the consumer's bell thread, possibly
        // still asleep from an async wait that was given up.)
        wake_flagged(&hdr.consumer.sleeping, &hdr.doorbell);
        Ok(())
    }

    fn max_message_size(&self) -> usize {
        self.view.max_message
    }
}

/// Reserves room for a message of `len` bytes in `producer`'s ring: with `rewind` (a message
/// of at least [`REWIND_MIN`] off the consumer's CPU), at the ring's start if the consumer has
/// had back everything there and an eighth of the ring ([`REWIND_KEEP`]) stays free after it;
/// otherwise where the ring stands (`# Where a producer writes`).
fn reserve(producer: &mut Producer, len: usize, rewind: bool) -> Result<Option<ring::Reservation>> {
    if rewind {
        let keep = producer.ring().capacity() / REWIND_KEEP;
        // A local check first: the consumer's index is loaded only where a jump could fit.
        if producer.offset() >= keep + ring::record_size(len) {
            if let Some(r) = producer.reserve_at_start(len, keep)? {
                return Ok(Some(r));
            }
        }
    }
    producer.reserve(len)
}

/// The doorbell: an eventfd that becomes **readable** when a send may succeed (the consumer
/// made room in this producer's ring, or closed or died).
///
/// [`arm`](Readiness::arm) raises this producer's sleeping flag (the doorbell's value, 2,
/// where a blocked send raises 1); the consumer wakes the ring's word only while it is up, so
/// a producer that keeps finding room costs the consumer nothing, and it wakes a doorbell at
/// the first room it gives back, wherever the producer runs (a send blocked on the consumer's
/// CPU waits for its ring to drain; see the module docs). The consumer's process is watched
/// (pidfd), so its death rings at once (before a consumer attached, the bell rings every
/// 50 ms to look).
impl Readiness for MpscProducer {
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
        self.ready.fd(&self.segment)?;
        let ring = self.view.rings[self.index];
        let h = ring.header();
        // SAFETY: the header lives in the mapping `self.segment` keeps alive; atomics only.
        let hdr = unsafe { self.view.header.as_ref() };
        let Some(seen) = flag_and_look(
            peer::on_cpu(self.cpu, &hdr.consumer),
            &h.rx.wake,
            || h.tx.sleeping.store(SLEEPING_ON_BELL, Ordering::SeqCst),
            || h.tx.sleeping.store(0, Ordering::Relaxed),
            |_| self.can_send(),
        ) else {
            return Ok(true);
        };
        let watched = self
            .ready
            .watch(0, &hdr.consumer, &mut self.watch, &self.segment);
        self.ready.arm(seen, !watched);
        Ok(false)
    }

    fn disarm(&self) {
        if self.ready.disarm() {
            self.view.rings[self.index]
                .header()
                .tx
                .sleeping
                .store(0, Ordering::Relaxed);
        }
    }
}

impl MpscProducer {
    /// Whether a send of the last refused length would not wait now: room, or the consumer
    /// closed or is known dead (or the ring is inconsistent: the try reports it).
    fn can_send(&mut self) -> bool {
        if self.corrupted.is_some() {
            return true;
        }
        let consumer = &*self.view.header().consumer;
        let word = consumer.owner.load(Ordering::Acquire);
        let wanted = self.wanted.min(self.view.max_message);
        state_of(word) == STATE_CLOSED
            || self.watch.known_dead(consumer, word)
            || self.ready.died(0, consumer, word)
            || !matches!(self.producer.reserve(wanted), Ok(None))
    }
}

impl Drop for MpscProducer {
    fn drop(&mut self) {
        self.disarm();
        let side = &self.view.rings[self.index].header().tx;
        peer::close(side);
        let hdr = self.view.header();
        hdr.doorbell.fetch_add(1, Ordering::Release);
        futex::wake_all(&hdr.doorbell);
    }
}

impl fmt::Debug for MpscProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscProducer")
            .field("segment", self.segment.kind())
            .field("place", &self.index)
            .finish_non_exhaustive()
    }
}

/// The one consumer of an MPSC segment: receives from every producer, fairly.
///
/// Copying receives come from [`MessageReceiver`] (and
/// [`recv_from_deadline`](MpscConsumer::recv_from_deadline), which also tells the producer's
/// place); [`recv_in_place`](MpscConsumer::recv_in_place) reads a message where it lies in its
/// producer's ring. Both take the same path: one round-robin pass, the same validation.
pub struct MpscConsumer {
    segment: Arc<Segment>,
    name: Arc<str>,
    view: View,
    consumers: Vec<Consumer>,
    watches: Vec<Watch>,
    /// This consumer's presence mark on its place (`peer::claim`), dropped after its close.
    _presence: Option<Presence>,
    /// The place to look at first next time (round-robin).
    next: usize,
    /// Whether a producer was seen attached since the last `Disconnected` (before that, no
    /// producer is not the end: a receive waits for one).
    seen_producer: bool,
    /// When a non-blocking receive that found nothing checks the producers' processes.
    polls: crate::wait::PollCheck,
    corrupted: Option<String>,
    /// The readiness doorbell, on the `doorbell` word; one watched peer per producer place.
    ready: Doorbell,
    /// The CPU this end is pinned to (`u32::MAX`: not pinned), for the spin decision and the
    /// deferred wake-ups.
    cpu: u32,
    /// Per place: the writing mark seen when a wait last kept spinning for marks, and the
    /// mark found stale (up through an extension, [`MARK_SPIN`] or cut short by a busy task,
    /// without a message), ignored until it changes.
    marks: Vec<u32>,
    stale: Vec<u32>,
    /// Waits that slept, and waits that kept spinning for a writing mark ([`MpscConsumer::sleeps`]).
    sleeps: u64,
    kept_spinning: u64,
    /// Whether a release left a send blocked on this CPU asleep, its ring not yet drained
    /// ([`wake_deferred`](MpscConsumer::wake_deferred)).
    deferred: bool,
    /// Whether this consumer woke a producer pinned to its CPU since its last yield before a
    /// sleep: that producer is runnable here, and gets the CPU (one yield) before the
    /// consumer sleeps.
    woke_here: bool,
}

impl MpscConsumer {
    /// Opens the consumer's end of the MPSC in `segment` (one at a time).
    ///
    /// Errors: [`ErrorKind::WrongType`] / [`ErrorKind::Corrupted`] for a segment that is not a
    /// valid MPSC; [`ErrorKind::AlreadyExists`] when a live consumer holds it;
    /// [`ErrorKind::Disconnected`] when a consumer closed it or died with it open.
    pub fn open(segment: impl Into<Arc<Segment>>) -> Result<MpscConsumer> {
        let segment = segment.into();
        let name = segment.shared_name();
        let err = |e: Error| e.in_op("open mpsc consumer").on_shared(&name);
        let view = View::open(&segment).map_err(err)?;
        let side = &view.header().consumer;
        let me = peer::me().map_err(err)?;
        let claim = || peer::claim(&segment, side, me, AttachStep::Attached).map_err(err);
        let mark = match claim()? {
            Ok(mark) => mark,
            Err(found) => {
                // A word no end writes names nobody: `Corrupted`, not "held".
                let dead = Watch::default()
                    .dead_or_corrupt((&segment, side), found)
                    .map_err(err)?;
                let retried = match dead && peer::reclaim(&segment, side, found) {
                    true => claim()?.ok(),
                    false => None,
                };
                let Some(mark) = retried else {
                    let kind = if dead || state_of(found) == STATE_CLOSED {
                        ErrorKind::Disconnected
                    } else {
                        ErrorKind::AlreadyExists
                    };
                    return Err(err(Error::with_note(
                        kind,
                        "the consumer's place is held, closed or its process died; make a new \
                         segment",
                    )));
                };
                mark
            }
        };
        let consumers = view
            .rings
            .iter()
            .map(|r| Consumer::new(*r))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| {
                peer::detach(side);
                err(e)
            })?;
        let n = view.rings.len();
        let watches = (0..n).map(|_| Watch::default()).collect();
        let ready = Doorbell::new(offset_in(&segment, &view.header().doorbell));
        Ok(MpscConsumer {
            segment,
            name,
            view,
            consumers,
            watches,
            _presence: mark,
            next: 0,
            seen_producer: false,
            polls: crate::wait::PollCheck::default(),
            corrupted: None,
            ready,
            cpu: peer::single_cpu(),
            marks: vec![0; n],
            stale: vec![0; n],
            sleeps: 0,
            kept_spinning: 0,
            deferred: false,
            woke_here: false,
        })
    }

    /// The segment the MPSC lives in.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// How many times producers have woken this consumer so far (the segment's doorbell word:
    /// futex wakes and doorbell rings alike, plus one per producer that leaves or is found
    /// dead). A producer wakes the consumer only while it sleeps or waits on its doorbell, so
    /// a stream the consumer keeps up with adds nothing here.
    pub fn doorbell_rings(&self) -> u32 {
        self.view.header().doorbell.load(Ordering::Relaxed)
    }

    /// How many times this consumer's receives slept on the segment's futex so far, one per
    /// slice of a long wait (a sleep a producer ends costs it a `futex(2)` wake, and the
    /// consumer its wake-up latency). Waits through [`Readiness`] are not counted.
    pub fn sleeps(&self) -> u64 {
        self.sleeps
    }

    /// How many of this consumer's waits kept spinning past the spin budget because a
    /// producer on another CPU was copying a large message (its writing mark up; see the
    /// module's "Waiting"). A mark that stays up through a whole extension without a message
    /// (stale, scribbled, or its producer stopped mid-copy) is ignored until it changes.
    pub fn kept_spinning(&self) -> u64 {
        self.kept_spinning
    }

    /// Whether a producer another CPU may run is visibly copying a message into its ring:
    /// its writing mark up (and not the one found stale), attached, not known dead. Notes
    /// the marks seen, for [`note_stale`](MpscConsumer::note_stale).
    fn marks_up(&mut self) -> bool {
        let mut up = false;
        for (i, r) in self.view.rings.iter().enumerate() {
            let side = &r.header().tx;
            let mark = side.writing.load(Ordering::Relaxed);
            self.marks[i] = mark;
            if mark == 0 || mark == self.stale[i] {
                continue;
            }
            let word = side.owner.load(Ordering::Relaxed);
            up |= state_of(word) == STATE_ATTACHED
                && !peer::on_cpu(self.cpu, side)
                && !self.ready.died(i, side, word)
                && !self.watches[i].known_dead(side, word);
        }
        up
    }

    /// After a whole extension without a message: the marks still as they were when it
    /// began are stale, ignored until they change.
    fn note_stale(&mut self) {
        for (i, r) in self.view.rings.iter().enumerate() {
            let mark = r.header().tx.writing.load(Ordering::Relaxed);
            if mark != 0 && mark == self.marks[i] {
                self.stale[i] = mark;
            }
        }
    }

    /// How many producers are attached now (their processes not checked).
    pub fn producers(&self) -> usize {
        self.view
            .rings
            .iter()
            .filter(|r| state_of(r.header().tx.owner.load(Ordering::Acquire)) == STATE_ATTACHED)
            .count()
    }

    fn fail(&mut self, e: Error) -> Error {
        self.wake_deferred();
        if e.kind() == ErrorKind::Corrupted {
            self.corrupted = Some(e.to_string());
        }
        e.in_op("recv").on_shared(&self.name)
    }

    /// One round-robin pass: the first message found, starting after the place served last.
    /// Places whose producer closed or died are given back once drained (`check`: poll the
    /// processes of attached producers, a syscall each). Returns the message and its place, or
    /// whether any producer is still there.
    fn pass(&mut self, check: bool) -> Result<std::result::Result<(usize, ring::Message), bool>> {
        let n = self.consumers.len();
        let mut live = false;
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some(m) = self.consumers[i].peek()? {
                self.next = (i + 1) % n;
                return Ok(Ok((i, m)));
            }
            let ring = self.view.rings[i];
            let side = &ring.header().tx;
            let word = side.owner.load(Ordering::Acquire);
            let gone = match state_of(word) {
                STATE_CLOSED => true,
                ring::STATE_FREE => {
                    if word != 0 {
                        return Err(Error::corrupted(format!(
                            "producer place {i}: owner word {word:#018x} free, yet naming a process"
                        )));
                    }
                    false
                }
                _ => {
                    self.seen_producer |= state_of(word) == STATE_ATTACHED;
                    self.ready.died(i, side, word)
                        || (check
                            && matches!(
                                self.watches[i].status_of((&self.segment, side), word)?,
                                Status::Dead
                            ))
                }
            };
            if gone {
                // Anything committed before the close (or death) is visible now: drain first.
                if let Some(m) = self.consumers[i].peek()? {
                    self.next = (i + 1) % n;
                    return Ok(Ok((i, m)));
                }
                // Drained: repair the tail (a producer killed after a commit but before its
                // tail store leaves it behind) and give the place back.
                ring.header()
                    .tail
                    .store(self.consumers[i].position(), Ordering::Release);
                peer::free_dead(&self.segment, side, word);
                self.seen_producer = true;
            } else if word != 0 {
                live = true;
            }
        }
        Ok(Err(live))
    }

    /// Whether every attached producer is pinned to this end's CPU (spinning for them cannot
    /// pay: none can run while the consumer spins).
    fn producers_on_my_cpu(&self) -> bool {
        peer::all_on_cpu(self.cpu, self.view.rings.iter().map(|r| &*r.header().tx))
    }

    fn next_message(&mut self, deadline: Deadline) -> Result<(usize, ring::Message)> {
        if let Some(why) = &self.corrupted {
            return Err(Error::corrupted(why.clone()).on_shared(&self.name));
        }
        // SAFETY: the header lives in the mapping `self.segment` keeps alive; atomics only.
        let hdr = unsafe { self.view.header.as_ref() };
        let mut rounds = Rounds::default();
        loop {
            let check = if deadline == Deadline::Now {
                self.polls.due(self.ready.take_timed())
            } else {
                !rounds.first()
            };
            let mut spin = Spin::new(deadline, rounds.round).cross_cpu_only();
            let mut first = true;
            // When the spin phase was extended for a writing mark.
            let mut marked: Option<std::time::Instant> = None;
            loop {
                match self.pass(check && first) {
                    Ok(Ok(m)) => return Ok(m),
                    Ok(Err(live)) => {
                        self.wake_deferred();
                        if !live && self.seen_producer {
                            // Said once: the next receive waits for a producer to join, as
                            // before the first (the end of the run is the caller's to decide).
                            self.seen_producer = false;
                            return Err(self.fail(no_producer()));
                        }
                    }
                    Err(e) => return Err(self.fail(e)),
                }
                first = false;
                if spin.again(|| self.producers_on_my_cpu()) {
                    continue;
                }
                // The budget is over: a producer mid-copy on another CPU will commit soon, so
                // keep looking (once per wait, up to MARK_SPIN) rather than sleep and make it
                // pay a wake-up. Only a phase that spins while another CPU serves it extends.
                match marked {
                    None if spin.extensible() && self.marks_up() && spin.extend(MARK_SPIN) => {
                        marked = Some(std::time::Instant::now());
                        self.kept_spinning += 1;
                    }
                    // The extension ended without a message: through the whole of it, or cut
                    // short by a busy task on this CPU (the phase ends, and this wait sleeps
                    // all the same). Either way the marks it began with are stale from now
                    // on, so a mark costs one extension at most, also on a loaded machine;
                    // one cut short by the wait's own deadline is not judged.
                    Some(at) => {
                        if at.elapsed() >= MARK_SPIN || !deadline.has_passed() {
                            self.note_stale();
                        }
                        break;
                    }
                    None => break,
                }
            }
            if deadline.has_passed() {
                return Err(self.fail(deadline.expired_error(Blocked::Empty)));
            }
            // A producer this consumer woke on its CPU fills its ring before the consumer
            // sleeps (one yield), rather than waking it with its first message.
            if std::mem::take(&mut self.woke_here) && self.producers_on_my_cpu() {
                std::thread::yield_now();
                continue;
            }
            self.restore_heads();
            self.sleeps += 1;
            let consumers = &mut self.consumers;
            let r = sleep_flagged(
                &hdr.consumer.sleeping,
                &hdr.doorbell,
                rounds.until(deadline),
                || Ok(consumers.iter_mut().any(|c| !matches!(c.peek(), Ok(None)))),
            );
            r.map_err(|e| self.fail(e))?;
            rounds.next();
        }
    }

    /// Before a wait: puts back this consumer's index in every place where the shared one
    /// says otherwise (a peer scribbled it), waking that place's producer if it waits (its
    /// doorbell wait would otherwise look again only after a second or two). An index left
    /// behind would leave a producer waiting for room while this consumer waits for it. One
    /// shared load per place per wait, none per message.
    fn restore_heads(&self) {
        for (c, r) in self.consumers.iter().zip(&self.view.rings) {
            if c.restore_head() {
                wake_producer(r.header());
            }
        }
    }

    fn release(&mut self, i: usize, m: ring::Message) {
        self.consumers[i].release(m);
        let ring = self.view.rings[i];
        let h = ring.header();
        let flag = h.tx.sleeping.load(Ordering::SeqCst);
        if flag == 0 {
            return;
        }
        // A send blocked on this CPU (flag 1; not a doorbell, 2) is woken once its ring is
        // drained, or when this consumer stops taking messages: woken at once, it would take
        // the CPU from us after a message or two, and its ring would never drain in batches.
        // `tail` is the producer's and only a hint here: a wrong one (scribbled, or left
        // behind by a producer killed before storing it) defers the wake-up to this
        // consumer's next wait, nothing else.
        if flag == SLEEPING_ON_FUTEX && peer::on_cpu(self.cpu, &h.tx) {
            if h.tail.load(Ordering::Relaxed) != self.consumers[i].position() {
                self.deferred = true;
                return;
            }
            self.woke_here |= wake_producer(h);
            return;
        }
        wake_producer(h);
    }

    /// Wakes every producer whose wake-up [`release`](MpscConsumer::release) deferred (any
    /// with its flag up): called wherever this consumer stops taking messages (a look finds
    /// none, so it is about to spin, sleep or return empty-handed; it fails; it arms its
    /// doorbell), so no producer sleeps on room it was not told about.
    fn wake_deferred(&mut self) {
        if std::mem::take(&mut self.deferred) {
            for r in &self.view.rings {
                let h = r.header();
                self.woke_here |= wake_producer(h) && peer::on_cpu(self.cpu, &h.tx);
            }
        }
    }

    /// Receives the next message (fairly across producers) into `buf`; returns
    /// `(place, len)`: the place of the producer that sent it ([`MpscProducer::place`]) first,
    /// then the message's length (note the order: the length comes second, unlike
    /// [`recv_deadline`](MessageReceiver::recv_deadline), which returns the length alone).
    /// Waits and fails as [`recv_deadline`](MessageReceiver::recv_deadline) does.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ipc_shm::prelude::*;
    /// use ipc_shm::{MpscConsumer, MpscOptions, MpscProducer};
    /// let seg = Arc::new(MpscOptions::new().producers(4).capacity(1 << 12).create_memfd("doc")?);
    /// let mut collector = MpscConsumer::open(seg.clone())?;
    /// let _first = MpscProducer::open(seg.clone())?;
    /// let mut worker = MpscProducer::open(seg)?;
    /// worker.send(b"done")?;
    /// let mut buf = [0u8; 64];
    /// let (place, len) = collector.recv_from_deadline(&mut buf, Deadline::Never)?;
    /// assert_eq!((place, &buf[..len]), (worker.place(), &b"done"[..]));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn recv_from_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<(usize, usize)> {
        let m = self.recv_in_place_deadline(deadline)?;
        let place = m.place();
        m.copy_into(buf).map(|len| (place, len))
    }

    /// Takes the next message in place (fairly across producers), waiting for one until
    /// `deadline`: the guard dereferences to the message's bytes in its producer's ring (no
    /// copy), tells that producer's place ([`MpscGuard::place`]), and gives the room back to
    /// the producer when dropped (waking it if it sleeps on a full ring; one blocked in `send`
    /// on this consumer's CPU once its ring is drained or this consumer stops taking
    /// messages: see the module docs).
    ///
    /// The bytes are in memory the producer's process can write: a well-behaved producer
    /// never touches a committed message, but one that misbehaves could change them while you
    /// read, so validate what you parse from them as you would any input (their place and
    /// length are always validated here).
    ///
    /// Waits and fails like [`recv_deadline`](MessageReceiver::recv_deadline), except that no
    /// buffer can be too small.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ipc_core::MessageSender;
    /// use ipc_shm::{MpscConsumer, MpscOptions, MpscProducer};
    ///
    /// let seg = Arc::new(MpscOptions::new().producers(2).capacity(1 << 12).create_memfd("doc")?);
    /// let mut collector = MpscConsumer::open(seg.clone())?;
    /// let mut worker = MpscProducer::open(seg)?;
    /// worker.send(b"job 7 done")?;
    /// let report = collector.recv_in_place()?;
    /// assert_eq!(&*report, b"job 7 done");
    /// assert_eq!(report.place(), worker.place());
    /// drop(report); // the room goes back to the worker
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn recv_in_place_deadline(&mut self, deadline: Deadline) -> Result<MpscGuard<'_>> {
        let (place, message) = self.next_message(deadline)?;
        Ok(MpscGuard {
            consumer: self,
            place,
            message,
        })
    }

    /// [`recv_in_place_deadline`](MpscConsumer::recv_in_place_deadline) waiting as long as it
    /// takes.
    pub fn recv_in_place(&mut self) -> Result<MpscGuard<'_>> {
        self.recv_in_place_deadline(Deadline::Never)
    }

    /// [`recv_in_place_deadline`](MpscConsumer::recv_in_place_deadline) without waiting.
    pub fn try_recv_in_place(&mut self) -> Result<MpscGuard<'_>> {
        self.recv_in_place_deadline(Deadline::Now)
    }

    /// `Ok(())` when a receive would not wait now (a message, or an error such as
    /// `Disconnected`), `WouldBlock` otherwise; takes nothing, and leaves the round-robin
    /// where it was, so the receive that follows starts its pass where this one did.
    #[cfg(feature = "tokio")]
    pub(crate) fn probe(&mut self) -> Result<()> {
        let next = self.next;
        let found = self.next_message(Deadline::Now).map(drop);
        self.next = next;
        found
    }
}

/// The consumer's `Disconnected`: every producer left (or died) and all they sent was
/// received; the note says that this is not the segment's end, and that a receive does not
/// wait for a new producer (it returns this at once until one has joined).
#[cold]
fn no_producer() -> Error {
    Error::disconnected().with_detail(ipc_core::Detail::Note(
        "no producer is attached now and everything sent was received; a new producer may \
         still join: the next receive waits for one (within its deadline)"
            .into(),
    ))
}

/// Wakes the producer of ring `h` (a blocked send, or its bell thread) if its sleeping flag is
/// up, taking the flag down; returns whether it did.
fn wake_producer(h: &ring::Header) -> bool {
    wake_flagged(&h.tx.sleeping, &h.rx.wake)
}

/// A message read in place, from [`MpscConsumer::recv_in_place`]: dereferences to its bytes
/// in the producer's ring and tells the producer's place; dropping it gives the room back to
/// that producer, waking it if it waits on its full ring: at the drop if it waits on its
/// doorbell or runs on another CPU; if it is blocked in `send` on the consumer's CPU, at the
/// drop that empties its ring, or once the consumer stops taking messages (it finds none, a
/// receive fails, it arms its doorbell or is dropped).
pub struct MpscGuard<'a> {
    consumer: &'a mut MpscConsumer,
    place: usize,
    message: ring::Message,
}

impl MpscGuard<'_> {
    /// The place of the producer that sent the message (its [`MpscProducer::place`]).
    pub fn place(&self) -> usize {
        self.place
    }

    /// Copies the message into `buf` and gives the room back, as a copying receive does
    /// (so one can look at [`place`](MpscGuard::place) before choosing to copy); returns its
    /// length.
    ///
    /// Errors: [`ErrorKind::MessageTooLarge`] when `buf` is shorter than the message, which
    /// then stays in its ring, the next one from its place.
    pub fn copy_into(self, buf: &mut [u8]) -> Result<usize> {
        let len = self.message.len();
        if let Some(dst) = buf.get_mut(..len) {
            dst.copy_from_slice(&self);
            return Ok(len);
        }
        let e = Error::message_too_large(len, buf.len(), "receive buffer")
            .in_op("recv")
            .on_shared(&self.consumer.name);
        // Not released: the message stays in its ring, the next from its place.
        std::mem::forget(self);
        Err(e)
    }
}

impl Deref for MpscGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the message is `len` validated bytes inside its place's ring, which the
        // producer does not touch until this guard releases them.
        unsafe { std::slice::from_raw_parts(self.message.ptr(), self.message.len()) }
    }
}

impl Drop for MpscGuard<'_> {
    fn drop(&mut self) {
        self.consumer.release(self.place, self.message);
    }
}

impl fmt::Debug for MpscGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscGuard")
            .field("place", &self.place)
            .field("len", &self.message.len())
            .finish()
    }
}

impl MessageReceiver for MpscConsumer {
    /// Copies the next message into `buf`: round-robin over the producers' rings, one message
    /// from a place before the next, each producer's messages in its order.
    ///
    /// Blocks while every ring is empty: spinning briefly, then sleeping on the segment's
    /// doorbell futex in slices, checking attached producers' processes each slice (a dead
    /// producer's place is drained, then given back).
    ///
    /// Errors: [`ErrorKind::MessageTooLarge`] (the message stays next);
    /// [`ErrorKind::Disconnected`] once a producer was attached and now none is, everything
    /// drained; said once: a new producer may still join, and the next receive waits for one
    /// as the first did (within its deadline); [`ErrorKind::WouldBlock`] /
    /// [`ErrorKind::TimedOut`]; [`ErrorKind::Corrupted`] for an inconsistent ring.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.recv_from_deadline(buf, deadline).map(|(_, n)| n)
    }

    fn max_message_size(&self) -> usize {
        self.view.max_message
    }
}

/// The doorbell: an eventfd that becomes **readable** when a receive may succeed (a producer
/// committed a message, closed or died).
///
/// [`arm`](Readiness::arm) raises the consumer's sleeping flag, the one a blocking receive
/// raises; producers wake the segment's `doorbell` word only while it is up, so while the
/// consumer keeps up there is no system call per message. The attached producers' processes
/// are watched (pidfd, the `ipc-shm-watch` thread): a death rings at once, and the next try
/// drains that producer's place and gives it back. While no producer is attached (or one
/// cannot be watched) the bell rings every 50 ms to look again.
impl Readiness for MpscConsumer {
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
        self.wake_deferred();
        self.restore_heads();
        // SAFETY: the header lives in the mapping `self.segment` keeps alive; atomics only.
        let hdr = unsafe { self.view.header.as_ref() };
        let Some(seen) = flag_and_look(
            self.producers_on_my_cpu(),
            &hdr.doorbell,
            || hdr.consumer.sleeping.store(1, Ordering::SeqCst),
            || hdr.consumer.sleeping.store(0, Ordering::Relaxed),
            |_| self.can_recv(),
        ) else {
            return Ok(true);
        };
        let (mut held, mut watched) = (false, true);
        for i in 0..self.view.rings.len() {
            let side = &self.view.rings[i].header().tx;
            if matches!(
                state_of(side.owner.load(Ordering::Acquire)),
                STATE_ATTACHED | STATE_ATTACHING
            ) {
                held = true;
                watched &= self
                    .ready
                    .watch(i, side, &mut self.watches[i], &self.segment);
            }
        }
        self.ready.arm(seen, !(held && watched));
        Ok(false)
    }

    fn disarm(&self) {
        if self.ready.disarm() {
            self.view
                .header()
                .consumer
                .sleeping
                .store(0, Ordering::Relaxed);
        }
    }
}

impl MpscConsumer {
    /// Whether a receive would not wait now: a message, every producer gone (after one was
    /// seen), or an inconsistent ring (the try reports it). Takes nothing; closed places are
    /// given back on the way, as a receive does.
    fn can_recv(&mut self) -> bool {
        if self.corrupted.is_some() {
            return true;
        }
        // A look only: the round-robin turn stays where the next receive expects it.
        let next = self.next;
        let ready = match self.pass(false) {
            Ok(Ok(_)) | Err(_) => true,
            Ok(Err(live)) => !live && self.seen_producer,
        };
        self.next = next;
        ready
    }
}

impl Drop for MpscConsumer {
    fn drop(&mut self) {
        self.disarm();
        peer::close(&self.view.header().consumer);
        for r in &self.view.rings {
            let h = r.header();
            h.rx.wake.fetch_add(1, Ordering::Release);
            futex::wake_all(&h.rx.wake);
        }
    }
}

impl fmt::Debug for MpscConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscConsumer")
            .field("segment", self.segment.kind())
            .field("places", &self.view.rings.len())
            .finish_non_exhaustive()
    }
}

/// Test support, not part of the API: a producer's join stopped after a step (`0` claimed,
/// `1` prepared, `2` attached and kept open), as a process killed there leaves it (its
/// presence mark kept while this process runs, as a process in the middle of a join holds it).
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// See the module docs.
    pub fn join_until(segment: Arc<Segment>, step: u32) -> Result<()> {
        let stop = match step {
            0 => AttachStep::Claimed,
            1 => AttachStep::Prepared,
            _ => AttachStep::Attached,
        };
        MpscProducer::join(segment, stop).map(std::mem::forget)
    }

    /// Stores `mark` as `producer`'s writing mark, as a producer stopped in the middle of a
    /// large copy leaves it (or as a peer could scribble it); 0 takes it down.
    pub fn set_writing_mark(producer: &MpscProducer, mark: u32) {
        producer.view.rings[producer.index]
            .header()
            .tx
            .writing
            .store(mark, Ordering::Relaxed);
    }
}
