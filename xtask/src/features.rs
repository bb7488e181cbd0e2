//! The features `cargo xtask test` builds with: every feature of every workspace member (what
//! `--all-features` would enable) except [`UNTESTED`], read from the members' manifests.

use std::path::Path;

/// Features `cargo xtask test` leaves off: `ipc-bench/peers` builds other IPC libraries
/// (iceoryx2) into the benchmark only (`cargo xtask bench --peers`); it needs crates.io at
/// its first build and minutes of compiling, and adds nothing to test.
pub(crate) const UNTESTED: &[&str] = &["ipc-bench/peers"];

/// `member/feature,...` for `cargo --features`: each workspace member's `[features]` but
/// `default` and [`UNTESTED`]. Members are the root package and the `[workspace] members`
/// entries (a trailing `/*` takes every directory with a `Cargo.toml`).
pub(crate) fn tested(root: &Path) -> Result<String, String> {
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()));
    let top = read(&root.join("Cargo.toml"))?;
    let mut manifests = vec![root.join("Cargo.toml")];
    for member in workspace_members(&top) {
        match member.strip_suffix("/*") {
            Some(dir) => {
                let dir = root.join(dir);
                let entries =
                    std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let mut found: Vec<_> = entries
                    .flatten()
                    .map(|e| e.path().join("Cargo.toml"))
                    .filter(|p| p.is_file())
                    .collect();
                found.sort();
                manifests.extend(found);
            }
            None => manifests.push(root.join(member).join("Cargo.toml")),
        }
    }
    let mut out = Vec::new();
    for m in manifests {
        let (name, features) = package_features(&read(&m)?);
        let Some(name) = name else { continue };
        out.extend(
            features
                .into_iter()
                .map(|f| format!("{name}/{f}"))
                .filter(|f| !UNTESTED.contains(&f.as_str())),
        );
    }
    Ok(out.join(","))
}

/// The quoted entries of `members = [...]` in the `[workspace]` table (on one line).
fn workspace_members(manifest: &str) -> Vec<String> {
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[workspace]"
            && let Some(list) = line.strip_prefix("members")
        {
            return list
                .split('"')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect();
        }
    }
    Vec::new()
}

/// The `[package]` name and the `[features]` keys but `default` of one manifest.
fn package_features(manifest: &str) -> (Option<String>, Vec<String>) {
    let (mut section, mut name, mut features) = ("", None, Vec::new());
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') && !line.starts_with("[\"") {
            section = line;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let is_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        match section {
            "[package]" if key == "name" => {
                name = value.split('"').nth(1).map(String::from);
            }
            "[features]" if is_key && key != "default" => features.push(key.to_owned()),
            _ => {}
        }
    }
    (name, features)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_but_the_untested_ones() {
        let f = tested(&crate::workspace_root()).unwrap();
        let f: Vec<&str> = f.split(',').collect();
        for expected in [
            "ipc/tokio",
            "ipc/pipe",
            "ipc-core/tokio",
            "ipc-socket/serde",
        ] {
            assert!(f.contains(&expected), "{expected} missing from {f:?}");
        }
        assert!(!f.contains(&"ipc-bench/peers"), "{f:?}");
        assert!(!f.iter().any(|x| x.ends_with("/default")), "{f:?}");
    }

    #[test]
    fn manifests_are_read_as_cargo_does() {
        let m = "[package]\nname = \"a-b\"\n[features]\ndefault = [\"x\"]\nx = [\n  \"dep:y\",\n]\n\
                 z = []\n[dependencies]\nname = \"no\"\n";
        assert_eq!(
            package_features(m),
            (Some("a-b".into()), vec!["x".into(), "z".into()])
        );
        let w = "[workspace]\nresolver = \"3\"\nmembers = [\"crates/*\", \"xtask\"]\n";
        assert_eq!(workspace_members(w), ["crates/*", "xtask"]);
    }
}
