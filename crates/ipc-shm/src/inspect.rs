//! Recognising a channel, publish-subscribe or many-to-one segment from the outside (for the
//! `ipc` command's `list` and `inspect`): its header validated by the same code `open` uses
//! (`Ring::open`, the patterns' `View`), each end's owner word judged by the same liveness
//! check the ends use (`peer::Watch`), without attaching.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use ipc_core::inventory::{Liveness, Recognised, User};
use ipc_core::{ErrorKind, Owner, PosixName, Result};

use crate::peer::{Status, Watch, identity_of, state_of};
use crate::ring::{self, Header, Ring, STATE_FREE};
use crate::{OpenOptions, Segment};

/// What the header of a channel segment says.
const WHAT: &str = "ipc-shm channel";

/// Opens the POSIX shared memory object `name` read-only (whoever owns it, if this user may
/// read it) and recognises it: `Ok(None)` when it holds no channel, pub-sub or MPSC segment of
/// this library (too small, another magic), `Ok(Some(_))` with [`Recognised::corrupted`] set
/// when it holds one whose header fails validation.
///
/// Makes `shm_open`, `fstat`, `mmap` (read-only), and for each end that names a process,
/// `pidfd_open` and a read of `/proc/PID/stat`. Blocks on nothing. Attaches no end and writes
/// nothing.
///
/// # Errors
/// Those of [`OpenOptions::open`] (not found, permission denied).
///
/// # References
/// - [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html)
pub fn posix(name: &PosixName) -> Result<Option<Recognised>> {
    let segment = OpenOptions::new()
        .read_only(true)
        .owner(Owner::Any)
        .open(name)?;
    Ok(segment_header(&segment))
}

/// [`posix`] for a segment already mapped: a channel, a publish-subscribe or a
/// many-to-one segment (`what` says which: `ipc-shm channel`, `ipc-shm pub-sub`,
/// `ipc-shm mpsc`).
pub fn segment_header(segment: &Segment) -> Option<Recognised> {
    channel(segment)
        .or_else(|| crate::pubsub::recognise(segment))
        .or_else(|| crate::mpsc::recognise(segment))
}

/// [`segment_header`] for a channel segment.
fn channel(segment: &Segment) -> Option<Recognised> {
    let base = NonNull::new(segment.as_ptr())?;
    let len = segment.len();
    if len < ring::DATA_OFFSET {
        return None;
    }
    // SAFETY: the mapping is valid for `len` bytes, page-aligned, and at least one header
    // long (checked); the header holds only atomics, which another process may write at any
    // time; loads of them are well-defined on a read-only mapping.
    let h = unsafe { base.cast::<Header>().as_ref() };
    // Another magic is no channel; the right magic with another version is one this library
    // cannot read further.
    if h.meta.magic.load(Ordering::Acquire) != ring::MAGIC {
        return None;
    }
    let version = h.meta.version.load(Ordering::Relaxed);
    let mut r = Recognised {
        what: WHAT.to_owned(),
        facts: vec![("layout version".to_owned(), version.to_string())],
        ..Recognised::default()
    };
    if version != ring::VERSION {
        r.corrupted = Some(format!(
            "layout version {version}; this tool reads version {}",
            ring::VERSION
        ));
        return Some(r);
    }
    // SAFETY: as above; `segment` outlives `ring`, and the ring is only read.
    let ring = match unsafe { Ring::open(base, len) } {
        Ok(ring) => ring,
        Err(e) => {
            r.corrupted = Some(e.to_string());
            return Some(r);
        }
    };
    r.facts
        .push(("capacity".to_owned(), ring.capacity().to_string()));
    r.facts
        .push(("max message".to_owned(), ring.max_message().to_string()));
    // `tail` is judged against the head as it was when `tail` was read: somewhere from `head`
    // to `head_after`, read before and after it (an index only moves on). Against that head,
    // `tail` is at most the capacity ahead, or behind by up to a record and the padding before
    // it (less than the capacity): a consumer takes a record by its mark, which the producer
    // stores before `tail`, for a moment in a live stream, or for good if the producer was
    // killed between the two. (Read once each, tail then head, a record taken in between made
    // a healthy, busy channel "inconsistent".)
    let h = ring.header();
    let head = h.head.load(Ordering::Acquire);
    let tail = h.tail.load(Ordering::Acquire);
    let head_after = h.head.load(Ordering::Acquire);
    let cap = ring.capacity() as u32;
    let moved = head_after.wrapping_sub(head);
    // `tail` within `head - cap ..= head_after + cap` (wrapping; u64, so no sum overflows).
    let span = u64::from(moved) + 2 * u64::from(cap);
    if tail % 8 != 0
        || head % 8 != 0
        || head_after % 8 != 0
        || moved > u32::MAX / 2
        || u64::from(tail.wrapping_sub(head.wrapping_sub(cap))) > span
    {
        r.corrupted = Some(format!(
            "indices inconsistent: tail {tail}, head {head} (then {head_after}), capacity {cap}"
        ));
        return Some(r);
    }
    // The bytes committed and not yet released, as far as the reads tell (none while `tail`
    // is behind the head).
    let fill = match tail.wrapping_sub(head_after) {
        ahead if ahead <= cap => ahead,
        _ => 0,
    };
    r.facts.push(("fill (bytes)".to_owned(), fill.to_string()));
    let ends = [
        ("sender".to_owned(), &*ring.header().tx),
        ("receiver".to_owned(), &*ring.header().rx),
    ];
    add_users(&mut r, segment, ends, []);
    Some(r)
}

