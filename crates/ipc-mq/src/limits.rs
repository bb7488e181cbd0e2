//! Kernel limits on message queues: the knobs under `/proc/sys`, the rlimits, and deciding, when
//! a call fails, which of them it ran into (so the error can name the knob and its value).

use std::borrow::Cow;
use std::io;

use ipc_core::Error;
use ipc_core::knob::{
    self, FILE_MAX, MQ_MSG_DEFAULT, MQ_MSG_MAX, MQ_MSGSIZE_DEFAULT, MQ_MSGSIZE_MAX, MQ_QUEUES_MAX,
};
use rustix::io::Errno;
use rustix::process::{Resource, getrlimit};

/// `RLIMIT_MSGQUEUE`: bytes all POSIX queues of one user may take (binds root too).
pub const RLIMIT_MSGQUEUE: &str = "RLIMIT_MSGQUEUE";
/// `RLIMIT_NOFILE`: descriptors one process may have open (a POSIX queue descriptor is one).
pub const RLIMIT_NOFILE: &str = "RLIMIT_NOFILE";
/// The kernel's ceiling on `mq_maxmsg` even for privileged processes (`HARD_MSGMAX`).
pub const HARD_MSGMAX: u64 = 65_536;
/// The kernel's ceiling on `mq_msgsize` even for privileged processes (`HARD_MSGSIZEMAX`).
pub const HARD_MSGSIZEMAX: u64 = 16 * 1024 * 1024;
/// `MQ_PRIO_MAX` on Linux: priorities run from 0 to `MQ_PRIO_MAX - 1`.
pub const MQ_PRIO_MAX: u32 = 32_768;

fn soft_limit(resource: Resource) -> Option<u64> {
    getrlimit(resource).current
}

fn has_sys_resource() -> bool {
    rustix::thread::capabilities(None)
        .map(|c| {
            c.effective
                .contains(rustix::thread::CapabilitySet::SYS_RESOURCE)
        })
        .unwrap_or(false)
}

/// The limits on POSIX message queues that apply to this process now (`/proc/sys/fs/mqueue/*`,
/// `RLIMIT_MSGQUEUE`, and whether `CAP_SYS_RESOURCE` lifts the per-queue knobs).
///
/// A value is `None` when it cannot be read (no `/proc`) or, for the rlimit, when it is
/// unlimited.
///
/// ```
/// let l = ipc_mq::posix::Limits::current();
/// if let (Some(n), Some(size)) = (l.msg_max, l.msgsize_max) {
///     println!("an unprivileged queue holds at most {n} messages of {size} bytes");
/// }
/// ```
///
/// # References
/// - [`mq_overview(7)`](https://man7.org/linux/man-pages/man7/mq_overview.7.html), section
///   "/proc interfaces"
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `/proc/sys/fs/mqueue/msg_max` ([`knob::MQ_MSG_MAX`]): the largest `mq_maxmsg` an
    /// unprivileged process may ask for.
    pub msg_max: Option<u64>,
    /// `/proc/sys/fs/mqueue/msgsize_max` ([`knob::MQ_MSGSIZE_MAX`]): the largest `mq_msgsize`
    /// an unprivileged process may ask for.
    pub msgsize_max: Option<u64>,
    /// `/proc/sys/fs/mqueue/msg_default` ([`knob::MQ_MSG_DEFAULT`]): `mq_maxmsg` of a queue
    /// created without attributes.
    pub msg_default: Option<u64>,
    /// `/proc/sys/fs/mqueue/msgsize_default` ([`knob::MQ_MSGSIZE_DEFAULT`]): `mq_msgsize` of a
    /// queue created without attributes.
    pub msgsize_default: Option<u64>,
    /// `/proc/sys/fs/mqueue/queues_max` ([`knob::MQ_QUEUES_MAX`]): how many POSIX queues may
    /// exist in the IPC namespace (processes with `CAP_SYS_RESOURCE` are exempt).
    pub queues_max: Option<u64>,
    /// The soft [`RLIMIT_MSGQUEUE`] in bytes; `None` if unlimited.
    pub rlimit_msgqueue: Option<u64>,
    /// Whether this process has `CAP_SYS_RESOURCE`: `msg_max`, `msgsize_max` and `queues_max`
    /// do not bind it (the hard ceilings [`HARD_MSGMAX`] and [`HARD_MSGSIZEMAX`] and the rlimit
    /// still do).
    pub privileged: bool,
}

impl Limits {
    /// Reads the knobs now.
    pub fn current() -> Limits {
        Limits {
            msg_max: knob::read(MQ_MSG_MAX),
            msgsize_max: knob::read(MQ_MSGSIZE_MAX),
            msg_default: knob::read(MQ_MSG_DEFAULT),
            msgsize_default: knob::read(MQ_MSGSIZE_DEFAULT),
            queues_max: knob::read(MQ_QUEUES_MAX),
            rlimit_msgqueue: soft_limit(Resource::Msgqueue),
            privileged: has_sys_resource(),
        }
    }

