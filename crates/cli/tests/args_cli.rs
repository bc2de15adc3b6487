//! Typed arguments: every bad duration, rate or bounded integer of db, redis, queues,
//! apm, target, load and demo is refused by clap before the command runs (no server needed), with
//! exit 1 and one line naming the flag and the value.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::one_line_error;
use std::process::Command;

/// `(arguments, flag, bad value)`: the flag is given as `--flag VALUE`, or as
/// `--flag=VALUE` for values that start with `-`.
const CASES: &[(&[&str], &str, &str)] = &[
    // db: session timeouts above zero and at most 1h, --top 1..=1000.
    (&["db"], "--statement-timeout", "0s"),
    (&["db"], "--statement-timeout", "5"),
    (&["db"], "--lock-timeout", "2h"),
    (&["db"], "--connect-timeout", "-1s"),
    (&["db"], "--top", "0"),
    (&["db"], "--top", "1001"),
    (&["db"], "--stuck-after", "5"),
    (&["db"], "--idle-in-transaction-after", "soon"),
    (&["db", "explain"], "--timeout", "0s"),
    (&["db", "watch"], "--interval", "50ms"),
    (&["db", "watch"], "--interval", "30"),
    (&["db", "watch"], "--count", "0"),
    // redis: --timeout above zero, SLOWLOG 1..=128, scan bounds, --rate a rate.
    (&["redis"], "--timeout", "0s"),
    (&["redis"], "--timeout", "5"),
    (&["redis"], "--slowlog", "0"),
    (&["redis"], "--slowlog", "129"),
    (&["redis"], "--sample", "0"),
    (&["redis"], "--count", "100001"),
    (&["redis"], "--rate", "fast"),
    (&["redis"], "--rate", "0/s"),
    (&["redis"], "--rate", "5/d"),
    (&["redis"], "--top", "0"),
    (&["redis"], "--prefix-depth", "9"),
    (&["redis"], "--max-prefixes", "0"),
    (&["redis", "keys"], "--sample", "0"),
    (&["redis", "keys"], "--rate", "-5"),
    (&["redis", "keys"], "--count", "0"),
    // queues: --watch at least 100ms, --ticks at least 1, read bounds.
    (&["queues"], "--watch", "50ms"),
    (&["queues"], "--watch", "10"),
    (&["queues"], "--ticks", "0"),
    (&["queues"], "--retry-sample", "0"),
    (&["queues"], "--days", "367"),
    (&["queues"], "--timeout", "-5s"),
    // apm: --window above zero, queues at least 1, a known protocol.
    (&["apm", "report"], "--window", "0s"),
    (&["apm", "report"], "--window", "soon"),
    (&["apm", "endpoint", "GET /x"], "--window", "15"),
    (&["apm", "serve"], "--queue", "0"),
    (&["apm", "serve"], "--forward-queue", "0"),
    (&["apm", "serve"], "--forward-protocol", "grpc2"),
    // target: pool 1..=10000, pool timeout above zero and at most 10m, delay <= 10m.
    (&["target"], "--pool-size", "0"),
    (&["target"], "--pool-size", "10001"),
    (&["target"], "--pool-timeout", "0s"),
    (&["target"], "--pool-timeout", "11m"),
    (&["target"], "--delay", "11m"),
    (&["target"], "--delay", "50"),
    // load (one-off): VUs 1..=1,000,000, a duration above zero, a rate, a known
    // endpoint type, a time-scale factor above 0 and at most 1000.
    (&["load", "--url", "http://127.0.0.1:9/"], "--vus", "0"),
    (
        &["load", "--url", "http://127.0.0.1:9/"],
        "--duration",
        "0s",
    ),
    (
        &["load", "--url", "http://127.0.0.1:9/"],
        "--duration",
        "30",
    ),
    (&["load", "--url", "http://127.0.0.1:9/"], "--rate", "fast"),
    (&["load", "--url", "http://127.0.0.1:9/"], "--rate", "1e300"),
    (
        &["load", "--url", "http://127.0.0.1:9/"],
        "--endpoint-type",
        "teleport",
    ),
    (
        &["load", "--url", "http://127.0.0.1:9/"],
        "--time-scale",
        "0",
    ),
    (
        &["load", "--url", "http://127.0.0.1:9/"],
        "--time-scale",
        "NaN",
    ),
    // demo: the same factor, a pool of 1..=10000.
    (&["demo"], "--time-scale", "-1"),
    (&["demo"], "--time-scale", "1e9"),
    (&["demo"], "--pool-size", "0"),
];

#[test]
fn every_bad_typed_value_is_one_line_naming_the_flag_and_the_value() {
    for (command, flag, value) in CASES {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        if value.starts_with('-') {
            args.push(format!("{flag}={value}"));
        } else {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_powertune"))
            .args(&args)
            .env("NO_COLOR", "1")
            // Refused before any connection: no URL is needed, none must be used.
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked");
        let line = one_line_error(&out);
        assert!(
            line.contains(&format!("invalid value '{value}' for '{flag} <")),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn the_messages_say_what_a_right_value_looks_like() {
    let refuse = |args: &[&str]| {
        one_line_error(
            &Command::new(env!("CARGO_BIN_EXE_powertune"))
                .args(args)
                .output()
                .unwrap(),
        )
    };
    assert!(refuse(&["db", "--top", "0"]).contains("1..=1000"));
    assert!(refuse(&["db", "watch", "--interval", "50ms"]).contains("at least 100ms"));
    assert!(refuse(&["db", "--lock-timeout", "2h"]).contains("at most 1h"));
    assert!(refuse(&["redis", "--timeout", "5"]).contains("5s"));
    assert!(refuse(&["redis", "--rate", "5/d"]).contains("200/s"));
    assert!(refuse(&["apm", "report", "--window", "soon"]).contains("15m"));
    assert!(refuse(&["apm", "serve", "--forward-protocol", "x"]).contains("http/protobuf or grpc"));
    assert!(refuse(&["target", "--pool-timeout", "0s"]).contains("above zero"));
}

/// The line of `--help` that documents `flag`, with its wrapped continuation.
fn help_of(command: &[&str], flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(command)
        .arg("--help")
        .env("COLUMNS", "400")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{command:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let line = help
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{flag} ")))
        .unwrap_or_else(|| panic!("{command:?} has no {flag}:\n{help}"));
    // The help text after the flag and its value name, whatever the column width.
    line.trim_start()
        .split_once("  ")
        .map(|(_, h)| h.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn flags_that_mean_the_same_thing_read_the_same_in_every_command() {
    let reporting: &[&[&str]] = &[
        &["db"],
        &["db", "explain"],
        &["redis"],
        &["redis", "keys"],
        &["queues"],
        &["apm", "report"],
        &["apm", "endpoint"],
        &["apm", "analyze"],
    ];
    let json = help_of(reporting[0], "--json <FILE>");
    assert!(json.contains("JSON"), "{json}");
    for command in reporting {
        assert_eq!(help_of(command, "--json <FILE>"), json, "{command:?}");
    }
    for flag in ["--baseline <FILE>", "--save-baseline <FILE>"] {
        let first = help_of(&["redis"], flag);
        for command in [&["apm", "report"][..], &["apm", "analyze"]] {
            assert_eq!(help_of(command, flag), first, "{command:?} {flag}");
        }
    }
    for command in [&["db"][..], &["redis"], &["queues"], &["apm", "report"]] {
        let url = help_of(command, "--url <URL>");
        assert!(
            url.contains("URL") && url.contains("e.g. "),
            "{command:?}: {url}"
        );
        assert!(url.contains("never printed"), "{command:?}: {url}");
    }
}
