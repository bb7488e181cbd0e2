//! [`PosixName`]: validated names for POSIX IPC objects (`shm_open`, `mq_open`, `sem_open`).

use std::ffi::{CStr, CString};
use std::fmt;

use crate::{Error, ErrorKind, Result};

/// The longest name component Linux accepts (`NAME_MAX`), not counting the leading slash.
/// Some kinds of object allow less: see [`PosixKind::max_len`].
pub const NAME_MAX: usize = 255;

/// The kind of POSIX IPC object a name is for. Each kind stores its name differently, so each
/// has its own longest name; [`PosixName::for_kind`] checks it.
///
/// The limits, in bytes after the leading slash, found by creating objects on Linux with glibc
/// 2.36 and rustix 1.1 (see this module's tests, which check them against the running
/// system):
///
/// | kind | stored as | longest name |
/// |---|---|---|
/// | [`SharedMemory`](PosixKind::SharedMemory) | `/dev/shm/NAME` | 254: rustix's `shm_open` (which `ipc-shm` uses) counts the slash against `NAME_MAX`; glibc's accepts 255, but such a name could not be opened here |
/// | [`MessageQueue`](PosixKind::MessageQueue) | `NAME` in the mqueue filesystem | 255 (`NAME_MAX`) |
/// | [`Semaphore`](PosixKind::Semaphore) | `/dev/shm/sem.NAME` (glibc) | 251 (`NAME_MAX` − 4) |
///
/// The two kinds kept in `/dev/shm` share its names: the shared memory object `/sem.NAME` and
/// the semaphore `/NAME` would be one file, so [`PosixName::check_kind`] refuses shared memory
/// names that start with `sem.`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PosixKind {
    /// A shared memory object (`shm_open`).
    SharedMemory,
    /// A message queue (`mq_open`).
    MessageQueue,
    /// A named semaphore (`sem_open`).
    Semaphore,
}

impl PosixKind {
    /// The longest name of this kind, in bytes after the leading slash.
    pub const fn max_len(self) -> usize {
        match self {
            // rustix's shm_open refuses a name (with its slash) longer than NAME_MAX.
            PosixKind::SharedMemory => NAME_MAX - 1,
            PosixKind::MessageQueue => NAME_MAX,
            // glibc keeps the semaphore "/NAME" as the file "sem.NAME".
            PosixKind::Semaphore => NAME_MAX - "sem.".len(),
        }
    }

