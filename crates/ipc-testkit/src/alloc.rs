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
