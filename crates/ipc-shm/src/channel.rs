//! The message channel in a segment: [`ChannelOptions`] lays it out, [`Sender`] and
//! [`Receiver`] are its two ends (copying [`MessageSender`]/[`MessageReceiver`], plus zero-copy
//! [`SendLoan`] and [`RecvGuard`]), and the adaptive waiting that makes them block.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, MessageReceiver, MessageSender, PosixName, Result,
};

use crate::bell::{Bell, Direct, SLEEPING_ON_BELL, SLEEPING_ON_FUTEX};
use crate::peer::{self, Status, Watch, state_of};
use crate::ring::{
    self, Consumer, Message, Producer, Reservation, Ring, STATE_ATTACHED, STATE_ATTACHING,
    STATE_CLOSED, Shape, Side,
};
use crate::segment::{Segment, SegmentKind};
use crate::wait::{DEFAULT_SPIN, Fences, MAX_SPIN, PollCheck, WaitPolicy, wake_flagged};
use ipc_core::fd::Interest;
use ipc_core::{Readiness, futex};

/// The default data capacity of a channel: 1 MiB.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// The first and the longest sleep between two checks of the peer's liveness while waiting.
const FIRST_SLICE: Duration = Duration::from_millis(2);
const MAX_SLICE: Duration = Duration::from_millis(50);
/// The longest sleep when the sleeper did not order the waker's message path
/// ([`Fences::before_sleep`]: both ends pinned to this CPU, or no `membarrier`): a wake-up
/// lost to that (only possible if the peer moved to another CPU since it published its pin)
/// costs at most this. A second: past the next timer tick, so arming it costs no timer
/// reprogramming.
const UNCOVERED_SLICE: Duration = Duration::from_secs(1);
/// A sender looks at the receiver's liveness at least once per this many sends (and whenever
/// it has to wait, and whenever the receiver changed): one load while the watcher thread
/// covers the receiver's process, a pidfd poll (a syscall) otherwise.
const CHECK_EVERY: u32 = 1024;

/// What a send above the channel's largest message names as the limit: the option that set it
/// when the channel was made.
const MAX_MESSAGE_SET_BY: &str =
    "the channel's max_message (set at creation: ChannelOptions::max_message or messages)";

/// The shape of a channel: its data capacity (in bytes, or as a number of messages of a
/// largest size), its largest message, and how its ends wait.
///
/// ```
/// use ipc_shm::ChannelOptions;
///
/// let opts = ChannelOptions::new().capacity(1 << 16).max_message(1000);
/// assert!(opts.segment_size() > 1 << 16);
/// let (mut tx, mut rx) = opts.pair()?;
/// # use ipc_shm::{MessageSender, MessageReceiver};
/// tx.send(b"hello")?;
/// let mut buf = [0u8; 1000];
/// let n = rx.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"hello");
/// # Ok::<(), ipc_shm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelOptions {
    capacity: usize,
    max_message: Option<usize>,
    /// Bytes in flight, when sized by messages.
    limit: Option<usize>,
    /// The message count asked for, when sized by messages.
    messages: Option<usize>,
    wait: WaitPolicy,
    spin_for: Duration,
}

impl Default for ChannelOptions {
    fn default() -> ChannelOptions {
        ChannelOptions::new()
    }
}

impl ChannelOptions {
    /// [`DEFAULT_CAPACITY`], messages up to half of it, [`WaitPolicy::Adaptive`] spinning
    /// at most [`DEFAULT_SPIN`].
    pub fn new() -> ChannelOptions {
        ChannelOptions {
            capacity: DEFAULT_CAPACITY,
            max_message: None,
            limit: None,
            messages: None,
            wait: WaitPolicy::Adaptive,
            spin_for: DEFAULT_SPIN,
        }
    }

    /// The data capacity in bytes: a power of two from 64 bytes to 1 GiB. Each message takes 8
    /// bytes of header plus its length rounded up to 8, and a message never wraps around the
    /// end of the ring (the space left before the end is skipped), so a ring of `c` bytes
    /// holds fewer than `c / (8 + s)` messages of `s` bytes; [`messages`](Self::messages)
    /// sizes it by messages instead.
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> ChannelOptions {
        self.capacity = capacity;
        self.limit = None;
        self.messages = None;
        self
    }

    /// Sizes the ring for exactly `n` messages of up to `max_message` bytes in flight: the
    /// sender can always queue `n` of them while the receiver takes none (smaller messages:
    /// at least `n`), and never `n + 1` of the largest size. Sets the largest message too.
    ///
    /// The bytes in flight are capped at `(n + 1) * (8 + s) - 8` (`s` the size rounded up
    /// to 8: the records and the longest space a record can skip at the end of the ring);
    /// the data area is that rounded up to a power of two, so the segment can be up to twice
    /// as large as the messages need.
    ///
    /// ```
    /// use ipc_shm::prelude::*;
    /// use ipc_shm::ChannelOptions;
    ///
    /// let (mut tx, _rx) = ChannelOptions::new().messages(4, 1000).pair()?;
    /// for _ in 0..4 {
    ///     tx.try_send(&[7; 1000])?;
    /// }
    /// assert_eq!(tx.try_send(&[7; 1000]).unwrap_err().kind(), ErrorKind::WouldBlock);
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn messages(mut self, n: usize, max_message: usize) -> ChannelOptions {
        let limit = ring::messages_limit(n, max_message);
        self.messages = Some(n);
        self.max_message = Some(max_message);
        self.limit = Some(limit);
        self.capacity = limit
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .max(ring::MIN_CAPACITY);
        self
    }

    /// How the ends of the channel wait by default (each can change it:
    /// [`Sender::set_wait`], [`Receiver::set_wait`]). Stored in the segment, so ends opened
    /// by other processes follow it too.
    #[must_use]
    pub fn wait(mut self, policy: WaitPolicy) -> ChannelOptions {
        self.wait = policy;
        self
    }

    /// How long an end spins before it sleeps under [`WaitPolicy::Adaptive`] (default
    /// [`DEFAULT_SPIN`]; at most [`MAX_SPIN`], longer is cut to it). Stored in the segment
    /// like [`wait`](Self::wait).
    #[must_use]
    pub fn spin_for(mut self, budget: Duration) -> ChannelOptions {
        self.spin_for = budget.min(MAX_SPIN);
        self
    }

    /// The ring's shape and the ends' wait defaults, as the header stores them.
    fn shape(&self) -> Shape {
        Shape {
            capacity: self.capacity,
            max_message: self.max_message_size(),
            limit: self.limit.unwrap_or(self.capacity),
            wait: self.wait.to_word(),
            spin_ns: spin_word(self.spin_for),
        }
    }

    /// The largest message, at most `capacity / 2 - 8` (the default).
    #[must_use]
    pub fn max_message(mut self, max_message: usize) -> ChannelOptions {
        self.max_message = Some(max_message);
        self
    }

    /// The largest message these options allow.
    pub fn max_message_size(&self) -> usize {
        self.max_message
            .unwrap_or_else(|| ring::max_message_for(self.capacity.max(ring::MIN_CAPACITY)))
    }

    /// The segment size a channel with these options needs: header plus data (`usize::MAX`
    /// for a capacity so large that no segment could hold it).
    pub fn segment_size(&self) -> usize {
        ring::region_size(self.capacity)
    }

    /// Refuses a capacity or maximum that no segment could hold, before one is made for it.
    fn check(&self, op: &'static str) -> Result<()> {
        let shape = self.shape();
        let shape_ok = if self.messages == Some(0) {
            Err("a channel sized by messages holds at least 1 message: `messages(0, ..)`".into())
        } else {
            Ok(())
        };
        shape_ok
            .and_then(|()| {
                ring::check_shape(
                    self.segment_size(),
                    shape.capacity,
                    shape.max_message,
                    shape.limit,
                )
            })
            .map_err(|n| {
                let e = Error::with_note(ErrorKind::InvalidInput, n).in_op(op);
                tracing::debug!(error = %e, "channel options refused");
                e
            })
    }

