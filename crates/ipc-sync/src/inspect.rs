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
/// its type's validation is reported in [`Recognised::corrupted`].
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
    let mut note = |name: &str, e: ipc_core::Error| {
        if e.kind() == ErrorKind::Corrupted {
            corrupted = Some(what(name, Vec::new())).map(|mut r| {
                r.corrupted = Some(e.to_string());
                r
            });
        }
    };
    // SAFETY: see above.
    match unsafe { Semaphore::open_at(p.cast()) } {
        Ok(s) => {
            return Some(what(
                "Semaphore",
                vec![("value".into(), s.value().to_string())],
            ));
        }
        Err(e) => note("Semaphore", e),
    }
    // SAFETY: see above.
    match unsafe { Event::open_at(p.cast()) } {
        Ok(ev) => {
            let mode = match ev.mode() {
                EventMode::AutoReset => "auto-reset",
                EventMode::ManualReset => "manual-reset",
            };
            return Some(what(
                "Event",
                vec![
                    ("mode".into(), mode.into()),
                    ("set".into(), ev.is_set().to_string()),
                ],
            ));
        }
        Err(e) => note("Event", e),
    }
    // SAFETY: see above.
    match unsafe { Condvar::open_at(p.cast()) } {
        Ok(_) => return Some(what("Condvar", Vec::new())),
        Err(e) => note("Condvar", e),
    }
    // SAFETY: see above.
    match unsafe { Mutex::<()>::open_at(p.cast()) } {
        Ok(_) => return Some(what("Mutex<()>", Vec::new())),
        Err(e) => note("Mutex", e),
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
}
