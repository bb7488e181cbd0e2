//! Kernel knobs (`/proc/sys/...` files) and the limit errors that name them: every
//! [`ErrorKind::LimitExceeded`](crate::ErrorKind::LimitExceeded) of the workspace says which
//! knob to turn and what it is now.
//!
//! ```
//! use ipc_core::knob;
//!
//! // Present on every Linux system with /proc mounted.
//! if let Some(max) = knob::read(knob::PIPE_MAX_SIZE) {
//!     assert!(max >= 4096);
//! }
//! let e = knob::limit_error(knob::MQ_MSG_MAX);
//! assert_eq!(e.limit_info().unwrap().knob, "/proc/sys/fs/mqueue/msg_max");
//! ```

use crate::Error;

/// The largest capacity an unprivileged process may give a pipe.
pub const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";
/// The most messages an unprivileged process may give a POSIX queue.
pub const MQ_MSG_MAX: &str = "/proc/sys/fs/mqueue/msg_max";
/// The largest message an unprivileged process may give a POSIX queue.
pub const MQ_MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max";
/// The most POSIX queues on the system.
pub const MQ_QUEUES_MAX: &str = "/proc/sys/fs/mqueue/queues_max";
/// The most System V message queues.
pub const MSGMNI: &str = "/proc/sys/kernel/msgmni";
/// The largest System V message.
pub const MSGMAX: &str = "/proc/sys/kernel/msgmax";
/// The default byte capacity of a System V queue.
pub const MSGMNB: &str = "/proc/sys/kernel/msgmnb";
/// The most System V segments.
pub const SHMMNI: &str = "/proc/sys/kernel/shmmni";
/// The largest System V segment, in bytes.
pub const SHMMAX: &str = "/proc/sys/kernel/shmmax";
/// The most System V shared memory on the system, in pages.
pub const SHMALL: &str = "/proc/sys/kernel/shmall";
/// The four System V semaphore limits, in one file: `semmsl semmns semopm semmni`.
pub const SEM: &str = "/proc/sys/kernel/sem";

/// The value of a knob holding one number, read now; `None` when it cannot be read (no
/// `/proc`, another namespace's view) or holds no number.
pub fn read(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The `index`th number of a knob holding several ([`SEM`]: 0 `semmsl`, 1 `semmns`,
/// 2 `semopm`, 3 `semmni`).
pub fn read_field(path: &str, index: usize) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .nth(index)?
        .parse()
        .ok()
}

/// A [`LimitExceeded`](crate::ErrorKind::LimitExceeded) error naming `knob` with its value,
/// read now.
pub fn limit_error(knob: &'static str) -> Error {
    Error::limit(knob, read(knob))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_fields() {
        assert!(read(PIPE_MAX_SIZE).is_some());
        assert!(read("/nonexistent/knob").is_none());
        let semmsl = read_field(SEM, 0);
        let semmni = read_field(SEM, 3);
        assert!(semmsl.is_some() && semmni.is_some());
        assert!(read_field(SEM, 4).is_none());
        let e = limit_error(MSGMNI);
        assert_eq!(e.limit_info().unwrap().value, read(MSGMNI));
    }
}
