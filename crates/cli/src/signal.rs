//! SIGINT and SIGTERM for commands that must keep what they measured: the first
//! signal asks the run to stop gracefully (VUs finish their iteration, watches end
//! their tick) and the command still prints and writes its report, marked
//! interrupted (exit code 105); a second signal asks it to stop at once.
//!
//! Services (`gateway serve`, `apm serve`, `target`) use [`Interrupt::graceful`] to
//! start draining and [`Interrupt::hard`] to give up on the drain.

use tokio_util::sync::CancellationToken;

/// The two stages of an interruption, as cancellation tokens a run can select on.
#[derive(Debug, Clone)]
pub struct Interrupt {
    graceful: CancellationToken,
    hard: CancellationToken,
}

impl Interrupt {
    /// Starts listening for SIGINT and SIGTERM; call it from inside the tokio runtime
    /// that runs the command. `what` names what stops, for the one line printed on
    /// standard error at each stage (for example "the run").
    pub fn listen(what: &'static str) -> Interrupt {
        let interrupt = Interrupt {
            graceful: CancellationToken::new(),
            hard: CancellationToken::new(),
        };
        // Registered before returning, so a signal that arrives at once is caught.
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return interrupt;
        };
        let stages = interrupt.clone();
        tokio::spawn(async move {
            let mut next = async || -> bool {
                tokio::select! {
                    got = int.recv() => got.is_some(),
                    got = term.recv() => got.is_some(),
                }
            };
            if !next().await {
                return;
            }
            eprintln!(
                "powertune: interrupted: stopping {what} gracefully (signal again to stop at once)"
            );
            stages.graceful.cancel();
            if !next().await {
                return;
            }
            eprintln!("powertune: interrupted again: stopping {what} now");
            stages.hard.cancel();
        });
        interrupt
    }

    /// Cancelled at the first signal.
    pub fn graceful(&self) -> &CancellationToken {
        &self.graceful
    }

    /// Cancelled at the second signal.
    pub fn hard(&self) -> &CancellationToken {
        &self.hard
    }
}
