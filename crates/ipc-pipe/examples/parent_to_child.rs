//! The seed's first example: a parent writes into a pipe, its child reads from it.
//!
//! ```text
//! cargo run -p ipc-pipe --example parent_to_child
//! ```
//!
//! The program re-executes itself as the child (argument `child`), handing it the pipe's read
//! end under the name `data`. The parent keeps no copy of the read end, and the child none of
//! the write end, so the child sees end-of-file when the parent closes its writer.

use std::io::{BufRead, BufReader, Write};
use std::process::Command;

use ipc_pipe::{ChildPipes, PipeReader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        return child();
    }
    let (reader, mut writer) = ipc_pipe::pipe()?;
    let mut pipes = ChildPipes::new();
    let fd = pipes.pass("data", reader)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("child");
    let mut child = pipes.spawn(cmd)?;
    println!(
        "parent {}: child {} reads fd {fd}",
        std::process::id(),
        child.id()
    );

    for i in 1..=3 {
        writeln!(writer, "line {i} from the parent")?;
    }
    drop(writer); // end-of-file for the child

    let status = child.wait()?;
    println!("parent: child exited: {status}");
    if !status.success() {
        return Err("the child failed".into());
    }
    Ok(())
}

fn child() -> Result<(), Box<dyn std::error::Error>> {
    let reader = PipeReader::from_inherited("data")?;
    let mut lines = 0;
    for line in BufReader::new(reader).lines() {
        println!("child {}: read {:?}", std::process::id(), line?);
        lines += 1;
    }
    println!("child: end-of-file after {lines} lines");
    if lines != 3 {
        return Err(format!("expected 3 lines, read {lines}").into());
    }
    Ok(())
}
