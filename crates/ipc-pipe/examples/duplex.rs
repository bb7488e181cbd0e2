//! A full-duplex conversation between a parent and its child over two pipes.
//!
//! ```text
//! cargo run -p ipc-pipe --example duplex
//! ```
//!
//! A pipe carries bytes one way; [`ipc_pipe::duplex`] crosses two of them. The parent keeps one
//! end, hands the other to its child (re-executed from this program, argument `child`) and
//! sends arithmetic questions as messages; the child answers each one. When the parent closes
//! its end, the child's next receive reports `Disconnected` and it exits.

use std::process::Command;

use ipc_pipe::{ChildPipes, FrameMode, PipeReader, PipeWriter};
use ipc_pipe::{ErrorKind, MessageReceiver, MessageSender};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        return child();
    }
    let (ours, theirs) = ipc_pipe::duplex()?;
    let mut pipes = ChildPipes::new();
    pipes.pass("requests", theirs.reader)?;
    pipes.pass("replies", theirs.writer)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("child");
    let mut child = pipes.spawn(cmd)?;

    let mut end = ours.into_channel(FrameMode::Atomic)?;
    let mut buf = [0; ipc_pipe::MAX_ATOMIC_PAYLOAD];
    for (a, b) in [(6, 7), (12, 12), (1 << 20, 3)] {
        let question = format!("{a} * {b}");
        end.send(question.as_bytes())?;
        let n = end.recv(&mut buf)?;
        let answer = std::str::from_utf8(&buf[..n])?;
        println!("parent: {question} = {answer}");
        if answer != (a * b).to_string() {
            return Err(format!("wrong answer to {question}: {answer}").into());
        }
    }
    drop(end); // the child sees Disconnected

    let status = child.wait()?;
    println!("parent: child exited: {status}");
    if !status.success() {
        return Err("the child failed".into());
    }
    Ok(())
}

fn child() -> Result<(), Box<dyn std::error::Error>> {
    let mut requests = PipeReader::from_inherited("requests")?.into_receiver(4092)?;
    let mut replies = PipeWriter::from_inherited("replies")?.into_sender(FrameMode::Atomic)?;
    let mut buf = [0; 4092];
    loop {
        let n = match requests.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                println!("child: the parent hung up");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let question = std::str::from_utf8(&buf[..n])?;
        let (a, b) = question.split_once(" * ").ok_or("not a product")?;
        let product = a.parse::<u64>()? * b.parse::<u64>()?;
        replies.send(product.to_string().as_bytes())?;
    }
}