    /// What the kind is called in messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            PosixKind::SharedMemory => "shared memory object",
            PosixKind::MessageQueue => "message queue",
            PosixKind::Semaphore => "named semaphore",
        }
    }
}

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
            return invalid("longer than NAME_MAX: at most 255 bytes after the '/'");
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

    /// Validates `name` as the name of an object of `kind`: [`new`](PosixName::new)'s rules,
    /// and at most [`kind.max_len()`](PosixKind::max_len) bytes after the slash.
    ///
    /// ```
    /// use ipc_core::{ErrorKind, PosixKind, PosixName};
    ///
    /// let long = format!("/{}", "x".repeat(255));
    /// assert!(PosixName::for_kind(&long, PosixKind::MessageQueue).is_ok());
    /// let e = PosixName::for_kind(&long, PosixKind::Semaphore).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::InvalidName);
    /// assert!(e.to_string().contains("at most 251 bytes"), "{e}");
    /// ```
    pub fn for_kind(name: impl AsRef<str>, kind: PosixKind) -> Result<PosixName> {
        let name = PosixName::new(name)?;
        name.check_kind(kind)?;
        Ok(name)
    }

    /// Checks that this name fits an object of `kind` ([`PosixKind::max_len`]), and that a
    /// shared memory name does not start with `sem.` (`/sem.NAME` is the file in which glibc
    /// keeps the named semaphore `/NAME`: the two objects would be one).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`], saying the limit and why it is lower than `NAME_MAX`, or
    /// which semaphore a `sem.` name would alias.
    pub fn check_kind(&self, kind: PosixKind) -> Result<()> {
        if kind == PosixKind::SharedMemory {
            if let Some(sem) = self
                .file_name()
                .strip_prefix("sem.")
                .filter(|s| !s.is_empty())
            {
                return Err(Error::with_note(
                    ErrorKind::InvalidName,
                    format!(
                        "/dev/shm/sem.{sem} is where glibc keeps the named semaphore /{sem}: a \
                         shared memory object of this name would be that semaphore's file \
                         (sem_open(\"/{sem}\") would open it); pick a name that does not \
                         start with \"sem.\""
                    ),
                )
                .on(format_args!("{:?}", self.as_str()))
                .in_op("validate name"));
            }
        }
        let len = self.file_name().len();
        let max = kind.max_len();
        if len <= max {
            return Ok(());
        }
        let why = match kind {
            PosixKind::Semaphore => " (glibc stores it as /dev/shm/sem.NAME, within NAME_MAX)",
            PosixKind::SharedMemory => " (NAME_MAX, counting the '/', for shm_open)",
            _ => " (NAME_MAX)",
        };
        Err(Error::with_note(
            ErrorKind::InvalidName,
            format!(
                "a {} name has at most {max} bytes after the '/'{why}; this one has {len}",
                kind.as_str()
            ),
        )
        .on(format_args!("{:?}", self.as_str()))
        .in_op("validate name"))
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

impl TryFrom<&String> for PosixName {
    type Error = Error;
    fn try_from(s: &String) -> Result<PosixName> {
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

    /// The shape every name-taking function of the workspace has.
    fn takes(name: impl TryInto<PosixName, Error = Error>) -> Result<PosixName> {
        name.try_into()
    }

    #[test]
    fn every_string_form_is_a_name() {
        let owned = String::from("/ipc-name");
        let parsed = PosixName::new("/ipc-name").unwrap();
        for got in [
            takes("/ipc-name"),
            takes(owned.clone()),
            takes(&owned),
            takes(&parsed),
        ] {
            assert_eq!(got.unwrap(), parsed);
        }
        let bad = String::from("no-slash");
        assert_eq!(takes(&bad).unwrap_err().kind(), ErrorKind::InvalidName);
    }
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

    #[test]
    fn each_kind_refuses_one_byte_more_than_its_limit() {
        for kind in [
            PosixKind::SharedMemory,
            PosixKind::MessageQueue,
            PosixKind::Semaphore,
        ] {
            let max = format!("/{}", "k".repeat(kind.max_len()));
            assert!(PosixName::for_kind(&max, kind).is_ok(), "{kind:?}");
            let over = format!("/{}", "k".repeat(kind.max_len() + 1));
            let e = PosixName::for_kind(&over, kind).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{kind:?}");
            assert!(
                e.to_string()
                    .contains(&format!("at most {}", kind.max_len())),
                "{e}"
            );
        }
    }

    /// glibc keeps the named semaphore `/NAME` in `/dev/shm/sem.NAME`, where the shared memory
    /// object `/sem.NAME` lives too: the two names are one file. A segment created as
    /// `/sem.jobs` was opened by `sem_open("/jobs")` (a regular file of at least a `sem_t`
    /// passes its checks), whose waits and posts then wrote into the segment's header; and the
    /// inventory lists the segment as the semaphore `/jobs`. A shared memory name must not
    /// start with `sem.`.
    #[test]
    fn a_shared_memory_name_never_aliases_a_semaphore_file() {
        let e = PosixName::for_kind("/sem.jobs", PosixKind::SharedMemory).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
        assert!(e.to_string().contains("semaphore /jobs"), "{e}");
        for fine in ["/sem", "/sem.", "/semaphore", "/jobs.sem.x", "/Sem.jobs"] {
            PosixName::for_kind(fine, PosixKind::SharedMemory).unwrap();
        }
        // The other kinds keep the name: a queue has its own filesystem, and the semaphore
        // `/sem.jobs` is the file `sem.sem.jobs`.
        PosixName::for_kind("/sem.jobs", PosixKind::MessageQueue).unwrap();
        PosixName::for_kind("/sem.jobs", PosixKind::Semaphore).unwrap();
    }

    /// A name of `len` bytes after the slash, unique to this test process.
    fn probe_name(len: usize) -> CString {
        let head = format!("ipctest-namelen-{}-", std::process::id());
        let mut s = format!("/{head}");
        s.push_str(&"n".repeat(len - head.len()));
        CString::new(s).unwrap()
    }

    /// The limits [`PosixKind::max_len`] states are the running system's: an object with the
    /// longest name can be created, and one byte more is refused by the system itself.
    #[test]
    #[cfg_attr(miri, ignore = "makes system calls")]
    fn kind_limits_are_the_systems() {
        let created = |kind: PosixKind, len: usize| -> bool {
            let n = probe_name(len);
            let p = n.as_ptr();
            // SAFETY: `p` is a NUL-terminated name that outlives each call; the calls take
            // plain integers otherwise, and each object made is closed and removed at once.
            unsafe {
                match kind {
                    PosixKind::SharedMemory => {
                        let fd =
                            libc::shm_open(p, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600);
                        if fd < 0 {
                            return false;
                        }
                        libc::close(fd);
                        libc::shm_unlink(p);
                    }
                    PosixKind::MessageQueue => {
                        let q = libc::mq_open(
                            p,
                            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                            0o600 as libc::mode_t,
                            std::ptr::null_mut::<libc::mq_attr>(),
                        );
                        if q < 0 {
                            return false;
                        }
                        libc::mq_close(q);
                        libc::mq_unlink(p);
                    }
                    PosixKind::Semaphore => {
                        let s = libc::sem_open(
                            p,
                            libc::O_CREAT | libc::O_EXCL,
                            0o600 as libc::c_uint,
                            0 as libc::c_uint,
                        );
                        if s == libc::SEM_FAILED {
                            return false;
                        }
                        libc::sem_close(s);
                        libc::sem_unlink(p);
                    }
                }
            }
            true
        };
        for kind in [
            PosixKind::SharedMemory,
            PosixKind::MessageQueue,
            PosixKind::Semaphore,
        ] {
            assert!(created(kind, kind.max_len()), "{kind:?} at its limit");
            // glibc's shm_open takes one byte more than rustix's, which ipc-shm uses; for the
            // others the system itself refuses one byte more.
            if kind != PosixKind::SharedMemory {
                assert!(
                    !created(kind, kind.max_len() + 1),
                    "{kind:?} past its limit"
                );
            }
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
