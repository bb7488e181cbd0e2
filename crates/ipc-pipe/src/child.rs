//! Handing pipe ends to a child process: [`ChildPipes`] maps ends to fd numbers in the child
//! (stdin, stdout, any number, or by name) and closes this process's copies when the child is
//! spawned. The child side adopts a named end with
//! [`PipeReader::from_inherited`](crate::PipeReader::from_inherited) /
//! [`PipeWriter::from_inherited`](crate::PipeWriter::from_inherited).

use std::os::fd::{OwnedFd, RawFd};
use std::process::{Child, Command};

use ipc_core::Result;
use ipc_core::inherit::ChildFds;

use crate::{Duplex, PipeReader, PipeWriter};

/// Pipe ends to hand to one child process, each at a chosen fd number.
///
/// Built on [`ChildFds`], which installs the descriptors in the child between `fork` and
/// `exec` and lets nothing else through: every descriptor this workspace opens is close-on-exec,
/// so the child gets exactly the ends listed here (and whatever the program itself left
/// inheritable). What this type adds is ownership, which is what makes pipes to children work:
///
/// - it takes the ends by value, and [`spawn`](ChildPipes::spawn) closes this process's copies
///   right after the child starts. A parent that kept the write end it gave a child would never
///   see end-of-file on the matching read end, and one that kept a read end would never get
///   `EPIPE`: the classic pipe deadlock, made impossible here;
/// - `spawn` consumes the [`Command`], whose `pre_exec` hook names descriptors that are closed
///   once the child is started, so the command cannot be spawned a second time with stale
///   numbers;
/// - `spawn` keeps a failed `exec` reported as an error whatever numbers the ends go to (see
///   [`spawn`](ChildPipes::spawn)).
///
/// For stdin/stdout alone, `Command::stdin(reader)` also works (`From<PipeReader> for Stdio`),
/// but the `Command` then keeps the end open until it is dropped.
///
/// ```
/// use std::io::{Read, Write};
/// use std::process::Command;
/// use ipc_pipe::ChildPipes;
///
/// let (child_stdin, mut to_child) = ipc_pipe::pipe()?;
/// let (mut from_child, child_stdout) = ipc_pipe::pipe()?;
/// let mut pipes = ChildPipes::new();
/// pipes.stdin(child_stdin)?.stdout(child_stdout)?;
/// let mut cmd = Command::new("tr");
/// cmd.args(["a-z", "A-Z"]);
/// let mut child = pipes.spawn(cmd)?;
/// to_child.write_all(b"shout")?;
/// drop(to_child); // end-of-file for tr
/// let mut out = String::new();
/// // Ends when tr exits: this process holds no copy of tr's stdout.
/// from_child.read_to_string(&mut out)?;
/// assert_eq!(out, "SHOUT");
/// assert!(child.wait()?.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct ChildPipes {
    /// Holds the ends until it is dropped (by `spawn`, right after the child started).
    fds: ChildFds,
}

impl ChildPipes {
    /// Nothing to hand over yet.
    pub fn new() -> ChildPipes {
        ChildPipes::default()
    }

    /// Hands `end` to the child as its stdin (fd 0).
    pub fn stdin(&mut self, end: PipeReader) -> Result<&mut ChildPipes> {
        self.pass_as(end, 0)
    }

    /// Hands `end` to the child as its stdout (fd 1).
    pub fn stdout(&mut self, end: PipeWriter) -> Result<&mut ChildPipes> {
        self.pass_as(end, 1)
    }

    /// Hands a [`Duplex`] end to the child as its stdin (the reader) and stdout (the writer):
    /// the child converses with the other end through its standard streams.
    pub fn stdio(&mut self, end: Duplex) -> Result<&mut ChildPipes> {
        self.stdin(end.reader)?.stdout(end.writer)
    }

