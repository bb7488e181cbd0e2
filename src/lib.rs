//! `ipc`: inter-process communication for Linux, one crate per mechanism, re-exported here
//! behind a feature of the same name.
//!
//! | feature | crate | mechanism |
//! |---|---|---|
//! | (always) | [`core`] | traits, deadlines, errors, framing, names |
//! | `shm` | `shm` (`ipc-shm`) | shared memory segments (POSIX, memfd, System V) and channels |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use ipc_core as core;
pub use ipc_core::{
    Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Properties, Result,
};
#[cfg(feature = "shm")]
pub use ipc_shm as shm;
