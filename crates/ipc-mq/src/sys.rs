//! The raw libc calls rustix does not cover: POSIX message queues (`mq_*`) and System V message
//! queues (`msg*`). Every function here is safe to call: it takes Rust types, upholds the C
//! call's memory contract, and returns the errno on failure. Policy (sizes, limits, retries,
//! error kinds) lives in the modules above.

// `c_long`, `time_t`, `msgqnum_t`, `msglen_t` and the `mq_attr` fields are 64-bit here but not
// on every Linux ABI: the casts that look redundant keep the code portable.
#![allow(clippy::unnecessary_cast, clippy::useless_conversion)]

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use libc::c_long;
use rustix::io::Errno;

/// The calling thread's `errno` after a libc call failed.
fn errno() -> Errno {
    Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::IO)
}

/// `struct mq_attr`, as plain numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MqAttr {
    pub(crate) flags: i64,
    pub(crate) maxmsg: i64,
    pub(crate) msgsize: i64,
    pub(crate) curmsgs: i64,
}

impl MqAttr {
    fn from_raw(a: &libc::mq_attr) -> MqAttr {
        MqAttr {
            flags: a.mq_flags as i64,
            maxmsg: a.mq_maxmsg as i64,
            msgsize: a.mq_msgsize as i64,
            curmsgs: a.mq_curmsgs as i64,
        }
    }

    fn to_raw(self) -> libc::mq_attr {
        // SAFETY: `mq_attr` holds only integers (and integer padding); all-zero is a valid value.
        let mut a: libc::mq_attr = unsafe { zeroed() };
        a.mq_flags = self.flags as _;
        a.mq_maxmsg = self.maxmsg as _;
        a.mq_msgsize = self.msgsize as _;
        a.mq_curmsgs = self.curmsgs as _;
        a
    }
}