    /// Writes a fresh channel header into `segment` (which must be zero-filled, writable and
    /// at least [`segment_size`](ChannelOptions::segment_size) bytes).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for a capacity that is not a power of two in range,
    /// a maximum above half the capacity, a message count below 1, or a segment too small or
    /// read-only;
    /// [`ErrorKind::AlreadyExists`] if the segment already holds a channel.
    pub fn init(&self, segment: &Segment) -> Result<()> {
        if !segment.is_writable() {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                "the segment is mapped read-only",
            )
            .in_op("init channel")
            .on(segment.kind()));
        }
        let base = std::ptr::NonNull::new(segment.as_ptr()).expect("mapping is non-null");
        // SAFETY: the mapping is page-aligned, writable and `len` bytes long; a fresh segment is
        // not in use by anyone else yet (its creator is the caller).
        unsafe { Ring::init_with(base, segment.len(), self.shape()) }
            .map_err(|e| e.in_op("init channel").on(segment.kind()))?;
        tracing::trace!(segment = %segment.kind(), capacity = self.capacity, "initialised channel");
        Ok(())
    }

    /// Creates the POSIX segment `name` (exclusively, mode `0o600`) sized for these options and
    /// initialises a channel in it. Open its ends with [`Sender::open`] / [`Receiver::open`]
    /// on [`Segment::open`] of the same name, here or in another process.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for options [`init`](ChannelOptions::init) refuses
    /// (checked before the segment is made); those of [`Segment::create`].
    pub fn create_posix(&self, name: impl TryInto<PosixName, Error = Error>) -> Result<Segment> {
        let name = name.try_into()?;
        self.check("create channel")
            .map_err(|e| e.on(SegmentKind::Posix(name.clone())))?;
        Segment::create_then(&name, self.segment_size(), crate::DEFAULT_MODE, |seg| {
            self.init(seg)
        })
    }

    /// Creates a sealed memfd segment sized for these options and initialises a channel in
    /// it; hand it to another process by inheritance or [`Segment::send_fd`].
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for options [`init`](ChannelOptions::init) refuses
    /// (checked before the segment is made); those of [`Segment::memfd`].
    pub fn create_memfd(&self, name: &str) -> Result<Segment> {
        self.check("create channel").map_err(|e| {
            e.on(SegmentKind::Memfd {
                name: Some(name.to_owned()),
            })
        })?;
        let seg = Segment::memfd(name, self.segment_size())?;
        self.init(&seg)?;
        Ok(seg)
    }

    /// Both ends of a new channel in a memfd segment, in this process (for threads, or to
    /// hand one end to a child with [`Sender::detach`] / [`Receiver::detach`]).
    pub fn pair(&self) -> Result<(Sender, Receiver)> {
        let seg = Arc::new(self.create_memfd("ipc-shm channel")?);
        Ok((Sender::open(seg.clone())?, Receiver::open(seg)?))
    }
}

/// A spin budget as the header stores it: nanoseconds, 0 meaning the default (so a zeroed
/// header spins [`DEFAULT_SPIN`]); a zero budget is stored as 1 ns.
fn spin_word(budget: Duration) -> u32 {
    u32::try_from(budget.as_nanos()).unwrap_or(u32::MAX).max(1)
}

/// The spin budget a header word names.
fn spin_of(word: u32) -> Duration {
    if word == 0 {
        DEFAULT_SPIN
    } else {
        Duration::from_nanos(u64::from(word))
    }
}

/// State both ends share: the segment (kept mapped), the ring view, the peer watch.
struct End {
    segment: Arc<Segment>,
    /// The segment's name, formatted once at open: errors name it by taking a reference
    /// count, so the expected ones (would-block, timed out, disconnected) allocate nothing.
    name: Arc<str>,
    /// Set once shared state was found inconsistent: every later call fails the same way.
    corrupted: Option<String>,
    watch: Watch,
    /// This end's presence mark on its block (`peer::claim`), held from before its claim
    /// until after its last store there: a field, so it is dropped after `Drop::drop` closes.
    presence: Option<ipc_core::process::Presence>,
    my_cpu: u32,
    /// When a poll that found nothing checks the peer's process.
    polls: PollCheck,
    /// The last doorbell wait was armed with the peer not watched (no pidfd: a peer in another
    /// PID namespace): the next poll checks it ([`poll_due`](End::poll_due)).
    unwatched: bool,
    /// How blocking calls wait, and the spin budget of [`WaitPolicy::Adaptive`].
    policy: WaitPolicy,
    spin_for: Duration,
    /// Whether the message path may skip its full fence (see [`Fences`]).
    fences: Fences,
    /// The watcher registration for the peer's current process (the identity part of its
    /// owner word, and the PID namespace it published): while it holds, a sleep needs no
    /// timeout to notice the peer's death.
    registration: Option<(u64, u64, crate::monitor::Registration)>,
    /// The doorbell a poll loop or async runtime waits on, made at the first
    /// [`Readiness::readiness_fd`].
    bell: Option<Bell>,
    /// The peer's doorbell, fetched to ring it directly (`bell.rs`).
    direct: Direct,
}

impl End {
    fn open(segment: Arc<Segment>) -> Result<(End, Ring)> {
        let base = std::ptr::NonNull::new(segment.as_ptr()).expect("mapping is non-null");
        if !segment.is_writable() {
            return Err(Error::with_note(
                ErrorKind::PermissionDenied,
                "a channel end needs a writable mapping",
            )
            .in_op("open channel")
            .on(segment.kind()));
        }
        // SAFETY: the mapping is page-aligned, `len` bytes, and stays mapped while `End` holds
        // the `Arc`; every access through the ring is atomic or follows its protocol.
        let ring = unsafe { Ring::open(base, segment.len()) }
            .map_err(|e| e.in_op("open channel").on(segment.kind()))?;
        let meta = &ring.header().meta;
        let word = meta.wait.load(Ordering::Relaxed);
        let policy = WaitPolicy::from_word(word).ok_or_else(|| {
            Error::corrupted(format!(
                "wait policy {word} in the header is none this library writes"
            ))
            .in_op("open channel")
            .on(segment.kind())
        })?;
        let spin_for = spin_of(meta.spin_ns.load(Ordering::Relaxed));
        Ok((
            End {
                name: segment.shared_name(),
                corrupted: None,
                watch: Watch::default(),
                presence: None,
                my_cpu: peer::single_cpu(),
                polls: PollCheck::default(),
                unwatched: false,
                policy,
                spin_for,
                fences: Fences::get(),
                registration: None,
                bell: None,
                direct: Direct::default(),
                segment,
            },
            ring,
        ))
    }

    fn check(&self) -> Result<()> {
        match &self.corrupted {
            None => Ok(()),
            Some(why) => Err(Error::corrupted(why.clone()).on_shared(&self.name)),
        }
    }

