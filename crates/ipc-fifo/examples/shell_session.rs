//! The seed's shell session, reproduced with ipc-fifo:
//!
//! ```sh
//! $ mkfifo mypipe
//! $ ls -l mypipe
//! prw-r--r-- 1 cshao staff 0 Aug 31 22:58 mypipe
//! $ echo "12345" > mypipe &
//! $ cat mypipe
//! 12345
//! ```
//!
//! The FIFO is made and read by this crate; the writer is the real `echo` in the background.
//! Then the other way round: this crate writes and the real `cat` reads.
//!
//! Run with `cargo run -p ipc-fifo --example shell_session`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use ipc_fifo::Fifo;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("ipc-fifo-shell-session-{}", std::process::id()));
    std::fs::create_dir(&dir)?;
    let result = session(&dir);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn session(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    println!("$ mkfifo mypipe");
    let fifo = Fifo::create(dir.join("mypipe"))?; // mode 0o600, removed when `fifo` drops

    println!("$ ls -l mypipe");
    ls(fifo.path())?;

    println!("$ echo \"12345\" > mypipe &");
    let echo = Command::new("/bin/sh")
        .args(["-c", r#"echo "12345" > "$1""#, "sh"])
        .arg(fifo.path())
        .spawn()?;

    println!("$ cat mypipe");
    // Blocks until echo's redirection opens the FIFO for writing; reads until echo closes it.
    let mut out = String::new();
    fifo.open_read()?.read_to_string(&mut out)?;
    print!("{out}");
    let echo_status = echo.wait_with_output()?.status;
    println!("[1]  + done       echo \"12345\" > mypipe ({echo_status})");

    println!("\nAnd the other way round: the crate writes, the real cat reads.");
    println!("$ cat mypipe &");
    let cat = Command::new("cat")
        .arg(fifo.path())
        .stdout(Stdio::piped())
        .spawn()?;
    // Blocks until cat has the FIFO open for reading.
    let mut w = fifo.open_write()?;
    writeln!(w, "12345")?;
    drop(w); // cat sees end-of-file and exits
    let cat_out = cat.wait_with_output()?;
    print!("{}", String::from_utf8_lossy(&cat_out.stdout));

    println!("$ ls -l mypipe   # still empty: a FIFO's data lives in the kernel, never on disk");
    ls(fifo.path())?;
    println!("$ rm mypipe");
    fifo.unlink()?;
    Ok(())
}

fn ls(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let out = Command::new("ls").arg("-l").arg(path).output()?;
    std::io::stdout().write_all(&out.stdout)?;
    Ok(())
}
