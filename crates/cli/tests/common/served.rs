//! A `powertune` server (gateway, apm serve, target) as a real child process: its
//! address read from the line it prints when it listens, signals, its exit, its
//! memory; and a slowloris against any address.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which stream carries the "listening on http://…" line.
#[derive(Clone, Copy)]
pub enum Listens {
    OnStdout,
    OnStderr,
}

/// A running server; killed when dropped, whatever happens in the test.
pub struct Served {
    pub child: Child,
    /// `IP:PORT`.
    pub addr: String,
    /// Lines of that stream after the listening line, read by a thread.
    lines: Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start one.
pub struct Start<'a> {
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub listens: Listens,
    /// Start under this open-files soft limit (`ulimit -Sn`), as many hosts do.
    pub open_files: Option<u32>,
}

impl Served {
    pub fn start(s: Start<'_>) -> Served {
        let bin = env!("CARGO_BIN_EXE_powertune");
        let mut c = match s.open_files {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -Sn {n} && exec \"$0\" \"$@\""))
                    .arg(bin)
                    .args(s.args);
                c
            }
            None => {
                let mut c = Command::new(bin);
                c.args(s.args);
                c
            }
        };
        c.current_dir(std::env::temp_dir()).stdin(Stdio::null());
        for (k, v) in s.env {
            c.env(k, v);
        }
        match s.listens {
            Listens::OnStdout => c.stdout(Stdio::piped()).stderr(Stdio::null()),
            Listens::OnStderr => c.stdout(Stdio::null()).stderr(Stdio::piped()),
        };
        let mut child = c.spawn().unwrap();
        let stream: Box<dyn std::io::Read + Send> = match s.listens {
            Listens::OnStdout => Box::new(child.stdout.take().unwrap()),
            Listens::OnStderr => Box::new(child.stderr.take().unwrap()),
        };
        let mut reader = BufReader::new(stream);
        let mut before = Vec::new();
        let addr = loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                panic!("{:?} exited without a listening line: {before:?}", s.args);
            }
            // The first line naming the address (warnings may come first).
            if let Some(rest) = line
                .split("http://")
                .nth(1)
                .filter(|_| !line.contains("warning:"))
            {
                break rest
                    .split(['/', ' ', '\n'])
                    .next()
                    .unwrap()
                    .trim()
                    .to_string();
            }
            before.push(line);
        };
        // Keep reading, so later lines never meet a closed pipe.
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Served { child, addr, lines }
    }

    /// Sends `sig` (`-TERM`, `-INT`, `-HUP`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits (at most `within`) for the process to exit; its exit code.
    pub fn exit_within(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not exit within {within:?}");
    }

    /// Lines of its listening stream written since the listening line. Waits until
    /// the stream has been quiet for 200 ms (at most 2 s), so the last lines of a
    /// process that has just exited are read before the reader thread forwards them.
    pub fn lines(&self) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(2);
        let mut out = Vec::new();
        while Instant::now() < end {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => out.push(line),
                Err(_) => break,
            }
        }
        out
    }

    /// Resident and peak memory (VmRSS, VmHWM) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        memory_kib(self.child.id())
    }
}

/// VmRSS and VmHWM (peak) of `pid`, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Slow clients: each opens a connection and sends a request head that never ends,
/// one byte every `every`, for at most `max_bytes` bytes, then waits (up to 10 s) to
/// see whether the server closes it.
pub struct Slowloris {
    connected: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
    clients: Vec<tokio::task::JoinHandle<Option<Duration>>>,
}

impl Slowloris {
    pub fn start(addr: &str, clients: usize, every: Duration, max_bytes: usize) -> Slowloris {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let connected = Arc::new(AtomicUsize::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let clients = (0..clients)
            .map(|_| {
                let (addr, connected, stop) =
                    (addr.to_string(), Arc::clone(&connected), stop.clone());
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
                    connected.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                    let mut closed = None;
                    for k in 0..max_bytes {
                        let byte = head.get(k).copied().unwrap_or(b'a');
                        if s.write_all(&[byte]).await.is_err() {
                            closed = Some(started.elapsed());
                            break;
                        }
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(every) => {}
                        }
                    }
                    if closed.is_none() && !stop.is_cancelled() {
                        let mut buf = [0u8; 512];
                        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf));
                        if let Ok(Ok(0) | Err(_)) = read.await {
                            closed = Some(started.elapsed());
                        }
                    }
                    connected.fetch_sub(1, Ordering::Relaxed);
                    closed
                })
            })
            .collect();
        Slowloris {
            connected,
            stop,
            clients,
        }
    }

    /// Connections open now.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Waits until every client is connected (at most `within`).
    pub async fn all_connected(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.connected() < self.clients.len() {
            assert!(
                Instant::now() < deadline,
                "only {} of {} slow clients connected",
                self.connected(),
                self.clients.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the clients that are still sending; for each client, after how long the
    /// server closed it (`None`: it was still open).
    pub async fn finish(self) -> Vec<Option<Duration>> {
        self.stop.cancel();
        let mut out = Vec::new();
        for c in self.clients {
            out.push(c.await.unwrap_or(None));
        }
        out
    }

    /// Waits for every client to end by itself (the server closing it, or its bytes
    /// running out), then as [`Slowloris::finish`].
    pub async fn join(self) -> Vec<Option<Duration>> {
        let mut out = Vec::new();
        for c in self.clients {
            out.push(c.await.unwrap_or(None));
        }
        self.stop.cancel();
        out
    }
}
