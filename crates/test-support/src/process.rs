//! A `conclave host` or `conclave kds` child process for tests: started,
//! its announced URL read from stdout, killed when dropped.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, ChildStderr, Command, Stdio},
};

/// A serving `conclave` process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ServingProcess {
    /// The process.
    pub child: Child,
    /// The URL it printed (`listening on URL`).
    pub url: String,
    stderr: Option<ChildStderr>,
}

impl ServingProcess {
    /// Runs `binary` with `args` and waits until it says where it listens.
    /// Panics with its stderr if it exits first.
    pub fn start<S: AsRef<OsStr>>(binary: &Path, args: impl IntoIterator<Item = S>) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start conclave");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = child.wait();
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("conclave did not start serving: {line:?}\n{stderr}");
        };
        assert!(url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"), "{url}");
        let stderr = child.stderr.take();
        Self { child, url, stderr }
    }

    /// Everything the process wrote to stderr, once it has exited.
    pub fn stderr_text(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            stderr.read_to_string(&mut text).unwrap();
        }
        text
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServingProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
