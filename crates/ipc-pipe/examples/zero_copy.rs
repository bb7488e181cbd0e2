//! A zero-copy transfer: the parent hands pages to a pipe with `vmsplice`, its child moves them
//! from the pipe into a file with `splice`. No byte of the payload passes through a user-space
//! buffer between the parent's memory and the file.
//!
//! ```text
//! cargo run -p ipc-pipe --example zero_copy
//! ```
//!
//! The child is this program re-executed (argument `child <path>`), with the pipe's read end
//! as its stdin. The parent checks the file against what it sent, then removes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use ipc_pipe::prelude::*;
use ipc_pipe::{ChildPipes, PageBuf, PipeReader};

const LEN: usize = 8 << 20;

/// The payload: 8 MiB of a simple, checkable pattern.
fn payload() -> Vec<u8> {
    (0..LEN).map(|i| (i % 251) as u8).collect()
}

/// Removes the output file however the example ends.
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(Path::new(&args[2]));
    }
    let out =
        Remove(std::env::temp_dir().join(format!("ipc-pipe-zero-copy-{}", std::process::id())));

    let (reader, writer) = ipc_pipe::pipe()?;
    writer.set_capacity(1 << 20)?; // fewer, larger transfers
    let mut pipes = ChildPipes::new();
    pipes.stdin(reader)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("child").arg(&out.0);
    let mut child = pipes.spawn(cmd)?;

    // Fill page-aligned memory, then give its pages to the pipe by reference.
    let mut pages = PageBuf::copy_from_slice(&payload())?;
    let sent = writer.vmsplice(&mut pages, Deadline::Never)?;
    println!(
        "parent: vmspliced {sent} bytes; {} left in the buffer",
        pages.len()
    );
    drop(pages); // unmapped: the pipe's references keep the pages alive until the child reads
    drop(writer); // end-of-file for the child

    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the child failed: {status}").into());
    }
    let written = std::fs::read(&out.0)?;
    if written != payload() {
        return Err("the file differs from what was sent".into());
    }
    println!("parent: the file holds exactly the {LEN} bytes sent");
    Ok(())
}

fn child(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // Our stdin is the pipe: take a descriptor of it, checked to be a pipe's read end.
    let stdin = std::io::stdin();
    let reader = PipeReader::adopt(std::os::fd::AsFd::as_fd(&stdin).try_clone_to_owned()?)?;
    let file = std::fs::File::create_new(path)?;
    let mut total = 0;
    loop {
        match reader.splice_to(&file, 1 << 20, Deadline::Never)? {
            0 => break,
            n => total += n,
        }
    }
    println!(
        "child: spliced {total} bytes from the pipe into {}",
        path.display()
    );
    Ok(())
}
