//! What `GET /stats` shows: calls, tokens, 429s and faults per API key and model.
//! The number of series is capped ([`MAX_SERIES`]); later pairs share one
//! `(other)` series, so memory does not grow with what clients send.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;

/// The most (key, model) series kept.
pub const MAX_SERIES: usize = 10_000;

/// Counts of one series (or of all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Chat requests that named this model (every answer, errors included).
    pub calls: u64,
    /// Calls that asked for a stream.
    pub streamed: u64,
    /// Calls answered with a completion (faulted streams included).
    pub completed: u64,
    /// Input tokens of completed calls (estimated: 4 characters a token).
    pub input_tokens: u64,
    /// Output tokens of completed calls, as their usage reports them.
    pub output_tokens: u64,
    /// 429 answers: over the key's requests-per-minute quota.
    pub rate_limited_requests: u64,
    /// 429 answers: over the key's tokens-per-minute quota.
    pub rate_limited_tokens: u64,
    /// Requests the dialect refused (400).
    pub bad_requests: u64,
    /// Streams sent to their end (finish and usage, or the scripted error event).
    pub streams_finished: u64,
    /// Streams whose client closed the connection before the stream ended.
    pub closed_by_client: u64,
    /// Calls answered by a script (`POST /control` `script` or `next`).
    pub scripted: u64,
    pub faults: FaultCounts,
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    /// `error_rate`: a 5xx answer.
    pub server_error: u64,
    /// `overload_rate`: 529 (Anthropic) or 503.
    pub overloaded: u64,
    /// Answered 503 while flapping down.
    pub flap_down: u64,
    pub stall_first: u64,
    pub stall_mid: u64,
    pub dropped: u64,
    pub malformed: u64,
    /// `mid_stream_error_rate`: the API's error event in the stream.
    pub mid_stream_error: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.calls += o.calls;
        self.streamed += o.streamed;
        self.completed += o.completed;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.rate_limited_requests += o.rate_limited_requests;
        self.rate_limited_tokens += o.rate_limited_tokens;
        self.bad_requests += o.bad_requests;
        self.streams_finished += o.streams_finished;
        self.closed_by_client += o.closed_by_client;
        self.scripted += o.scripted;
        let (f, g) = (&mut self.faults, &o.faults);
        f.server_error += g.server_error;
        f.overloaded += g.overloaded;
        f.flap_down += g.flap_down;
        f.stall_first += g.stall_first;
        f.stall_mid += g.stall_mid;
        f.dropped += g.dropped;
        f.malformed += g.malformed;
        f.mid_stream_error += g.mid_stream_error;
    }

    /// All 429 answers.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited_requests + self.rate_limited_tokens
    }
}

/// One series of `/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Series {
    /// The key's configured name, or the key masked (`sk-…wxyz`), or `(none)`.
    pub key: String,
    pub model: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The body of `GET /stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsSnapshot {
    pub uptime_s: f64,
    pub totals: Counts,
    /// Sorted by key, then model.
    pub series: Vec<Series>,
}

impl StatsSnapshot {
    /// The series of one key label and model.
    pub fn get(&self, key: &str, model: &str) -> Option<&Counts> {
        self.series
            .iter()
            .find(|s| s.key == key && s.model == model)
            .map(|s| &s.counts)
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub struct Stats {
    series: Mutex<HashMap<(String, String), Counts>>,
}

const OTHER: &str = "(other)";

impl Stats {
    /// Applies `f` to the series of (`key`, `model`).
    pub fn update(&self, key: &str, model: &str, f: impl FnOnce(&mut Counts)) {
        let mut m = self.series.lock();
        let id = (key.to_string(), model.to_string());
        if let Some(c) = m.get_mut(&id) {
            f(c);
            return;
        }
        let id = if m.len() + 1 >= MAX_SERIES {
            (OTHER.to_string(), OTHER.to_string())
        } else {
            id
        };
        f(m.entry(id).or_default());
    }

    pub fn snapshot(&self, uptime_s: f64) -> StatsSnapshot {
        let m = self.series.lock();
        let mut totals = Counts::default();
        let mut series: Vec<Series> = m
            .iter()
            .map(|((k, model), c)| {
                totals.add(c);
                Series {
                    key: k.clone(),
                    model: model.clone(),
                    counts: *c,
                }
            })
            .collect();
        series.sort_by(|a, b| (&a.key, &a.model).cmp(&(&b.key, &b.model)));
        StatsSnapshot {
            uptime_s,
            totals,
            series,
        }
    }

    pub fn reset(&self) {
        self.series.lock().clear();
    }
}

/// How an API key is shown: its first three and last four characters
/// (`sk-…wxyz`) when it is long enough to keep a secret after that, else `***`.
pub fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 16 {
        return "***".to_string();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked() {
        assert_eq!(mask_key("sk-proj-abcdefghijklmnop"), "sk-…mnop");
        assert_eq!(mask_key("short-key"), "***");
    }

    #[test]
    fn series_are_capped() {
        let s = Stats::default();
        for i in 0..MAX_SERIES + 50 {
            s.update(&format!("k{i}"), "m", |c| c.calls += 1);
        }
        let snap = s.snapshot(0.0);
        assert_eq!(snap.series.len(), MAX_SERIES);
        assert_eq!(snap.totals.calls, (MAX_SERIES + 50) as u64);
        assert!(snap.get(OTHER, OTHER).unwrap().calls > 50);
    }
}