    /// Records a corruption error (named after the segment) and returns it.
    fn fail(&mut self, e: Error) -> Error {
        if e.kind() == ErrorKind::Corrupted {
            let why = match e.detail() {
                ipc_core::Detail::Note(n) => n.to_string(),
                _ => e.to_string(),
            };
            self.corrupted = Some(why);
        }
        let e = e.on_shared(&self.name);
        if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            tracing::debug!(error = %e, "channel error");
        }
        e
    }

    /// Whether the peer is gone, checked while waiting for it. Its published state is read
    /// every time (one load), and the watcher thread's verdict on its process (one load);
    /// its process itself (a pidfd poll, a syscall) only when `syscall` says so (after a
    /// first sleep came back with nothing to do, or [`poll_due`](End::poll_due)) and the
    /// watcher does not cover it. So a hand-off that needs no sleep costs no syscall.
    fn peer_gone(&mut self, peer: &Side, syscall: bool) -> Result<bool> {
        let owner = peer.owner.load(Ordering::Acquire);
        if state_of(owner) == STATE_CLOSED
            || self.watched_died(peer)
            || self.watch.known_dead(peer, owner)
        {
            return Ok(true);
        }
        if !syscall || self.covers(peer, owner) {
            return Ok(false);
        }
        Ok(matches!(
            self.watch.status((&self.segment, peer))?,
            Status::Closed | Status::Dead
        ))
    }

    /// Whether a poll that found nothing should check the peer's process now ([`PollCheck`]).
    fn poll_due(&mut self) -> bool {
        self.polls.due(std::mem::take(&mut self.unwatched))
    }

    /// Whether the watcher thread covers the process `owner` names (attached) in `peer`: its
    /// death then shows in [`watched_died`](End::watched_died) without a syscall.
    fn covers(&self, peer: &Side, owner: u64) -> bool {
        state_of(owner) == STATE_ATTACHED && self.registered(peer, owner)
    }

    /// Whether the watcher registration is for the process `owner` names in `peer` (its
    /// identity and the PID namespace it published).
    fn registered(&self, peer: &Side, owner: u64) -> bool {
        matches!(&self.registration, Some((k, ns, _))
            if *k == peer::key_of(owner) && *ns == peer::published_ns(peer))
    }

    /// Whether both ends are pinned to this very CPU: then the sleeping flag protocol needs
    /// no barrier between them (one CPU sees its own accesses in order).
    fn same_cpu(&self, peer: &Side) -> bool {
        peer::on_cpu(self.my_cpu, peer)
    }

    /// Whether the watcher thread saw the peer's current process die (one load, no syscall).
    fn watched_died(&self, peer: &Side) -> bool {
        match &self.registration {
            Some((_, _, r)) => {
                r.died() && self.registered(peer, peer.owner.load(Ordering::Acquire))
            }
            None => false,
        }
    }

    /// Whether the watcher thread covers `peer`'s current process, registering it if needed:
    /// then a sleep can wait without a timeout, because the peer's death wakes it (its wake
    /// word, at `word` in the segment, is bumped). `false` when there is no attached peer or
    /// it cannot be watched; sleeps then wake up now and then to check.
    fn armed(&mut self, peer: &Side, word: usize) -> bool {
        let owner = peer.owner.load(Ordering::Acquire);
        let key = peer::key_of(owner);
        if self.covers(peer, owner) {
            return true;
        }
        self.registration = None;
        if !matches!(self.watch.follow((&self.segment, peer)), Ok(Status::Alive))
            || self.watch.key() != Some(key)
        {
            return false;
        }
        let Some(pidfd) = self.watch.pidfd() else {
            return false;
        };
        match crate::monitor::watch(pidfd, self.segment.clone(), word) {
            Ok(r) => {
                self.registration = Some((key, peer::published_ns(peer), r));
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch the peer; sleeping in slices");
                false
            }
        }
    }

    /// The doorbell, made at the first call; `offset` is the peer's wake word.
    fn bell(&mut self, offset: usize) -> Result<&Bell> {
        if self.bell.is_none() {
            self.bell =
                Some(Bell::new(self.segment.clone(), offset).map_err(|e| e.on_shared(&self.name))?);
        }
        Ok(self.bell.as_ref().expect("made above"))
    }

    /// [`Readiness::arm`] for either end: spins first when that can pay (as
    /// [`wait_for`](End::wait_for) does), then raises `me`'s sleeping flag (so the peer's next
    /// hand-off rings), then checks `ready` once more (the flag, a full fence, the check: the
    /// peer either sees the flag or we see its change). Not ready: the bell thread sleeps on
    /// the peer's word in our place.
    fn arm_bell(
        &mut self,
        (me, peer): (&Side, &Side),
        peer_wake: usize,
        mut ready: impl FnMut() -> bool,
    ) -> Result<bool> {
        let flag = {
            let me_key = peer::key_of(me.owner.load(Ordering::Relaxed));
            match self.bell(peer_wake)?.publish(me, me_key) {
                true => SLEEPING_ON_BELL,
                false => SLEEPING_ON_FUTEX,
            }
        };
        // As the blocking forms do: while the peer runs on another CPU, a hand-off seen
        // while spinning (at most the spin budget) costs no ring and no sleep.
        if self.policy != WaitPolicy::Sleep
            && self.should_spin(peer)
            && spin(self.spin_for, || Ok(ready().then_some(())))?.is_some()
        {
            return Ok(true);
        }
        let word = peer.wake.load(Ordering::Acquire);
        me.sleeping.store(flag, Ordering::SeqCst);
        let covered = Fences::before_sleep(self.same_cpu(peer));
        if ready()
            || state_of(peer.owner.load(Ordering::Acquire)) == STATE_CLOSED
            || self.watched_died(peer)
        {
            me.sleeping.store(0, Ordering::Relaxed);
            return Ok(true);
        }
        let watched = self.armed(peer, peer_wake) && covered;
        self.unwatched = !watched;
        self.bell.as_ref().expect("made above").arm(word, !watched);
        Ok(false)
    }

    /// [`wake_peer`] from the hand-off paths (commit, release), right after a commit or release
    /// stored with release ordering only: a peer waiting on a doorbell
    /// it published is rung directly when this end could fetch it (`bell.rs`: [`Direct`]);
    /// otherwise, and for every other sleeper, the futex wake.
    fn wake_peer(&mut self, me: &Side, peer: &Side) {
        // Orders that store before the load of the peer's flag: a compiler fence while the
        // sleeper's `membarrier` covers this process, a full fence otherwise (`Fences`).
        self.fences.after_publish();
        if peer.sleeping.load(Ordering::Relaxed) == 0 {
            return;
        }
        match peer.sleeping.swap(0, Ordering::SeqCst) {
            0 => {}
            SLEEPING_ON_BELL => {
                let key = peer::key_of(peer.owner.load(Ordering::Acquire));
                let pidfd = match self.watch.key() == Some(key) {
                    true => self.watch.pidfd().map(|fd| fd.as_fd()),
                    false => None,
                };
                if self.direct.ring(peer, key, pidfd) {
                    // Counted as a ring; no FUTEX_WAKE: the eventfd woke the waiter.
                    me.wake.fetch_add(1, Ordering::Release);
                } else {
                    wake_word(me);
                }
            }
            _ => wake_word(me),
        }
    }

    /// [`Readiness::disarm`] for either end (`drain`: the eventfd is drained; not for
    /// [`Readiness::disarm_edge_triggered`]).
    fn disarm_bell(&self, me: &Side, drain: bool) {
        if let Some(bell) = &self.bell {
            bell.disarm(drain);
            me.sleeping.store(0, Ordering::Relaxed);
        }
    }

    /// Whether spinning for `peer` can pay: more than one CPU, the peer attached and awake, and
    /// not pinned to the very CPU this end is pinned to.
    fn should_spin(&self, peer: &Side) -> bool {
        crate::sys::online_cpus() > 1
            && state_of(peer.owner.load(Ordering::Relaxed)) == STATE_ATTACHED
            && peer.sleeping.load(Ordering::Relaxed) == 0
            && !self.same_cpu(peer)
    }

    /// The one wait loop of both ends: waits until `take` gets what this end waits for (room,
    /// for the sender: `blocked` is [`Blocked::Full`]; a message, for the receiver:
    /// [`Blocked::Empty`]), the peer is gone, or `deadline` passes.
    ///
    /// Under [`WaitPolicy::Adaptive`], spins first when that can pay
    /// ([`should_spin`](End::should_spin)), then sleeps on the peer's wake word (at
    /// `peer_wake` in the segment, bumped by the peer or by the watcher thread when the peer
    /// dies): in slices of up to a second when the watcher covers the peer (a lost wake-up
    /// costs that), in growing slices of up to 50 ms otherwise. [`WaitPolicy::Sleep`] skips
    /// the spin; [`WaitPolicy::Spin`] never sleeps ([`spin_until`](End::spin_until)). `me`
    /// and `peer` are this end's and the peer's [`Side`].
    ///
    /// Generic over `take` and `#[inline]`, so each end gets its own copy with its check
    /// inlined: no indirect call, no allocation, and no syscall unless it has to sleep or
    /// check the peer's process.
    #[inline]
    fn wait_for<T>(
        &mut self,
        (me, peer): (&Side, &Side),
        peer_wake: usize,
        blocked: Blocked,
        deadline: Deadline,
        mut take: impl FnMut(Look) -> Result<Option<T>>,
    ) -> Result<T> {
        WAITED.set(true);
        if deadline != Deadline::Now {
            match self.policy {
                WaitPolicy::Spin => {
                    return self.spin_until(peer, peer_wake, blocked, deadline, take);
                }
                WaitPolicy::Adaptive if self.should_spin(peer) => {
                    if let Some(got) = spin(self.spin_for, || take(Look::Quick))? {
                        return Ok(got);
                    }
                }
                _ => {}
            }
        }
        let mut slice = FIRST_SLICE;
        let mut round = 0u32;
        loop {
            if let Some(got) = take(Look::Thorough)? {
                return Ok(got);
            }
            let syscall = if deadline == Deadline::Now {
                self.poll_due()
            } else {
                round > 0
            };
            if let Some(got) = self.wait_ends(peer, syscall, blocked, deadline, &mut take)? {
                return Ok(got);
            }
            // Watched, the peer's death wakes this sleep; still, a second at most: a wake-up
            // that never comes (a hostile peer cleared this end's sleeping flag, or put back
            // an index so that both ends wait) then costs a second, not forever.
            let until = if self.armed(peer, peer_wake) {
                deadline.min(Deadline::after(UNCOVERED_SLICE))
            } else {
                deadline.min(Deadline::after(slice))
            };
            let end = &*self;
            sleep(me, peer, until, end.same_cpu(peer), || {
                Ok(take(Look::Thorough)?.is_some() || end.watched_died(peer))
            })?;
            slice = (slice * 2).min(MAX_SLICE);
            round = round.saturating_add(1);
        }
    }

    /// After a look that found nothing: whether the wait ends here. The peer gone
    /// ([`peer_gone`](End::peer_gone), `syscall` as there): a receiver drains first
    /// (everything committed before the close or death is visible now: the state was read
    /// with acquire, or the process is gone), a sender has nobody to send to
    /// ([`ErrorKind::Disconnected`]). Or `deadline` passed. `Ok(None)`: wait on.
    fn wait_ends<T>(
        &mut self,
        peer: &Side,
        syscall: bool,
        blocked: Blocked,
        deadline: Deadline,
        take: &mut impl FnMut(Look) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        if self.peer_gone(peer, syscall)? {
            if blocked == Blocked::Empty {
                if let Some(got) = take(Look::Thorough)? {
                    return Ok(Some(got));
                }
            }
            return Err(Error::disconnected());
        }
        if deadline.has_passed() {
            return Err(deadline.expired_error(blocked));
        }
        Ok(None)
    }

    /// [`WaitPolicy::Spin`]'s wait: polls `take` until it gets something, the peer is gone
    /// (its state, the watcher's verdict, or a pidfd poll at most once per [`POLL_CHECK`](crate::wait::POLL_CHECK)
    /// while the watcher does not cover it), or `deadline` passes. Never sleeps, so nobody
    /// needs to wake it.
    fn spin_until<T>(
        &mut self,
        peer: &Side,
        peer_wake: usize,
        blocked: Blocked,
        deadline: Deadline,
        mut take: impl FnMut(Look) -> Result<Option<T>>,
    ) -> Result<T> {
        loop {
            for _ in 0..63 {
                if let Some(got) = take(Look::Quick)? {
                    return Ok(got);
                }
                std::hint::spin_loop();
            }
            // Never sleeping, this end looks thoroughly now and then instead: so that a
            // hostile peer cannot leave both ends waiting on each other (see `Look`).
            if let Some(got) = take(Look::Thorough)? {
                return Ok(got);
            }
            // Register the peer's process with the watcher (a load once it is): its death
            // is then seen without a syscall.
            let _ = self.armed(peer, peer_wake);
            let syscall = self.poll_due();
            if let Some(got) = self.wait_ends(peer, syscall, blocked, deadline, &mut take)? {
                return Ok(got);
            }
        }
    }
}

