//! A real `redis-server` of a test's own, on a Unix socket in a temporary
//! directory, with no persistence (`--save "" --appendonly no`). Stopping
//! and starting it again on the same socket is how the tests take the
//! shared rate-limit store away and give it back.
//!
//! Needs `redis-server` (Debian package `redis-server`; `scripts/test.sh`
//! installs it); without it the tests fail and say so.

// Each test crate includes this file and uses a different subset of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../ops_support/tools.rs"]
mod tools;

/// How long a starting server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `redis-server`; killed when dropped.
pub(crate) struct RedisServer {
    socket: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server listening only on `dir/redis.sock`, and waits until
    /// it answers.
    pub(crate) fn start(dir: &Path) -> RedisServer {
        let mut server = RedisServer {
            socket: dir.join("redis.sock"),
            child: None,
        };
        server.restart();
        server
    }

    /// The gateway's `address` for it.
    pub(crate) fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The `[rate_limit]` tables of a policy using it, with `on_store_error`.
    pub(crate) fn policy(&self, on_store_error: &str) -> String {
        format!(
            "[rate_limit]\nstore = \"redis\"\n\n[rate_limit.redis]\naddress = \"{}\"\n\
             timeout = \"500ms\"\non_store_error = \"{on_store_error}\"\n",
            self.address()
        )
    }

    /// Kills the server (no shutdown courtesy: a crash) and waits for it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts the server (again) on the same socket and waits for `PONG`.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let program = tools::require_tool("redis-server", "apt-get install redis-server");
        let child = Command::new(program)
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let began = Instant::now();
        while !self.answers() {
            assert!(
                began.elapsed() < READY_WITHIN,
                "redis-server did not answer on {} within {READY_WITHIN:?}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers `PING` now.
    fn answers(&self) -> bool {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut pong = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut pong).is_ok()
            && &pong == b"+PONG\r\n"
    }

    /// Runs one inline command and returns the raw reply (for checks on
    /// the keys the gateway wrote).
    pub(crate) fn command(&self, line: &str) -> String {
        let mut stream = UnixStream::connect(&self.socket).expect("redis answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reply = vec![0u8; 4096];
        let n = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