/// Adds to `r` the [`User`] of each end in `always`, and of each in `if_held` whose place is
/// not free (a free place is anybody's to take); a word no end writes stops it, with
/// [`Recognised::corrupted`] naming the end.
pub(crate) fn add_users<'a>(
    r: &mut Recognised,
    segment: &Segment,
    always: impl IntoIterator<Item = (String, &'a crate::ring::Side)>,
    if_held: impl IntoIterator<Item = (String, &'a crate::ring::Side)>,
) {
    let always = always.into_iter().map(|(role, side)| (role, side, true));
    let if_held = if_held.into_iter().map(|(role, side)| (role, side, false));
    for (role, side, listed) in always.chain(if_held) {
        let word = side.owner.load(Ordering::Acquire);
        if word == 0 && !listed {
            continue;
        }
        match user(&role, (segment, side), word) {
            Ok(u) => r.users.push(u),
            Err(e) => {
                r.corrupted = Some(format!("{role}: {e}"));
                return;
            }
        }
    }
}

/// The start of what is recognised of a segment whose first 8 bytes are `magic` (`None` for
/// another, or one too short to tell): `what`, and its layout version (the 4 bytes after the
/// magic) as the first fact. The caller validates the rest.
pub(crate) fn begin(segment: &Segment, magic: u64, what: &str) -> Option<Recognised> {
    let mut head = [0u8; 8];
    segment.read_at(0, &mut head).ok()?;
    if u64::from_ne_bytes(head) != magic {
        return None;
    }
    let mut version = [0u8; 4];
    segment.read_at(8, &mut version).ok()?;
    Some(Recognised {
        what: what.to_owned(),
        facts: vec![(
            "layout version".to_owned(),
            u32::from_ne_bytes(version).to_string(),
        )],
        ..Recognised::default()
    })
}

/// One end as a [`User`]: its state, its process and whether that process lives (the ends'
/// own check: pidfd and start time in this PID namespace, the presence mark in another).
fn user(role: &str, at: crate::peer::At<'_>, word: u64) -> Result<User> {
    let status = Watch::default().status_of(at, word);
    let pid = (state_of(word) != STATE_FREE).then(|| identity_of(word).pid);
    let (state, can_use) = match status {
        Ok(Status::NotYet) => ("free", Liveness::Unknown),
        Ok(Status::Attaching) => ("attaching", Liveness::Alive),
        Ok(Status::Alive) => ("attached", Liveness::Alive),
        Ok(Status::Closed) => ("closed", Liveness::Dead),
        Ok(Status::Dead) => ("held by a dead process", Liveness::Dead),
        Err(e) if e.kind() == ErrorKind::Corrupted => return Err(e),
        Err(_) => ("unknown (no /proc or no pidfd here)", Liveness::Unknown),
    };
    // The namespace its claimer published (read after the word, as the ends read it).
    let ns = at.1.pidns.load(Ordering::Acquire);
    let pid_namespace =
        (pid.is_some() && ns != 0 && ns != ipc_core::process::pid_namespace()).then_some(ns);
    Ok(User {
        role: role.to_owned(),
        state: state.to_owned(),
        pid,
        pid_namespace,
        can_use,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChannelOptions, MessageReceiver, MessageSender, Receiver, Sender};

    #[test]
    fn recognises_a_channel_and_its_ends() {
        let name = format!("/ipctest-inspect-{}", std::process::id());
        let seg = ChannelOptions::new()
            .capacity(4096)
            .create_posix(name.as_str())
            .unwrap()
            .remove_on_drop();
        let mut tx = Sender::open(seg).unwrap();
        let pname = PosixName::new(&name).unwrap();
        let r = posix(&pname).unwrap().unwrap();
        assert_eq!(r.corrupted, None);
        assert_eq!(r.users[0].can_use, Liveness::Alive);
        assert_eq!(r.users[1].state, "free");
        tx.send(b"hello").unwrap();
        let rx = Receiver::open(Segment::open(name.as_str()).unwrap()).unwrap();
        let r = posix(&pname).unwrap().unwrap();
        assert!(
            r.facts
                .contains(&("fill (bytes)".to_owned(), "16".to_owned()))
        );
        assert_eq!(r.users[1].can_use, Liveness::Alive);
        drop(rx);
        let r = posix(&pname).unwrap().unwrap();
        assert_eq!(
            (r.users[1].state.as_str(), r.users[1].can_use),
            ("closed", Liveness::Dead)
        );
        // Scribbled capacity: corrupted, never a crash.
        let seg = tx.segment().clone();
        let cap = std::mem::offset_of!(ring::Meta, capacity);
        seg.write_at(cap, &12345u32.to_ne_bytes()).unwrap();
        let r = posix(&pname).unwrap().unwrap();
        assert!(r.corrupted.unwrap().contains("capacity"));
    }

    /// A consumer takes a record by its mark, which the producer stores before its `tail`: a
    /// look between the two (in a busy stream, or for good after a producer killed there)
    /// finds `tail` a record behind the head. Measured as one wrapping distance, that looked
    /// about 4 GiB ahead: "indices inconsistent" for a healthy channel.
    #[test]
    fn a_tail_a_record_behind_the_head_is_no_corruption() {
        let (mut tx, mut rx) = ChannelOptions::new().capacity(4096).pair().unwrap();
        tx.send(b"hello").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv(&mut buf).unwrap(), 5);
        let seg = tx.segment().clone();
        let tail = seg.atomic_u32(std::mem::offset_of!(Header, tail)).unwrap();
        let fill = |r: &Recognised| {
            r.facts
                .iter()
                .find(|(k, _)| k == "fill (bytes)")
                .map(|(_, v)| v.clone())
        };
        // The tail as it was before the commit the receiver took (the head is at 16).
        tail.store(0, Ordering::Relaxed);
        let r = segment_header(&seg).unwrap();
        assert_eq!(r.corrupted, None);
        assert_eq!(fill(&r).as_deref(), Some("0"));
        // Ahead of the head by up to the capacity is in flight; farther either way is not.
        tail.store(16 + 4096, Ordering::Relaxed);
        let r = segment_header(&seg).unwrap();
        assert_eq!(r.corrupted, None);
        assert_eq!(fill(&r).as_deref(), Some("4096"));
        for bad in [16u32 + 4096 + 8, 16u32.wrapping_sub(4096 + 8), 1 << 31] {
            tail.store(bad, Ordering::Relaxed);
            let r = segment_header(&seg).unwrap();
            assert!(
                r.corrupted
                    .as_deref()
                    .is_some_and(|c| c.contains("inconsistent")),
                "tail {bad}: {:?}",
                r.corrupted
            );
        }
    }

    /// The role, state and liveness of each user a recognised header names.
    fn users(r: &Recognised) -> Vec<(String, String, Liveness)> {
        r.users
            .iter()
            .map(|u| (u.role.clone(), u.state.clone(), u.can_use))
            .collect()
    }

    /// A pub-sub segment left behind (its publisher gone) must be recognised, so that `ipc
    /// list` can call it stale and `ipc clean --stale` remove it: unrecognised, it stayed
    /// "unknown" for good.
    #[test]
    fn recognises_a_pubsub_segment_and_its_ends() {
        use crate::{PubSubOptions, Publisher, Subscriber};
        let name = format!("/ipctest-inspect-pubsub-{}", std::process::id());
        let seg = std::sync::Arc::new(
            PubSubOptions::new()
                .slots(4)
                .max_message(64)
                .subscribers(3)
                .create_posix(name.as_str())
                .unwrap()
                .remove_on_drop(),
        );
        let r = segment_header(&seg).expect("a pub-sub segment is recognised");
        assert_eq!(
            (r.what.as_str(), r.corrupted.as_deref()),
            ("ipc-shm pub-sub", None)
        );
        assert_eq!(
            users(&r),
            [("publisher".to_owned(), "free".to_owned(), Liveness::Unknown)]
        );
        let mut publisher = Publisher::open(seg.clone()).unwrap();
        let sub = Subscriber::open(seg.clone()).unwrap();
        publisher.send(b"tick").unwrap();
        let r = segment_header(&seg).unwrap();
        assert!(r.facts.contains(&("published".to_owned(), "1".to_owned())));
        assert_eq!(
            users(&r),
            [
                (
                    "publisher".to_owned(),
                    "attached".to_owned(),
                    Liveness::Alive
                ),
                (
                    "subscriber 0".to_owned(),
                    "attached".to_owned(),
                    Liveness::Alive
                ),
            ]
        );
        drop(sub);
        drop(publisher);
        // A closed publisher ends the pub-sub for good: nobody can use the segment again.
        let r = segment_header(&seg).unwrap();
        assert_eq!(
            users(&r),
            [("publisher".to_owned(), "closed".to_owned(), Liveness::Dead)]
        );
        // Scribbled geometry: corrupted, never a crash.
        seg.write_at(8 + 4 + 4 + 4, &3u32.to_ne_bytes()).unwrap(); // slots
        let r = segment_header(&seg).unwrap();
        assert!(r.corrupted.is_some(), "{r:?}");
    }

    /// The same for a many-to-one segment: the consumer and every place a producer holds.
    #[test]
    fn recognises_an_mpsc_segment_and_its_ends() {
        use crate::{MpscConsumer, MpscOptions, MpscProducer};
        let name = format!("/ipctest-inspect-mpsc-{}", std::process::id());
        let seg = std::sync::Arc::new(
            MpscOptions::new()
                .producers(3)
                .capacity(1 << 12)
                .create_posix(name.as_str())
                .unwrap()
                .remove_on_drop(),
        );
        let r = segment_header(&seg).expect("an MPSC segment is recognised");
        assert_eq!(
            (r.what.as_str(), r.corrupted.as_deref()),
            ("ipc-shm mpsc", None)
        );
        assert_eq!(
            users(&r),
            [("consumer".to_owned(), "free".to_owned(), Liveness::Unknown)]
        );
        let consumer = MpscConsumer::open(seg.clone()).unwrap();
        let _p0 = MpscProducer::open(seg.clone()).unwrap();
        let mut p1 = MpscProducer::open(seg.clone()).unwrap();
        p1.send(b"report").unwrap();
        let r = segment_header(&seg).unwrap();
        assert_eq!(
            users(&r),
            [
                (
                    "consumer".to_owned(),
                    "attached".to_owned(),
                    Liveness::Alive
                ),
                (
                    "producer 0".to_owned(),
                    "attached".to_owned(),
                    Liveness::Alive
                ),
                (
                    "producer 1".to_owned(),
                    "attached".to_owned(),
                    Liveness::Alive
                ),
            ]
        );
        drop(consumer);
        let r = segment_header(&seg).unwrap();
        assert_eq!(
            users(&r)[0],
            ("consumer".to_owned(), "closed".to_owned(), Liveness::Dead)
        );
        // Scribbled geometry: corrupted, never a crash.
        seg.write_at(8 + 4 + 4, &0u32.to_ne_bytes()).unwrap(); // producers
        let r = segment_header(&seg).unwrap();
        assert!(r.corrupted.is_some(), "{r:?}");
    }

    #[test]
    fn anything_else_is_unrecognised() {
        let name = format!("/ipctest-inspect-other-{}", std::process::id());
        let seg = Segment::create(name.as_str(), 8192)
            .unwrap()
            .remove_on_drop();
        seg.write_at(0, b"not a channel").unwrap();
        assert_eq!(posix(&PosixName::new(&name).unwrap()).unwrap(), None);
    }
}
