//! Futex waits and wakes on a 32-bit word in any mapping, shared between processes: the
//! building block under every primitive of this crate. It lives in the OS layer
//! ([`ipc_core::futex`]), where `ipc-shm` uses it too; this module re-exports it so that
//! `ipc_sync::futex` keeps working.
//!
//! ```
//! use std::sync::atomic::AtomicU32;
//! use std::time::Duration;
//! use ipc_sync::{Deadline, ErrorKind};
//! use ipc_sync::futex;
//!
//! let word = AtomicU32::new(0);
//! let e = futex::wait(&word, 0, Deadline::after(Duration::from_millis(5))).unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::TimedOut);
//! ```

pub use ipc_core::futex::*;
