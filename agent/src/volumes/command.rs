//! Runs one external program (an LVM tool, the `rbd` CLI, qemu-img) with an explicit argument
//! vector, no shell, stdin closed, its output captured, and a deadline after which it is killed.
//!
//! It must never build a shell string: every argument reaches the program as it was given.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a program that exited 0 printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Why a program did not succeed: the message names the program, its arguments and what it said.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {message}")]
pub struct Failure {
    pub command: String,
    pub message: String,
    /// Its exit code, when it exited by itself.
    pub code: Option<i32>,
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `program args...` with `env` added, for at most `timeout`.
pub fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, Failure> {
    let words = args.iter().map(|a| a.as_ref().to_string_lossy());
    let command = std::iter::once(program.into()).chain(words).collect::<Vec<_>>().join(" ");
    let fail = |message: String, code: Option<i32>| Failure { command: command.clone(), message, code };
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}"), None))?;
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let status = wait_until(&mut child, Instant::now() + timeout);
    if !matches!(status, Ok(Some(_))) {
        let _ = child.kill();
        let _ = child.wait();
    }
    let collect = |h: Option<thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    match status {
        Err(e) => Err(fail(format!("waiting for it: {e}"), None)),
        Ok(None) => Err(fail(format!("killed after {} s without finishing", timeout.as_secs()), None)),
        Ok(Some(status)) if status.success() => Ok(Output { stdout, stderr }),
        Ok(Some(status)) => {
            let said = stderr.trim();
            let said = if said.is_empty() { stdout.trim() } else { said };
            Err(fail(
                format!("{status}: {}", said.lines().map(str::trim).collect::<Vec<_>>().join("; ")),
                status.code(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_failures_and_timeouts() {
        let ok = run("sh", &strings(&["-c", "echo out; echo err >&2", "x"]), &[], Duration::from_secs(10));
        let ok = ok.expect("sh runs");
        assert_eq!((ok.stdout.as_str(), ok.stderr.as_str()), ("out\n", "err\n"));

        let env = run("sh", &strings(&["-c", "echo $HCI_X"]), &[("HCI_X", "y")], Duration::from_secs(10));
        assert_eq!(env.expect("sh runs").stdout, "y\n");

        let bad = run("sh", &strings(&["-c", "echo nope >&2; exit 5"]), &[], Duration::from_secs(10));
        let bad = bad.expect_err("exit 5");
        assert_eq!(bad.code, Some(5));
        assert!(bad.to_string().contains("nope"), "{bad}");

        let slow = run("sleep", &strings(&["30"]), &[], Duration::from_millis(200)).expect_err("killed");
        assert!(slow.to_string().contains("killed after"), "{slow}");
        assert!(run::<&str>("/nonexistent/program", &[], &[], Duration::from_secs(1)).is_err());
    }
}
