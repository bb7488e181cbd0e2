//! `ipc clean --stale`: removes what the inventory proves stale, never anything else; a dry
//! run unless `--yes`.

use ipc_core::inventory::{Kind, Object, Options, Verdict};
use ipc_core::{ErrorKind, Removable, Result};
use serde_json::json;

use crate::Exit;
use crate::list::{matches, recognise, scan};
use crate::output::{self, print_json};

pub(crate) fn clean(
    options: &Options,
    kinds: &[Kind],
    names: &[String],
    yes: bool,
    json: bool,
) -> Result<Exit> {
    let me = rustix::process::geteuid().as_raw();
    let root = me == 0;
    let inv = scan(options);
    // One name, one object kind: a System V id is one per kind (id:0 is a queue, a segment
    // and a set, unrelated, maybe three users'), and /name can be a segment, a semaphore and
    // a queue. A name is root's leave to remove another user's object, so it must say which.
    let mut ambiguous = false;
    for n in names {
        let mut of: Vec<Kind> = inv
            .objects
            .iter()
            .filter(|o| (kinds.is_empty() || kinds.contains(&o.kind)) && names_object(o, n))
            .map(|o| o.kind)
            .collect();
        of.sort_unstable();
        of.dedup();
        if of.len() > 1 {
            let of: Vec<&str> = of.iter().map(|k| k.as_str()).collect();
            err!(
                "ipc: {n}: names objects of several kinds ({}): say which with --kind; nothing \
                 was removed",
                of.join(", ")
            );
            ambiguous = true;
        }
    }
    if ambiguous {
        return Ok(Exit::Usage);
    }
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    let mut exit = Exit::Ok;
    for o in &inv.objects {
        if !kinds.is_empty() && !kinds.contains(&o.kind) {
            continue;
        }
        let named = names.iter().any(|n| names_object(o, n));
        if !names.is_empty() && !named {
            continue;
        }
        let action = decide(o, me, root, named);
        let (action, error) = match (action, yes) {
            (Ok(_), true) => match recheck(o, me, root, named) {
                Recheck::Remove(removable) => match removable.remove() {
                    Ok(()) => ("removed", None),
                    Err(e) if e.kind() == ErrorKind::NotFound => ("gone", Some(GONE.to_owned())),
                    // `SameFile`: the name was given to another file after the look again.
                    Err(e) if e.kind() == ErrorKind::WrongType => {
                        ("kept", Some(REPLACED.to_owned()))
                    }
                    Err(e) => {
                        exit = Exit::Failure;
                        ("failed", Some(e.to_string()))
                    }
                },
                Recheck::Gone => ("gone", Some(GONE.to_owned())),
                Recheck::Keep(why) => ("kept", Some(why)),
            },
            (Ok(_), false) => ("would remove", None),
            // Say why a stale object is kept, or why a named one is; stay quiet about the rest.
            (Err(why), _) if named || o.verdict == Verdict::Stale => ("kept", Some(why)),
            (Err(_), _) => continue,
        };
        let detail = error.clone().unwrap_or_else(|| o.why.clone());
        docs.push(json!({
            "kind": o.kind.as_str(),
            "name": o.name,
            "owner": o.uid,
            "action": action,
            "why": o.why,
            "reason": error,
        }));
        rows.push(vec![
            action.to_owned(),
            o.kind.to_string(),
            o.name.clone(),
            output::user(o.uid),
            detail,
        ]);
    }
    // A name that matched nothing (a typo, or removed meanwhile) is said, not passed over.
    let unmatched: Vec<&String> = names
        .iter()
        .filter(|n| !inv.objects.iter().any(|o| names_object(o, n)))
        .collect();
    for n in &unmatched {
        if is_private_key(n) {
            err!(
                "ipc: {n}: the key IPC_PRIVATE, which every private System V object shows, names \
                 none of them: give the id (id:N; `ipc list --kind sysv-shm` shows it)"
            );
            continue;
        }
        err!(
            "ipc: {n}: no such object among those scanned: give a POSIX name (/name), a System V \
             key (0x...) or id (id:N), or the path of a FIFO or socket under a --dir"
        );
    }
    if !unmatched.is_empty() && exit == Exit::Ok {
        exit = Exit::NotFound;
    }
    if json {
        print_json(&json!({
            "dry_run": !yes,
            "objects": docs,
            "not_found": unmatched,
            "notes": inv.notes,
        }));
    } else if rows.is_empty() {
        out!("nothing stale to remove");
    } else {
        output::table(&["ACTION", "KIND", "NAME", "OWNER", "WHY"], &rows);
        if !yes {
            out!("(dry run: run again with --yes to remove)");
        }
    }
    Ok(exit)
}

/// Whether `name`, given to `clean`, names `o`: as for `inspect`, except the key
/// `0x00000000` (`IPC_PRIVATE`), which names no object however many show it. A name is leave
/// to remove another user's object (for root), so it must name that object, not every
/// private object of every user.
fn names_object(o: &Object, name: &str) -> bool {
    !is_private_key(name) && matches(o, name)
}

/// Whether `name` is a System V key that is `IPC_PRIVATE` (`0x0`, `0x00000000`).
fn is_private_key(name: &str) -> bool {
    crate::list::sysv_key(name) == Some(0)
}

/// What a removal found gone: what it was there for, not a failure.
const GONE: &str = "gone already (removed meanwhile by someone else)";

/// Why an object replaced since the scan is kept.
const REPLACED: &str = "replaced since the scan: another object has its name or id now; left alone";

/// What [`recheck`] found.
enum Recheck {
    /// Still the object the scan saw, still stale: remove it.
    Remove(Removable),
    /// Nothing there any more.
    Gone,
    /// Replaced, or no longer stale: why it is kept.
    Keep(String),
}

/// `o`, judged stale by the scan, looked at again just before its removal: the scan may be
/// long past (a large inventory, a slow terminal), and meanwhile the object may have been
/// removed, taken over by a live process, or replaced by another under the same name or, for
/// System V, the same id (the kernel reuses ids). Only the object the scan saw, still stale,
/// is removed. What is left between this look and the removal itself no system call can
/// close for a System V id; a file's removal checks its identity once more
/// ([`Removable::SameFile`]).
fn recheck(o: &Object, me: u32, root: bool, named: bool) -> Recheck {
    let Some(mut now) = o.refreshed() else {
        return Recheck::Gone;
    };
    if !o.same_as(&now) {
        return Recheck::Keep(REPLACED.to_owned());
    }
    recognise(&mut now);
    match decide(&now, me, root, named) {
        Ok(removable) => Recheck::Remove(removable),
        Err(why) => Recheck::Keep(format!("changed since the scan: {why}")),
    }
}

/// Whether `o` may be removed: stale, and this user's (or, for root, named on the command
/// line).
fn decide(o: &Object, me: u32, root: bool, named: bool) -> std::result::Result<Removable, String> {
    if o.verdict != Verdict::Stale {
        return Err(format!("not provably stale ({}: {})", o.verdict, o.why));
    }
    if o.uid != me && !(root && named) {
        return Err(format!(
            "owned by {}: another user's object is removed only by root, named on the \
             command line",
            output::user(o.uid)
        ));
    }
    o.removable()
        .ok_or_else(|| "no way to remove it".to_owned())
}
