//! Helpers shared by the CLI end-to-end tests (each `tests/*.rs` file includes this
//! module and uses what it needs).
#![allow(dead_code)]

use std::process::Output;

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// The promise for bad input: exit 1 and exactly one line on stderr, starting
/// `powertune: `, with no panic or backtrace. Returns that line.
pub fn one_line_error(o: &Output) -> String {
    let e = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {} stderr: {e}",
        stdout(o)
    );
    assert_eq!(e.trim_end().lines().count(), 1, "one line expected: {e}");
    assert!(e.starts_with("powertune: "), "{e}");
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    e
}
pub mod served;

/// `powertune ARGS` from the repository root (so `examples/...` resolve), without
/// colour, killed if it runs past `within_s` seconds.
pub async fn powertune_within(args: &[&str], within_s: u64) -> Output {
    tokio::time::timeout(
        std::time::Duration::from_secs(within_s),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_powertune"))
            .args(args)
            .env("NO_COLOR", "1")
            .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("powertune {args:?} did not finish within {within_s} s"))
    .unwrap()
}

/// Writes the real Sidekiq 6 data of `crates/redis/tests/ruby/sidekiq6_fixture.rb`
/// (written by Debian's ruby-sidekiq) into the Redis database at `url`.
pub fn sidekiq6_fixture(url: &str) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../redis/tests/ruby/sidekiq6_fixture.rb"
    );
    let out = std::process::Command::new("ruby")
        .arg(script)
        .env("REDIS_URL", url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A loopback HTTP/1.1 server on its own threads answering every request with a
/// small 200 on kept-alive connections; its base URL (`http://IP:PORT`).
pub fn ok_server() -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 8192];
                while let Ok(n) = s.read(&mut buf) {
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if n == 0 || s.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}
