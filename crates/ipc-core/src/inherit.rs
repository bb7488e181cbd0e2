//! Handing file descriptors to a child process: [`ChildFds`] on the parent side maps
//! descriptors to fd numbers in the child (stdin, stdout, or any number) without leaking any
//! other descriptor; [`take`] on the child side adopts one by name.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};

use crate::{Error, ErrorKind, Result};

/// The environment variable that tells a child which inherited fd carries which name:
/// `name=fd` pairs separated by commas.
pub const ENV_VAR: &str = "IPC_INHERITED_FDS";

/// Descriptors to hand to a child process, each at a chosen fd number.
///
/// Every descriptor this workspace opens is close-on-exec, so a child gets only what is listed
/// here. In the child (after `fork`, before `exec`) each listed descriptor is first duplicated
/// above every target number, then moved to its target, so mappings that overlap (a source that
/// is another's target) cannot clobber each other. Named descriptors are announced to the child
/// in [`ENV_VAR`] and adopted there with [`take`].
///
/// [`pass`](ChildFds::pass) and [`pass_as`](ChildFds::pass_as) take the descriptor (anything
/// `Into<OwnedFd>`), like `ipc_pipe::ChildPipes`: this value holds it until it is dropped, so
/// once the child is spawned and this value dropped, the child holds the only copy. Pass a
/// copy (`try_clone`) of a descriptor this process keeps using.
///
/// ```
/// use std::process::Command;
/// use ipc_core::inherit::ChildFds;
///
/// let (reader, writer) = rustix::pipe::pipe()?;
/// let mut fds = ChildFds::new();
/// fds.pass_as(writer, 1)?; // the child's stdout is our pipe (taken: only the child keeps it)
/// let mut cmd = Command::new("echo");
/// cmd.arg("hi");
/// let mut child = fds.spawn(&mut cmd)?;
/// drop(fds); // closes our copy of the write end: the reader sees end-of-file
/// let mut out = String::new();
/// std::io::Read::read_to_string(&mut std::fs::File::from(reader), &mut out)?;
/// child.wait()?;
/// assert_eq!(out, "hi\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct ChildFds {
    /// `(the descriptor handed over, close-on-exec; target fd in the child; name)`.
    maps: Vec<(OwnedFd, RawFd, Option<String>)>,
    /// What the `pre_exec` hooks read in the child: every hook this value installed, on any
    /// `Command`, shares it.
    table: Arc<HookTable>,
}

/// The most descriptors one [`ChildFds`] hands over.
const MAX_FDS: usize = 64;

/// The errno the child's hook reports when a number [`ChildFds::pass`] chose holds an
/// inheritable descriptor at spawn time (the only thing that hook fails with `EBUSY` for).
const TARGET_TAKEN: i32 = libc::EBUSY;

/// The mapping as the `pre_exec` hook sees it in the child, where it may read memory but not
/// lock or allocate: plain atomics, written in the parent only through `&mut ChildFds` (and on
/// drop).
///
/// A `Command` keeps its hooks for good, so a hook can run long after the spawn it was made
/// for: when the `Command` is spawned again, directly or through [`ChildFds::spawn`] (which
/// adds another hook). Hence the hook reads the current mapping from here rather than a copy
/// taken when it was installed, refuses to run once the descriptors it names are closed, and
/// runs once per child however many hooks there are.
#[derive(Debug)]
struct HookTable {
    /// Set when the `ChildFds` is dropped, before its descriptors are closed: the numbers in
    /// `pairs` may name anything after that.
    released: AtomicBool,
    /// Set in a child (its own copy of this memory) once the mapping is installed there.
    installed: AtomicBool,
    /// Entries of `pairs` in use.
    len: AtomicUsize,
    /// `(the handed-over descriptor's number here, target number)`.
    pairs: [(AtomicI32, AtomicI32); MAX_FDS],
    /// Whether the target of the entry was chosen by [`ChildFds::pass`] (a number that was
    /// free), rather than asked for by [`ChildFds::pass_as`]: such a target must not replace
    /// an inheritable descriptor.
    chosen: [AtomicBool; MAX_FDS],
}

