//! `ipc clean --stale`: removes what the inventory proves stale, never anything else; a dry
//! run unless `--yes`.

use ipc_core::inventory::{Kind, Object, Options, Verdict};
use ipc_core::{Removable, Result};
use serde_json::json;

use crate::Exit;
use crate::list::{matches, scan};
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
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    let mut exit = Exit::Ok;
    for o in &inv.objects {
        if !kinds.is_empty() && !kinds.contains(&o.kind) {
            continue;
        }
        let named = names.iter().any(|n| matches(o, n));
        if !names.is_empty() && !named {
            continue;
        }
        let action = decide(o, me, root, named);
        let (action, error) = match (action, yes) {
            (Ok(removable), true) => match removable.remove() {
                Ok(()) => ("removed", None),
                Err(e) => {
                    exit = Exit::Failure;
                    ("failed", Some(e.to_string()))
                }
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
        .filter(|n| !inv.objects.iter().any(|o| matches(o, n)))
        .collect();
    for n in &unmatched {
        eprintln!(
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
