//! Fixtures for tests and benchmarks: real etcd servers on free loopback ports in temporary data dirs.
//!
//! Used only as a dev-dependency; it must not depend on any Capstan crate, so that every crate can use
//! it without a cycle. Nothing here fakes a component: it starts the real programs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A temporary directory, removed when dropped.
pub fn temp_dir() -> std::io::Result<TempDir> {
    tempfile::Builder::new().prefix("capstan-test-").tempdir()
}

/// A real single-member etcd cluster (Debian's `etcd-server`), killed when dropped.
///
/// The binary is `$CAPSTAN_ETCD_BIN`, or `etcd` from `PATH`.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers `/health`.
    pub fn start() -> std::io::Result<Self> {
        let dir = temp_dir()?;
        let mut server = Self {
            child: None,
            dir,
            client_port: free_port()?,
            peer_port: free_port()?,
        };
        server.spawn()?;
        Ok(server)
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The data directory etcd writes to.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("etcd")
    }

    /// Kills etcd with SIGKILL, as a crash would.
    pub fn kill(&mut self) -> std::io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts etcd again on the same data dir and ports after [`EtcdServer::kill`].
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill()?;
        self.spawn()
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let bin = std::env::var_os("CAPSTAN_ETCD_BIN").unwrap_or_else(|| "etcd".into());
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let child = Command::new(&bin)
            .arg("--name=capstan-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=capstan-test={peer}"))
            // Kubernetes objects reach 1.5 MiB; leave room for the request around them.
            .arg("--max-request-bytes=10485760")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", Path::new(&bin).display()),
                )
            })?;
        self.child = Some(child);
        self.wait_healthy(Duration::from_secs(30))
    }

    fn wait_healthy(&mut self, timeout: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "etcd exited with {status}: {log}"
                )));
            }
            if self.healthy() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("etcd did not become healthy in time"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /health HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.client_port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.contains("\"health\":\"true\"")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