impl Default for HookTable {
    fn default() -> HookTable {
        HookTable {
            released: AtomicBool::new(false),
            installed: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            pairs: [const { (AtomicI32::new(-1), AtomicI32::new(-1)) }; MAX_FDS],
            chosen: [const { AtomicBool::new(false) }; MAX_FDS],
        }
    }
}

impl HookTable {
    /// Installs the mapping: runs in the child between `fork` and `exec`, so it only reads
    /// atomics and makes raw `fcntl`/`dup2`/`close` calls (async-signal-safe, no allocation).
    fn install(&self) -> std::io::Result<()> {
        if self.installed.load(Ordering::SeqCst) {
            return Ok(()); // An earlier hook of this `ChildFds` did it in this child.
        }
        if self.released.load(Ordering::SeqCst) {
            // The `ChildFds` is gone and its descriptors closed: the numbers below may name
            // anything now.
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        }
        let len = self.len.load(Ordering::SeqCst).min(MAX_FDS);
        let pairs = &self.pairs[..len];
        let target = |i: usize| pairs[i].1.load(Ordering::SeqCst);
        let is_target = |n: RawFd| (0..len).any(|j| target(j) == n);
        // Phase 0: a number `pass` chose was free in the parent; if this child would inherit a
        // descriptor there now (the program opened one since, on another thread or between
        // `pass` and the spawn), installing ours would silently replace it. Refuse before
        // touching anything. (A close-on-exec descriptor there would not reach the program
        // anyway: `spawn` holds free targets with such copies.)
        for i in 0..len {
            if !self.chosen[i].load(Ordering::SeqCst) {
                continue;
            }
            // SAFETY: `F_GETFD` on any number only reads that descriptor's flags.
            let flags = unsafe { libc::fcntl(target(i), libc::F_GETFD) };
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                return Err(std::io::Error::from_raw_os_error(TARGET_TAKEN));
            }
        }
        let mut temps = [0 as RawFd; MAX_FDS];
        // Phase 1: copy every source to a number that is no target, so phase 2 cannot clobber
        // one. A copy that lands on a free target is left there as a placeholder (phase 2
        // replaces it: every target gets a `dup2`) and the next number is tried. The copies
        // take the lowest free numbers, not numbers above every target: a target just below
        // `RLIMIT_NOFILE` is valid, and a copy above it could not be made.
        for (i, (src, _)) in pairs.iter().enumerate() {
            // SAFETY: `released` is clear, so the `ChildFds` was alive at the fork and its
            // descriptors, whose numbers these are, were open in the parent and so are here.
            let src = unsafe { BorrowedFd::borrow_raw(src.load(Ordering::SeqCst)) };
            let mut from = 0;
            temps[i] = loop {
                let tmp = rustix::io::fcntl_dupfd_cloexec(src, from)?;
                let tmp = std::os::fd::IntoRawFd::into_raw_fd(tmp);
                if !is_target(tmp) {
                    break tmp;
                }
                // At most one placeholder per target: the loop ends.
                from = tmp + 1;
            };
        }
        // Phase 2: move each copy to its target; dup2 leaves the target inheritable.
        for (i, &tmp) in temps[..len].iter().enumerate() {
            // SAFETY: `dup2` and `close` on numbers phase 1 just opened and on targets the
            // caller chose; no Rust value owns any of them in this process image.
            unsafe {
                if libc::dup2(tmp, target(i)) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(tmp);
            }
        }
        self.installed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for ChildFds {
    fn drop(&mut self) {
        // Before the fields (and so our descriptors) are dropped: a hook that runs from now
        // on (a `Command` spawned again) fails instead of using closed numbers.
        self.table.released.store(true, Ordering::SeqCst);
    }
}

impl ChildFds {
    /// An empty set.
    pub fn new() -> ChildFds {
        ChildFds::default()
    }