/// How closely a waiting end looks for what it waits for, each time [`End::wait_for`] calls
/// its `take`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    /// A spin's look, made every few nanoseconds: what the message path needs, nothing more.
    Quick,
    /// The look before a sleep, within one, and every 64th of a spin that never sleeps: also
    /// what a hostile peer may have hidden (a scribbled `tail` hint, an index of this end put
    /// back), so that the two ends never both wait on each other. A receiver's costs a few
    /// loads and compares more, kept off the spin (`Consumer::check_hint`).
    Thorough,
}

thread_local! {
    /// Whether this thread entered a channel wait (either end, any channel) since its last
    /// send: a send after a wait is taken as one a consumer waits for ([`Sender::publish`]).
    static WAITED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Spins until `take` gets something or `budget` passes. The clock is read only after a
/// first burst of checks, so a quick hand-off costs no clock read.
#[inline]
fn spin<T>(budget: Duration, mut take: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
    for _ in 0..256 {
        if let Some(got) = take()? {
            return Ok(Some(got));
        }
        std::hint::spin_loop();
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if let Some(got) = take()? {
                return Ok(Some(got));
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= budget {
            return Ok(None);
        }
    }
}

/// Wakes the peer sleeping on our side's wake word, if its flag says it sleeps.
///
/// The first waker takes the flag down (a swap, made only once the plain load has seen it
/// up, so the per-message path stays one load): one wake-up per sleep, however many messages
/// are committed before the sleeper runs again. The sleeper wakes from that one (its word
/// changed) and raises the flag anew before it sleeps again.
fn wake_peer(me: &Side, peer: &Side) {
    // SeqCst: ordered after our SeqCst store of the index (or state) that the peer waits for.
    wake_flagged(&peer.sleeping, &me.wake);
}

/// Bumps `me`'s wake word and wakes every waiter on it: not one, since besides the peer's
/// sleeper there is its bell thread, parked on the word (the same one system call either
/// way).
fn wake_word(me: &Side) {
    me.wake.fetch_add(1, Ordering::Release);
    futex::wake_all(&me.wake);
}

/// Sleeps until `peer` bumps its wake word or the slice ends, unless `ready` holds once our
/// sleeping flag is up (the flag, then [`Fences::before_sleep`], then the check: a waker either
/// sees the flag or we see its change, so no wake-up is lost). `same_cpu`: both ends are
/// pinned to this CPU, so the barrier is skipped and the sleep bounded instead.
fn sleep(
    me: &Side,
    peer: &Side,
    until: Deadline,
    same_cpu: bool,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let word = peer.wake.load(Ordering::Acquire);
    me.sleeping.store(1, Ordering::SeqCst);
    let until = if Fences::before_sleep(same_cpu) {
        until
    } else {
        until.min(Deadline::after(UNCOVERED_SLICE))
    };
    let r = match ready() {
        Ok(false) if state_of(peer.owner.load(Ordering::Relaxed)) != STATE_CLOSED => {
            match futex::wait(&peer.wake, word, until) {
                // Woken, the word changed, or the time is up: the caller looks again.
                Ok(()) => Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    me.sleeping.store(0, Ordering::Relaxed);
    r
}

/// The sending end of a channel in a shared memory segment.
///
/// One process (one `Sender`) at a time: [`open`](Sender::open) claims the producer's place
/// and dropping the sender closes it for good (the receiver drains what was sent, then sees
/// [`ErrorKind::Disconnected`]). [`detach`](Sender::detach) gives the place up without closing,
/// for another process to open.
///
/// Copying sends come from [`MessageSender`]; [`loan`](Sender::loan) writes a message in place.
pub struct Sender {
    end: End,
    producer: Producer,
    sends_since_check: u32,
    /// The receiver's owner word when its process was last checked.
    peer_owner: u64,
    /// The length of the last message that found no room: what [`Readiness::arm`] waits for.
    wanted: usize,
}

impl Sender {
    /// Opens the producer's end of the channel in `segment`.
    ///
    /// Validates the header (magic, version, capacity against the segment's real size) and
    /// claims the producer's place: one compare-and-swap of the end's owner word from free to
    /// "attaching, this process" (pid and start time), so the claim names its owner from the
    /// first instant and the receiver can tell if it dies at any step. Does not block.
    ///
    /// A process killed while opening an end (claimed, not yet attached) leaves nothing that
    /// needs it: its peer sees it as dead ([`ErrorKind::Disconnected`]), and the next `open`
    /// of that end takes its place over.
    ///
    /// Errors: [`ErrorKind::WrongType`] if the segment holds no channel or another layout
    /// version, [`ErrorKind::Corrupted`] for an inconsistent header or owner word,
    /// [`ErrorKind::AlreadyExists`] if a live process has the producer's end attached or is
    /// opening it (the error names its pid), [`ErrorKind::Disconnected`] if the producer's end
    /// was closed before or its process died without closing it (named by pid: its index may
    /// lag what it committed, so nobody can take its place; make a new channel),
    /// [`ErrorKind::Unsupported`] if the holder's liveness cannot be checked (no `/proc`).
    pub fn open(segment: impl Into<Arc<Segment>>) -> Result<Sender> {
        let (mut end, ring) = End::open(segment.into())?;
        let h = ring.header();
        end.presence = claim(&h.tx, &end, "sender")?;
        let producer = match Producer::new(ring) {
            Ok(p) => p,
            Err(e) => {
                peer::detach(&h.tx);
                return Err(e.in_op("open sender").on_shared(&end.name));
            }
        };
        // A receiver asleep may be watching the previous producer: make it look again.
        wake_peer(&h.tx, &h.rx);
        tracing::trace!(segment = %end.segment.kind(), "opened channel sender");
        Ok(Sender {
            end,
            producer,
            sends_since_check: CHECK_EVERY,
            peer_owner: u64::MAX,
            wanted: 0,
        })
    }

    /// The segment the channel lives in.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.end.segment
    }

    /// The data capacity of the ring.
    pub fn capacity(&self) -> usize {
        self.producer.ring().capacity()
    }

    /// Gives up the producer's place without closing the channel, so that another process can
    /// [`open`](Sender::open) it (for example a child that inherited the segment). Messages
    /// already sent stay queued. Returns the segment.
    pub fn detach(self) -> Arc<Segment> {
        let this = std::mem::ManuallyDrop::new(self);
        let h = this.producer.ring().header();
        peer::detach(&h.tx);
        wake_peer(&h.tx, &h.rx);
        // SAFETY: `this` is never used or dropped again; the fields are moved out once.
        let end = unsafe { std::ptr::read(&this.end) };
        end.segment
    }

    /// The receiver's owner word (one load).
    #[inline]
    fn receiver_word(&self) -> u64 {
        self.producer
            .ring()
            .header()
            .rx
            .owner
            .load(Ordering::Relaxed)
    }

    /// The receiver's state, checked cheaply: its published state on every call, its process
    /// when it changed or every [`CHECK_EVERY`] calls, or when `force`: the watcher thread's
    /// verdict (one load) once it covers the process, a pidfd poll (a syscall) until then.
    fn receiver_gone(&mut self, force: bool) -> Result<bool> {
        let word = self.receiver_word();
        if state_of(word) == STATE_CLOSED {
            return Ok(true);
        }
        self.sends_since_check += 1;
        if !force && word == self.peer_owner && self.sends_since_check < CHECK_EVERY {
            return Ok(false);
        }
        self.sends_since_check = 0;
        self.peer_owner = word;
        let rx = &self.producer.ring().header().rx;
        let gone = if self.end.armed(rx, ring::RX_WAKE) {
            self.end.watched_died(rx)
        } else {
            matches!(
                self.end.watch.status_of((&self.end.segment, rx), word)?,
                Status::Closed | Status::Dead
            )
        };
        if gone {
            // Look again next time (the watch remembers the death: no syscall), so every
            // later send says so too, not only the first.
            self.peer_owner = u64::MAX;
        }
        Ok(gone)
    }

    /// The message path's first try, inlined: [`reserve`](Sender::reserve) when nothing needs
    /// more than loads of this end's own state and the receiver's owner word: the channel not
    /// corrupted, `len` within the maximum, the receiver the same process as at the last check
    /// and not closed, no periodic check due, room by the cached consumer index. Changes
    /// nothing unless it reserves (then it counts the send as `receiver_gone` would); `None`
    /// sends the caller down `reserve`, which does every check again and reports.
    #[inline]
    fn reserve_fast(&mut self, len: usize) -> Option<Reservation> {
        if self.end.corrupted.is_some()
            || len > self.producer.ring().max_message()
            || self.sends_since_check + 1 >= CHECK_EVERY
        {
            return None;
        }
        let word = self.receiver_word();
        if word != self.peer_owner || state_of(word) == STATE_CLOSED {
            return None;
        }
        let r = self.producer.reserve_cached(len)?;
        self.sends_since_check += 1;
        Some(r)
    }

    /// [`reserve`](Sender::reserve) out of line and marked cold, for the copying send: its
    /// inlined first try then keeps the message path's registers and layout to itself.
    #[cold]
    #[inline(never)]
    fn reserve_checked(&mut self, len: usize, deadline: Deadline) -> Result<Reservation> {
        self.reserve(len, deadline)
    }

    fn reserve(&mut self, len: usize, deadline: Deadline) -> Result<Reservation> {
        self.end.check()?;
        let max = self.producer.ring().max_message();
        if len > max {
            return Err(Error::message_too_large(len, max, MAX_MESSAGE_SET_BY)
                .in_op("send")
                .on_shared(&self.end.name));
        }
        match self.receiver_gone(false) {
            Ok(false) => {}
            Ok(true) => {
                return Err(Error::disconnected()
                    .in_op("send")
                    .on_shared(&self.end.name));
            }
            Err(e) => return Err(self.end.fail(e)),
        }
        match self.producer.reserve(len) {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => self.wanted = len,
            Err(e) => return Err(self.end.fail(e)),
        }
        let ring = *self.producer.ring();
        let h = ring.header();
        let producer = &mut self.producer;
        let waited = self.end.wait_for(
            (&h.tx, &h.rx),
            ring::RX_WAKE,
            Blocked::Full,
            deadline,
            |_| producer.reserve(len),
        );
        waited.map_err(|e| {
            if e.kind() == ErrorKind::Disconnected {
                // Found gone while waiting: every later send checks again (and says so).
                self.peer_owner = u64::MAX;
            }
            self.end.fail(e.in_op("send"))
        })
    }

    fn publish(&mut self, r: Reservation, len: usize) {
        // A message sent after this thread waited (a reply, or the first after a pause) is
        // likely awaited by a consumer on another CPU: hand its lines over (`commit_demoted`).
        // One sent in a stream, without a wait since the last, is not.
        if WAITED.get() && !self.end.same_cpu(&self.producer.ring().header().rx) {
            WAITED.set(false);
            self.producer.commit_demoted(r, len, Ordering::Release);
        } else {
            self.producer.commit_ordered(r, len, Ordering::Release);
        }
        let h = self.producer.ring().header();
        self.end.wake_peer(&h.tx, &h.rx);
    }

    /// Loans room for a message of up to `len` bytes, waiting for room until `deadline`.
    ///
    /// Write the message into the loan (it dereferences to `len` bytes of the ring, holding
    /// stale data) and [`commit`](SendLoan::commit) it; dropping the loan uncommitted sends
    /// nothing. The bytes go straight into shared memory: no copy at all.
    ///
    /// Waits like [`send_deadline`](MessageSender::send_deadline); errors are the same.
    pub fn loan_deadline(&mut self, len: usize, deadline: Deadline) -> Result<SendLoan<'_>> {
        let r = self.reserve(len, deadline)?;
        Ok(SendLoan {
            sender: self,
            reservation: Some(r),
        })
    }

    /// [`loan_deadline`](Sender::loan_deadline) waiting as long as it takes.
    pub fn loan(&mut self, len: usize) -> Result<SendLoan<'_>> {
        self.loan_deadline(len, Deadline::Never)
    }

    /// [`loan_deadline`](Sender::loan_deadline) without waiting: [`ErrorKind::WouldBlock`] if
    /// the ring has no room now.
    pub fn try_loan(&mut self, len: usize) -> Result<SendLoan<'_>> {
        self.loan_deadline(len, Deadline::Now)
    }

    /// Whether the receiver has taken every message sent so far.
    pub fn is_drained(&mut self) -> Result<bool> {
        self.end.check()?;
        self.producer.is_drained().map_err(|e| self.end.fail(e))
    }

    /// Where the receiver is now: not attached yet, attached and alive, closed, or dead
    /// (its process checked as a wait checks it: by pidfd, or by its presence mark when it
    /// runs in another PID namespace). For a sender that must not drop
    /// a named channel (`remove_on_drop`) before its receiver has opened it: poll this, or
    /// wait with [`is_drained`](Sender::is_drained) for the messages to be taken.
    ///
    /// Errors: [`ErrorKind::Corrupted`] for an owner word no end writes.
    pub fn peer(&mut self) -> Result<Peer> {
        self.end.check()?;
        let h = self.producer.ring().header();
        let status = self.end.watch.status((&self.end.segment, &h.rx));
        status.map(Peer::from).map_err(|e| self.end.fail(e))
    }
}

/// Where the other end of a channel is ([`Sender::peer`], [`Receiver::peer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// No process has opened it (yet, or since the last one detached).
    NotYet,
    /// A process is opening it and runs.
    Attaching,
    /// Open in a process that runs.
    Attached,
    /// Closed (dropped): the channel has no such end any more.
    Closed,
    /// Its process is gone without closing it (killed, crashed).
    Dead,
}

