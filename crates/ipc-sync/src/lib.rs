//! Process-shared synchronisation for Linux that survives a crash.
//!
//! Processes that share memory must synchronise, and the hard part is a process that dies
//! holding a lock. This crate gives primitives that live *in* the shared memory and say what
//! happened when a peer died, instead of hanging:
//!
//! | type | what | after a holder or waiter is `SIGKILL`ed |
//! |------|------|-----------------------------------------|
//! | [`Mutex<T>`] | robust lock around data in shared memory (glibc robust pthread mutex) | next locker gets [`LockError::OwnerDied`], repairs, [marks consistent](MutexGuard::mark_consistent); or the mutex becomes [not recoverable](crate::ErrorKind::NotRecoverable) |
//! | [`Condvar`] | condition variable for the mutex (futex sequence counter) | no internal state to wedge; waiters learn of a dead notifier through the mutex |
//! | [`Semaphore`] | counting semaphore (futex) | waiters unaffected; units a dead process took stay taken |
//! | [`Event`] | auto- or manual-reset flag (futex) | waiters unaffected |
//! | [`futex`] | wait/wake on any `AtomicU32` in shared memory | the building block |
//! | [`NamedSemaphore`] | POSIX `sem_open` semaphore, found by name | like `Semaphore`; interoperates with C and other languages |
//! | [`SemaphoreSet`] | System V semaphores | the kernel undoes a dead process's `SEM_UNDO` operations |
//!
//! # Placing primitives in shared memory
//!
//! [`Mutex`], [`Condvar`], [`Semaphore`] and [`Event`] are `#[repr(C)]` with a documented
//! `# Layout`, and start with a magic number, a layout version and their size. The creator
//! initialises each once, in place, with [`SharedObject::init_at`]; every other process
//! checks it with [`SharedObject::open_at`] (wrong magic, version or size is an error, not
//! undefined behaviour). Put them in any `MAP_SHARED` mapping: a memfd, POSIX or System V
//! shared memory, a file. They never move (a `pthread_mutex_t` must not), so they exist only
//! behind references. [`Shared<T>`] does it all for one object in a sealed memfd, whose
//! descriptor a child process inherits.
//!
//! # Which one?
//!
//! - Data in shared memory that several processes update: [`Mutex`] (plus [`Condvar`] to
//!   wait for a state). It is the only primitive that *tells* the next user that a holder
//!   died, so the data can be checked.
//! - Counting resources or items between processes that share memory (producer/consumer):
//!   [`Semaphore`]; a one-shot or repeated signal: [`Event`]. Both cost no syscall when
//!   nobody waits, and spin adaptively before sleeping ([`Spin`]), as do [`Mutex`] and
//!   [`Condvar`] waiters.
//! - Processes that share no memory, or programs in other languages: [`NamedSemaphore`].
//! - A lock that must be released by the kernel when its holder dies, with no memory to
//!   repair: [`SemaphoreSet`] with `SEM_UNDO`.
//!
//! # Named objects: who may have made them
//!
//! [`NamedSemaphore::open`] and [`SemaphoreSet::open`] refuse an object another user owns
//! ([`PermissionDenied`](crate::ErrorKind::PermissionDenied)): anyone can put one under a
//! name or key first, and its owner can remove it or change its mode at will. Say whose you
//! accept with the one [`Owner`] policy of the workspace, on the options builders:
//! [`NamedOpenOptions::owner`], [`SetOpenOptions::owner`]. A named
//! semaphore's file is checked before it is mapped (a FIFO, socket, directory, device, symbolic
//! link or short file planted there is [`WrongType`](crate::ErrorKind::WrongType), without
//! blocking), and modes are exact, not umasked.
//!
//! Sets are found by the workspace's one System V [`Key`] (`ftok` is [`Key::from_path`]). A
//! value that should take its object with it says so with `remove_on_drop`
//! ([`NamedSemaphore::remove_on_drop`], [`SemaphoreSet::remove_on_drop`]); a name or id with
//! no value is removed by a [`RemoveGuard`] ([`Removable::Semaphore`], [`Removable::Sysv`]).
//!
//! # Example: a counter in shared memory, across a crash
//!
//! A whole program needs only this crate (the core vocabulary is re-exported, also as
//! [`prelude`]):
//!
//! ```
//! use ipc_sync::prelude::*;
//! use ipc_sync::{LockError, Mutex, Shared};
//!
//! let counter = Shared::<Mutex<u64>>::create(0)?;
//! // Hand `counter` (an fd) to child processes (`ipc_sync::inherit::ChildFds::pass` when
//! // spawning; the child takes it with `inherit::take`); each opens it with Shared::open(fd).
//! // Here a thread plays a process that dies holding the lock:
//! std::thread::scope(|s| {
//!     s.spawn(|| std::mem::forget(counter.lock().unwrap()));
//! });
//! match counter.lock() {
//!     Ok(mut n) => *n += 1,
//!     Err(LockError::OwnerDied(mut n)) => {
//!         // The holder may have died halfway through an update: check, repair, vouch.
//!         *n += 1;
//!         n.mark_consistent()?;
//!     }
//!     Err(LockError::Failed(e)) => return Err(e),
//! }
//! assert_eq!(*counter.lock().unwrap(), 1);
//! assert!(counter.lock_until(Deadline::Now).is_ok()); // nobody holds it now
//! # Ok::<(), Error>(())
//! ```
//!
//! The `examples/` directory has a producer/consumer over shared memory guarded by
//! semaphores (`cargo run -p ipc-sync --example producer_consumer`), a crash-and-recover demo
//! (`--example crash_recover`) and a spin/no-spin measurement for both placements of two
//! processes (`--example spin_bench`).
//!
//! # Platform
//!
//! 64-bit Linux with glibc 2.30 or later (robust process-shared mutexes and
//! `pthread_mutex_clocklock`, which waits on `CLOCK_MONOTONIC` so that a change of the wall
//! clock does not shorten or stretch a timeout, as every wait of this crate does; named
//! semaphores and the mutex's unlock check follow glibc's 64-bit `sem_t` and
//! `pthread_mutex_t` layouts). Every object this crate creates can be removed
//! after its creator died: memfds vanish with their last user, named semaphores are files
//! `/dev/shm/sem.<name>` ([`NamedSemaphore::unlink`]), System V sets are listed by `ipcs -s`
//! ([`SemaphoreSet::remove`], `ipcrm -s <id>`).
//!
//! # Testing under Miri
//!
//! The lock-free logic (semaphore, event, the condvar's futex protocol, the layout checks)
//! runs under Miri on heap memory, with Miri's own futex emulation deciding when sleepers
//! wake (so a lost wake-up shows up as a deadlock it reports):
//!
//! ```text
//! rustup +nightly component add miri   # once
//! MIRIFLAGS=-Zmiri-permissive-provenance cargo +nightly miri test -p ipc-sync --lib
//! ```
//!
//! (The flag silences a warning about an integer-to-pointer cast inside rustix's futex
//! wrapper.) Robust pthread mutexes, memfds, `sched_getcpu` and System V IPC are beyond Miri;
//! those tests are skipped there and run, across real processes, in `cargo test`. Miri is
//! not part of `cargo xtask test`, which needs no nightly toolchain.

#![warn(missing_docs)]

mod condvar;
mod event;
pub mod futex;
pub mod inspect;
mod mutex;
mod named;
mod robust;
mod semaphore;
mod shared;
mod spin;
mod sys;
mod sysv;

pub use condvar::{Condvar, WaitTimeoutResult};
pub use event::{Event, EventMode};
pub use mutex::{LockError, LockResult, Mutex, MutexGuard};
pub use named::{NamedOpenOptions, NamedSemaphore, SEM_VALUE_MAX};
pub use semaphore::Semaphore;
pub use shared::{Shared, SharedData, SharedObject};
pub use spin::{SPIN_BUDGET, Spin};
pub use sysv::{SEMVMX, SemOp, SemaphoreSet, SetOpenOptions};

/// Handing descriptors to a child process you spawn: [`inherit::ChildFds`] in the parent,
/// [`inherit::take`] (or this crate's own adopt functions) in the child.
pub use ipc_core::inherit;
pub use ipc_core::sysv::Key;
pub use ipc_core::{
    Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Owner, Removable, RemoveGuard,
    Result,
};

/// The core vocabulary a program using this crate needs, in one import:
/// `use ipc_sync::prelude::*;`.
pub mod prelude {
    pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
}
