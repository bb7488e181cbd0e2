//! What the pattern segments (publish-subscribe in `pubsub.rs`, many-to-one in `mpsc.rs`)
//! share: the first 16 bytes of their headers (magic, layout version, header size), checked
//! the same way at open and written last at init, how a segment for one is created, and
//! their readiness ([`Doorbell`]: the channel's doorbell on the futex word an endpoint waits
//! on, with the watcher thread covering the peers whose death must ring it).

use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

use ipc_core::{Deadline, Error, ErrorKind, PosixName, Result};

use crate::bell::Bell;
use crate::monitor::{self, Registration};
use crate::peer::{self, Status, Watch, state_of};
use crate::ring::{STATE_ATTACHED, STATE_ATTACHING, Side};
use crate::segment::{Segment, SegmentKind};
use crate::wait::Spin;

/// The prefix of every pattern header (each `Meta` starts with these three fields).
#[repr(C)]
struct Prefix {
    magic: AtomicU64,
    version: AtomicU32,
    header_size: AtomicU32,
}

/// One kind of pattern segment.
pub(crate) struct Kind {
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) header_size: usize,
    /// "pub-sub", "mpsc": how errors name it.
    pub(crate) what: &'static str,
}

fn prefix(base: NonNull<u8>) -> &'static Prefix {
    // SAFETY: callers pass the start of a mapping at least a header long (checked first);
    // mappings are page-aligned; atomics only. The lifetime is the caller's to bound: every
    // caller holds the segment while it uses the reference.
    unsafe { base.cast::<Prefix>().as_ref() }
}

impl Kind {
    /// Checks that `segment` is writable and holds this kind of header (magic, version,
    /// header size); returns the start of the mapping.
    pub(crate) fn open(&self, segment: &Segment) -> Result<NonNull<u8>> {
        let base = self.header(segment)?;
        if !segment.is_writable() {
            return Err(Error::with_note(
                ErrorKind::PermissionDenied,
                format!("a {} endpoint needs a writable mapping", self.what),
            ));
        }
        Ok(base)
    }

    /// Checks that `segment` holds this kind of header (magic, version, header size), as
    /// [`open`](Kind::open) does but on any mapping, read-only included (for `inspect`);
    /// returns the start of the mapping.
    pub(crate) fn header(&self, segment: &Segment) -> Result<NonNull<u8>> {
        let (len, what) = (segment.len(), self.what);
        if len < self.header_size {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "{len} bytes cannot hold a {what} header of {} bytes",
                    self.header_size
                ),
            ));
        }
        let base = NonNull::new(segment.as_ptr()).expect("mapping is non-null");
        let p = prefix(base);
        let magic = p.magic.load(Ordering::Acquire);
        if magic != self.magic {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "not a {what} segment: magic {magic:#018x}, expected {:#018x}",
                    self.magic
                ),
            ));
        }
        let version = p.version.load(Ordering::Relaxed);
        if version != self.version {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "{what} layout version {version}, this library speaks {}",
                    self.version
                ),
            ));
        }
        let header_size = p.header_size.load(Ordering::Relaxed) as usize;
        if header_size != self.header_size {
            return Err(Error::corrupted(format!(
                "{what} header size {header_size}, expected {}",
                self.header_size
            )));
        }
        Ok(base)
    }

    /// Before writing a fresh header: `segment` is writable, `shape` (the options' own check)
    /// holds, `need` bytes fit, and nothing was written yet. Returns the start of the mapping.
    pub(crate) fn begin_init(
        &self,
        segment: &Segment,
        need: usize,
        shape: std::result::Result<(), String>,
    ) -> Result<NonNull<u8>> {
        let op = self.init_op();
        let fail = |n: String| {
            Error::with_note(ErrorKind::InvalidInput, n)
                .in_op(op)
                .on(segment.kind())
        };
        if !segment.is_writable() {
            return Err(fail("the segment is mapped read-only".into()));
        }
        shape.map_err(fail)?;
        if segment.len() < need {
            return Err(fail(format!(
                "a segment of {} bytes cannot hold {need} bytes",
                segment.len()
            )));
        }
        let base = NonNull::new(segment.as_ptr()).expect("mapping is non-null");
        if prefix(base).magic.load(Ordering::Acquire) != 0 {
            return Err(Error::with_note(
                ErrorKind::AlreadyExists,
                "the segment already holds data: initialise a fresh one",
            )
            .in_op(op)
            .on(segment.kind()));
        }
        Ok(base)
    }

    /// After the rest of a fresh header is written: the prefix, magic last (release).
    pub(crate) fn publish(&self, base: NonNull<u8>) {
        let p = prefix(base);
        p.version.store(self.version, Ordering::Relaxed);
        p.header_size
            .store(self.header_size as u32, Ordering::Relaxed);
        p.magic.store(self.magic, Ordering::Release);
    }

    fn init_op(&self) -> &'static str {
        if self.what == "mpsc" {
            "init mpsc"
        } else {
            "init pub-sub"
        }
    }

    /// Creates the POSIX segment `name` (exclusively, mode `0o600`) of `size` bytes after
    /// `shape` passed, running `init` on it before it gets its name (`Segment::create_then`).
    pub(crate) fn create_posix(
        &self,
        name: impl TryInto<PosixName, Error = Error>,
        size: usize,
        shape: std::result::Result<(), String>,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        let name = name.try_into()?;
        shape.map_err(|n| {
            Error::with_note(ErrorKind::InvalidInput, n)
                .in_op(format!("create {}", self.what))
                .on(SegmentKind::Posix(name.clone()))
        })?;
        Segment::create_then(&name, size, crate::DEFAULT_MODE, init)
    }

    /// Creates a sealed memfd segment of `size` bytes after `shape` passed, and runs `init`.
    pub(crate) fn create_memfd(
        &self,
        name: &str,
        size: usize,
        shape: std::result::Result<(), String>,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        shape.map_err(|n| {
            Error::with_note(ErrorKind::InvalidInput, n).in_op(format!("create {}", self.what))
        })?;
        let seg = Segment::memfd(name, size)?;
        init(&seg)?;
        Ok(seg)
    }
}

