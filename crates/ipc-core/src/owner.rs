//! Whose object a process agrees to open: one [`Owner`] policy for every named object of the
//! workspace (FIFOs, POSIX segments, queues and semaphores, System V objects).
//!
//! Anyone who can write to a directory (or to `/dev/shm`, or use a System V key) can put an
//! object at a name before the intended creator does. Opening it would then talk to whoever
//! made it. So every open checks the owner the kernel reports on the opened object (`fstat` on
//! the descriptor, `IPC_STAT` on the id: never a second lookup of the name) against the
//! policy, which defaults to [`Owner::Me`]; a program that shares objects between users says
//! so with [`Owner::Uid`] or [`Owner::Any`]. A System V object's creator is checked too
//! ([`Owner::check_with_creator`]): it keeps the owner's rights after giving the object away.
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

    /// [`check`](Owner::check) for a System V object, whose creator the kernel records beside
    /// its owner: the owner `uid`, and the creator `cuid` too unless it is root. A creator
    /// keeps the owner's rights (`IPC_SET`, `IPC_RMID`) after giving the object away to
    /// another uid, which is how a squatter would pass for its victim.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] naming the uids and the override.
    pub fn check_with_creator(self, uid: u32, cuid: u32, object: impl fmt::Display) -> Result<()> {
        self.check(uid, &object)?;
        if cuid == uid || cuid == 0 || self.expected().is_none_or(|want| want == cuid) {
            return Ok(());
        }
        let e = Error::with_note(
            ErrorKind::PermissionDenied,
            format!(
                "created by uid {cuid} and given to uid {uid}: its creator keeps the owner's \
                 rights; open with Owner::Any if uid {cuid} is trusted"
            ),
        )
        .in_op("check owner")
        .on(object);
        tracing::debug!(error = %e, "creator refused");
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creator_other_than_the_owner_must_pass_the_policy_too() {
        let me = rustix::process::geteuid().as_raw();
        let other = me.wrapping_add(1).max(1);
        // Made and owned by the expected user, or made by root: accepted.
        Owner::Me.check_with_creator(me, me, "x").unwrap();
        Owner::Uid(other).check_with_creator(other, 0, "x").unwrap();
        // Given away to us by another user, who keeps the owner's rights: refused, naming it.
        let e = Owner::Uid(me)
            .check_with_creator(me, other, "x")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(
            e.to_string().contains(&format!("created by uid {other}")),
            "{e}"
        );
        // Unless that creator is the one the policy names, or any user is accepted.
        Owner::Uid(other)
            .check_with_creator(other, other, "x")
            .unwrap();
        Owner::Any.check_with_creator(me, other, "x").unwrap();
        // The owner is checked first, as by `check`.
        let e = Owner::Uid(me)
            .check_with_creator(other, me, "x")
            .unwrap_err();
        assert!(
            e.to_string().contains(&format!("owned by uid {other}")),
            "{e}"
        );
    }
}