/// `mq_open(name, oflag, mode, attr)`. The kernel makes the descriptor close-on-exec.
pub(crate) fn mq_open(
    name: &CStr,
    oflag: i32,
    mode: u32,
    attr: Option<MqAttr>,
) -> Result<OwnedFd, Errno> {
    let mut raw = attr.map(MqAttr::to_raw);
    let attr_ptr = raw
        .as_mut()
        .map_or(ptr::null_mut(), |a| a as *mut libc::mq_attr);
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the variadic arguments
    // are the `mode_t` and `struct mq_attr *` that mq_open reads when O_CREAT is set (and
    // ignores otherwise); `attr_ptr` is null or points to a live, initialised `mq_attr`.
    let fd = unsafe { libc::mq_open(name.as_ptr(), oflag, mode as libc::mode_t, attr_ptr) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: on Linux an `mqd_t` is a file descriptor; mq_open just returned it, so it is
    // open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mq_timedsend(fd, msg, prio, abs)`; `abs == None` is `mq_send` (no timeout).
pub(crate) fn mq_timedsend(
    fd: BorrowedFd<'_>,
    msg: &[u8],
    prio: u32,
    abs: Option<&libc::timespec>,
) -> Result<(), Errno> {
    let abs_ptr = abs.map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `msg` is readable for `msg.len()` bytes; `abs_ptr` is null (wait without limit)
    // or points to a live `timespec`. The kernel only reads both during the call.
    let r = unsafe {
        libc::mq_timedsend(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            prio,
            abs_ptr,
        )
    };
    if r != 0 {
        return Err(errno());
    }
    Ok(())
}

/// `mq_timedreceive(fd, buf, &prio, abs)`: the message length and its priority.
pub(crate) fn mq_timedreceive(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    abs: Option<&libc::timespec>,
) -> Result<(usize, u32), Errno> {
    let abs_ptr = abs.map_or(ptr::null(), |t| t as *const libc::timespec);
    let mut prio: libc::c_uint = 0;
    // SAFETY: `buf` is writable for `buf.len()` bytes and the kernel writes at most that many;
    // `prio` is a live `c_uint`; `abs_ptr` is null or points to a live `timespec`.
    let n = unsafe {
        libc::mq_timedreceive(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut prio,
            abs_ptr,
        )
    };
    if n < 0 {
        return Err(errno());
    }
    Ok((n as usize, prio))
}

/// `mq_getattr(fd)`.
pub(crate) fn mq_getattr(fd: BorrowedFd<'_>) -> Result<MqAttr, Errno> {
    // SAFETY: integers only; all-zero is valid.
    let mut a: libc::mq_attr = unsafe { zeroed() };
    // SAFETY: `a` is a live, writable `mq_attr`.
    if unsafe { libc::mq_getattr(fd.as_raw_fd(), &mut a) } != 0 {
        return Err(errno());
    }
    Ok(MqAttr::from_raw(&a))
}

/// `mq_setattr(fd, {mq_flags = flags})`: only `O_NONBLOCK` in `flags` is used by the kernel.
pub(crate) fn mq_setattr_flags(fd: BorrowedFd<'_>, flags: i64) -> Result<(), Errno> {
    let new = MqAttr {
        flags,
        maxmsg: 0,
        msgsize: 0,
        curmsgs: 0,
    }
    .to_raw();
    // SAFETY: `new` is a live, initialised `mq_attr`; a null old-attribute pointer is allowed.
    if unsafe { libc::mq_setattr(fd.as_raw_fd(), &new, ptr::null_mut()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// The length of the cookie the kernel sends on a `SIGEV_THREAD` notification
/// (`NOTIFY_COOKIE_LEN` in `<linux/mqueue.h>`).
pub(crate) const NOTIFY_COOKIE_LEN: usize = 32;

// The kernel copies a whole `struct sigevent` (64 bytes on every Linux ABI) from user space.
const _: () = assert!(size_of::<libc::sigevent>() == 64);

fn mq_notify_raw(fd: BorrowedFd<'_>, sev: Option<&libc::sigevent>) -> Result<(), Errno> {
    let sev_ptr = sev.map_or(ptr::null(), |s| s as *const libc::sigevent);
    // SAFETY: the raw `mq_notify` system call (not glibc's wrapper, which would start its own
    // helper thread for SIGEV_THREAD) reads `*sev_ptr` (a live, fully initialised sigevent) and,
    // for SIGEV_THREAD, `NOTIFY_COOKIE_LEN` bytes at `sival_ptr`, during the call only. A null
    // pointer removes the registration.
    let r = unsafe { libc::syscall(libc::SYS_mq_notify, fd.as_raw_fd(), sev_ptr) };
    if r != 0 {
        return Err(errno());
    }
    Ok(())
}

/// `mq_notify(fd, {SIGEV_THREAD, sock, cookie})` at the system-call level: the kernel sends the
/// 32-byte `cookie` (its last byte replaced by the event code) to the netlink socket `sock`.
pub(crate) fn mq_notify_netlink(
    fd: BorrowedFd<'_>,
    sock: BorrowedFd<'_>,
    cookie: &[u8; NOTIFY_COOKIE_LEN],
) -> Result<(), Errno> {
    // SAFETY: `sigevent` holds integers, a union of an int and a pointer, and padding: all-zero
    // is valid.
    let mut sev: libc::sigevent = unsafe { zeroed() };
    sev.sigev_notify = libc::SIGEV_THREAD;
    sev.sigev_signo = sock.as_raw_fd();
    sev.sigev_value = libc::sigval {
        sival_ptr: cookie.as_ptr().cast_mut().cast(),
    };
    mq_notify_raw(fd, Some(&sev))
}

/// `mq_notify(fd, {SIGEV_SIGNAL, signo})`.
pub(crate) fn mq_notify_signal(fd: BorrowedFd<'_>, signo: i32) -> Result<(), Errno> {
    // SAFETY: as above, all-zero is a valid `sigevent`.
    let mut sev: libc::sigevent = unsafe { zeroed() };
    sev.sigev_notify = libc::SIGEV_SIGNAL;
    sev.sigev_signo = signo;
    mq_notify_raw(fd, Some(&sev))
}

/// `mq_notify(fd, NULL)`: removes this process's registration, if it has one.
pub(crate) fn mq_notify_cancel(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    mq_notify_raw(fd, None)
}

const LONG: usize = size_of::<c_long>();

/// A `struct msgbuf` (a `long` message type followed by the text) in `long`-aligned storage,
/// as `msgsnd` and `msgrcv` take it.
#[derive(Clone)]
pub(crate) struct RawMsg {
    /// `words[0]` is the type; the text starts at `words[1]`.
    words: Vec<c_long>,
}

impl RawMsg {
    /// Room for `capacity` bytes of text.
    pub(crate) fn with_text_capacity(capacity: usize) -> RawMsg {
        RawMsg {
            words: vec![0; 1 + capacity.div_ceil(LONG)],
        }
    }

    /// How many bytes of text fit.
    pub(crate) fn text_capacity(&self) -> usize {
        (self.words.len() - 1) * LONG
    }

    /// Grows the storage so that at least `capacity` bytes of text fit.
    pub(crate) fn reserve_text(&mut self, capacity: usize) {
        let words = 1 + capacity.div_ceil(LONG);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }

    pub(crate) fn mtype(&self) -> c_long {
        self.words[0]
    }

    pub(crate) fn set_mtype(&mut self, mtype: c_long) {
        self.words[0] = mtype;
    }

    /// All text bytes (the whole capacity).
    pub(crate) fn text(&self) -> &[u8] {
        let words = &self.words[1..];
        // SAFETY: the bytes of a `[c_long]` are initialised and have no padding; `u8` has
        // alignment 1 and every bit pattern is valid; the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * LONG) }
    }

    /// All text bytes (the whole capacity), writable.
    pub(crate) fn text_mut(&mut self) -> &mut [u8] {
        let words = &mut self.words[1..];
        // SAFETY: as in `text`; any byte written is a valid part of some `c_long`, and the
        // slice borrows `self` mutably.
        unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * LONG)
        }
    }
}

/// `msgget(key, flags)`.
pub(crate) fn msgget(key: i32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: plain integers in and out.
    let id = unsafe { libc::msgget(key, flags) };
    if id < 0 {
        return Err(errno());
    }
    Ok(id)
}

/// `msgsnd(id, msg, len, flags)`: sends the type and the first `len` bytes of text.
pub(crate) fn msgsnd(id: i32, msg: &RawMsg, len: usize, flags: i32) -> Result<(), Errno> {
    assert!(len <= msg.text_capacity(), "msgsnd text beyond the buffer");
    // SAFETY: `msg.words` is a live `struct msgbuf`: a `long` type followed by at least `len`
    // bytes of text (checked above); the kernel only reads it during the call.
    let r = unsafe { libc::msgsnd(id, msg.words.as_ptr().cast(), len, flags) };
    if r != 0 {
        return Err(errno());
    }
    Ok(())
}

/// `msgrcv(id, msg, capacity, msgtyp, flags)`: the length of the text received.
pub(crate) fn msgrcv(
    id: i32,
    msg: &mut RawMsg,
    capacity: usize,
    msgtyp: c_long,
    flags: i32,
) -> Result<usize, Errno> {
    assert!(
        capacity <= msg.text_capacity(),
        "msgrcv text beyond the buffer"
    );
    // SAFETY: `msg.words` is writable for one `long` plus `capacity` bytes (checked above), and
    // the kernel writes at most that much.
    let n = unsafe { libc::msgrcv(id, msg.words.as_mut_ptr().cast(), capacity, msgtyp, flags) };
    if n < 0 {
        return Err(errno());
    }
    Ok(n as usize)
}

/// `msgctl(id, IPC_STAT)`.
pub(crate) fn msgctl_stat(id: i32) -> Result<libc::msqid_ds, Errno> {
    // SAFETY: `msqid_ds` holds integers only; all-zero is valid.
    let mut ds: libc::msqid_ds = unsafe { zeroed() };
    // SAFETY: `ds` is a live, writable `msqid_ds`.
    if unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return Err(errno());
    }
    Ok(ds)
}

/// `msgctl(id, IPC_STAT)`, and where the mode refuses reading (`EACCES`: a write-only queue,
/// its owner included), `msgctl(id, MSG_STAT_ANY)` (Linux 4.17), which reads without that
/// check: for the owner check of an open, and for a change through `IPC_SET`, which the owner
/// or creator may make whatever the mode. It takes an index; the kernel keeps an id's index in
/// its low bits, so the id serves, and the id it returns tells that the queue at the index is
/// still this one. `EACCES` where the kernel has no `MSG_STAT_ANY`.
pub(crate) fn msgctl_stat_any(id: i32) -> Result<libc::msqid_ds, Errno> {
    /// `MSG_STAT_ANY` of `<linux/msg.h>` (not in the libc crate).
    const MSG_STAT_ANY: i32 = 13;
    match msgctl_stat(id) {
        Err(Errno::ACCESS) => {}
        r => return r,
    }
    // SAFETY: `msqid_ds` holds integers only; all-zero is valid.
    let mut ds: libc::msqid_ds = unsafe { zeroed() };
    // SAFETY: `ds` is a live, writable `msqid_ds`.
    let got = unsafe { libc::msgctl(id, MSG_STAT_ANY, &mut ds) };
    match got {
        // An older kernel (the mode's refusal stands), or a queue removed since the first
        // look (at an empty index MSG_STAT_ANY says EINVAL too): the first look, again, tells.
        -1 if errno() == Errno::INVAL => match msgctl_stat(id) {
            Err(e @ (Errno::INVAL | Errno::IDRM)) => Err(e),
            _ => Err(Errno::ACCESS),
        },
        -1 => Err(errno()),
        // Another queue took the index: this one is gone.
        got if got != id => Err(Errno::IDRM),
        _ => Ok(ds),
    }
}

/// `msgctl(id, IPC_SET, ds)`: the kernel takes the owner, mode and `msg_qbytes` from `ds`.
pub(crate) fn msgctl_set(id: i32, ds: &libc::msqid_ds) -> Result<(), Errno> {
    let mut copy = *ds;
    // SAFETY: `copy` is a live, initialised `msqid_ds`; IPC_SET only reads it.
    if unsafe { libc::msgctl(id, libc::IPC_SET, &mut copy) } != 0 {
        return Err(errno());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_msg_text_round_trips_and_grows() {
        let mut m = RawMsg::with_text_capacity(5);
        assert!(m.text_capacity() >= 5);
        m.set_mtype(42);
        m.text_mut()[..5].copy_from_slice(b"hello");
        assert_eq!(m.mtype(), 42);
        assert_eq!(&m.text()[..5], b"hello");
        m.reserve_text(100);
        assert!(m.text_capacity() >= 100);
        assert_eq!(&m.text()[..5], b"hello");
        assert_eq!(m.mtype(), 42);
    }
}