impl From<Status> for Peer {
    fn from(s: Status) -> Peer {
        match s {
            Status::NotYet => Peer::NotYet,
            Status::Attaching => Peer::Attaching,
            Status::Alive => Peer::Attached,
            Status::Closed => Peer::Closed,
            Status::Dead => Peer::Dead,
        }
    }
}

/// The wait-policy methods of both ends (each holds its [`End`] in `end`).
macro_rules! wait_methods {
    ($what:literal) => {
        /// How this end waits from now on (it starts with the channel's
        /// [`ChannelOptions::wait`]). Applies to every blocking and timed
        #[doc = $what]
        /// and to [`Readiness::arm`]; non-blocking calls never wait.
        pub fn set_wait(&mut self, policy: WaitPolicy) {
            self.end.policy = policy;
        }

        /// This end's wait policy.
        pub fn wait_policy(&self) -> WaitPolicy {
            self.end.policy
        }

        /// How long this end spins before it sleeps under [`WaitPolicy::Adaptive`] (it
        /// starts with the channel's [`ChannelOptions::spin_for`]).
        pub fn set_spin_for(&mut self, budget: Duration) {
            self.end.spin_for = budget;
        }
    };
}

impl Sender {
    wait_methods!("send");
}

impl Receiver {
    wait_methods!("receive");