    /// `mq_maxmsg` of a queue created without attributes: `min(msg_max, msg_default)`, as the
    /// kernel computes it (10 where the knobs cannot be read).
    pub fn default_max_messages(&self) -> u64 {
        let d = self.msg_default.unwrap_or(10);
        self.msg_max.map_or(d, |m| d.min(m))
    }

    /// `mq_msgsize` of a queue created without attributes: `min(msgsize_max, msgsize_default)`
    /// (8192 where the knobs cannot be read).
    pub fn default_message_size(&self) -> u64 {
        let d = self.msgsize_default.unwrap_or(8192);
        self.msgsize_max.map_or(d, |m| d.min(m))
    }
}

/// What an `mq_open` call asked for, to explain its failure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenRequest {
    /// Whether the call could create the queue (`O_CREAT`).
    pub(crate) creating: bool,
    /// `(mq_maxmsg, mq_msgsize)` as passed to the kernel.
    pub(crate) attr: Option<(u64, u64)>,
}

/// The process's descriptor table when an `mq_open` failed with `EMFILE`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FdUsage {
    /// Whether no descriptor can be opened now.
    pub(crate) exhausted: bool,
    /// The soft `RLIMIT_NOFILE`.
    pub(crate) nofile: Option<u64>,
}

impl FdUsage {
    /// Probes by opening a descriptor (an `O_PATH` open of `/`, closed at once): it fails with
    /// `EMFILE` exactly when the process has no descriptor number left below its limit.
    pub(crate) fn current() -> FdUsage {
        use rustix::fs::{Mode, OFlags, open};
        let probe = open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty());
        FdUsage {
            exhausted: matches!(probe, Err(Errno::MFILE)),
            nofile: soft_limit(Resource::Nofile),
        }
    }
}

fn limit(knob: impl Into<Cow<'static, str>>, value: Option<u64>, errno: Errno) -> Error {
    Error::limit(knob, value).with_source(io::Error::from_raw_os_error(errno.raw_os_error()))
}