/// The offset of `word` in `segment`'s mapping; `word` must lie inside it (a field of a
/// header validated at open).
pub(crate) fn offset_in(segment: &Segment, word: &AtomicU32) -> usize {
    let off = (word as *const AtomicU32 as usize) - (segment.as_ptr() as usize);
    debug_assert!(off + 4 <= segment.len());
    off
}

/// The first half of every pattern end's `Readiness::arm`: looks, spinning (up to 30 us, as a
/// blocking wait does) while another CPU may serve it (not when `on_my_cpu`: everyone it waits
/// for is pinned to this end's CPU); then raises the end's flag (`raise`), a
/// full fence, and looks once more (`ready(true)`: the last look may do more, such as checking
/// processes), so the peer either sees the flag or this end sees its change. `None` when
/// `ready` held (the flag is down again: `lower`); otherwise the value `word` (the futex word
/// the peer bumps) had before the flag went up, for [`Doorbell::arm`].
pub(crate) fn flag_and_look(
    on_my_cpu: bool,
    word: &AtomicU32,
    raise: impl FnOnce(),
    lower: impl FnOnce(),
    mut ready: impl FnMut(bool) -> bool,
) -> Option<u32> {
    let mut spin = Spin::new(Deadline::Never, 0).cross_cpu_only();
    loop {
        if ready(false) {
            return None;
        }
        if !spin.again(|| on_my_cpu) {
            break;
        }
    }
    let seen = word.load(Ordering::Acquire);
    raise();
    fence(Ordering::SeqCst);
    if ready(true) {
        lower();
        return None;
    }
    Some(seen)
}

/// A pattern endpoint's readiness: the doorbell of `bell.rs` (an eventfd, rung by a bell
/// thread that sleeps on the endpoint's futex word in its place), made at the first
/// [`fd`](Doorbell::fd), and the watcher registrations (`monitor.rs`) that bump the same word
/// when a peer process the endpoint waits for dies, so a wait needs no timeout.
///
/// The endpoint keeps its own protocol: [`arm`](Doorbell::arm) is called after it raised its
/// sleeping flag (or count) and found nothing to do, and [`disarm`](Doorbell::disarm) says
/// whether a wait was armed, so the endpoint takes its flag down exactly once.
#[derive(Default)]
pub(crate) struct Doorbell {
    bell: Option<Bell>,
    /// Offset in the segment of the futex word the peers bump to wake this endpoint.
    word: usize,
    armed: AtomicBool,
    /// The last wait was armed timed (a peer the watcher thread does not cover): the next
    /// poll checks the peer's process ([`take_timed`](Doorbell::take_timed)).
    timed: AtomicBool,
    /// Per peer (place index): the identity and PID namespace it was registered for, and the
    /// registration.
    peers: Vec<Option<(u64, u64, Registration)>>,
}

