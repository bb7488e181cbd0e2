//! The examples step of `cargo xtask test`: every example the crates' docs point users to is
//! run, and must exit 0, so a "runnable example" stays runnable. `cargo test` builds them all
//! (into `target/debug/examples`, with the tested features); this step starts each under the
//! watchdog, in the tests' namespaces and leftover check, with no standard input.
//!
//! Measurement probes ([`PROBES`]) are built and linted like the rest but not run: they take
//! arguments or seconds of measuring, and print numbers, not a behaviour to check.

use std::path::Path;

/// Examples that are measurement tools, not demonstrations.
pub(crate) const PROBES: &[&str] = &[
    "frame_loop",       // ipc-socket: a frame loop to profile, takes a row and a count
    "seqpacket_stream", // ipc-socket: seqpacket vs stream timings
    "socket_ab",        // ipc-socket: library vs raw socket A/B
    "stream_probe",     // ipc-socket: send/recv cost breakdown
    "spin_bench",       // ipc-sync: spin policy timings
];

/// How long one example may run before the watchdog kills it and the step fails: each takes
/// well under 10 s on a busy 2-core machine.
pub(crate) const LIMIT_SECS: u64 = 120;

/// The names of the examples to run: every `examples/NAME.rs` and `examples/NAME/main.rs` of
/// the workspace root and of each crate under `crates/`, but the probes, sorted.
pub(crate) fn runnable(root: &Path) -> Result<Vec<String>, String> {
    let mut dirs = vec![root.join("examples")];
    let crates = root.join("crates");
    let entries =
        std::fs::read_dir(&crates).map_err(|e| format!("read {}: {e}", crates.display()))?;
    dirs.extend(entries.flatten().map(|e| e.path().join("examples")));
    let mut names = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // a crate without examples
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = if path.extension().is_some_and(|x| x == "rs") {
                path.file_stem()
            } else if path.join("main.rs").is_file() {
                path.file_name()
            } else {
                None // a module directory shared by examples
            };
            if let Some(name) = name.and_then(|n| n.to_str()) {
                if !PROBES.contains(&name) {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_documented_examples_and_skips_the_probes() {
        let names = runnable(&crate::workspace_root()).unwrap();
        for wanted in [
            "camera_viewers",
            "shm_over_socket",
            "async_select",
            "crash_recover",
        ] {
            assert!(
                names.iter().any(|n| n == wanted),
                "{wanted} missing: {names:?}"
            );
        }
        assert!(!names.iter().any(|n| PROBES.contains(&n.as_str())));
        assert!(
            !names.iter().any(|n| n == "common"),
            "a module directory is no example"
        );
    }

    #[test]
    fn every_probe_exists() {
        let root = crate::workspace_root();
        for probe in PROBES {
            let found = std::fs::read_dir(root.join("crates"))
                .unwrap()
                .flatten()
                .any(|c| {
                    c.path()
                        .join("examples")
                        .join(format!("{probe}.rs"))
                        .is_file()
                });
            assert!(found, "probe {probe} is listed but no longer exists");
        }
    }
}
