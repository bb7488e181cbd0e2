//! Crash and recover: worker processes move money between two accounts in shared memory under
//! a robust [`Mutex`]; this program `SIGKILL`s each worker at a random moment, often in the
//! middle of a transfer. The next locker is told the owner died, finds the half-done transfer
//! through the journal field, completes the books and marks the state consistent. The total
//! never changes.
//!
//! ```text
//! cargo run -p ipc-sync --example crash_recover
//! ```

use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use ipc_core::inherit::{self, ChildFds};
use ipc_sync::{LockError, Mutex, MutexGuard, Shared, SharedData};

const TOTAL: i64 = 1_000_000;
const ROUNDS: u32 = 10;

/// The books. Invariant: `a + b == TOTAL` and `in_flight == 0` whenever the lock is free.
#[repr(C)]
#[derive(Debug)]
struct Books {
    a: i64,
    b: i64,
    /// The amount of the transfer in progress: the journal that makes repair possible.
    in_flight: i64,
    transfers: u64,
}

// SAFETY: `#[repr(C)]` of integers: every bit pattern is valid, no pointers.
unsafe impl SharedData for Books {}

/// Restores the invariant after a worker died holding the lock.
fn repair(books: &mut Books) -> &'static str {
    let verdict = if books.a + books.b != TOTAL {
        // Died between the debit and the credit: complete the credit.
        books.b = TOTAL - books.a;
        "mid-transfer: credit completed"
    } else if books.in_flight != 0 {
        "after the credit: journal cleared"
    } else {
        "between transfers: nothing to do"
    };
    books.in_flight = 0;
    verdict
}

fn lock(
    m: &Mutex<Books>,
) -> Result<(MutexGuard<'_, Books>, Option<&'static str>), ipc_core::Error> {
    match m.lock_timeout(Duration::from_secs(10)) {
        Ok(g) => Ok((g, None)),
        Err(LockError::OwnerDied(mut g)) => {
            let verdict = repair(&mut g);
            g.mark_consistent()?;
            Ok((g, Some(verdict)))
        }
        Err(LockError::Failed(e)) => Err(e),
    }
}

/// Transfers forever, until killed.
fn work(m: &Mutex<Books>) -> Result<(), ipc_core::Error> {
    let mut x: i64 = std::process::id().into();
    loop {
        let (mut g, _) = lock(m)?;
        // A pseudo-random amount, either way: -500..=500.
        x = (x * 1_103_515_245 + 12_345).rem_euclid(1 << 31);
        let amount = x % 1001 - 500;
        g.in_flight = amount;
        g.a -= amount;
        // Stay inside the critical section a while, so that kills land here too.
        let until = Instant::now() + Duration::from_micros(50);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        g.b += amount;
        g.in_flight = 0;
        g.transfers += 1;
        drop(g);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        let m = Shared::<Mutex<Books>>::open(inherit::take("books")?)?;
        work(&m)?;
        return Ok(());
    }
    let books = Shared::<Mutex<Books>>::create(Books {
        a: TOTAL / 2,
        b: TOTAL / 2,
        in_flight: 0,
        transfers: 0,
    })?;
    for round in 1..=ROUNDS {
        let mut fds = ChildFds::new();
        fds.pass("books", books.as_fd().try_clone_to_owned()?)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("worker");
        let mut worker = fds.spawn(&mut cmd)?;
        drop(fds);
        std::thread::sleep(Duration::from_millis(20 + u64::from(round) * 7 % 30));
        worker.kill()?; // SIGKILL: no destructor, no unlock
        worker.wait()?;
        let (g, verdict) = lock(&books)?;
        assert_eq!(g.a + g.b, TOTAL, "the books balance");
        assert_eq!(g.in_flight, 0);
        println!(
            "round {round:2}: worker {} killed {}; {} transfers so far, a = {}, b = {}",
            worker.id(),
            match verdict {
                Some(v) => format!("holding the lock ({v})"),
                None => "outside the lock".to_owned(),
            },
            g.transfers,
            g.a,
            g.b
        );
    }
    Ok(())
}