    /// Where the sender is now; see [`Sender::peer`].
    ///
    /// Errors: [`ErrorKind::Corrupted`] for an owner word no end writes.
    pub fn peer(&mut self) -> Result<Peer> {
        self.end.check()?;
        let h = self.consumer.ring().header();
        let status = self.end.watch.status((&self.end.segment, &h.tx));
        status.map(Peer::from).map_err(|e| self.end.fail(e))
    }
}

/// Claims `side` for this process (see [`peer::claim`]), taking over a claim whose process
/// died before it finished opening. Everything else that is in the way is an error that says
/// who holds the place and what to do. Returns this end's presence mark, which the end holds
/// while it is open.
fn claim(side: &Side, end: &End, what: &str) -> Result<Option<ipc_core::process::Presence>> {
    claim_until(side, end, what, peer::AttachStep::Attached)
}

/// [`claim`], stopping after `stop` (see [`testing`]).
fn claim_until(
    side: &Side,
    end: &End,
    what: &str,
    stop: peer::AttachStep,
) -> Result<Option<ipc_core::process::Presence>> {
    // Each round either takes the place, fails for good, or finds the word changed by another
    // process (which then made progress); a few rounds are plenty.
    let me = peer::me().map_err(|e| e.on_shared(&end.name))?;
    let mut found = 0;
    for _ in 0..8 {
        found = match peer::claim(&end.segment, side, me, stop) {
            Ok(Ok(mark)) => return Ok(mark),
            Ok(Err(found)) => found,
            Err(e) => return Err(claim_error(e, end, what)),
        };
        let state = state_of(found);
        if state != STATE_ATTACHING && state != STATE_ATTACHED {
            break;
        }
        let status = Watch::default()
            .status_of((&end.segment, side), found)
            .map_err(|e| claim_error(e, end, what))?;
        if status != Status::Dead || state != STATE_ATTACHING {
            break;
        }
        // Killed while claiming: it wrote nothing but its claim, so the place is free.
        if peer::reclaim(&end.segment, side, found) {
            tracing::trace!(
                segment = %end.segment.kind(),
                pid = peer::identity_of(found).pid,
                "took over the {what}'s place from a process that died while opening it"
            );
        }
    }
    let pid = peer::identity_of(found).pid;
    let (kind, why) = match state_of(found) {
        STATE_CLOSED => (
            ErrorKind::Disconnected,
            format!("the channel's {what} was closed; make a new channel"),
        ),
        // An end whose process died without closing stays attached: nobody can take its place
        // (its index may lag what it committed), so say that rather than "attached already".
        STATE_ATTACHED
            if matches!(
                Watch::default().status_of((&end.segment, side), found),
                Ok(Status::Dead)
            ) =>
        {
            (
                ErrorKind::Disconnected,
                format!(
                    "the channel's {what} (pid {pid}) died without closing its end; make a \
                     new channel"
                ),
            )
        }
        STATE_ATTACHED => (
            ErrorKind::AlreadyExists,
            format!("a {what} is attached already (pid {pid})"),
        ),
        STATE_ATTACHING => (
            ErrorKind::AlreadyExists,
            format!("a {what} is being opened by pid {pid}, which is running"),
        ),
        _ => (
            ErrorKind::Corrupted,
            format!("{what} endpoint owner word {found:#018x}: free, yet naming a process"),
        ),
    };
    Err(claim_error(Error::with_note(kind, why), end, what))
}

fn claim_error(e: Error, end: &End, what: &str) -> Error {
    let e = e.in_op(format!("open {what}")).on_shared(&end.name);
    tracing::debug!(error = %e, "open channel end failed");
    e
}

impl MessageSender for Sender {
    /// Copies `msg` into the ring and publishes it.
    ///
    /// Blocks only while the ring is full: spinning briefly when the receiver may be running on
    /// another CPU, then sleeping on a futex in the segment until the receiver makes room,
    /// `deadline` passes or the receiver is gone.
    ///
    /// Errors: [`ErrorKind::MessageTooLarge`] above the channel's maximum;
    /// [`ErrorKind::Disconnected`] when the receiver closed its end (seen at once) or its
    /// process died (seen through its pidfd: at once while waiting, otherwise within 1024
    /// sends: messages sent to a receiver that died in between are lost, as in a pipe's
    /// buffer);
    /// [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`]; [`ErrorKind::Corrupted`] if the
    /// receiver's index in shared memory is inconsistent.
    #[doc(alias = "futex")]
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        let r = match self.reserve_fast(msg.len()) {
            Some(r) => r,
            None => self.reserve_checked(msg.len(), deadline)?,
        };
        // SAFETY: the reservation has room for `msg.len()` bytes at `payload`, which nobody
        // else reads until `commit`.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.producer.payload(&r), msg.len())
        };
        self.publish(r, msg.len());
        Ok(())
    }

    fn max_message_size(&self) -> usize {
        self.producer.ring().max_message()
    }
}

/// The doorbell: an eventfd that becomes **readable** when a send may succeed (room was
/// made, or the receiver closed or died). See [`Receiver`'s implementation](Receiver#impl-Readiness-for-Receiver)
/// for the protocol and its cost.
impl Readiness for Sender {
    /// Makes the doorbell at the first call: an eventfd and its bell thread (see the crate's
    /// "Async and poll loops" section).
    #[doc(alias = "eventfd")]
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.end.bell(ring::RX_WAKE)?.fd())
    }

    fn send_interest(&self) -> Interest {
        Interest::Readable
    }

    fn arm(&mut self) -> Result<bool> {
        let ring = *self.producer.ring();
        let h = ring.header();
        let producer = &mut self.producer;
        let wanted = self.wanted.min(ring.max_message());
        self.end.arm_bell((&h.tx, &h.rx), ring::RX_WAKE, || {
            !matches!(producer.reserve(wanted), Ok(None))
        })
    }

    fn disarm(&self) {
        self.end
            .disarm_bell(&self.producer.ring().header().tx, true);
    }

    /// Leaves the doorbell undrained: only the next ring wakes an edge-triggered waiter.
    fn disarm_edge_triggered(&self) {
        self.end
            .disarm_bell(&self.producer.ring().header().tx, false);
    }
}

impl Sender {
    /// How many times the receiver has woken this end so far (futex wakes and doorbell rings
    /// alike: the receiver's wake word). A receiver wakes the sender only while the sender
    /// sleeps, so a busy stream adds nothing here; the benchmark reports it per 1,000
    /// messages.
    pub fn doorbell_rings(&self) -> u32 {
        self.producer
            .ring()
            .header()
            .rx
            .wake
            .load(Ordering::Relaxed)
    }

