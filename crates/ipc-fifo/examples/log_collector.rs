//! A log collector: many writer processes, one reader, one FIFO.
//!
//! The collector creates the FIFO and opens it for reading with `keep_open`, so writers can
//! come and go without ending the stream; it then starts writer processes (this same program,
//! run as `log_collector writer PATH ID LINES`). Each writer sends its lines with
//! `write_atomic`: every line is at most `PIPE_BUF` bytes and goes out in one `write`, so lines
//! from different writers never mix, however long they are. When every writer has exited, the
//! collector lets go of its own write end, reads what is left and sees end-of-file.
//!
//! Any other program can log here too while it runs: `echo "hello" > PATH`.
//!
//! Run with `cargo run -p ipc-fifo --example log_collector`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::Command;

use ipc_core::Deadline;
use ipc_fifo::{Fifo, OpenOptions};

const WRITERS: usize = 4;
const LINES: usize = 2_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("writer") {
        return writer(&args[2], args[3].parse()?, args[4].parse()?);
    }
    let dir = std::env::temp_dir().join(format!("ipc-fifo-log-collector-{}", std::process::id()));
    std::fs::create_dir(&dir)?;
    let result = collector(&dir);
    std::fs::remove_dir_all(&dir)?;
    result
}

/// A writer process: `lines` log lines of varied length, each one atomic write.
fn writer(path: &str, id: usize, lines: usize) -> Result<(), Box<dyn std::error::Error>> {
    // Waits for the collector if it is not there yet.
    let mut log = OpenOptions::new().open_write(path)?;
    for n in 0..lines {
        // Some lines are long (up to ~3.5 KB): long lines are where non-atomic writes tear.
        let pad = "=".repeat((n * 37 + id * 101) % 3500);
        let line = format!("writer {id} line {n} {pad}\n");
        log.write_atomic(line.as_bytes())?;
    }
    Ok(())
}

fn collector(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let fifo = Fifo::create(dir.join("log.fifo"))?;
    // Open without waiting for a writer, and hold the FIFO open while writers come and go.
    let reader = OpenOptions::new()
        .wait(Deadline::Now)
        .keep_open(true)
        .open_read(&fifo)?;
    reader.set_nonblocking(false)?;
    println!("collecting at {}", fifo.path().display());

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for id in 0..WRITERS {
        children.push(
            Command::new(&exe)
                .args(["writer", fifo.path().to_str().ok_or("non-UTF-8 temp dir")?])
                .arg(id.to_string())
                .arg(LINES.to_string())
                .spawn()?,
        );
    }

    let mut next_line = BTreeMap::new();
    std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
        // When every writer has exited, stop holding the FIFO open: the reader then sees
        // end-of-file after the last line.
        s.spawn(|| {
            for mut c in children {
                let _ = c.wait();
            }
            reader.stop_keeping_open();
        });
        for line in std::io::BufReader::new(&reader).lines() {
            let line = line?;
            let mut words = line.split(' ');
            let (Some("writer"), Some(id), Some("line"), Some(n), Some(pad), None) = (
                words.next(),
                words.next(),
                words.next(),
                words.next(),
                words.next(),
                words.next(),
            ) else {
                return Err(format!("torn or foreign line: {line:.80}").into());
            };
            let (id, n): (usize, usize) = (id.parse()?, n.parse()?);
            let want = next_line.entry(id).or_insert(0);
            if n != *want || pad.len() != (n * 37 + id * 101) % 3500 {
                return Err(format!("writer {id}: line {n} out of order or damaged").into());
            }
            *want += 1;
            if n % 500 == 0 {
                println!("writer {id} line {n} ({} bytes)", line.len() + 1);
            }
        }
        Ok(())
    })?;

    for (id, lines) in &next_line {
        println!("writer {id}: {lines} lines, all whole and in order");
    }
    assert_eq!(next_line.len(), WRITERS);
    assert!(next_line.values().all(|&n| n == LINES));
    Ok(())
}
