//! How objects are shown: aligned tables for people, JSON for scripts, user names for uids.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

use ipc_core::inventory::{Object, Process};
use serde_json::{Value, json};

/// `s` safe to print on a terminal: control characters (an escape sequence, a newline that
/// would forge a row) and bidirectional overrides are shown escaped (`\u{1b}`, `\n`), and a
/// backslash as `\\`, so a name another user planted shows as what it is.
pub(crate) fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || c == '\\'
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Prints `rows` under `header` with each column as wide as its widest cell; the last column
/// is not padded. Cells are shown [`visible`].
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| visible(c).into_owned()).collect())
        .collect();
    let rows = &rows[..];
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&width).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        out!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The user name of `uid` from `/etc/passwd`, or the number.
pub(crate) fn user(uid: u32) -> String {
    static NAMES: OnceLock<HashMap<u32, String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse().ok()?;
                Some((uid, name.to_owned()))
            })
            .collect()
    });
    names.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
}

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// The creator and last users as the kernel records them; `unknown` where it records none
/// (POSIX objects, FIFOs, sockets; a System V queue's creator).
pub(crate) fn processes(o: &Object) -> (String, String) {
    let creator = o
        .creator
        .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    let last: Vec<String> = o.last_users.iter().map(Process::to_string).collect();
    let last = if last.is_empty() {
        "unknown".to_owned()
    } else {
        last.join(", ")
    };
    (creator, last)
}

/// The columns of `ipc list`.
pub(crate) const LIST_HEADER: [&str; 10] = [
    "KIND",
    "NAME",
    "OWNER",
    "MODE",
    "SIZE",
    "DEPTH",
    "CREATOR",
    "LAST",
    "STATE",
    "WHAT / WHY",
];

/// One row of `ipc list`.
pub(crate) fn list_row(o: &Object) -> Vec<String> {
    let (creator, last) = processes(o);
    let what = match &o.recognised {
        Some(r) => match &r.corrupted {
            Some(c) => format!("{} (CORRUPTED: {c}); {}", r.what, o.why),
            None => format!("{}; {}", r.what, o.why),
        },
        None => o.why.clone(),
    };
    vec![
        o.kind.to_string(),
        o.name.clone(),
        user(o.uid),
        format!("{:04o}", o.mode),
        opt(o.size),
        opt(o.depth),
        creator,
        last,
        o.verdict.to_string(),
        what,
    ]
}

fn process_json(p: &Process) -> Value {
    json!({ "pid": p.pid, "liveness": p.liveness.as_str() })
}

/// An object as JSON (the same fields as the library's `Object`).
pub(crate) fn object_json(o: &Object) -> Value {
    let recognised = o.recognised.as_ref().map(|r| {
        json!({
            "what": r.what,
            "facts": r.facts.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect::<Vec<_>>(),
            "users": r.users.iter().map(|u| json!({
                "role": u.role,
                "state": u.state,
                "pid": u.pid,
                "pid_namespace": u.pid_namespace,
                "can_use": u.can_use.as_str(),
            })).collect::<Vec<_>>(),
            "corrupted": r.corrupted,
        })
    });
    json!({
        "kind": o.kind.as_str(),
        "name": o.name,
        "path": o.path.as_ref().map(|p| p.display().to_string()),
        "key": o.sysv.map(|(k, _)| k),
        "id": o.sysv.map(|(_, i)| i),
        "uid": o.uid,
        "owner": user(o.uid),
        "mode": format!("{:04o}", o.mode),
        "size": o.size,
        "depth": o.depth,
        "attached": o.attached,
        "creator": o.creator.as_ref().map(process_json),
        "last_users": o.last_users.iter().map(process_json).collect::<Vec<_>>(),
        "holders": o.holders,
        "recognised": recognised,
        "verdict": o.verdict.as_str(),
        "why": o.why,
    })
}

/// What [`out!`] does: one line to stdout; see [`write`].
pub(crate) fn line(args: fmt::Arguments<'_>) {
    write(|stdout| {
        stdout
            .write_fmt(args)
            .and_then(|()| stdout.write_all(b"\n"))
    });
}

/// Writes `bytes` (a completion script) to stdout; see [`write`].
pub(crate) fn bytes(bytes: &[u8]) {
    write(|stdout| stdout.write_all(bytes).and_then(|()| stdout.flush()));
}

/// Writes to stdout with `f`. A closed stdout exits with status 0 (the reader has what it
/// wanted); another write error exits with status 1.
fn write(f: impl FnOnce(&mut std::io::StdoutLock<'_>) -> std::io::Result<()>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = f(&mut stdout) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        err_line(format_args!("ipc: writing to stdout: {e}"));
        std::process::exit(1);
    }
}

/// Prints JSON, pretty.
pub(crate) fn print_json(v: &Value) {
    out!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// What [`err!`] does: one line to stderr, ignoring a write error (there is nowhere left to
/// report it).
pub(crate) fn err_line(args: fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}