    /// Test support, not part of the API: whether this end fetched the receiver's doorbell
    /// to ring it directly (`Some(true)`), was refused (`Some(false)`) or never tried
    /// (`None`), and how many rings it made directly.
    #[doc(hidden)]
    pub fn direct_doorbell(&self) -> (Option<bool>, u32) {
        self.end.direct.state()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let h = self.producer.ring().header();
        peer::close(&h.tx);
        // Wake a sleeping receiver unconditionally-if-flagged so it sees the close.
        wake_peer(&h.tx, &h.rx);
        tracing::trace!(segment = %self.end.segment.kind(), "closed channel sender");
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("segment", self.end.segment.kind())
            .field("capacity", &self.capacity())
            .field("max_message", &self.producer.ring().max_message())
            .finish_non_exhaustive()
    }
}

/// Room for one message, loaned by [`Sender::loan`]: write the message into it, then
/// [`commit`](SendLoan::commit). Dropped uncommitted, it sends nothing.
pub struct SendLoan<'a> {
    sender: &'a mut Sender,
    reservation: Option<Reservation>,
}

impl SendLoan<'_> {
    /// Sends all of the loaned bytes as one message.
    pub fn commit(mut self) {
        let r = self.reservation.take().expect("present until committed");
        let len = Producer::reserved_len(&r);
        self.sender.publish(r, len);
    }

    /// Sends the first `len` bytes of the loan as one message (a shorter message than
    /// loaned: the rest of the room is given back).
    ///
    /// # Panics
    ///
    /// If `len` exceeds the loaned length.
    pub fn commit_len(mut self, len: usize) {
        let r = self.reservation.take().expect("present until committed");
        assert!(
            len <= Producer::reserved_len(&r),
            "commit_len({len}) beyond the {} bytes loaned",
            Producer::reserved_len(&r)
        );
        self.sender.publish(r, len);
    }
}

impl Deref for SendLoan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let r = self.reservation.as_ref().expect("present until committed");
        // SAFETY: the reservation is `len` bytes inside the ring that only this producer
        // touches until it commits (the consumer reads committed records only).
        unsafe {
            std::slice::from_raw_parts(self.sender.producer.payload(r), Producer::reserved_len(r))
        }
    }
}

impl DerefMut for SendLoan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let r = self.reservation.as_ref().expect("present until committed");
        // SAFETY: as in `deref`; `&mut self` makes this the only view of it in this process.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.sender.producer.payload(r),
                Producer::reserved_len(r),
            )
        }
    }
}

impl fmt::Debug for SendLoan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendLoan")
            .field("len", &self.len())
            .finish()
    }
}

/// The receiving end of a channel in a shared memory segment.
///
/// One process (one `Receiver`) at a time, like [`Sender`]. Copying receives come from
/// [`MessageReceiver`]; [`recv_in_place`](Receiver::recv_in_place) reads a message where it
/// lies in the ring.
pub struct Receiver {
    end: End,
    consumer: Consumer,
}

impl Receiver {
    /// Opens the consumer's end of the channel in `segment`; see [`Sender::open`] (same checks
    /// and errors).
    pub fn open(segment: impl Into<Arc<Segment>>) -> Result<Receiver> {
        let (mut end, ring) = End::open(segment.into())?;
        let h = ring.header();
        end.presence = claim(&h.rx, &end, "receiver")?;
        let consumer = match Consumer::new(ring) {
            Ok(c) => c,
            Err(e) => {
                peer::detach(&h.rx);
                return Err(e.in_op("open receiver").on_shared(&end.name));
            }
        };
        wake_peer(&h.rx, &h.tx);
        tracing::trace!(segment = %end.segment.kind(), "opened channel receiver");
        Ok(Receiver { end, consumer })
    }

    /// The segment the channel lives in.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.end.segment
    }

    /// Gives up the consumer's place without closing the channel; see [`Sender::detach`].
    pub fn detach(self) -> Arc<Segment> {
        let this = std::mem::ManuallyDrop::new(self);
        let h = this.consumer.ring().header();
        peer::detach(&h.rx);
        wake_peer(&h.rx, &h.tx);
        // SAFETY: `this` is never used or dropped again; the fields are moved out once.
        let end = unsafe { std::ptr::read(&this.end) };
        end.segment
    }

    /// The next message, waiting for one until `deadline`. Waits by the producer's `tail`
    /// ([`Consumer::peek_hinted`]); once the sender is gone, drains by the record marks alone
    /// (a sender killed between a commit and its tail store leaves the tail behind).
    fn next(&mut self, deadline: Deadline) -> Result<Message> {
        self.end.check()?;
        match self.consumer.peek_hinted() {
            Ok(Some(m)) => return Ok(m),
            Ok(None) => {}
            Err(e) => return Err(self.end.fail(e.in_op("recv"))),
        }
        let ring = *self.consumer.ring();
        let h = ring.header();
        let consumer = &mut self.consumer;
        let waited = self.end.wait_for(
            (&h.rx, &h.tx),
            ring::TX_WAKE,
            Blocked::Empty,
            deadline,
            |look| {
                let mut m = consumer.peek_hinted();
                if look == Look::Thorough && matches!(m, Ok(None)) {
                    // A `tail` hint ahead of nothing committed (scribbled) is no message.
                    consumer.check_hint()?;
                    // A `tail` hint that hides committed records (a peer scribbled it) must
                    // not leave both ends waiting, whether the sender sleeps for room, spins
                    // or retries: the marks decide (one load, on a thorough look only).
                    m = consumer.peek();
                    // An index of ours a peer put back would leave the sender waiting for
                    // room while we wait for it: store ours again, and wake it.
                    if matches!(m, Ok(None)) && consumer.restore_head() {
                        wake_peer(&h.rx, &h.tx);
                    }
                }
                m
            },
        );
        match waited {
            Err(e) if e.kind() == ErrorKind::Disconnected => match self.consumer.peek() {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(self.end.fail(e.in_op("recv"))),
                Err(c) => Err(self.end.fail(c.in_op("recv"))),
            },
            other => other.map_err(|e| self.end.fail(e.in_op("recv"))),
        }
    }

    /// [`next`](Receiver::next) out of line and marked cold, for the copying receive (as
    /// [`Sender::reserve_checked`]).
    #[cold]
    #[inline(never)]
    fn next_checked(&mut self, deadline: Deadline) -> Result<Message> {
        self.next(deadline)
    }

    /// The message path's first try, inlined: a committed message ready now
    /// ([`Consumer::peek_message`]) on a channel not found corrupted; `None` sends the caller
    /// down [`next`](Receiver::next), which looks again and waits or reports.
    #[inline]
    fn next_fast(&mut self) -> Option<Message> {
        if self.end.corrupted.is_some() {
            return None;
        }
        self.consumer.peek_message()
    }

    fn release(&mut self, m: Message) {
        self.consumer.release_relaxed(m);
        let h = self.consumer.ring().header();
        self.end.wake_peer(&h.rx, &h.tx);
    }

    /// Takes the next message in place, waiting for one until `deadline`: the guard
    /// dereferences to the message's bytes in the ring (no copy), and gives their room back to
    /// the sender when dropped.
    ///
    /// The bytes are in memory the sender's process can write: a well-behaved sender never
    /// touches a committed message, but one that misbehaves could change them while you read,
    /// so validate what you parse from them as you would any input (their place and length
    /// are always validated here).
    ///
    /// Waits and fails like [`recv_deadline`](MessageReceiver::recv_deadline), except that no
    /// buffer can be too small.
    pub fn recv_in_place_deadline(&mut self, deadline: Deadline) -> Result<RecvGuard<'_>> {
        let message = self.next(deadline)?;
        Ok(RecvGuard {
            receiver: self,
            message,
        })
    }

    /// [`recv_in_place_deadline`](Receiver::recv_in_place_deadline) waiting as long as it
    /// takes.
    pub fn recv_in_place(&mut self) -> Result<RecvGuard<'_>> {
        self.recv_in_place_deadline(Deadline::Never)
    }

    /// [`recv_in_place_deadline`](Receiver::recv_in_place_deadline) without waiting.
    pub fn try_recv_in_place(&mut self) -> Result<RecvGuard<'_>> {
        self.recv_in_place_deadline(Deadline::Now)
    }
}