    /// Hands `fd` to the child as fd number `target` (0 for stdin, 1 for stdout, ...).
    ///
    /// Takes the descriptor, as [`pass`](ChildFds::pass) does (and as `ipc_pipe::ChildPipes`
    /// does): it is kept, close-on-exec, until this value is dropped, so after the spawn only
    /// the child has it. To keep a descriptor of your own, pass a copy
    /// (`fd.try_clone()`, or `fd.as_fd().try_clone_to_owned()`).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] when `target` is negative or another entry's;
    /// [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` when `target` is at or above this
    /// process's soft limit, which the child inherits (any number below it works).
    pub fn pass_as(&mut self, fd: impl Into<OwnedFd>, target: RawFd) -> Result<&mut ChildFds> {
        if target < 0 || self.maps.iter().any(|m| m.1 == target) {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                "target fd number is negative or already used",
            )
            .on(target));
        }
        check_below_nofile(target)?;
        self.push_owned(close_on_exec(fd.into())?, target, None, false)
    }

    /// Hands `fd` to the child under `name`, at the lowest number from 3 up that is free in
    /// this process now (no descriptor open there, so none the child would inherit) and not
    /// taken by another entry; the child gets it back with [`take`]`(name)`. Returns the number
    /// it will have in the child.
    ///
    /// The number is checked again in the child before anything is installed: if the program
    /// has since opened an inheritable descriptor there (another thread, or between this call
    /// and the spawn), the spawn fails with [`ErrorKind::AlreadyExists`] naming the number,
    /// rather than replace that descriptor in the child.
    ///
    /// Takes the descriptor, as [`pass_as`](ChildFds::pass_as) does.
    ///
    /// Errors: [`ErrorKind::InvalidName`] for an empty name or one with `,`, `=` or a NUL
    /// byte; [`ErrorKind::AlreadyExists`] when the name is taken; [`ErrorKind::LimitExceeded`]
    /// naming `RLIMIT_NOFILE` when no number below that limit is free.
    pub fn pass(&mut self, name: &str, fd: impl Into<OwnedFd>) -> Result<RawFd> {
        if name.is_empty() || name.contains([',', '=', '\0']) {
            return Err(Error::with_note(
                ErrorKind::InvalidName,
                "an inherited fd name is non-empty and has no ',', '=' or NUL byte (it \
                 travels in the environment as name=fd pairs separated by commas)",
            )
            .on(name));
        }
        if self.maps.iter().any(|m| m.2.as_deref() == Some(name)) {
            return Err(Error::new(ErrorKind::AlreadyExists)
                .in_op("pass fd")
                .on(name));
        }
        // Taken first: its own number is open, so it is not the one chosen.
        let fd = close_on_exec(fd.into())?;
        let target = (3..RawFd::MAX)
            .find(|&t| self.maps.iter().all(|m| m.1 != t) && !is_open(t))
            .ok_or_else(|| {
                Error::with_note(ErrorKind::LimitExceeded, "no free descriptor number")
                    .in_op("pass fd")
                    .on(name)
            })?;
        check_below_nofile(target).map_err(|e| e.on(name))?;
        self.push_owned(fd, target, Some(name.to_owned()), true)?;
        Ok(target)
    }

    fn push_owned(
        &mut self,
        fd: OwnedFd,
        target: RawFd,
        name: Option<String>,
        chosen: bool,
    ) -> Result<&mut ChildFds> {
        if target < 0 || self.maps.iter().any(|m| m.1 == target) {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                "target fd number is negative or already used",
            )
            .on(target));
        }
        if self.maps.len() == MAX_FDS {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                format!("at most {MAX_FDS} descriptors can be handed to one child"),
            )
            .on(target));
        }
        let i = self.maps.len();
        let slot = &self.table.pairs[i];
        slot.0.store(fd.as_raw_fd(), Ordering::SeqCst);
        slot.1.store(target, Ordering::SeqCst);
        self.table.chosen[i].store(chosen, Ordering::SeqCst);
        self.maps.push((fd, target, name));
        self.table.len.store(self.maps.len(), Ordering::SeqCst);
        Ok(self)
    }

    /// Spawns `cmd` with the descriptors installed (`fork`, then in the child `fcntl`/`dup2`,
    /// then `execve`).
    ///
    /// While spawning, every free target number is held open in this process.
    /// `Command::spawn` makes a close-on-exec pipe through which the child reports a failed
    /// `exec`; were that pipe to get a target number, the child would overwrite it with a
    /// passed descriptor, and a failed `exec` would look like a successful spawn while its
    /// error report went into the passed descriptor. Holding the numbers keeps the two apart.
    ///
    /// `self` can be dropped once this returns: the child has its own copies.
    ///
    /// The hook stays on `cmd`. Spawned again, directly or through this method, `cmd` installs
    /// the mapping `self` holds at that time (once per child, however many hooks it has); once
    /// `self` is dropped, such a spawn fails with `EBADF` (its descriptors are closed) rather
    /// than hand the child whatever has their numbers by then.
    ///
    /// # References
    /// - [`dup2(2)`](https://man7.org/linux/man-pages/man2/dup2.2.html),
    ///   [`execve(2)`](https://man7.org/linux/man-pages/man2/execve.2.html)
    ///
    /// A number [`pass`](ChildFds::pass) chose that holds an inheritable descriptor by the time
    /// the child starts fails the spawn with an error of kind [`ErrorKind::AlreadyExists`]
    /// (inside the `io::Error`; `ipc_core::Error::from` gets it back) naming the number. A
    /// process that cannot be made (`EAGAIN` from `fork`) is, the same way,
    /// [`ErrorKind::LimitExceeded`] naming the limit reached
    /// ([`knob::process_limit_error`](crate::knob::process_limit_error)).
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<std::process::Child> {
        self.apply(cmd);
        let held = self.hold_targets();
        let spawned = cmd.spawn();
        drop(held);
        spawned.map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::AGAIN.raw_os_error()) {
                // No process could be made (`fork`/`clone`: a cgroup's pids.max, RLIMIT_NPROC,
                // threads-max): a limit to name, not "try again", which `WouldBlock` would say.
                return crate::knob::process_limit_error(
                    rustix::io::Errno::AGAIN,
                    crate::knob::Task::Process,
                )
                .in_op("spawn with passed descriptors")
                .into();
            }
            if e.raw_os_error() != Some(TARGET_TAKEN) {
                return e;
            }
            let chosen: Vec<String> = self
                .maps
                .iter()
                .enumerate()
                .filter(|(i, _)| self.table.chosen[*i].load(Ordering::SeqCst))
                .map(|(_, m)| format!("fd {}", m.1))
                .collect();
            if chosen.is_empty() {
                return e; // Not our hook's refusal: exec itself said EBUSY.
            }
            Error::with_note(
                ErrorKind::AlreadyExists,
                format!(
                    "a descriptor the child would inherit took a number chosen for a passed \
                     descriptor ({}) after it was chosen; nothing was replaced and the child \
                     did not run",
                    chosen.join(", ")
                ),
            )
            .in_op("spawn with passed descriptors")
            .with_source(e)
            .into()
        })
    }

    /// Occupies every free target number in this process (`fcntl(F_DUPFD_CLOEXEC)` at that
    /// number), so that nothing opened during the spawn gets one.
    fn hold_targets(&self) -> Vec<OwnedFd> {
        let Some((source, _, _)) = self.maps.first() else {
            return Vec::new();
        };
        let mut held = Vec::new();
        for (_, target, _) in &self.maps {
            // The lowest free number from `target` up: `target` itself if it was free. If it
            // was taken, something holds it already and the copy is not needed. A number that
            // cannot be held (above RLIMIT_NOFILE) is above what a new pipe would get anyway.
            if let Ok(fd) = rustix::io::fcntl_dupfd_cloexec(source, *target) {
                if fd.as_raw_fd() == *target {
                    held.push(fd);
                }
            }
        }
        held
    }

    /// Installs the mapping into `cmd` (a `pre_exec` hook and the [`ENV_VAR`] variable).
    fn apply(&self, cmd: &mut Command) {
        let names: Vec<String> = self
            .maps
            .iter()
            .filter_map(|(_, t, n)| n.as_ref().map(|n| format!("{n}={t}")))
            .collect();
        if !names.is_empty() {
            cmd.env(ENV_VAR, names.join(","));
        } else if !cmd.get_envs().any(|(k, _)| k == ENV_VAR) {
            // No names for this child: do not let it inherit our own list, whose numbers mean
            // nothing there.
            cmd.env_remove(ENV_VAR);
        }
        let table = Arc::clone(&self.table);
        // SAFETY: the hook runs in the child between fork and exec; `HookTable::install` only
        // reads and writes atomics in the child's copy of the table and makes async-signal-safe
        // system calls, allocating nothing. It checks that the descriptors it names were still
        // open at the fork.
        unsafe {
            cmd.pre_exec(move || table.install());
        }
    }
}

