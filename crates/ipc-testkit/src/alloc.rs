//! Counting allocations, to prove that a path does not allocate.
//!
//! Install [`Counting`] as the test binary's global allocator, then ask how many allocations
//! a closure made on the calling thread (other threads' allocations are not counted, so tests
//! running in parallel do not disturb each other):
//!
//! ```
//! use ipc_testkit::alloc::{Counting, allocations};
//!
//! #[global_allocator]
//! static ALLOC: Counting = Counting;
//!
//! # fn main() {
//! assert_eq!(allocations(|| 1 + 1), 0);
//! assert_eq!(allocations(|| drop(vec![1u8; 10])), 1);
//! # }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use ipc_core::{Error, ErrorKind, MessageReceiver, MessageSender};

/// The system allocator, counting the allocations (not frees) each thread makes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counting;

thread_local! {
    // `const`-initialised: reading it never allocates, so the allocator may use it.
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: during thread teardown the slot may be gone; such allocations are not ours.
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only a thread-local cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: as for `alloc`; `ptr` came from this allocator (that is, from `System`).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (that is, from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// How many allocations (including reallocations) `f` made on this thread. Meaningful only
/// when [`Counting`] is the global allocator; otherwise always 0.
pub fn allocations<T>(f: impl FnOnce() -> T) -> u64 {
    let before = COUNT.with(Cell::get);
    let out = f();
    let after = COUNT.with(Cell::get);
    drop(out);
    after - before
}

/// How long the timed-out checks wait.
const SHORT: Duration = Duration::from_millis(2);

/// Checks an expected-path error: its kind, and that its message names `object` (the context
/// an allocation-free error must still carry).
pub fn check_expected(e: &Error, kind: ErrorKind, object: &str) {
    assert_eq!(e.kind(), kind, "{e}");
    assert!(e.to_string().contains(object), "{e} does not name {object}");
}

/// Fills `tx` with `msg` until it would block, then proves that a `try_send` (would-block)
/// and a `send_timeout` (timed out) allocate nothing, and that their errors name `object`.
/// Needs [`Counting`] as the global allocator.
pub fn full_sender_does_not_allocate(tx: &mut impl MessageSender, msg: &[u8], object: &str) {
    while tx.try_send(msg).is_ok() {}
    let mut errs = Vec::with_capacity(2);
    let n = allocations(|| {
        errs.push((tx.try_send(msg).unwrap_err(), ErrorKind::WouldBlock));
        errs.push((
            tx.send_timeout(msg, SHORT).unwrap_err(),
            ErrorKind::TimedOut,
        ));
    });
    assert_eq!(n, 0, "a full send allocated {n} times");
    for (e, kind) in &errs {
        check_expected(e, *kind, object);
    }
}

/// Proves that a `try_recv` (would-block) and a `recv_timeout` (timed out) on an empty `rx`
/// allocate nothing, and that their errors name `object`. Needs [`Counting`] as the global
/// allocator.
pub fn empty_receiver_does_not_allocate(rx: &mut impl MessageReceiver, object: &str) {
    let mut buf = vec![0; rx.max_message_size().min(1 << 16)];
    let mut errs = Vec::with_capacity(2);
    let n = allocations(|| {
        errs.push((rx.try_recv(&mut buf).unwrap_err(), ErrorKind::WouldBlock));
        errs.push((
            rx.recv_timeout(&mut buf, SHORT).unwrap_err(),
            ErrorKind::TimedOut,
        ));
    });
    assert_eq!(n, 0, "an empty receive allocated {n} times");
    for (e, kind) in &errs {
        check_expected(e, *kind, object);
    }
}
