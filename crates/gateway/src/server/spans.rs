//! Where a call's attempts meet `[telemetry]`: the attempt span starts under the
//! call's span with the breaker state its credential was admitted in.

use super::attempt::CallGuard;
use super::call::CallState;
use crate::telemetry::AttemptTarget;

impl CallGuard {
    /// Starts this attempt's span under `call`'s ([`crate::telemetry`]).
    pub(super) fn start_span(&mut self, call: &CallState) {
        let t = &self.targets[self.target];
        let p = &self.live.cfg.providers[t.provider];
        let breaker = if call.span.recording() {
            self.live.selectors[t.provider].creds[self.cred]
                .lock()
                .breaker
                .phase()
                .as_str()
        } else {
            ""
        };
        self.span = call.span.attempt(AttemptTarget {
            provider: p,
            credential: &p.credentials[self.cred].name,
            model: &t.model,
            breaker,
        });
    }
}
