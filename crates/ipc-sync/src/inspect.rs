//! Recognising this crate's primitives at the start of a segment from the outside (for the
//! `ipc` command's `list` and `inspect`): a copy of the first bytes, validated by each type's
//! own [`SharedObject::open_at`], so nothing a peer wrote is trusted and the live object is
//! never touched.

use ipc_core::ErrorKind;
use ipc_core::inventory::Recognised;

use crate::{Condvar, Event, EventMode, Mutex, Semaphore, SharedObject};

/// Bytes of a segment [`recognise`] looks at: enough for any primitive of this crate that
/// it can recognise.
pub const HEAD_LEN: usize = 128;

/// A local, aligned copy of a segment's first bytes.
#[repr(C, align(128))]
struct Head([u8; HEAD_LEN]);

/// What primitive of this crate, if any, starts `head` (a copy of a segment's first bytes,
/// at most [`HEAD_LEN`] of them): a [`Semaphore`] (with its value), an [`Event`] (mode, set
/// or not), a [`Condvar`], or a `Mutex<()>`. `None` for anything else (another type, a
/// `Mutex` guarding other data, which this cannot size). A header of this crate that fails
/// its type's validation is reported in [`Recognised::corrupted`], and so is one whose
/// segment is too short for its type (pass the whole segment when it is shorter than
/// [`HEAD_LEN`]: the bytes it lacks are not read as zeros).
///
/// Reads only `head`; makes no system call.
pub fn recognise(head: &[u8]) -> Option<Recognised> {
    let mut copy = Head([0; HEAD_LEN]);
    let n = head.len().min(HEAD_LEN);
    copy.0[..n].copy_from_slice(&head[..n]);
    let p = copy.0.as_mut_ptr();
    let what = |name: &str, facts: Vec<(String, String)>| Recognised {
        what: format!("ipc-sync {name} at offset 0"),
        facts,
        ..Recognised::default()
    };
    // SAFETY (each `open_at` below): `p` points at `copy`, a local 128-aligned buffer of
    // HEAD_LEN bytes, larger than each type tried (checked at compile time below), that lives
    // for this whole function and that nothing else accesses while the returned reference is
    // used.
    const _: () = assert!(
        size_of::<Semaphore>() <= HEAD_LEN
            && size_of::<Event>() <= HEAD_LEN
            && size_of::<Condvar>() <= HEAD_LEN
            && size_of::<Mutex<()>>() <= HEAD_LEN
    );
    let mut corrupted = None;
    // What one type's validation of the copy says, for a type of `size` bytes: the object
    // with its facts; or, for a header of that type that fails its validation or whose
    // segment is cut short (the copy's zeros stand for bytes that are not there), nothing
    // yet: it is reported as corrupted if no other type takes the bytes.
    let mut judge = |name: &str, size: usize, r: ipc_core::Result<Vec<(String, String)>>| {
        match r {
            Ok(facts) if n >= size => return Some(what(name, facts)),
            Err(e) if e.kind() != ErrorKind::Corrupted => return None,
            r => {
                let why = if n < size {
                    format!("cut short: the segment has {n} bytes, a {name} has {size}")
                } else {
                    r.err().map_or_else(String::new, |e| e.to_string())
                };
                corrupted = Some(Recognised {
                    corrupted: Some(why),
                    ..what(name, Vec::new())
                });
            }
        }
        None
    };
    // SAFETY: see above.
    let sem = unsafe { Semaphore::open_at(p.cast()) }
        .map(|s| vec![("value".into(), s.value().to_string())]);
    if let Some(r) = judge("Semaphore", size_of::<Semaphore>(), sem) {
        return Some(r);
    }
    // SAFETY: see above.
    let ev = unsafe { Event::open_at(p.cast()) }.map(|ev| {
        let mode = match ev.mode() {
            EventMode::AutoReset => "auto-reset",
            EventMode::ManualReset => "manual-reset",
        };
        vec![
            ("mode".into(), mode.into()),
            ("set".into(), ev.is_set().to_string()),
        ]
    });
    if let Some(r) = judge("Event", size_of::<Event>(), ev) {
        return Some(r);
    }
    // SAFETY: see above.
    let cv = unsafe { Condvar::open_at(p.cast()) }.map(|_| Vec::new());
    if let Some(r) = judge("Condvar", size_of::<Condvar>(), cv) {
        return Some(r);
    }
    // SAFETY: see above.
    let m = unsafe { Mutex::<()>::open_at(p.cast()) }.map(|_| Vec::new());
    if let Some(r) = judge("Mutex<()>", size_of::<Mutex<()>>(), m) {
        return Some(r);
    }
    corrupted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_a_semaphore_and_ignores_the_rest() {
        let mut buf = Head([0; HEAD_LEN]);
        // SAFETY: `buf` is aligned, large enough and ours alone.
        let sem = unsafe { Semaphore::init_at(buf.0.as_mut_ptr().cast(), 3) }.unwrap();
        sem.post().unwrap();
        let r = recognise(&buf.0).unwrap();
        assert_eq!(r.what, "ipc-sync Semaphore at offset 0");
        assert_eq!(r.facts, [("value".to_owned(), "4".to_owned())]);
        assert_eq!(recognise(b"anything else"), None);
        assert_eq!(recognise(&[]), None);
    }

    /// A segment shorter than the object its header announces (the header itself intact):
    /// reported as cut short, never as the object with zeros for what is missing (a
    /// semaphore of value 0, a condvar) nor as another fault those zeros make (an event's mode
    /// word missing).
    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn a_segment_cut_short_is_corrupted_not_read_as_zeros() {
        fn whole<T: SharedObject>(init: T::Init) -> Head {
            let mut buf = Head([0; HEAD_LEN]);
            // SAFETY: `buf` is aligned, large enough (see `recognise`) and ours alone; the
            // object is only copied out with it.
            unsafe { T::init_at(buf.0.as_mut_ptr().cast(), init) }.unwrap();
            buf
        }
        let objects = [
            ("Semaphore", size_of::<Semaphore>(), whole::<Semaphore>(3)),
            (
                "Event",
                size_of::<Event>(),
                whole::<Event>(EventMode::AutoReset),
            ),
            ("Condvar", size_of::<Condvar>(), whole::<Condvar>(())),
            ("Mutex<()>", size_of::<Mutex<()>>(), whole::<Mutex<()>>(())),
        ];
        for (name, size, bytes) in objects {
            let r = recognise(&bytes.0[..size]).unwrap();
            assert_eq!(r.what, format!("ipc-sync {name} at offset 0"));
            assert_eq!(r.corrupted, None, "{name} whole");
            // Every cut that keeps the 16-byte header.
            for cut in 16..size {
                let r = recognise(&bytes.0[..cut]).expect("a header of this crate");
                let why = r
                    .corrupted
                    .unwrap_or_else(|| panic!("{name}: {cut} bytes taken whole"));
                assert!(r.what.contains(name), "{cut} bytes of a {name}: {}", r.what);
                assert!(why.contains(&format!("has {cut} bytes")), "{name}: {why}");
                assert!(r.facts.is_empty(), "{name}, {cut} bytes: {:?}", r.facts);
            }
        }
    }
}