/// `fd` with close-on-exec set, so it reaches no child but through the mapping (a descriptor
/// handed over may have been opened inheritable).
fn close_on_exec(fd: OwnedFd) -> Result<OwnedFd> {
    let flags = fcntl_getfd(&fd).map_err(|e| Error::from(e).in_op("fcntl(F_GETFD)"))?;
    if !flags.contains(FdFlags::CLOEXEC) {
        fcntl_setfd(&fd, flags | FdFlags::CLOEXEC)
            .map_err(|e| Error::from(e).in_op("fcntl(F_SETFD)"))?;
    }
    Ok(fd)
}

/// Fails with [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` when `target` is at or
/// above the soft limit: no process under that limit (the child inherits it) can have a
/// descriptor there, and the spawn would fail with a bare `EBADF` from the child's `dup2`.
fn check_below_nofile(target: RawFd) -> Result<()> {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match lim {
        Some(max) if u64::try_from(target).map_or(true, |t| t >= max) => {
            Err(Error::limit("RLIMIT_NOFILE", Some(max))
                .in_op(format!(
                    "pass fd as {target}: descriptor numbers stop below the soft RLIMIT_NOFILE"
                ))
                .on(format_args!("fd {target}")))
        }
        _ => Ok(()),
    }
}

/// Whether `fd` is an open descriptor of this process (`fcntl(F_GETFD)`).
fn is_open(fd: RawFd) -> bool {
    // SAFETY: `F_GETFD` on any number only reads that descriptor's flags; it fails with
    // `EBADF` when nothing is open there.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Every number [`take`] adopted in this process. An inherited descriptor is open from the
/// `exec` on, so its number cannot be reused before it is adopted; once adopted, it is owned,
/// and a later `take` naming it (the name twice in a list, or another name) is refused.
static TAKEN: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// Adopts the descriptor the parent handed to this process under `name` (with
/// [`ChildFds::pass`]).
///
/// The descriptor is made close-on-exec again, so it does not leak further. Each name can be
/// taken once per process.
///
/// Adopts only what [`ChildFds::pass`] could have put there: the number listed once for
/// `name` in [`ENV_VAR`], written in decimal digits, 3 or more (never stdin, stdout or
/// stderr), open and inheritable (a descriptor opened by this process is close-on-exec).
/// Anything else is a list that was forged, mangled or left in the environment by an
/// ancestor, and its number may name an unrelated descriptor: it is refused and the
/// descriptor left as it is.
///
/// Errors: [`ErrorKind::NotFound`] if the parent passed nothing usable under `name` (not
/// listed, listed more than once, not a descriptor number, 0 to 2, not open, or not
/// inherited), the note saying which; [`ErrorKind::AlreadyExists`] if it was taken already.
pub fn take(name: &str) -> Result<OwnedFd> {
    take_checked(name, |_| Ok(()))
}

/// [`take`], adopting the descriptor only if `check` accepts it (a type check: a pipe, a
/// memfd, a socket). When `check` fails, its error is returned and the descriptor is left
/// open, inheritable and not taken: a list naming the wrong number must not make this
/// process close a descriptor that belongs to something else.
pub fn take_checked(
    name: &str,
    check: impl FnOnce(BorrowedFd<'_>) -> Result<()>,
) -> Result<OwnedFd> {
    take_listed_checked(&std::env::var(ENV_VAR).unwrap_or_default(), name, check)
}

/// [`take`] with the value of [`ENV_VAR`] given.
#[cfg(test)]
fn take_listed(list: &str, name: &str) -> Result<OwnedFd> {
    take_listed_checked(list, name, |_| Ok(()))
}

/// [`take_checked`] with the value of [`ENV_VAR`] given.
fn take_listed_checked(
    list: &str,
    name: &str,
    check: impl FnOnce(BorrowedFd<'_>) -> Result<()>,
) -> Result<OwnedFd> {
    let not_found = |note: String| {
        Error::with_note(ErrorKind::NotFound, note)
            .in_op("take inherited fd")
            .on(name)
    };
    let mut values = list
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, fd)| fd);
    let value = values
        .next()
        .ok_or_else(|| not_found(format!("no fd named {name:?} in {ENV_VAR}")))?;
    if values.next().is_some() {
        return Err(not_found(format!(
            "{ENV_VAR} lists {name:?} more than once, which ChildFds never writes (a forged or \
             mangled list): none of its numbers is adopted"
        )));
    }
    let fd: RawFd = Some(value)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            not_found(format!(
                "{ENV_VAR} gives {value:?} for {name:?}, which is not a descriptor number"
            ))
        })?;
    if fd < 3 {
        return Err(not_found(format!(
            "{ENV_VAR} names fd {fd}, a standard stream: ChildFds::pass never puts a named \
             descriptor there (pass_as hands those over unnamed), so the list is not ours"
        )));
    }
    // Reserve the number (no other `take` adopts it meanwhile), then look at it without the
    // lock: `check` is the caller's code, which may itself take another name.
    let taken = || TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    if !taken().get_or_insert_with(HashSet::new).insert(fd) {
        return Err(Error::new(ErrorKind::AlreadyExists)
            .in_op("take inherited fd")
            .on(format_args!("{name} (fd {fd})")));
    }
    let adopted = (|| {
        // SAFETY: `fd` is not negative, and the borrow is used only to ask whether it is
        // open, whether it was inherited, and (by `check`) what it is, while no other `take`
        // can adopt it (reserved in `TAKEN`); nothing else in this process owns an inherited
        // descriptor that is still inheritable.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let flags = fcntl_getfd(borrowed).map_err(|e| {
            not_found(format!("{ENV_VAR} names fd {fd}, which is not open"))
                .with_source(std::io::Error::from(e))
        })?;
        if flags.contains(FdFlags::CLOEXEC) {
            // A descriptor that came through `exec` has close-on-exec clear (`ChildFds` moves
            // it into place with `dup2`); this one was opened by this process since. The list
            // is not ours: typically inherited through the environment from an ancestor that
            // was handed descriptors, by a program that spawned this one without any.
            return Err(not_found(format!(
                "{ENV_VAR} names fd {fd}, but that descriptor is close-on-exec, so it was \
                 opened by this process, not inherited (a list left in the environment by an \
                 ancestor?)"
            )));
        }
        check(borrowed)?;
        fcntl_setfd(borrowed, flags | FdFlags::CLOEXEC)?;
        Ok(())
    })();
    if let Err(e) = adopted {
        // Not adopted: the number is free for a later `take` again.
        taken().get_or_insert_with(HashSet::new).remove(&fd);
        return Err(e);
    }
    // SAFETY: `fd` was open and inheritable, so it came through `exec` as the parent's list
    // says (nothing in this process made it), and it is taken at most once (the `TAKEN` set):
    // this is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_and_unique() {
        let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut fds = ChildFds::new();
        let a = fds.pass("a", r.try_clone().unwrap()).unwrap();
        let b = fds.pass("b", r.try_clone().unwrap()).unwrap();
        // Numbers that were free in this process (none the child would inherit), distinct.
        assert!(a >= 3 && b >= 3 && a != b, "{a} {b}");
        assert_eq!(
            fds.pass("a", r.try_clone().unwrap()).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            fds.pass("x=y", r.try_clone().unwrap()).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        assert_eq!(
            fds.pass_as(r.try_clone().unwrap(), a).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    /// A name with a NUL byte cannot travel in the environment: `pass` took it, and every
    /// spawn of the `ChildFds` then failed with std's "nul byte found in provided data",
    /// naming neither the name nor the call that let it in.
    #[test]
    fn a_name_with_a_nul_byte_is_refused_when_passed() {
        let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut fds = ChildFds::new();
        let e = fds.pass("a\0b", r).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
        assert!(fds.maps.is_empty());
        let mut cmd = Command::new("/bin/true");
        assert!(fds.spawn(&mut cmd).unwrap().wait().unwrap().success());
    }

    /// A descriptor handed over inheritable is made close-on-exec while this value holds it,
    /// so it reaches no child (this one or another spawned meanwhile) but through the mapping.
    #[test]
    fn a_descriptor_handed_over_is_held_close_on_exec() {
        let (_r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::empty()).unwrap();
        assert!(!fcntl_getfd(&w).unwrap().contains(FdFlags::CLOEXEC));
        let mut fds = ChildFds::new();
        fds.pass("w", w).unwrap();
        assert!(
            fcntl_getfd(&fds.maps[0].0)
                .unwrap()
                .contains(FdFlags::CLOEXEC)
        );
    }

    fn read_all(fd: OwnedFd) -> String {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s).unwrap();
        s
    }

    /// A `Command` keeps its hook after a spawn. Spawned again once the `ChildFds` (and the
    /// descriptors its hook names) is gone, it must fail, not hand the child whatever holds
    /// those numbers by then.
    #[test]
    fn respawn_after_release_fails_instead_of_passing_a_stranger() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut fds = ChildFds::new();
        fds.pass_as(w.try_clone().unwrap(), 3).unwrap();
        let src = fds.maps[0].0.as_raw_fd();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo hi >&3"]);
        assert!(fds.spawn(&mut cmd).unwrap().wait().unwrap().success());
        drop((fds, w));
        assert_eq!(read_all(r), "hi\n");
        // An unrelated descriptor takes the number the hook names (or, if another thread was
        // quicker, that thread's descriptor has it: the same mistake, just not visible here).
        let stranger =
            rustix::fs::memfd_create("stranger", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let _at = rustix::io::fcntl_dupfd_cloexec(&stranger, src).unwrap();
        let spawned = cmd.spawn().map(|mut c| c.wait());
        let size = rustix::fs::fstat(&stranger).unwrap().st_size;
        assert_eq!(size, 0, "the child wrote into an unrelated descriptor");
        assert!(spawned.is_err(), "{spawned:?}");
    }

    /// Spawning one `Command` twice through `spawn` registers two hooks; the mapping must
    /// still be installed once, also when a source number is another entry's target.
    #[test]
    fn spawning_one_command_twice_installs_the_mapping_once() {
        let (ra, wa) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (rb, wb) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut fds = ChildFds::new();
        // `wa`'s own number is taken here, so our copy of it gets another one ...
        let ta = wa.as_raw_fd();
        fds.pass_as(wa.try_clone().unwrap(), ta).unwrap();
        // ... which is where `wb` goes in the child: the mapping overlaps.
        let tb = fds.maps[0].0.as_raw_fd();
        fds.pass_as(wb.try_clone().unwrap(), tb).unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            &format!("echo a > /proc/self/fd/{ta}; echo b > /proc/self/fd/{tb}"),
        ]);
        for _ in 0..2 {
            assert!(fds.spawn(&mut cmd).unwrap().wait().unwrap().success());
        }
        drop((fds, cmd, wa, wb));
        assert_eq!(
            (read_all(ra), read_all(rb)),
            ("a\na\n".into(), "b\nb\n".into())
        );
    }

    #[test]
    fn take_adopts_only_inherited_descriptors() {
        let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        // Opened here (close-on-exec, as std opens everything), as a stale list from an
        // ancestor would name it.
        let list = format!("mine={},neg=-1", r.as_raw_fd());
        let e = take_listed(&list, "mine").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("close-on-exec"), "{e}");
        assert_eq!(
            take_listed(&list, "neg").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // What `dup2` in a child leaves: an inheritable descriptor, adopted once.
        let inheritable = rustix::io::fcntl_dupfd_cloexec(&r, 0).unwrap();
        fcntl_setfd(&inheritable, FdFlags::empty()).unwrap();
        let list = format!("given={}", inheritable.as_raw_fd());
        let fd = std::os::fd::IntoRawFd::into_raw_fd(inheritable);
        let taken = take_listed(&list, "given").unwrap();
        assert_eq!(taken.as_raw_fd(), fd);
        assert!(fcntl_getfd(&taken).unwrap().contains(FdFlags::CLOEXEC));
        assert_eq!(
            take_listed(&list, "given").unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn a_child_without_names_does_not_inherit_the_list() {
        let (_r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut fds = ChildFds::new();
        fds.pass_as(w.try_clone().unwrap(), 1).unwrap();
        let mut cmd = Command::new("/bin/true");
        fds.apply(&mut cmd);
        let env: Vec<_> = cmd.get_envs().collect();
        assert_eq!(env, [(std::ffi::OsStr::new(ENV_VAR), None)]);
    }

    /// An inheritable descriptor at the lowest free number from `from` up, as `dup2` in a
    /// child leaves one; the caller releases it (adopted by `take_listed`, or closed).
    ///
    /// `take` remembers every number it adopted for the life of the process, so tests that
    /// run in parallel in this one take numbers from ranges of their own (`from`), never one
    /// another test adopted and closed.
    fn inheritable(from: RawFd) -> RawFd {
        let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let fd = rustix::io::fcntl_dupfd_cloexec(&r, from).unwrap();
        fcntl_setfd(&fd, FdFlags::empty()).unwrap();
        std::os::fd::IntoRawFd::into_raw_fd(fd)
    }

    /// A list naming stdin, stdout or stderr (`ChildFds::pass` never puts a named descriptor
    /// there: it chooses from 3 up) must not make `take` adopt it: the `OwnedFd` would close
    /// the process's standard stream when dropped, and the next descriptor opened would
    /// take its number (what `println!` then writes to). These are inheritable, so the
    /// close-on-exec check alone let them through.
    #[test]
    fn take_never_adopts_stdin_stdout_or_stderr() {
        for fd in 0..3 {
            let name = format!("std{fd}");
            let flags = fcntl_getfd(
                // SAFETY: only read the flags of the standard descriptor, if open.
                unsafe { BorrowedFd::borrow_raw(fd) },
            );
            match take_listed(&format!("{name}={fd}"), &name) {
                Ok(adopted) => {
                    // Undo what the adoption did before failing, so the test process keeps
                    // its standard streams: the flag back, and no close.
                    if let Ok(flags) = flags {
                        let _ = fcntl_setfd(&adopted, flags);
                    }
                    std::mem::forget(adopted);
                    panic!("take adopted fd {fd}, a standard stream");
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
                    assert!(e.to_string().contains(&format!("fd {fd}")), "{e}");
                }
            }
        }
    }

    /// `take`'s documented error for a listed descriptor that is not open is `NotFound`, and
    /// it says so; it was an `Io` error of `EBADF`.
    #[test]
    fn take_of_a_closed_number_is_not_found() {
        let fd = inheritable(300);
        // SAFETY: `fd` was just made by `inheritable` and is owned by nothing else.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        let e = take_listed(&format!("gone={fd}"), "gone").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("not open"), "{e}");
    }

    /// A name listed twice (`ChildFds` never writes such a list: it was forged or mangled)
    /// is ambiguous: `take` must refuse it rather than adopt the first number, which may be
    /// an unrelated descriptor; and a value that is not a descriptor number must be reported
    /// as such, not as "no fd named".
    #[test]
    fn take_refuses_a_name_listed_twice_and_says_what_is_wrong_with_a_value() {
        let a = inheritable(320);
        let b = inheritable(320);
        let list = format!("twice={a},other={b},twice={b}");
        match take_listed(&list, "twice") {
            Ok(fd) => {
                std::mem::forget(fd);
                panic!("a name listed twice was adopted");
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
                assert!(e.to_string().contains("twice"), "{e}");
            }
        }
        // Neither descriptor was adopted or closed by the refusal.
        let other = take_listed(&list, "other").unwrap();
        assert_eq!(other.as_raw_fd(), b);
        // SAFETY: `a` was made by `inheritable` and never adopted (the refusal above).
        drop(unsafe { OwnedFd::from_raw_fd(a) });
        for bad in ["x", "", "3.0", " 7", "99999999999", "-1", "0x10"] {
            let e = take_listed(&format!("bad={bad}"), "bad").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{bad:?}: {e}");
            assert!(!e.to_string().contains("no fd named"), "{bad:?}: {e}");
            assert!(
                e.to_string().contains("not a descriptor number"),
                "{bad:?}: {e}"
            );
        }
    }

    /// Threads racing to take one name: exactly one adopts it, every other gets
    /// `AlreadyExists` (the documented "each name can be taken once per process").
    #[test]
    fn concurrent_takes_of_one_name_adopt_it_once() {
        let fd = inheritable(340);
        let list = std::sync::Arc::new(format!("raced={fd}"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (list, barrier) = (list.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    take_listed(&list, "raced")
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let adopted: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(adopted.len(), 1, "{results:?}");
        assert_eq!(adopted[0].as_raw_fd(), fd);
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        }
    }

    #[test]
    fn take_without_a_parent_mapping_is_not_found() {
        assert_eq!(
            take("nothing-here").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
