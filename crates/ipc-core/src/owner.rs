//! Whose object a process agrees to open: one [`Owner`] policy for every named object of the
//! workspace (FIFOs, POSIX segments, queues and semaphores, System V objects).
//!
//! Anyone who can write to a directory (or to `/dev/shm`, or use a System V key) can put an
//! object at a name before the intended creator does. Opening it would then talk to whoever
//! made it. So every open checks the owner the kernel reports on the opened object (`fstat` on
//! the descriptor, `IPC_STAT` on the id: never a second lookup of the name) against the
//! policy, which defaults to [`Owner::Me`]; a program that shares objects between users says
//! so with [`Owner::Uid`] or [`Owner::Any`].
//!
//! ```
//! use ipc_core::{ErrorKind, Owner};
//!
//! let me = rustix::process::geteuid().as_raw();
//! Owner::Me.check(me, "/dev/shm/x")?;
//! Owner::Any.check(me + 1, "/dev/shm/x")?;
//! let e = Owner::Me.check(me + 1, "/dev/shm/x").unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::PermissionDenied);
//! # Ok::<(), ipc_core::Error>(())
//! ```

use std::fmt;

use crate::{Error, ErrorKind, Result};

/// Which user an object must belong to before it is opened. The default is [`Owner::Me`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Owner {
    /// The effective uid of this process.
    #[default]
    Me,
    /// This uid.
    Uid(u32),
    /// Any user (the object's mode still decides who can open it).
    Any,
}

impl Owner {
    /// The uid the object must have, or `None` for [`Owner::Any`].
    pub fn expected(self) -> Option<u32> {
        match self {
            Owner::Me => Some(rustix::process::geteuid().as_raw()),
            Owner::Uid(u) => Some(u),
            Owner::Any => None,
        }
    }

    /// Checks that `uid`, the owner the kernel reports for `object`, is acceptable.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] naming both uids and the override.
    pub fn check(self, uid: u32, object: impl fmt::Display) -> Result<()> {
        match self.expected() {
            Some(want) if want != uid => {
                let e = Error::with_note(
                    ErrorKind::PermissionDenied,
                    format!(
                        "owned by uid {uid}, expected uid {want}{}; open with \
                         Owner::Uid({uid}) or Owner::Any if that user is trusted",
                        if self == Owner::Me {
                            " (this process's effective uid)"
                        } else {
                            ""
                        }
                    ),
                )
                .in_op("check owner")
                .on(object);
                tracing::debug!(error = %e, "owner refused");
                Err(e)
            }
            _ => Ok(()),
        }
    }
}
