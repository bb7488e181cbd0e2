//! Request and reply over one System V message queue, addressed by message type.
//!
//! The server (this program, run without arguments) creates a private queue and starts three
//! clients (this program again, with `client ID`). Every client sends its requests as type 1,
//! with its process id in the message, and waits for messages *of its own pid's type*: the
//! kernel hands each client its replies and nobody else's, although all of them share one
//! queue with the server.
//!
//! ```text
//! cargo run -p ipc-mq --example sysv_request_reply
//! ```

use std::process::{Command, ExitCode};
use std::time::Duration;

use ipc_mq::Deadline;
use ipc_mq::sysv::{Queue, Selector};

/// Requests go to the server as this type; replies go back typed with the client's pid.
const REQUEST: i64 = 1;
const CLIENTS: usize = 3;

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        client(Queue::from_id(args[2].parse()?))?;
        return Ok(ExitCode::SUCCESS);
    }
    server()
}

fn server() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let q = Queue::private()?;
    let _remove = q.remove_guard();
    let exe = std::env::current_exe()?;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(
            Command::new(&exe)
                .args(["client", &q.id().to_string()])
                .spawn()?,
        );
    }
    let mut done = 0;
    while done < CLIENTS {
        let req = q.recv_message_deadline(
            Selector::Type(REQUEST),
            Deadline::after(Duration::from_secs(30)),
        )?;
        let text = String::from_utf8(req.data)?;
        let (pid, body) = text.split_once(' ').ok_or("malformed request")?;
        let reply = match body {
            "bye" => {
                done += 1;
                continue;
            }
            numbers => {
                let sum: i64 = numbers
                    .split_whitespace()
                    .map(str::parse::<i64>)
                    .sum::<Result<_, _>>()?;
                format!("sum of {numbers} is {sum}")
            }
        };
        q.send_typed(pid.parse()?, reply.as_bytes())?;
    }
    let mut ok = true;
    for mut c in clients {
        ok &= c.wait()?.success();
    }
    let st = q.status()?;
    println!(
        "server: done; {} messages left, last sender pid {:?}",
        st.messages, st.last_send_pid
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn client(q: Queue) -> Result<(), Box<dyn std::error::Error>> {
    let me = std::process::id();
    for n in 1..=3 {
        let numbers: Vec<String> = (1..=n).map(|i| (i * me as i64 % 100).to_string()).collect();
        q.send_typed(REQUEST, format!("{me} {}", numbers.join(" ")).as_bytes())?;
        let reply = q.recv_message_deadline(
            Selector::Type(i64::from(me)),
            Deadline::after(Duration::from_secs(30)),
        )?;
        println!("client {me}: {}", String::from_utf8_lossy(&reply.data));
    }
    q.send_typed(REQUEST, format!("{me} bye").as_bytes())?;
    Ok(())
}
