//! The `ipc` command: list, inspect and clean up IPC objects, show the kernel limits the
//! library's errors name, and send or receive messages from a terminal.
//!
//! Exit codes are [`Exit`]'s, documented in `ipc --help` and the README.

#![forbid(unsafe_code)]

/// Prints a line to stdout; a closed stdout (`ipc list | head -3`) ends the command quietly,
/// as it ends any Unix filter.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// Prints a line to stderr; a stderr nobody reads any more loses the line, and changes no
/// exit code (`eprintln!` would panic).
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::output::err_line(format_args!($($arg)*))
    };
}

mod clean;
mod limits;
mod list;
mod output;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use ipc_core::inventory::Kind;
use ipc_core::{Error, ErrorKind};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (an operation or removal failed)
  2  usage error (clean: a name matching objects of several kinds, without --kind)
  3  not found (inspect, send, recv: no such object; clean: a name matched nothing)
  4  timed out (send, recv: --timeout passed first)
  5  permission denied
  6  corrupted (inspect: a header of this library fails validation)";

/// Inspect, clean up and talk to Linux IPC objects: POSIX shared memory, semaphores and
/// queues, System V queues, segments and semaphore sets, FIFOs and Unix sockets.
#[derive(Debug, Parser)]
#[command(name = "ipc", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every IPC object this user can see, with its owner, size, the processes the kernel
    /// records and whether they live, and a verdict: in-use, stale or unknown.
    List {
        /// Only objects of this kind.
        #[arg(long, value_enum)]
        kind: Vec<KindArg>,
        /// Only objects that are provably stale.
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        scan: ScanArgs,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything known about one object: a POSIX name (/name), a path (FIFO, socket), a
    /// System V key (0x1234) or id (id:N).
    Inspect {
        /// The object.
        name: String,
        #[command(flatten)]
        scan: ScanArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove provably stale objects. A dry run unless --yes; only this user's objects, and
    /// another user's only when run as root and named on the command line.
    Clean {
        /// Remove stale objects (required: only stale objects are ever removed).
        #[arg(long, required = true)]
        stale: bool,
        /// Remove them (without this, only say what would be removed).
        #[arg(long)]
        yes: bool,
        /// Only these objects (names as for inspect, but the key 0x00000000, IPC_PRIVATE,
        /// names none: give id:N; one that matches nothing is reported, exit code 3; one
        /// that matches objects of several kinds, such as id:0, needs --kind, exit code 2).
        names: Vec<String>,
        /// Only objects of this kind.
        #[arg(long, value_enum)]
        kind: Vec<KindArg>,
        #[command(flatten)]
        scan: ScanArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every kernel knob the library's errors name: its value, the use now where the kernel
    /// tells, and how to change it.
    Limits {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send messages read from stdin (one per line, or length-delimited) to a FIFO, a POSIX
    /// queue or an ipc-shm channel.
    Send(transfer::Args),
    /// Receive messages to stdout (one per line, or length-delimited) from a FIFO, a POSIX
    /// queue or an ipc-shm channel.
    Recv(transfer::Args),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Where to look for FIFOs and sockets.
#[derive(Debug, clap::Args)]
struct ScanArgs {
    /// Directories searched for FIFOs and Unix sockets (default: /tmp and $XDG_RUNTIME_DIR).
    #[arg(long = "dir", value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

impl ScanArgs {
    fn options(&self) -> ipc_core::inventory::Options {
        let mut o = ipc_core::inventory::Options::default();
        if !self.dirs.is_empty() {
            o.dirs.clone_from(&self.dirs);
        }
        o
    }
}

/// The kinds, as `--kind` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KindArg {
    Shm,
    Sem,
    Mq,
    SysvMsg,
    SysvShm,
    SysvSem,
    Fifo,
    Socket,
}

impl KindArg {
    fn kind(self) -> Kind {
        match self {
            KindArg::Shm => Kind::Shm,
            KindArg::Sem => Kind::Semaphore,
            KindArg::Mq => Kind::Queue,
            KindArg::SysvMsg => Kind::SysvQueue,
            KindArg::SysvShm => Kind::SysvShm,
            KindArg::SysvSem => Kind::SysvSemaphore,
            KindArg::Fifo => Kind::Fifo,
            KindArg::Socket => Kind::Socket,
        }
    }
}

/// The exit codes (see [`EXIT_CODES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    NotFound = 3,
    TimedOut = 4,
    PermissionDenied = 5,
    Corrupted = 6,
}

impl Exit {
    /// The exit code for an error.
    fn of(e: &Error) -> Exit {
        match e.kind() {
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::TimedOut => Exit::TimedOut,
            ErrorKind::PermissionDenied => Exit::PermissionDenied,
            ErrorKind::Corrupted => Exit::Corrupted,
            _ => Exit::Failure,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let kinds = |k: &[KindArg]| k.iter().map(|k| k.kind()).collect::<Vec<_>>();
    let result = match cli.command {
        Command::List {
            kind,
            stale,
            scan,
            json,
        } => list::list(&scan.options(), &kinds(&kind), stale, json),
        Command::Inspect { name, scan, json } => list::inspect(&scan.options(), &name, json),
        Command::Clean {
            stale: _,
            yes,
            names,
            kind,
            scan,
            json,
        } => clean::clean(&scan.options(), &kinds(&kind), &names, yes, json),
        Command::Limits { json } => limits::limits(json),
        Command::Send(args) => transfer::send(&args),
        Command::Recv(args) => transfer::recv(&args),
        Command::Completions { shell } => {
            // Made whole first: clap_complete panics on a write error (a closed stdout).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ipc", &mut script);
            output::bytes(&script);
            Ok(Exit::Ok)
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            err!("ipc: {e}");
            Exit::of(&e)
        }
    };
    ExitCode::from(code as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