/// Decides which limit an `mq_open` failure ran into. Pure, so each branch can be tested; the
/// caller reads `limits` and `fds` after the failure. Returns `None` when `errno` is not a
/// limit (the caller maps it by kind).
///
/// - `EINVAL` while creating with attributes: the attributes exceed `msg_max` / `msgsize_max`
///   (unprivileged) or the hard ceilings (privileged). Unprivileged callers see the knob, which
///   is the tighter bound; a privileged caller the kernel still refused is told the knob too.
/// - `ENOSPC`: `queues_max`.
/// - `EMFILE`: `RLIMIT_NOFILE` when the process's descriptors are used up or the call was not
///   creating (then only the descriptor can have been refused), else `RLIMIT_MSGQUEUE` (the new
///   queue's bytes, added to this user's other queues, exceed it).
/// - `ENFILE`: `file-max`. `ENOMEM`: kernel memory.
pub(crate) fn classify_open_error(
    errno: Errno,
    req: OpenRequest,
    limits: &Limits,
    fds: FdUsage,
) -> Option<Error> {
    match errno {
        Errno::INVAL => {
            let (maxmsg, msgsize) = req.attr.filter(|_| req.creating)?;
            let over = |v: u64, knob: Option<u64>| knob.is_some_and(|k| v > k);
            if !limits.privileged && over(maxmsg, limits.msg_max) {
                return Some(limit(MQ_MSG_MAX, limits.msg_max, errno));
            }
            if !limits.privileged && over(msgsize, limits.msgsize_max) {
                return Some(limit(MQ_MSGSIZE_MAX, limits.msgsize_max, errno));
            }
            if maxmsg > HARD_MSGMAX {
                return Some(limit(
                    "HARD_MSGMAX (kernel constant)",
                    Some(HARD_MSGMAX),
                    errno,
                ));
            }
            if msgsize > HARD_MSGSIZEMAX {
                return Some(limit(
                    "HARD_MSGSIZEMAX (kernel constant)",
                    Some(HARD_MSGSIZEMAX),
                    errno,
                ));
            }
            // We thought we were privileged, but the kernel (which checks the capability in the
            // initial user namespace) applied the knobs.
            if over(maxmsg, limits.msg_max) {
                return Some(limit(MQ_MSG_MAX, limits.msg_max, errno));
            }
            if over(msgsize, limits.msgsize_max) {
                return Some(limit(MQ_MSGSIZE_MAX, limits.msgsize_max, errno));
            }
            None
        }
        Errno::NOSPC => Some(limit(MQ_QUEUES_MAX, limits.queues_max, errno)),
        Errno::MFILE => {
            if !req.creating || fds.exhausted {
                return Some(limit(RLIMIT_NOFILE, fds.nofile, errno));
            }
            Some(limit(RLIMIT_MSGQUEUE, limits.rlimit_msgqueue, errno))
        }
        Errno::NFILE => Some(limit(FILE_MAX, knob::read(FILE_MAX), errno)),
        Errno::NOMEM => Some(limit("kernel memory", None, errno)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_core::ErrorKind;

    fn knobs(privileged: bool) -> Limits {
        Limits {
            msg_max: Some(10),
            msgsize_max: Some(8192),
            msg_default: Some(10),
            msgsize_default: Some(8192),
            queues_max: Some(256),
            rlimit_msgqueue: Some(819_200),
            privileged,
        }
    }

    const CREATE: OpenRequest = OpenRequest {
        creating: true,
        attr: Some((10, 8192)),
    };

    fn roomy() -> FdUsage {
        FdUsage {
            exhausted: false,
            nofile: Some(1024),
        }
    }

    fn knob_of(e: &Error) -> (String, Option<u64>) {
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
        let l = e.limit_info().expect("limit detail");
        (l.knob.to_string(), l.value)
    }

    fn classify(errno: Errno, req: OpenRequest, l: &Limits, fds: FdUsage) -> (String, Option<u64>) {
        let e = classify_open_error(errno, req, l, fds).expect("a limit");
        assert_eq!(e.raw_os_error(), Some(errno.raw_os_error()));
        knob_of(&e)
    }

    #[test]
    fn einval_names_the_knob_the_attributes_exceed() {
        let l = knobs(false);
        let req = |attr| OpenRequest {
            creating: true,
            attr: Some(attr),
        };
        assert_eq!(
            classify(Errno::INVAL, req((11, 100)), &l, roomy()),
            (MQ_MSG_MAX.into(), Some(10))
        );
        assert_eq!(
            classify(Errno::INVAL, req((5, 8193)), &l, roomy()),
            (MQ_MSGSIZE_MAX.into(), Some(8192))
        );
        // Unprivileged, the knob is the tighter bound even past the hard ceiling.
        assert_eq!(
            classify(Errno::INVAL, req((70_000, 1)), &l, roomy()),
            (MQ_MSG_MAX.into(), Some(10))
        );
    }

    #[test]
    fn einval_when_privileged_names_the_hard_ceiling() {
        let l = knobs(true);
        let req = |attr| OpenRequest {
            creating: true,
            attr: Some(attr),
        };
        let (knob, v) = classify(Errno::INVAL, req((HARD_MSGMAX + 1, 1)), &l, roomy());
        assert!(knob.starts_with("HARD_MSGMAX"), "{knob}");
        assert_eq!(v, Some(HARD_MSGMAX));
        let (knob, v) = classify(Errno::INVAL, req((1, HARD_MSGSIZEMAX + 1)), &l, roomy());
        assert!(knob.starts_with("HARD_MSGSIZEMAX"), "{knob}");
        assert_eq!(v, Some(HARD_MSGSIZEMAX));
        // Privileged by our reckoning but refused within the ceilings: the knob applied.
        assert_eq!(
            classify(Errno::INVAL, req((11, 1)), &l, roomy()),
            (MQ_MSG_MAX.into(), Some(10))
        );
    }

    #[test]
    fn einval_without_attributes_or_within_every_limit_is_not_a_limit() {
        let l = knobs(false);
        let no_attr = OpenRequest {
            creating: true,
            attr: None,
        };
        assert!(classify_open_error(Errno::INVAL, no_attr, &l, roomy()).is_none());
        let within = OpenRequest {
            creating: true,
            attr: Some((2, 2)),
        };
        assert!(classify_open_error(Errno::INVAL, within, &l, roomy()).is_none());
        let opening = OpenRequest {
            creating: false,
            attr: Some((11, 1)),
        };
        assert!(classify_open_error(Errno::INVAL, opening, &l, roomy()).is_none());
    }

    #[test]
    fn enospc_is_queues_max() {
        assert_eq!(
            classify(Errno::NOSPC, CREATE, &knobs(false), roomy()),
            (MQ_QUEUES_MAX.into(), Some(256))
        );
    }

    #[test]
    fn emfile_tells_the_rlimits_apart() {
        let l = knobs(false);
        assert_eq!(
            classify(Errno::MFILE, CREATE, &l, roomy()),
            (RLIMIT_MSGQUEUE.into(), Some(819_200))
        );
        let full = FdUsage {
            exhausted: true,
            nofile: Some(1024),
        };
        assert_eq!(
            classify(Errno::MFILE, CREATE, &l, full),
            (RLIMIT_NOFILE.into(), Some(1024))
        );
        let opening = OpenRequest {
            creating: false,
            attr: None,
        };
        assert_eq!(
            classify(Errno::MFILE, opening, &l, roomy()),
            (RLIMIT_NOFILE.into(), Some(1024))
        );
    }

    #[test]
    fn other_errnos_are_not_limits() {
        for errno in [
            Errno::ACCESS,
            Errno::EXIST,
            Errno::NOENT,
            Errno::NAMETOOLONG,
        ] {
            assert!(classify_open_error(errno, CREATE, &knobs(false), roomy()).is_none());
        }
    }

    #[test]
    fn defaults_are_capped_by_the_maxima() {
        let mut l = knobs(false);
        l.msg_default = Some(50);
        assert_eq!(l.default_max_messages(), 10);
        assert_eq!(l.default_message_size(), 8192);
    }
}
