//! What both benchmark integrity tests share: a tiny profile, and a launcher that re-executes
//! the test binary with only its child-entry test.

use std::time::Duration;

use crate::engine::{self, Config, Launcher, Profile};

/// A configuration for tests whose children run the test named `entry`; `drop_every` is the
/// engine's testing aid (drop, or skip the wait for, every Nth item).
pub fn config(entry: &str, drop_every: Option<u64>) -> Config {
    let cpus = engine::allowed_cpus();
    Config {
        profile: Profile {
            warmup: Duration::from_millis(1),
            runs: 2,
            run_time: Duration::from_millis(5),
            // Enough for item 99 to be dropped within the first run.
            min_msgs: 150,
        },
        cpus: (cpus[0], cpus.get(1).copied()),
        launcher: Launcher {
            args: [entry, "--exact", "--nocapture", "--test-threads=1", "-q"]
                .map(String::from)
                .to_vec(),
        },
        drop_every,
        abandon_at: None,
    }
}
