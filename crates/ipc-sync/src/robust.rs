//! The robust list glibc threads through the mutexes a thread holds, checked before glibc
//! follows it: its links live in each `pthread_mutex_t`, in shared memory any peer can write.
//!
//! # The list
//!
//! A robust mutex a thread holds is an entry of that thread's robust list, which glibc
//! registered with the kernel (`set_robust_list(2)`) so that the kernel can mark the thread's
//! locks when it dies. On 64-bit glibc the list is doubly linked, through the mutex's
//! `__list.__prev` (offset 24) and `__list.__next` (offset 32); an entry's address is that of
//! its `__next` field. The list starts and ends at the head in glibc's thread descriptor (the
//! address `get_robust_list(2)` returns), whose first word points at the newest entry; the word
//! before the head is the head's own `__prev`, pointing at the oldest entry. So for an entry
//! `e` held by this thread:
//!
//! - `e.__prev` is the entry before it (or the head), whose next word points back at `e`;
//! - `e.__next` is the entry after it (or the head), whose previous word (8 bytes before it)
//!   points back at `e`. Its low bit marks a priority-inheritance successor.
//!
//! `pthread_mutex_unlock` takes the entry out by writing through both links, as it reads them
//! from the mutex. Overwritten by another process (a stray write, a bug), they would make this
//! process write anywhere in its own memory: a crash, or silent corruption. [`Entry::mend`]
//! checks that each link points at an entry that points back, restores them from the list
//! itself when they do not, and says when the mutex cannot be found in the list at all.
//!
//! Reads of the head are direct (this thread's own descriptor); every other word is read with
//! `process_vm_readv(2)` on this process, which reports an unmapped address as an error instead
//! of a signal. A thread that holds one robust mutex at a time, the common case, pays no system
//! call: both links are the head. Where `process_vm_readv` is refused (a seccomp policy), the
//! links are trusted, as glibc trusts them.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys;

/// glibc's `__kind` of the mutexes this crate makes: `PTHREAD_MUTEX_ERRORCHECK_NP` (2) |
/// `PTHREAD_MUTEX_ROBUST_NORMAL_NP` (16) | `PTHREAD_MUTEX_PSHARED_BIT` (128). Part of glibc's
/// ABI: it lives in shared memory, read by every process's glibc.
pub(crate) const KIND: u32 = 2 | 16 | 128;
/// Where `__kind` is in a `pthread_mutex_t`.
pub(crate) const KIND_AT: usize = 16;
/// Where `__owner` is in a `pthread_mutex_t`: the holder's TID, or [`OWNER_INCONSISTENT`]
/// from a lock that returned `EOWNERDEAD` until `pthread_mutex_consistent`.
pub(crate) const OWNER_AT: usize = 8;
/// glibc's `PTHREAD_MUTEX_INCONSISTENT` (`INT_MAX`): the `__owner` of a mutex taken over from a
/// dead holder. glibc's unlock turns a mutex whose `__owner` says so into a not recoverable
/// one, and `pthread_mutex_consistent` refuses a mutex whose `__owner` does not say so.
pub(crate) const OWNER_INCONSISTENT: u32 = i32::MAX as u32;
const PREV_AT: usize = 24;
const NEXT_AT: usize = 32;
/// The entries a walk follows at most: the kernel's own bound on a robust list
/// (`ROBUST_LIST_LIMIT`).
const LIMIT: usize = 2048;
const WORD: usize = size_of::<usize>();

/// One robust mutex's place in this thread's robust list.
pub(crate) struct Entry<'a> {
    /// The entry's address (its `__next` field), as the list's words hold it.
    at: usize,
    prev: &'a AtomicUsize,
    next: &'a AtomicUsize,
}

/// A word of the list could not be checked.
enum Unchecked {
    /// Nothing readable is mapped at the address a link gives.
    Unmapped,
    /// Words outside this thread cannot be read without risk (no `process_vm_readv`, or no
    /// robust list registered): the links are left to glibc, as before this check.
    Refused,
}

