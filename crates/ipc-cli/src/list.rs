//! `ipc list` and `ipc inspect`: the library's inventory, with the objects this workspace
//! made recognised by their validated headers.

use ipc_core::inventory::{self, Inventory, Kind, Object, Options, Verdict};
use ipc_core::{Error, ErrorKind, Owner, Result};
use serde_json::json;

use crate::Exit;
use crate::output::{self, object_json, print_json};

/// Scans and recognises what the mechanism crates know: ipc-shm channels, publish-subscribe
/// and many-to-one segments, and ipc-sync primitives at the start of a segment.
pub(crate) fn scan(options: &Options) -> Inventory {
    let mut inv = inventory::scan(options);
    for o in &mut inv.objects {
        recognise(o);
    }
    inv
}

/// Reads the header of `o` when it is a POSIX segment, and judges it again by what it says.
pub(crate) fn recognise(o: &mut Object) {
    // An empty object has no header to read.
    if o.kind != Kind::Shm || o.size == Some(0) {
        return;
    }
    let Some(name) = o.posix_name() else { return };
    let opened = ipc_shm::OpenOptions::new()
        .read_only(true)
        .owner(Owner::Any)
        .open(&name);
    let segment = match opened {
        Ok(segment) => segment,
        Err(e) => {
            if o.verdict == Verdict::Unknown {
                o.why = format!("cannot read its header: {}", e.kind());
            }
            return;
        }
    };
    if let Some(r) = ipc_shm::inspect::segment_header(&segment) {
        o.recognise(r);
        return;
    }
    let mut head = [0; ipc_sync::inspect::HEAD_LEN];
    let n = head.len().min(segment.len());
    if segment.read_at(0, &mut head[..n]).is_ok() {
        if let Some(r) = ipc_sync::inspect::recognise(&head[..n]) {
            o.recognise(r);
        }
    }
}

pub(crate) fn list(options: &Options, kinds: &[Kind], stale: bool, json: bool) -> Result<Exit> {
    let inv = scan(options);
    let shown: Vec<&Object> = inv
        .objects
        .iter()
        .filter(|o| kinds.is_empty() || kinds.contains(&o.kind))
        .filter(|o| !stale || o.verdict == Verdict::Stale)
        .collect();
    if json {
        print_json(&json!({
            "objects": shown.iter().map(|o| object_json(o)).collect::<Vec<_>>(),
            "notes": inv.notes,
        }));
    } else {
        let rows: Vec<Vec<String>> = shown.iter().map(|o| output::list_row(o)).collect();
        output::table(&output::LIST_HEADER, &rows);
        for note in &inv.notes {
            err!("note: {note}");
        }
    }
    Ok(Exit::Ok)
}

/// Whether `o` is the object `name` names: its name, its path, its System V key (`0x...`) or
/// id (`id:N`).
pub(crate) fn matches(o: &Object, name: &str) -> bool {
    if o.name == name || o.path.as_ref().is_some_and(|p| p.as_os_str() == name) {
        return true;
    }
    let Some((key, id)) = o.sysv else {
        return false;
    };
    if let Some(n) = name.strip_prefix("id:") {
        return n.parse() == Ok(id);
    }
    sysv_key(name).is_some_and(|k| k as i32 == key)
}

/// The System V key a name gives as `0x` and hex digits (`0x0000002a`), if it is one.
pub(crate) fn sysv_key(name: &str) -> Option<u32> {
    name.strip_prefix("0x")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
}

pub(crate) fn inspect(options: &Options, name: &str, json: bool) -> Result<Exit> {
    // A FIFO or socket named by its path is found wherever it is.
    let path = std::path::Path::new(name);
    let is_file_object = path.symlink_metadata().is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo() || m.file_type().is_socket()
    });
    let mut options = options.clone();
    // Absolute, so that a name in the current directory ("fifo", which has an empty parent)
    // has a directory to scan; `absolute` only joins the current directory, following no
    // link.
    let file_path = is_file_object
        .then(|| std::path::absolute(path).ok())
        .flatten();
    if let Some(parent) = file_path.as_deref().and_then(std::path::Path::parent) {
        options.dirs = vec![parent.to_path_buf()];
        options.depth = 0;
    }
    let inv = scan(&options);
    let found: Vec<&Object> = inv
        .objects
        .iter()
        .filter(|o| matches(o, name) || file_path.is_some() && o.path == file_path)
        .collect();
    let mut queue = None;
    if found.iter().all(|o| o.kind != Kind::Queue) && name.starts_with('/') {
        // Not listed (no mqueue mount, say): a queue can still be opened by name.
        queue = queue_attributes(name).ok();
    }
    if found.is_empty() && queue.is_none() {
        return Err(Error::with_note(
            ErrorKind::NotFound,
            "no such object: give a POSIX name (/name), a path, a System V key (0x...) or id \
             (id:N); `ipc list` shows them",
        )
        .on(name));
    }
    let mut exit = Exit::Ok;
    let mut docs = Vec::new();
    for o in &found {
        if o.recognised.as_ref().is_some_and(|r| r.corrupted.is_some()) {
            exit = Exit::Corrupted;
        }
        let mut doc = object_json(o);
        let extra = details(o);
        doc["details"] = json!(
            extra
                .iter()
                .map(|(k, v)| json!({ "name": k, "value": v }))
                .collect::<Vec<_>>()
        );
        if json {
            docs.push(doc);
        } else {
            print_object(o, &extra);
        }
    }
    if let Some(attrs) = queue {
        if json {
            docs.push(json!({ "kind": "mq", "name": name, "details": attrs
                .iter()
                .map(|(k, v)| json!({ "name": k, "value": v }))
                .collect::<Vec<_>>() }));
        } else {
            out!("mq {} (not listed: no mqueue mount)", output::visible(name));
            for (k, v) in &attrs {
                out!("  {k:<16} {v}");
            }
        }
    }
    if json {
        print_json(&json!(docs));
    }
    Ok(exit)
}