impl MessageReceiver for Receiver {
    /// Copies the next message out of the ring into `buf` and gives its room back.
    ///
    /// Blocks only while the ring is empty: spinning briefly when the sender may be running on
    /// another CPU, then sleeping on a futex in the segment until a message comes, `deadline`
    /// passes, or the sender is gone (closed, or its process died: seen at once through its
    /// pidfd, which the crate's watcher thread waits on).
    ///
    /// Errors: [`ErrorKind::MessageTooLarge`] if `buf` is too small (the message stays queued);
    /// [`ErrorKind::Disconnected`] once the sender closed or died and every message it
    /// committed has been received; [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`];
    /// [`ErrorKind::Corrupted`] if the sender's index or a record header in shared memory is
    /// inconsistent (the channel stays unusable).
    #[doc(alias = "futex")]
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        let m = match self.next_fast() {
            Some(m) => m,
            None => self.next_checked(deadline)?,
        };
        if m.len() > buf.len() {
            return Err(
                Error::message_too_large(m.len(), buf.len(), "receive buffer")
                    .in_op("recv")
                    .on_shared(&self.end.name),
            );
        }
        // SAFETY: the message is `len` validated bytes inside the ring, ours until released;
        // `buf` is a distinct buffer of at least `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(m.ptr(), buf.as_mut_ptr(), m.len()) };
        self.release(m);
        Ok(m.len())
    }

    fn max_message_size(&self) -> usize {
        self.consumer.ring().max_message()
    }
}

/// The doorbell: an eventfd that becomes **readable** when a receive may succeed (a message
/// was committed, or the sender closed or died).
///
/// The sender rings it only while this end waits: [`arm`](Readiness::arm) raises the end's
/// sleeping flag, the same one a blocking receive raises before its futex wait, and the
/// sender's commit wakes the futex only when that flag is up. So while both sides are busy
/// there is no system call per message, and a stream that outpaces the receiver costs one
/// ring per wait, not per message. The ring reaches the eventfd through a bell thread in
/// this process that sleeps on the futex in the waiter's place; the peer needs no
/// descriptor and no privilege (see the crate's "Async and poll loops" section for the
/// choice and its cost).
impl Readiness for Receiver {
    /// Makes the doorbell at the first call: an eventfd and its bell thread.
    #[doc(alias = "eventfd")]
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.end.bell(ring::TX_WAKE)?.fd())
    }

    fn arm(&mut self) -> Result<bool> {
        let ring = *self.consumer.ring();
        let h = ring.header();
        if self.consumer.restore_head() {
            wake_peer(&h.rx, &h.tx);
        }
        let consumer = &mut self.consumer;
        self.end.arm_bell((&h.rx, &h.tx), ring::TX_WAKE, || {
            !matches!(consumer.peek(), Ok(None))
        })
    }

    fn disarm(&self) {
        self.end
            .disarm_bell(&self.consumer.ring().header().rx, true);
    }

    /// Leaves the doorbell undrained: only the next ring wakes an edge-triggered waiter.
    fn disarm_edge_triggered(&self) {
        self.end
            .disarm_bell(&self.consumer.ring().header().rx, false);
    }
}

impl Receiver {
    /// `Ok(())` when a receive would not wait now (a message, or an error such as
    /// `Disconnected`), `WouldBlock` otherwise; takes nothing.
    #[cfg(feature = "tokio")]
    pub(crate) fn probe(&mut self) -> Result<()> {
        self.next(Deadline::Now).map(drop)
    }

    /// How many times the sender has woken this end so far (futex wakes and doorbell rings
    /// alike: the sender's wake word). The sender wakes the receiver only while it sleeps or
    /// waits on its doorbell, so a busy stream adds nothing here.
    pub fn doorbell_rings(&self) -> u32 {
        self.consumer
            .ring()
            .header()
            .tx
            .wake
            .load(Ordering::Relaxed)
    }

    /// Test support, not part of the API: see [`Sender::direct_doorbell`].
    #[doc(hidden)]
    pub fn direct_doorbell(&self) -> (Option<bool>, u32) {
        self.end.direct.state()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let h = self.consumer.ring().header();
        peer::close(&h.rx);
        wake_peer(&h.rx, &h.tx);
        tracing::trace!(segment = %self.end.segment.kind(), "closed channel receiver");
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("segment", self.end.segment.kind())
            .field("capacity", &self.consumer.ring().capacity())
            .field("max_message", &self.consumer.ring().max_message())
            .finish_non_exhaustive()
    }
}

/// A message read in place, from [`Receiver::recv_in_place`]: dereferences to its bytes in
/// the ring; dropping it gives the room back to the sender.
pub struct RecvGuard<'a> {
    receiver: &'a mut Receiver,
    message: Message,
}

impl Deref for RecvGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the message is `len` validated bytes inside the ring, which the producer
        // does not touch until this guard releases them.
        unsafe { std::slice::from_raw_parts(self.message.ptr(), self.message.len()) }
    }
}

impl Drop for RecvGuard<'_> {
    fn drop(&mut self) {
        self.receiver.release(self.message);
    }
}

impl fmt::Debug for RecvGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvGuard")
            .field("len", &self.message.len())
            .finish()
    }
}

/// Test support, not part of the API (no stability promise): the states a process killed at
/// each step of opening a channel end leaves behind, made by the very code `open` runs, and
/// where the owner words are, for tests that scribble on them.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// [`Segment::create`] with `init` run on the new segment before it gets its name, as
    /// every pattern's `create_posix` runs its header's init: a test stops or kills the
    /// creator there.
    pub fn create_then(
        name: &PosixName,
        size: usize,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        Segment::create_then(name, size, crate::DEFAULT_MODE, init)
    }

    /// Where `open` of an end is stopped.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum OpenStep {
        /// After the claim (owner word: attaching, this process).
        Claimed,
        /// After the CPU hint and sleeping flag.
        Prepared,
        /// After the owner word says attached, before the ring is looked at.
        Attached,
    }

    /// Offsets of the sender's and the receiver's owner words in a channel segment.
    pub const TX_OWNER: usize = std::mem::offset_of!(ring::Header, tx);
    /// See [`TX_OWNER`].
    pub const RX_OWNER: usize = std::mem::offset_of!(ring::Header, rx);
    /// Offset, in an end's block (add [`TX_OWNER`] or [`RX_OWNER`]), of the PID namespace word
    /// its owner publishes (a `u64`; 0 while unknown).
    pub const PIDNS: usize = std::mem::offset_of!(ring::Side, pidns);
    /// Offsets of the sender's and the receiver's PID namespace words.
    pub const TX_PIDNS: usize = TX_OWNER + PIDNS;
    /// See [`TX_PIDNS`].
    pub const RX_PIDNS: usize = RX_OWNER + PIDNS;
    /// Offset of the receiver's sleeping flag (a `u32`: 0 awake, 1 asleep on the futex, 2
    /// waiting on a doorbell it published).
    pub const RX_SLEEPING: usize = RX_OWNER + std::mem::offset_of!(ring::Side, sleeping);
    /// Offset of the receiver's published doorbell: the publisher's key (`u64`), then at
    /// `+ 8` the descriptor number and at `+ 12` the `eventfd-id` (`u32` each).
    pub const RX_BELL: usize = RX_OWNER + std::mem::offset_of!(ring::Side, bell_key);
    const _: () = assert!(
        std::mem::offset_of!(ring::Side, bell_fd) == std::mem::offset_of!(ring::Side, bell_key) + 8
            && std::mem::offset_of!(ring::Side, bell_id)
                == std::mem::offset_of!(ring::Side, bell_key) + 12
    );

    /// Runs `open` of the receiver's (`receiver`) or the sender's end of the channel in
    /// `segment` up to `step` and stops there, leaving the segment as a process killed at that
    /// point would. The end's presence mark is kept (its descriptor leaked) as long as this
    /// process runs: a process stopped here is one in the middle of `open`, for peers in any
    /// PID namespace, until it is killed.
    pub fn open_until(segment: Arc<Segment>, receiver: bool, step: OpenStep) -> Result<()> {
        let (end, ring) = End::open(segment)?;
        let h = ring.header();
        let (side, what) = if receiver {
            (&h.rx, "receiver")
        } else {
            (&h.tx, "sender")
        };
        let stop = match step {
            OpenStep::Claimed => peer::AttachStep::Claimed,
            OpenStep::Prepared => peer::AttachStep::Prepared,
            OpenStep::Attached => peer::AttachStep::Attached,
        };
        claim_until(side, &end, what, stop).map(std::mem::forget)
    }
}
