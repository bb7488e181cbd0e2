//! How long and how hard a test runs: the quick profile of `cargo xtask test` or the soak
//! profile of `cargo xtask test --soak` ([`soak`], [`by_profile`]), a seeded [`Rng`] that says
//! its seed so a failing run can be repeated, and [`drain`], which receives until the first
//! error under the watchdog.

use std::time::Duration;

use ipc_core::{Error, MessageReceiver};

use crate::{spawn, within_watchdog};

/// The environment variable `cargo xtask test --soak` sets.
pub const SOAK_ENV: &str = "IPC_SOAK";
/// The environment variable that fixes an [`Rng`]'s seed, to repeat a run.
pub const SEED_ENV: &str = "IPC_TEST_SEED";

/// Whether this is a soak run (`IPC_SOAK` is set).
pub fn soak() -> bool {
    std::env::var_os(SOAK_ENV).is_some()
}

/// `quick` in the default run, `soak` in a soak run: rounds, message counts, seconds.
pub fn by_profile<T>(quick: T, soak: T) -> T {
    if self::soak() { soak } else { quick }
}

/// A small pseudo-random sequence (xorshift64) for where kills land and what sizes messages
/// take: seeded from `IPC_TEST_SEED` if set, else from the clock and the pid. The seed is
/// printed when the generator is made, so a failure's output says how to repeat it.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
    seed: u64,
}

impl Rng {
    /// A generator seeded as the type's documentation says; prints `seed` with `what`.
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var(SEED_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                t ^ (u64::from(std::process::id()) << 32)
            });
        eprintln!("{what}: {SEED_ENV}={seed}");
        Rng::from_seed(seed)
    }

    /// A generator with this seed (never zero inside: xorshift would stay at zero).
    pub fn from_seed(seed: u64) -> Rng {
        Rng {
            state: seed | 1,
            seed,
        }
    }

    /// The seed it was made with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Starts `role` with `arg`, waits for its `checkpoint`, lets it run on for a random time below
/// `max`, and `SIGKILL`s it: a kill that lands at a random step of whatever the role loops
/// over. Fails the test if the role ended by itself.
pub fn kill_at_random(role: &str, arg: &str, checkpoint: &str, max: Duration, rng: &mut Rng) {
    let mut child = spawn(role).arg(arg).start();
    child.wait_checkpoint(checkpoint);
    let micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(1);
    std::thread::sleep(Duration::from_micros(rng.below(micros)));
    let out = child.kill_and_wait();
    assert!(out.killed(), "{role} ended by itself: {}", out.stderr);
}

/// Receives messages of up to `max` bytes until the first error, under the watchdog (a hang
/// fails the test): every message received, and the error that ended it (typically
/// `Disconnected` once the peer is gone and its messages are drained).
pub fn drain<R: MessageReceiver + Send + 'static>(mut rx: R, max: usize) -> (Vec<Vec<u8>>, Error) {
    within_watchdog("drain until the first error", move || {
        let mut buf = vec![0; max];
        let mut msgs = Vec::new();
        loop {
            match rx.recv(&mut buf) {
                Ok(n) => msgs.push(buf[..n].to_vec()),
                Err(e) => return (msgs, e),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (mut a, mut b) = (Rng::from_seed(42), Rng::from_seed(42));
        let xs: Vec<u64> = (0..8).map(|_| a.below(1000)).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.below(1000)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().any(|&x| x != xs[0]), "{xs:?}");
        assert_eq!(Rng::from_seed(0).next_u64(), Rng::from_seed(1).next_u64());
    }
}
