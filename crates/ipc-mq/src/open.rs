//! Opening a queue by its name (POSIX) or key (System V) the way `std::fs::OpenOptions` opens a
//! file: [`Creation`] from the `create` / `create_new` flags, the checks made before any system
//! call ([`check_mode`], [`invalid`]), and the one create-or-open loop both kinds of queue use
//! ([`open_or_create`]).

use std::borrow::Cow;
use std::fmt;

use ipc_core::{Error, ErrorKind, Result};

/// How an open treats the name, from `OpenOptions`' `create` and `create_new` flags (both
/// kinds of queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Creation {
    OpenExisting,
    CreateNew,
    OpenOrCreate,
}

impl Creation {
    /// As `std::fs::OpenOptions`: `create_new` wins over `create`.
    pub(crate) fn of(create: bool, create_new: bool) -> Creation {
        match (create, create_new) {
            (_, true) => Creation::CreateNew,
            (true, false) => Creation::OpenOrCreate,
            (false, false) => Creation::OpenExisting,
        }
    }
}

/// An [`ErrorKind::InvalidInput`] found before any system call, naming `op` and `object`, and
/// logged.
pub(crate) fn invalid(
    note: impl Into<Cow<'static, str>>,
    op: &'static str,
    object: impl fmt::Display,
) -> Error {
    let e = Error::with_note(ErrorKind::InvalidInput, note)
        .in_op(op)
        .on(object);
    tracing::debug!(error = %e, "{op}");
    e
}

/// Refuses a creation mode with bits beyond the permission bits (`0o777`).
pub(crate) fn check_mode(mode: u32, op: &'static str, object: impl fmt::Display) -> Result<()> {
    if mode & !0o777 != 0 {
        return Err(invalid(
            format!("mode {mode:#o} has bits beyond 0o777 (permission bits only)"),
            op,
            object,
        ));
    }
    Ok(())
}

/// How often the name may vanish between a failed create and the open before we give up.
const ROUNDS: usize = 8;

/// Creates the object exclusively (`create`), or, if the name is taken, opens the existing one
/// (`open`, which also checks its owner); returns it and whether this call created it. Done as
/// an exclusive create and then an open, never as one `O_CREAT`, so the answer is exact.
///
/// The name can vanish between the failed create and the open (another process removed it):
/// then the pair is tried again, a few times, before the race is reported as
/// [`ErrorKind::Io`]. `create` must fail with [`ErrorKind::AlreadyExists`] when the name is
/// taken and `open` with [`ErrorKind::NotFound`] when it is free; other errors end the loop.
/// The give-up error names `op` and `object`.
pub(crate) fn open_or_create<T>(
    op: &'static str,
    object: impl fmt::Display,
    mut create: impl FnMut() -> Result<T>,
    mut open: impl FnMut() -> Result<T>,
) -> Result<(T, bool)> {
    for _ in 0..ROUNDS {
        match create() {
            Ok(t) => return Ok((t, true)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match open() {
            Ok(t) => return Ok((t, false)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let e = Error::with_note(
        ErrorKind::Io,
        "it kept appearing and disappearing (another process creates and removes it)",
    )
    .in_op(op)
    .on(object);
    tracing::debug!(error = %e, "open or create");
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn modes_beyond_the_permission_bits_are_refused() {
        assert!(check_mode(0o777, "open", "/q").is_ok());
        let e = check_mode(0o1600, "open", "/q").unwrap_err();
        assert_eq!(
            (e.kind(), e.object()),
            (ErrorKind::InvalidInput, Some("/q"))
        );
        assert!(e.to_string().contains("0o1600"), "{e}");
    }

    #[test]
    fn creation_follows_std() {
        assert_eq!(Creation::of(false, false), Creation::OpenExisting);
        assert_eq!(Creation::of(true, false), Creation::OpenOrCreate);
        assert_eq!(Creation::of(true, true), Creation::CreateNew);
        assert_eq!(Creation::of(false, true), Creation::CreateNew);
    }

    fn ooc<T>(
        create: impl FnMut() -> Result<T>,
        open: impl FnMut() -> Result<T>,
    ) -> Result<(T, bool)> {
        open_or_create("open", "/q", create, open)
    }

    #[test]
    fn creates_opens_retries_and_gives_up() {
        let taken = || Err::<u8, _>(Error::new(ErrorKind::AlreadyExists));
        let gone = || Err::<u8, _>(Error::new(ErrorKind::NotFound));
        assert_eq!(ooc(|| Ok(1), gone).unwrap(), (1, true));
        assert_eq!(ooc(taken, || Ok(2)).unwrap(), (2, false));
        // Gone once, then created on the second round.
        let round = Cell::new(0);
        let create = || {
            round.set(round.get() + 1);
            if round.get() == 2 { Ok(3) } else { taken() }
        };
        assert_eq!(ooc(create, gone).unwrap(), (3, true));
        let e = ooc(taken, gone).unwrap_err();
        assert_eq!((e.kind(), e.object()), (ErrorKind::Io, Some("/q")));
        let denied = || Err::<u8, _>(Error::new(ErrorKind::PermissionDenied));
        assert_eq!(
            ooc(taken, denied).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
    }
}