impl<'a> Entry<'a> {
    /// The entry of the mutex at `raw`.
    ///
    /// # Safety
    ///
    /// - `raw` points to a glibc `pthread_mutex_t` (64-bit layout) that stays mapped for `'a`;
    /// - its links are only accessed atomically by Rust code (glibc's own plain accesses come
    ///   from the thread holding the mutex, which is the caller's).
    pub(crate) unsafe fn of(raw: *mut libc::pthread_mutex_t) -> Entry<'a> {
        let base = raw.cast::<u8>();
        // SAFETY: both words are 8-aligned inside the 40-byte mutex (per the caller's
        // guarantee), mapped for `'a`, and accessed atomically here.
        unsafe {
            Entry {
                at: base.add(NEXT_AT) as usize,
                prev: &*base.add(PREV_AT).cast::<AtomicUsize>(),
                next: &*base.add(NEXT_AT).cast::<AtomicUsize>(),
            }
        }
    }

    /// Checks the links of this entry (of a mutex the calling thread holds) before glibc follows
    /// them, and restores them from the list if they were overwritten.
    ///
    /// Returns whether it restored them; `Err` when the entry is in no place of this thread's
    /// list (the list itself was overwritten elsewhere): then nothing may follow the links, and
    /// the mutex must stay locked.
    pub(crate) fn mend(&self) -> Result<bool, &'static str> {
        let prev = self.prev.load(Ordering::Relaxed);
        let next = self.next.load(Ordering::Relaxed);
        match self.linked(prev, next) {
            Ok(true) | Err(Unchecked::Refused) => return Ok(false),
            Ok(false) | Err(Unchecked::Unmapped) => {}
        }
        match self.find() {
            Ok((prev, next)) => {
                self.prev.store(prev, Ordering::Relaxed);
                self.next.store(next, Ordering::Relaxed);
                Ok(true)
            }
            Err(Unchecked::Refused) => Ok(false),
            Err(Unchecked::Unmapped) => Err("this thread's robust list does not lead to it"),
        }
    }

    /// Takes the entry out of the list by hand, as glibc's unlock would (for a mutex whose lock
    /// word no longer names this thread, which glibc refuses to unlock and so would leave in
    /// the list). Call after [`mend`](Entry::mend) returned `Ok`.
    pub(crate) fn unlink(&self) {
        let prev = self.prev.load(Ordering::Relaxed);
        let next = self.next.load(Ordering::Relaxed);
        if !matches!(self.linked(prev, next), Ok(true)) {
            return;
        }
        // SAFETY: `linked` read both words through these addresses and found entries of this
        // thread's list pointing back at this one: the previous entry's next word and the next
        // entry's previous word, each 8-aligned and mapped. Only this thread changes its list.
        unsafe {
            (*(prev as *const AtomicUsize)).store(next, Ordering::Relaxed);
            (*((next & !1) as *const AtomicUsize).sub(1)).store(prev, Ordering::Relaxed);
        }
        self.prev.store(0, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
    }

    /// Whether `prev` and `next` are the entries around this one: each points back at it.
    fn linked(&self, prev: usize, next: usize) -> Result<bool, Unchecked> {
        let head = Head::get()?;
        if prev % WORD != 0 || next & !1 < WORD {
            return Ok(false);
        }
        Ok(head.read(prev)? & !1 == self.at && head.read((next & !1) - WORD)? == self.at)
    }

    /// The entries around this one, found by walking this thread's list from the head, both
    /// ways, each walk up to this entry (whose own links are in question) or up to a word
    /// that is not a list entry (another process may have overwritten a neighbour's links
    /// too).
    ///
    /// The entry before is the one whose next word leads here; failing that, the entry this
    /// one's `__prev` names, if the walk from the head reached it (an entry, not the head).
    /// Likewise after, with the previous words and `__next`. A mutex the thread does not hold
    /// (a guard copied into a forked child, whose list glibc emptied) is in no walk: nothing
    /// is written. So any one mutex's links, overwritten, are found again;
    /// glibc's unlock then also rewrites the neighbour's word that pointed at this entry.
    fn find(&self) -> Result<(usize, usize), Unchecked> {
        let head = Head::get()?;
        let prev = self.walk(head, self.prev.load(Ordering::Relaxed), |cur| {
            Ok(head.read(cur)? & !1)
        })?;
        let next = self.walk(head, self.next.load(Ordering::Relaxed) & !1, |cur| {
            head.read(cur - WORD)
        })?;
        match (prev, next) {
            (Some(p), Some(n)) => Ok((p, n)),
            _ => Err(Unchecked::Unmapped),
        }
    }

    /// Walks from the head with `step` (the entry after `cur` in the walk's direction): the
    /// entry whose step leads to this one, else `named` if the walk passed it.
    fn walk(
        &self,
        head: Head,
        named: usize,
        step: impl Fn(usize) -> Result<usize, Unchecked>,
    ) -> Result<Option<usize>, Unchecked> {
        // The head itself is no evidence: it is where every walk starts.
        let mut passed = false;
        let mut cur = head.at;
        for _ in 0..LIMIT {
            let to = match step(cur) {
                Ok(to) => to,
                Err(Unchecked::Unmapped) => break,
                Err(refused) => return Err(refused),
            };
            if to == self.at {
                return Ok(Some(cur));
            }
            if to == head.at || to % WORD != 0 || to < WORD {
                break;
            }
            cur = to;
            passed |= cur == named;
        }
        Ok(passed.then_some(named))
    }
}

