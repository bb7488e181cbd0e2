//! Pipe capacity: `F_GETPIPE_SZ`/`F_SETPIPE_SZ` and the kernel knobs that bound them.

use std::os::fd::BorrowedFd;

use ipc_core::{Error, ErrorKind, Result, ResultExt};
use rustix::io::Errno;

use crate::end::Label;

/// The kernel knob that caps the capacity an unprivileged process may set:
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default).
pub const MAX_SIZE_KNOB: &str = "/proc/sys/fs/pipe-max-size";

/// The kernel knob that caps the pages all pipes of one unprivileged user may use:
/// `/proc/sys/fs/pipe-user-pages-hard` (0 = no limit).
pub const USER_PAGES_HARD_KNOB: &str = "/proc/sys/fs/pipe-user-pages-hard";

/// The system-wide limit on open files.
pub(crate) const FILE_MAX_KNOB: &str = "/proc/sys/fs/file-max";

/// Reads a numeric knob under `/proc/sys`.
pub(crate) fn read_knob(path: &'static str) -> Result<u64> {
    let text = std::fs::read_to_string(path).ctx("read", path)?;
    text.trim().parse().map_err(|_| {
        Error::with_note(ErrorKind::Io, format!("not a number: {:?}", text.trim()))
            .in_op("read")
            .on(path)
    })
}

/// The largest capacity [`set_capacity`](crate::PipeWriter::set_capacity) accepts: the value
/// of `/proc/sys/fs/pipe-max-size`, read now.
///
/// Errors: [`ErrorKind::NotFound`] (or another I/O kind) when `/proc` is not mounted.
///
/// # References
/// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html), "/proc files"
#[doc(alias = "pipe-max-size")]
pub fn max_capacity() -> Result<usize> {
    read_knob(MAX_SIZE_KNOB).map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// The capacity the kernel makes of a request for `bytes`: one page at least, else the next
/// power of two (`round_pipe_size` in `fs/pipe.c`).
pub(crate) fn rounded(bytes: usize) -> u64 {
    let page = rustix::param::page_size() as u64;
    let bytes = bytes as u64;
    if bytes <= page {
        page
    } else {
        bytes.checked_next_power_of_two().unwrap_or(u64::MAX)
    }
}

pub(crate) fn get(fd: BorrowedFd<'_>, label: Label) -> Result<usize> {
    rustix::pipe::fcntl_getpipe_size(fd).map_err(|e| {
        let err = Error::from(e).in_op("fcntl(F_GETPIPE_SZ)").on(label);
        tracing::debug!(error = %err, "pipe capacity query failed");
        err
    })
}

pub(crate) fn set(fd: BorrowedFd<'_>, bytes: usize, label: Label) -> Result<usize> {
    let op = || format!("set capacity ({bytes} bytes) of");
    let fail = |e: Error| {
        let err = e.in_op(op()).on(label);
        tracing::debug!(error = %err, "pipe capacity change refused");
        err
    };
    let want = rounded(bytes);
    match read_knob(MAX_SIZE_KNOB) {
        // The kernel only refuses growth above the knob; a pipe that root made larger may
        // shrink to any size.
        Ok(max) if want > max && want > get(fd, label)? as u64 => {
            return Err(fail(Error::limit(MAX_SIZE_KNOB, Some(max))));
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the knob; the kernel decides"),
    }
    match rustix::pipe::fcntl_setpipe_size(fd, bytes) {
        Ok(got) => {
            tracing::trace!(fd = ?fd, requested = bytes, capacity = got, "pipe capacity set");
            Ok(got)
        }
        Err(Errno::PERM) => {
            // Unprivileged and over a limit: the per-user page budget if there is one, else
            // the size knob (changed since we read it).
            let e = match read_knob(USER_PAGES_HARD_KNOB) {
                Ok(hard) if hard > 0 => Error::limit(USER_PAGES_HARD_KNOB, Some(hard)),
                _ => Error::limit(MAX_SIZE_KNOB, read_knob(MAX_SIZE_KNOB).ok()),
            };
            Err(fail(e.with_source(Errno::PERM.into())))
        }
        Err(Errno::BUSY) => Err(fail(
            Error::with_note(
                ErrorKind::InvalidInput,
                "the pipe holds more data than the requested capacity; drain it first",
            )
            .with_source(Errno::BUSY.into()),
        )),
        Err(e) => Err(fail(Error::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_like_the_kernel() {
        let page = rustix::param::page_size() as u64;
        assert_eq!(rounded(0), page);
        assert_eq!(rounded(1), page);
        assert_eq!(rounded(page as usize + 1), 2 * page);
        assert_eq!(rounded(100_000), 131_072);
        assert_eq!(rounded(1 << 20), 1 << 20);
        assert_eq!(rounded(usize::MAX), u64::MAX);
    }

    #[test]
    fn rounding_matches_what_the_kernel_sets() {
        let (r, _w) = crate::pipe().unwrap();
        for req in [1, 5000, 65_536, 100_000, 300_000] {
            let got = r.set_capacity(req).unwrap();
            assert_eq!(got as u64, rounded(req), "request {req}");
            assert_eq!(r.capacity().unwrap(), got);
        }
    }
}