    /// Hands `end` (a pipe end, or any descriptor) to the child as fd number `target`.
    ///
    /// Errors: [`ErrorKind::InvalidInput`](ipc_core::ErrorKind::InvalidInput) when `target` is
    /// negative or already used; [`ErrorKind::LimitExceeded`](ipc_core::ErrorKind::LimitExceeded)
    /// when out of descriptors, or naming `RLIMIT_NOFILE` when `target` is at or above it.
    pub fn pass_as(&mut self, end: impl Into<OwnedFd>, target: RawFd) -> Result<&mut ChildPipes> {
        self.fds.pass_as(end.into(), target)?;
        Ok(self)
    }

    /// Hands `end` to the child under `name`, at the lowest fd number from 3 up that is free
    /// in this process (so never one the child would inherit from it), and returns that number.
    /// Should the program open an inheritable descriptor at that number before the spawn, the
    /// spawn fails with [`ErrorKind::AlreadyExists`](ipc_core::ErrorKind::AlreadyExists)
    /// instead of replacing it in the child (see [`ChildFds::pass`]). The child adopts it with
    /// [`PipeReader::from_inherited`]`(name)` or [`PipeWriter::from_inherited`]`(name)`: the
    /// name travels in the environment variable [`ipc_core::inherit::ENV_VAR`].
    ///
    /// Errors: [`ErrorKind::InvalidName`](ipc_core::ErrorKind::InvalidName) for an empty name
    /// or one with `,`, `=` or a NUL byte;
    /// [`ErrorKind::AlreadyExists`](ipc_core::ErrorKind::AlreadyExists) when the name is
    /// taken; [`ErrorKind::LimitExceeded`](ipc_core::ErrorKind::LimitExceeded) naming
    /// `RLIMIT_NOFILE` when no number below it is free.
    pub fn pass(&mut self, name: &str, end: impl Into<OwnedFd>) -> Result<RawFd> {
        self.fds.pass(name, end.into())
    }

    /// Spawns `cmd` with the ends installed (`fork`, `dup2` in the child, `execve`), then closes
    /// this process's copies of them.
    ///
    /// The mapping is applied after `Command`'s own stdio set-up, so it wins over
    /// `Command::stdin`/`stdout` for the numbers it uses.
    ///
    /// A failed `exec` is reported as an error whatever numbers the ends go to (see
    /// [`ChildFds::spawn`](ipc_core::inherit::ChildFds::spawn)).
    ///
    /// Errors: the spawn's error (program not found, permission denied, ...), naming the program;
    /// [`ErrorKind::LimitExceeded`](ipc_core::ErrorKind::LimitExceeded) naming `RLIMIT_NOFILE`
    /// (or `/proc/sys/fs/file-max`) when out of descriptors for the spawn itself.
    ///
    /// # References
    /// - [`dup2(2)`](https://man7.org/linux/man-pages/man2/dup2.2.html),
    ///   [`execve(2)`](https://man7.org/linux/man-pages/man2/execve.2.html)
    pub fn spawn(self, mut cmd: Command) -> Result<Child> {
        let child = self.fds.spawn(&mut cmd).map_err(|e| {
            // Out of descriptors (the spawn's own pipe, or `/dev/null` for the stdio it sets
            // up): name the limit, as every descriptor this crate makes does.
            let errno = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
            let err = match errno {
                Some(e @ (rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)) => {
                    ipc_core::pipe::descriptor_error(e)
                }
                // No process could be made: a limit, not "try again" (`WouldBlock`).
                _ => ipc_core::knob::process_limit_error_io(e, ipc_core::knob::Task::Process),
            };
            let err = err.in_op("spawn").on(cmd.get_program().to_string_lossy());
            tracing::debug!(error = %err, "spawning a child with pipe ends failed");
            err
        })?;
        tracing::trace!(pid = child.id(), ?self.fds, "child spawned with pipe ends");
        // `cmd` (whose hook names our descriptors) and `self` (the descriptors) are dropped
        // here: the child holds the only copies of the ends now.
        Ok(child)
    }
}