/// This thread's robust-list head, found once per thread.
#[derive(Clone, Copy)]
struct Head {
    at: usize,
}

thread_local! {
    /// The head's address; 0 before the first look, 1 when there is none to check against.
    static HEAD: Cell<usize> = const { Cell::new(0) };
}

impl Head {
    fn get() -> Result<Head, Unchecked> {
        let at = HEAD.with(|h| {
            if h.get() == 0 {
                h.set(Head::find().unwrap_or(1));
            }
            h.get()
        });
        if at == 1 {
            return Err(Unchecked::Refused);
        }
        Ok(Head { at })
    }

    /// The registered head, if it and the word before it (its previous link) can be read.
    fn find() -> Option<usize> {
        let at = sys::robust_list_head().ok()?;
        if at < WORD || at % WORD != 0 {
            return None;
        }
        sys::read_word_checked(at).ok()??;
        sys::read_word_checked(at - WORD).ok()??;
        Some(at)
    }

    /// The word at `addr`: directly for the head's two words (this thread's own descriptor),
    /// otherwise by a read that cannot fault.
    fn read(self, addr: usize) -> Result<usize, Unchecked> {
        if addr == self.at || addr == self.at - WORD {
            // SAFETY: the head's two words were read successfully when it was found, and they
            // live in this thread's descriptor, mapped as long as the thread runs; only this
            // thread writes them.
            return Ok(unsafe { (*(addr as *const AtomicUsize)).load(Ordering::Relaxed) });
        }
        if addr % WORD != 0 {
            return Err(Unchecked::Unmapped);
        }
        match sys::read_word_checked(addr) {
            Ok(Some(w)) => Ok(w),
            Ok(None) => Err(Unchecked::Unmapped),
            Err(_) => Err(Unchecked::Refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mutex;
    use crate::shared::Heap;

    /// The module's picture of glibc, checked against the glibc the tests run on: the kind
    /// word, and links that lead from the head through every held mutex and back.
    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn glibc_keeps_kind_and_links_where_this_module_reads_them() {
        let (a, b) = (Heap::<Mutex<u64>>::new(0), Heap::<Mutex<u64>>::new(0));
        let raw = |m: &Mutex<u64>| {
            // SAFETY: test-only peek at the `pthread_mutex_t` at offset 24 of the `Mutex`
            // (its documented layout), which outlives the entries made from it here.
            unsafe {
                (m as *const Mutex<u64>)
                    .cast::<u8>()
                    .add(24)
                    .cast_mut()
                    .cast::<libc::pthread_mutex_t>()
            }
        };
        // SAFETY: as above.
        let kind = unsafe { *raw(&a).cast::<u8>().add(KIND_AT).cast::<u32>() };
        assert_eq!(kind, KIND);
        let head = Head::get().ok().expect("this thread's robust list head").at;
        let ga = a.lock().unwrap();
        // SAFETY: the mutexes outlive the entries.
        let (ea, eb) = unsafe { (Entry::of(raw(&a)), Entry::of(raw(&b))) };
        assert_eq!(ea.prev.load(Ordering::Relaxed), head);
        assert_eq!(ea.next.load(Ordering::Relaxed), head);
        assert!(
            matches!(ea.mend(), Ok(false)),
            "intact links are left alone"
        );
        let gb = b.lock().unwrap();
        assert_eq!(eb.next.load(Ordering::Relaxed), ea.at, "newest first");
        assert_eq!(ea.prev.load(Ordering::Relaxed), eb.at);
        assert!(matches!(eb.find(), Ok((p, n)) if p == head && n == ea.at));
        assert!(matches!(ea.find(), Ok((p, n)) if p == eb.at && n == head));
        drop(gb);
        drop(ga);
    }
}
