//! What `/proc/PID/stat` says of a process: its state, its parent and its start time, the
//! facts that liveness checks rest on (a pid alone can be reused; a pid with its start time
//! cannot).
//!
//! ```
//! use ipc_core::process;
//!
//! let me = process::stat("self").expect("/proc is mounted");
//! assert!(me.start_ticks > 0);
//! assert_eq!(process::stat(std::process::id()).unwrap().start_ticks, me.start_ticks);
//! ```
//!
//! # References
//! - [`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)

use std::fmt;

/// The fields of `/proc/PID/stat` this workspace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter (field 3): `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// The parent's pid (field 4).
    pub ppid: u32,
    /// When the process started, in clock ticks after boot (field 22).
    pub start_ticks: u64,
}

impl ProcStat {
    /// Whether the process has ended (a zombie waiting to be reaped counts as ended).
    pub fn has_ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and `)`, so the fields are counted from the last `)`.
pub fn parse(stat: &str) -> Option<ProcStat> {
    parse_after_name(&stat[stat.rfind(')')? + 1..])
}

/// The fields after the command name's closing `)` (field 3 on).
fn parse_after_name(rest: &str) -> Option<ProcStat> {
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of process `pid` (a number, or `"self"`), read now; `None` if it does not exist
/// (or `/proc` is not mounted: check `stat("self")` to tell the two apart).
///
/// The line is read as bytes: the command name is whatever the process set (any bytes but
/// NUL, UTF-8 or not), and only the fields after it, which the kernel writes in ASCII, are
/// decoded. A process cannot pass for gone by naming itself.
pub fn stat(pid: impl fmt::Display) -> Option<ProcStat> {
    read_stat(pid).ok().flatten()
}

/// [`stat`], saying why the file could not be read: `Err` with the errno of the one read
/// (`ENOENT`: no such process, or no `/proc`; `EMFILE`/`ENFILE`: no descriptor free to read
/// it with, which says nothing about the process), `Ok(None)` for a line that does not parse.
/// A caller that must not mistake one cause for another decides from this errno, not from a
/// second look, which may meet other conditions.
pub fn read_stat(pid: impl fmt::Display) -> Result<Option<ProcStat>, rustix::io::Errno> {
    let line = std::fs::read(format!("/proc/{pid}/stat"))
        .map_err(|e| rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO))?;
    let Some(name_end) = line.iter().rposition(|&b| b == b')') else {
        return Ok(None);
    };
    Ok(std::str::from_utf8(&line[name_end + 1..])
        .ok()
        .and_then(parse_after_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_command_names_and_zombies() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(
            parse(line),
            Some(ProcStat {
                state: 'S',
                ppid: 7,
                start_ticks: 12345
            })
        );
        let zombie = "9 (z) Z 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0";
        assert!(parse(zombie).unwrap().has_ended());
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("1 (short) S 0"), None);
        assert!(stat(u32::MAX).is_none());
    }
}
