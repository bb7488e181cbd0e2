//! `cargo xtask fuzz [TARGET] [--time SECS]`: the cargo-fuzz targets of `fuzz/targets` under
//! libFuzzer, each for SECS seconds (default [`DEFAULT_SECS`]), starting from the checked-in
//! seeds (`fuzz/seeds/TARGET`) and a working corpus kept in `fuzz/targets/corpus/TARGET`.
//! Crashes land in `fuzz/targets/artifacts/TARGET` (reproduce one with
//! `cargo fuzz run --fuzz-dir fuzz/targets TARGET FILE`, prefixed with `RUSTC_BOOTSTRAP=1` on
//! stable).
//!
//! cargo-fuzz needs nightly compiler flags (`-Zsanitizer=address`, sanitizer coverage). On a
//! stable toolchain xtask sets `RUSTC_BOOTSTRAP=1` for the fuzz build only, which unlocks
//! them (checked to work with stable 1.95 and cargo-fuzz 0.13); the main workspace never sees
//! it. cargo-fuzz itself is installed with `cargo install cargo-fuzz --locked` if missing.
//! Not part of `cargo xtask test`: the bodies run there as ordinary proptest tests instead
//! (crate `ipc-fuzz`, `fuzz/tests/bodies.rs`).

use std::process::Command;

use crate::{cargo, run, workspace_root};

/// Seconds per target when `--time` is not given.
pub(crate) const DEFAULT_SECS: u64 = 60;

/// The targets, as `fuzz/targets/Cargo.toml` declares them (and `ipc_fuzz::TARGETS`).
pub(crate) const TARGETS: [&str; 4] = [
    "frame_decoder",
    "shm_channel",
    "posix_name",
    "typed_message",
];

/// Parsed arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FuzzArgs {
    pub(crate) targets: Vec<&'static str>,
    pub(crate) secs: u64,
}

/// Parses `[TARGET] [--time SECS]`.
pub(crate) fn parse(args: &[String]) -> Result<FuzzArgs, String> {
    let mut targets = Vec::new();
    let mut secs = DEFAULT_SECS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                let v = it.next().ok_or("--time needs a number of seconds")?;
                secs = v
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("--time {v}: not a positive number of seconds"))?;
            }
            t if !t.starts_with('-') && targets.is_empty() => {
                let known = TARGETS.iter().find(|k| **k == t).ok_or_else(|| {
                    format!("no fuzz target {t:?} (targets: {})", TARGETS.join(", "))
                })?;
                targets.push(*known);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    Ok(FuzzArgs { targets, secs })
}

fn on_nightly() -> bool {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-V")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("nightly"))
}

/// Runs the fuzz targets.
pub(crate) fn fuzz(args: &FuzzArgs) -> Result<(), String> {
    let have_cargo_fuzz = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_cargo_fuzz {
        run(
            "cargo install cargo-fuzz --locked (cargo fuzz is missing)",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz/targets");
    let bootstrap = !on_nightly();
    for target in &args.targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("create {}: {e}", corpus.display()))?;
        let seeds = root.join("fuzz/seeds").join(target);
        let mut cmd = cargo();
        cmd.current_dir(&root)
            .args(["fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(target)
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.secs))
            // A run slower than this is a hang; memory above this is a leak or a blow-up.
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]);
        if bootstrap {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        run(
            &format!(
                "cargo fuzz run {target} for {} s{}",
                args.secs,
                if bootstrap {
                    " (RUSTC_BOOTSTRAP=1)"
                } else {
                    ""
                }
            ),
            &mut cmd,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_target_and_time() {
        assert_eq!(
            parse(&args(&[])).unwrap(),
            FuzzArgs {
                targets: TARGETS.to_vec(),
                secs: DEFAULT_SECS
            }
        );
        assert_eq!(
            parse(&args(&["shm_channel", "--time", "5"])).unwrap(),
            FuzzArgs {
                targets: vec!["shm_channel"],
                secs: 5
            }
        );
        for bad in [
            &["nope"][..],
            &["--time"],
            &["--time", "0"],
            &["--bogus"],
            &["a", "b"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets_match_the_fuzz_crate() {
        let manifest =
            std::fs::read_to_string(workspace_root().join("fuzz/targets/Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(manifest.contains(&format!("name = \"{t}\"")), "{t}");
            assert!(workspace_root().join("fuzz/seeds").join(t).is_dir(), "{t}");
        }
    }
}