impl Doorbell {
    /// A doorbell on the futex word at `word` in the segment (nothing is made yet).
    pub(crate) fn new(word: usize) -> Doorbell {
        Doorbell {
            word,
            ..Doorbell::default()
        }
    }

    /// The eventfd, made (with its bell thread) at the first call.
    ///
    /// Errors: `eventfd(2)` or the thread could not be made.
    pub(crate) fn fd(&mut self, segment: &Arc<Segment>) -> Result<BorrowedFd<'_>> {
        if self.bell.is_none() {
            self.bell = Some(
                Bell::new(segment.clone(), self.word)
                    .map_err(|e| e.on_shared(&segment.shared_name()))?,
            );
        }
        Ok(self.bell.as_ref().expect("made above").fd())
    }

    /// Whether the watcher thread saw the process that owner word `owner` names (peer `i`)
    /// die. One load, no syscall.
    pub(crate) fn died(&self, i: usize, side: &Side, owner: u64) -> bool {
        matches!(self.peers.get(i), Some(Some((k, ns, r)))
            if *k == peer::key_of(owner) && *ns == peer::published_ns(side) && r.died())
    }

    /// Makes sure the process holding `side` (peer `i`, followed by `watch`) is covered by the
    /// watcher thread, which bumps this doorbell's word when it dies. `false` when no process
    /// holds it or it cannot be watched (the wait must then ring now and then to look).
    pub(crate) fn watch(
        &mut self,
        i: usize,
        side: &Side,
        watch: &mut Watch,
        segment: &Arc<Segment>,
    ) -> bool {
        if self.peers.len() <= i {
            self.peers.resize_with(i + 1, || None);
        }
        let owner = side.owner.load(Ordering::Acquire);
        if !matches!(state_of(owner), STATE_ATTACHED | STATE_ATTACHING) {
            self.peers[i] = None;
            return false;
        }
        let key = peer::key_of(owner);
        let ns = peer::published_ns(side);
        if matches!(&self.peers[i], Some((k, n, _)) if *k == key && *n == ns) {
            return true;
        }
        self.peers[i] = None;
        if !matches!(
            watch.follow((segment, side)),
            Ok(Status::Alive | Status::Attaching)
        ) || watch.key() != Some(key)
        {
            return false;
        }
        let Some(pidfd) = watch.pidfd() else {
            return false;
        };
        match monitor::watch(pidfd, segment.clone(), self.word) {
            Ok(r) => {
                self.peers[i] = Some((key, ns, r));
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch a peer; the doorbell rings in slices");
                false
            }
        }
    }

    /// Hands the wait to the bell thread: ring when the word leaves `seen` (read before the
    /// endpoint raised its flag), or after each slice when `timed`. Call after
    /// [`fd`](Doorbell::fd).
    pub(crate) fn arm(&self, seen: u32, timed: bool) {
        if let Some(bell) = &self.bell {
            self.armed.store(true, Ordering::Release);
            self.timed.store(timed, Ordering::Relaxed);
            bell.arm(seen, timed);
        }
    }

    /// Whether the last wait was armed timed (a peer the watcher thread does not cover), which
    /// the next poll is told once ([`PollCheck::due`](crate::wait::PollCheck::due)).
    pub(crate) fn take_timed(&self) -> bool {
        // A load first: a poll after an untimed wait (the common case) writes nothing.
        self.timed.load(Ordering::Relaxed) && self.timed.swap(false, Ordering::Relaxed)
    }

    /// Ends a wait (drains the eventfd); returns whether one was armed, that is whether the
    /// endpoint has its flag to take down.
    pub(crate) fn disarm(&self) -> bool {
        if let Some(bell) = &self.bell {
            bell.disarm(true);
        }
        self.armed.swap(false, Ordering::AcqRel)
    }
}
