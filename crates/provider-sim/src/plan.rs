//! What one answer will be, drawn from the seeded generator before it starts: its
//! length, first-token time, fault, and the generator that then draws each
//! inter-token latency and word.

use crate::config::{Faults, ModelSpec};
use powertune_dialect::ChatRequest;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The fault an answer gets (at most one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ServerError,
    Overloaded,
    StallFirst,
    StallMid,
    Drop,
    Malformed,
    /// The API's own error event after some content chunks; the stream ends there.
    MidStreamError,
}

const FAULTS: [Fault; 7] = [
    Fault::ServerError,
    Fault::Overloaded,
    Fault::StallFirst,
    Fault::StallMid,
    Fault::Drop,
    Fault::Malformed,
    Fault::MidStreamError,
];

/// The words answers are made of: one word is one token.
const WORDS: [&str; 64] = [
    "the", "load", "test", "shows", "a", "steady", "rate", "of", "calls", "and", "each", "answer",
    "streams", "tokens", "to", "its", "client", "while", "queues", "stay", "short", "under",
    "budget", "with", "latency", "within", "target", "so", "workers", "keep", "pace", "as",
    "traffic", "grows", "through", "peak", "hours", "when", "cache", "hits", "rise", "database",
    "pool", "holds", "every", "request", "in", "time", "for", "users", "who", "wait", "less",
    "than", "one", "second", "on", "most", "pages", "today", "because", "indexes", "help", "reads",
];

/// One answer's plan.
#[derive(Debug)]
pub struct Plan {
    pub output_tokens: u64,
    /// The request's `max_tokens` cut the answer short.
    pub truncated: bool,
    pub input_tokens: u64,
    pub ttft: Duration,
    pub fault: Option<Fault>,
    itl: crate::dist::Dist,
    scale: f64,
    rng: SmallRng,
}

/// Input tokens as providers roughly count them: four characters a token.
pub fn input_tokens(req: &ChatRequest) -> u64 {
    let chars: usize = req.system.as_deref().map_or(0, str::len)
        + req.messages.iter().map(|m| m.content.len()).sum::<usize>();
    (chars as u64).div_ceil(4).max(1)
}

impl Plan {
    /// Draws the plan of request number `seq` to a model from `seed`.
    pub fn draw(
        seed: u64,
        slot: u64,
        seq: u64,
        req: &ChatRequest,
        spec: &ModelSpec,
        faults: &Faults,
        scale: f64,
    ) -> Plan {
        let mix = seed
            ^ slot.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ seq.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut rng = SmallRng::seed_from_u64(mix);
        let drawn = spec.output_tokens.count(&mut rng);
        let limit = req.max_tokens.unwrap_or(u64::MAX).max(1);
        let ttft = spec.ttft.duration(&mut rng, scale);
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut fault = None;
        for (f, r) in FAULTS.iter().zip(faults.rates()) {
            acc += r;
            if u < acc {
                fault = Some(*f);
                break;
            }
        }
        Plan {
            output_tokens: drawn.min(limit),
            truncated: drawn > limit,
            input_tokens: input_tokens(req),
            ttft,
            fault,
            itl: spec.itl,
            scale,
            rng,
        }
    }

    /// The next inter-token latency.
    pub fn next_itl(&mut self) -> Duration {
        self.itl.duration(&mut self.rng, self.scale)
    }

    /// The text of token `i` (a word, with a space before all but the first).
    pub fn word(&mut self, i: u64) -> &'static str {
        let k = self.rng.random_range(0..WORDS.len());
        if i == 0 {
            WORDS[k]
        } else {
            SPACED[k]
        }
    }

    /// Follows a script: no drawn fault; its text's words, or its tool call's
    /// arguments at four characters a token, as the answer's length.
    pub(crate) fn follow(&mut self, sc: &crate::script::Scripted, max_tokens: Option<u64>) {
        self.fault = None;
        if let Some(t) = &sc.tool_call {
            self.output_tokens = (t.1.to_string().len() as u64).div_ceil(4).max(1);
            self.truncated = false;
        } else if let Some(w) = &sc.words {
            let n = w.len() as u64;
            let limit = max_tokens.unwrap_or(u64::MAX).max(1);
            self.output_tokens = n.min(limit);
            self.truncated = n > limit;
        }
    }

    /// The token halfway through, where mid-stream faults strike.
    pub fn midpoint(&self) -> u64 {
        self.output_tokens / 2
    }
}

const SPACED: [&str; 64] = [
    " the",
    " load",
    " test",
    " shows",
    " a",
    " steady",
    " rate",
    " of",
    " calls",
    " and",
    " each",
    " answer",
    " streams",
    " tokens",
    " to",
    " its",
    " client",
    " while",
    " queues",
    " stay",
    " short",
    " under",
    " budget",
    " with",
    " latency",
    " within",
    " target",
    " so",
    " workers",
    " keep",
    " pace",
    " as",
    " traffic",
    " grows",
    " through",
    " peak",
    " hours",
    " when",
    " cache",
    " hits",
    " rise",
    " database",
    " pool",
    " holds",
    " every",
    " request",
    " in",
    " time",
    " for",
    " users",
    " who",
    " wait",
    " less",
    " than",
    " one",
    " second",
    " on",
    " most",
    " pages",
    " today",
    " because",
    " indexes",
    " help",
    " reads",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    fn req() -> ChatRequest {
        powertune_dialect::parse_request(
            powertune_dialect::Front::OpenAi,
            br#"{"model":"m","messages":[{"role":"user","content":"hello there friend"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn spaced_words_match_words() {
        for (w, s) in WORDS.iter().zip(SPACED) {
            assert_eq!(format!(" {w}"), s);
        }
    }

    #[test]
    fn the_same_seed_and_sequence_give_the_same_answer() {
        let c = SimConfig::default();
        let text = |seed, seq| {
            let mut p = Plan::draw(seed, 0, seq, &req(), &c.defaults, &c.faults, 1.0);
            let words: String = (0..p.output_tokens).map(|i| p.word(i)).collect();
            (p.ttft, p.output_tokens, words)
        };
        assert_eq!(text(1, 5), text(1, 5));
        assert_ne!(text(1, 5), text(2, 5));
        assert_ne!(text(1, 5), text(1, 6));
        assert_eq!(input_tokens(&req()), 5);
    }

    #[test]
    fn faults_come_at_their_rates() {
        let mut c = SimConfig::default();
        c.faults.drop_rate = 0.25;
        c.faults.error_rate = 0.25;
        let n = 20_000;
        let drops = (0..n)
            .filter(|&i| {
                Plan::draw(1, 0, i, &req(), &c.defaults, &c.faults, 1.0).fault == Some(Fault::Drop)
            })
            .count();
        assert!((drops as f64 / n as f64 - 0.25).abs() < 0.02, "{drops}");
    }
}
