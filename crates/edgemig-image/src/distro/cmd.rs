//! Running the host tools of the build (mmdebstrap, sfdisk, losetup, mkfs,
//! mount, chroot, mtools, qemu-img) with their output captured, so a
//! failure reports the command and what it said.

use std::ffi::OsStr;
use std::io;
use std::process::{Command, Output, Stdio};

use super::error::DistroError;

/// How much of a failed command's output an error keeps (the end of it).
const OUTPUT_TAIL: usize = 2000;

/// A command about to run: program and arguments, shown in errors.
pub(crate) struct Cmd {
    command: Command,
    program: String,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// `program` with no arguments yet; run with the C locale.
    pub(crate) fn new(program: &str) -> Cmd {
        let mut command = Command::new(program);
        command.env("LC_ALL", "C");
        Cmd {
            command,
            program: program.to_string(),
            stdin: None,
        }
    }

    /// `chroot ROOT PROGRAM`, with a clean environment for the guest.
    pub(crate) fn chroot(root: &std::path::Path, program: &str) -> Cmd {
        let mut cmd = Cmd::new("chroot");
        cmd.command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .env("HOME", "/root")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg(root)
            .arg(program);
        cmd
    }

    /// Adds an argument.
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub(crate) fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable.
    pub(crate) fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Cmd {
        self.command.env(key, value);
        self
    }

    /// Feeds `data` on standard input.
    pub(crate) fn stdin(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    /// The command line, for messages.
    fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in self.command.get_args() {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains([' ', '\'', '"', '$', '\\']) {
                s.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
            } else {
                s.push(' ');
                s.push_str(&a);
            }
        }
        s
    }

    /// Runs the command to completion; its standard output on success.
    pub(crate) fn run(mut self) -> Result<String, DistroError> {
        let display = self.display();
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = self
            .command
            .spawn()
            .map_err(|source| spawn_error(&self.program, source))?;
        let output = feed_and_wait(spawned, self.stdin.take())
            .map_err(|source| spawn_error(&self.program, source))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !stdout.trim().is_empty() {
            text.push_str(&stdout);
        }
        Err(DistroError::CommandFailed {
            command: display,
            status: output.status.to_string(),
            stderr: tail(text.trim()),
        })
    }
}

/// Writes stdin (from a thread, so a chatty child cannot deadlock) and
/// collects the output.
fn feed_and_wait(mut child: std::process::Child, stdin: Option<Vec<u8>>) -> io::Result<Output> {
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => Some(std::thread::spawn(move || {
            use std::io::Write;
            pipe.write_all(&data)
        })),
        _ => None,
    };
    let output = child.wait_with_output()?;
    if let Some(w) = writer {
        match w.join() {
            Ok(r) => r.or_else(|e| {
                // The child may exit without reading everything; its status says why.
                if e.kind() == io::ErrorKind::BrokenPipe {
                    Ok(())
                } else {
                    Err(e)
                }
            })?,
            Err(_) => return Err(io::Error::other("stdin writer thread panicked")),
        }
    }
    Ok(output)
}

fn spawn_error(program: &str, source: io::Error) -> DistroError {
    DistroError::ToolMissing {
        program: program.to_string(),
        source,
    }
}

/// The last [`OUTPUT_TAIL`] bytes of `text`, cut at a character boundary.
fn tail(text: &str) -> String {
    if text.len() <= OUTPUT_TAIL {
        return text.to_string();
    }
    let mut start = text.len() - OUTPUT_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_command_and_its_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo oops >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c 'echo oops >&2; exit 3'"), "{msg}");
        assert!(
            msg.contains("oops") && msg.contains("exit status: 3"),
            "{msg}"
        );
    }

    #[test]
    fn feeds_stdin_and_returns_stdout() {
        let out = Cmd::new("tr")
            .args(["a-z", "A-Z"])
            .stdin("hello")
            .run()
            .unwrap();
        assert_eq!(out, "HELLO");
    }

    #[test]
    fn a_missing_tool_says_so() {
        let err = Cmd::new("edgemig-no-such-tool").run().unwrap_err();
        assert!(matches!(err, DistroError::ToolMissing { .. }), "{err}");
    }

    #[test]
    fn long_output_keeps_its_end() {
        let long = "x".repeat(5000) + "END";
        let t = tail(&long);
        assert!(t.ends_with("END") && t.len() < 2100);
    }
}
