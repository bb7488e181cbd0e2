//! [`PosixName`]: validated names for POSIX IPC objects (`shm_open`, `mq_open`, `sem_open`).

use std::ffi::{CStr, CString};
use std::fmt;

use crate::{Error, ErrorKind, Result};

/// The longest name component Linux accepts (`NAME_MAX`), not counting the leading slash.
pub const NAME_MAX: usize = 255;

/// A POSIX IPC name: one leading slash, then 1 to [`NAME_MAX`] bytes with no slash and no NUL,
/// and neither `.` nor `..`.
///
/// Names are checked here, before any syscall, so a bad name gets an
/// [`ErrorKind::InvalidName`] that says what is wrong instead of an `EINVAL` or `EACCES` from
/// deep inside the kernel.
///
/// ```
/// use ipc_core::{ErrorKind, PosixName};
///
/// let name = PosixName::new("/jobs")?;
/// assert_eq!(name.as_str(), "/jobs");
/// assert_eq!(PosixName::new("jobs").unwrap_err().kind(), ErrorKind::InvalidName);
/// assert_eq!(PosixName::new("/a/b").unwrap_err().kind(), ErrorKind::InvalidName);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PosixName {
    c: CString,
}

impl PosixName {
    /// Validates `name`.
    pub fn new(name: impl AsRef<str>) -> Result<PosixName> {
        let name = name.as_ref();
        let invalid = |why: &'static str| {
            Err(Error::with_note(ErrorKind::InvalidName, why)
                .on(format_args!("{name:?}"))
                .in_op("validate name"))
        };
        let Some(rest) = name.strip_prefix('/') else {
            return invalid("a POSIX IPC name starts with '/'");
        };
        if rest.is_empty() {
            return invalid("a POSIX IPC name needs at least one character after '/'");
        }
        if rest.len() > NAME_MAX {
            return invalid("longer than NAME_MAX (255 bytes after the '/')");
        }
        if rest.contains('/') {
            return invalid("a POSIX IPC name has exactly one '/', at the start");
        }
        if rest.contains('\0') {
            return invalid("a POSIX IPC name cannot contain a NUL byte");
        }
        if rest == "." || rest == ".." {
            return invalid("'.' and '..' are not object names");
        }
        let c = CString::new(name).expect("NUL was rejected above");
        Ok(PosixName { c })
    }

    /// The name, with its leading slash.
    pub fn as_str(&self) -> &str {
        self.c.to_str().expect("built from a str")
    }

    /// The name without its leading slash (the file name under `/dev/shm` or `/dev/mqueue`).
    pub fn file_name(&self) -> &str {
        &self.as_str()[1..]
    }

    /// The name as a C string, for the syscall.
    pub fn as_c_str(&self) -> &CStr {
        &self.c
    }
}

impl fmt::Debug for PosixName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PosixName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PosixName {
    type Err = Error;
    fn from_str(s: &str) -> Result<PosixName> {
        PosixName::new(s)
    }
}

impl TryFrom<&str> for PosixName {
    type Error = Error;
    fn try_from(s: &str) -> Result<PosixName> {
        PosixName::new(s)
    }
}

impl TryFrom<String> for PosixName {
    type Error = Error;
    fn try_from(s: String) -> Result<PosixName> {
        PosixName::new(s)
    }
}

impl TryFrom<&PosixName> for PosixName {
    type Error = Error;
    fn try_from(s: &PosixName) -> Result<PosixName> {
        Ok(s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_longest_name() {
        let n = format!("/{}", "x".repeat(NAME_MAX));
        assert_eq!(PosixName::new(&n).unwrap().file_name().len(), NAME_MAX);
        let too_long = format!("/{}", "x".repeat(NAME_MAX + 1));
        let e = PosixName::new(&too_long).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName);
        assert!(e.to_string().contains("NAME_MAX"), "{e}");
    }

    #[test]
    fn rejects_each_malformation() {
        for bad in ["", "/", "x", "/a/b", "/a\0b", "/.", "/..", "//"] {
            let e = PosixName::new(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn valid_iff_rules_hold(s in "\\PC{0,300}") {
            let ok = s.starts_with('/')
                && s.len() > 1
                && s.len() <= NAME_MAX + 1
                && !s[1..].contains('/')
                && !s.contains('\0')
                && s != "/." && s != "/..";
            prop_assert_eq!(PosixName::new(&s).is_ok(), ok);
        }
    }
}