/// What `inspect` adds to the listing: queue attributes, the kernel's System V record.
fn details(o: &Object) -> Vec<(String, String)> {
    match o.kind {
        // By its real name: a name that is not UTF-8 is shown with U+FFFD, which is another
        // queue's name (anybody's), so such a queue is not opened at all.
        Kind::Queue => match o.posix_name() {
            Some(name) => queue_attributes(name.as_str())
                .unwrap_or_else(|e| vec![("attributes".to_owned(), format!("unreadable: {e}"))]),
            None => vec![(
                "attributes".to_owned(),
                "not read: the name is not UTF-8 (shown with U+FFFD, which names another queue)"
                    .to_owned(),
            )],
        },
        Kind::SysvQueue | Kind::SysvShm | Kind::SysvSemaphore => match o.sysv_record() {
            Some(row) => row
                .into_iter()
                .map(|(k, v)| (format!("kernel {k}"), v))
                .collect(),
            None => vec![(
                "kernel record".to_owned(),
                "gone since the scan, or its id given to another object".to_owned(),
            )],
        },
        _ => Vec::new(),
    }
}

/// A POSIX queue's attributes (`mq_getattr` on a read-only descriptor).
fn queue_attributes(name: &str) -> Result<Vec<(String, String)>> {
    let q = ipc_mq::posix::OpenOptions::new()
        .access(ipc_mq::Access::ReadOnly)
        .owner(Owner::Any)
        .open(name)?;
    let a = q.attributes()?;
    Ok(vec![
        ("max messages".to_owned(), a.max_messages.to_string()),
        ("message size".to_owned(), a.message_size.to_string()),
        ("messages now".to_owned(), a.messages.to_string()),
    ])
}

fn print_object(o: &Object, details: &[(String, String)]) {
    let mut lines: Vec<(String, String)> = vec![
        ("kind".into(), o.kind.to_string()),
        ("name".into(), o.name.clone()),
    ];
    if let Some(p) = &o.path {
        lines.push(("path".into(), p.display().to_string()));
    }
    if let Some((key, id)) = o.sysv {
        lines.push(("key".into(), format!("{key:#010x}")));
        lines.push(("id".into(), id.to_string()));
    }
    lines.push((
        "owner".into(),
        format!("{} (uid {})", output::user(o.uid), o.uid),
    ));
    lines.push(("mode".into(), format!("{:04o}", o.mode)));
    let mut num = |k: &str, v: Option<u64>| {
        if let Some(v) = v {
            lines.push((k.into(), v.to_string()));
        }
    };
    num("size", o.size);
    num("depth", o.depth);
    num("attached", o.attached);
    let (creator, last) = output::processes(o);
    lines.push(("creator".into(), creator));
    lines.push(("last user".into(), last));
    if !o.holders.is_empty() {
        let pids: Vec<String> = o.holders.iter().map(u32::to_string).collect();
        lines.push(("open/mapped by".into(), pids.join(", ")));
    }
    if let Some(r) = &o.recognised {
        lines.push(("recognised".into(), r.what.clone()));
        lines.extend(r.facts.iter().cloned());
        for u in &r.users {
            let pid = match (u.pid, u.pid_namespace) {
                (Some(p), Some(ns)) => format!(", pid {p} in pid:[{ns}] (another PID namespace)"),
                (Some(p), None) => format!(", pid {p}"),
                (None, _) => String::new(),
            };
            lines.push((u.role.clone(), format!("{}{pid} ({})", u.state, u.can_use)));
        }
        if let Some(c) = &r.corrupted {
            lines.push(("CORRUPTED".into(), c.clone()));
        }
    } else if o.kind == Kind::Shm {
        lines.push(("recognised".into(), "no (unrecognised contents)".into()));
    }
    lines.extend(details.iter().cloned());
    lines.push(("verdict".into(), format!("{} ({})", o.verdict, o.why)));
    for (k, v) in lines {
        out!("{:<16} {}", output::visible(&k), output::visible(&v));
    }
    out!("");
}
