//! The design's proxy policy: what a finished run means for its task.
//!
//! | class | decision |
//! |---|---|
//! | success | completed |
//! | retriable failure (exit 1), interrupted (130), crashed (signal), protocol violation | retried with exponential backoff and jitter while `attempt <= max_retries`, then failed; a task whose every delivery killed its worker ends `dead` (a poison task) |
//! | permanent failure (exit 2) | failed at once |
//! | timeout (exit 3, or stopped at `timeout`) | failed, or retried when the worker sets `retry_on_timeout` |

use std::time::Duration;

use serde_json::Value;

use super::registry::WorkerSpec;
use crate::protocol::{Classification, ExitClass};

/// What to do with a task after a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Complete(Value),
    Retry {
        error: String,
        delay: Duration,
    },
    Fail {
        error: String,
    },
    /// Out of retries, and the last delivery killed its worker: a poison task.
    Dead {
        error: String,
    },
}

/// Exponential backoff: `base * multiplier^(attempt-1)`, capped, with ±20% jitter so tasks
/// that failed together do not come back together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub multiplier: f64,
    pub max: Duration,
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(30) as i32);
        let raw = (self.base.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        Duration::from_secs_f64(raw * jitter)
    }
}

/// Decides from the run's class; `attempt` is this delivery (1 for the first).
pub fn decide(judged: &Classification, attempt: u32, spec: &WorkerSpec, backoff: &Backoff) -> Decision {
    let why = judged
        .reason
        .clone()
        .unwrap_or_else(|| judged.class.label().to_string());
    let error = format!("{}: {why}", judged.class.label());
    let retriable = match judged.class {
        ExitClass::Success => {
            let result = judged
                .output
                .as_ref()
                .and_then(|o| o.result.clone())
                .unwrap_or_default();
            return Decision::Complete(Value::Object(result));
        }
        ExitClass::PermanentFailure => false,
        ExitClass::Timeout => spec.retry_on_timeout,
        ExitClass::RetriableFailure
        | ExitClass::Interrupted
        | ExitClass::Crashed
        | ExitClass::ProtocolViolation => true,
    };
    if !retriable {
        return Decision::Fail { error };
    }
    match retry_or_give_up(error, attempt, spec, backoff) {
        Decision::Fail { error } if judged.class == ExitClass::Crashed => Decision::Dead { error },
        other => other,
    }
}

/// A retriable problem: retried while attempts remain.
pub fn retry_or_give_up(error: String, attempt: u32, spec: &WorkerSpec, backoff: &Backoff) -> Decision {
    if attempt <= spec.max_retries {
        Decision::Retry {
            error,
            delay: backoff.delay(attempt),
        }
    } else {
        Decision::Fail {
            error: format!("gave up after {attempt} attempts: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::WorkerCommand;
    use std::sync::Arc;

    fn spec(max_retries: u32, retry_on_timeout: bool) -> WorkerSpec {
        WorkerSpec {
            name: "w".into(),
            command: WorkerCommand::new("x"),
            task_types: vec![],
            timeout: Duration::from_secs(1),
            max_retries,
            retry_on_timeout,
            concurrency: None,
            slots: Arc::new(tokio::sync::Semaphore::new(1)),
            limit: 1,
            persistent: None,
            pool: Default::default(),
        }
    }

    fn judged(class: ExitClass) -> Classification {
        Classification {
            class,
            output: None,
            reason: Some("why".into()),
        }
    }

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        multiplier: 2.0,
        max: Duration::from_secs(300),
    };

    #[test]
    fn classes_map_to_decisions() {
        let s = spec(2, false);
        assert!(matches!(
            decide(&judged(ExitClass::RetriableFailure), 1, &s, &B),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            decide(&judged(ExitClass::Crashed), 2, &s, &B),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            decide(&judged(ExitClass::PermanentFailure), 1, &s, &B),
            Decision::Fail { .. }
        ));
        assert!(matches!(
            decide(&judged(ExitClass::Timeout), 1, &s, &B),
            Decision::Fail { .. }
        ));
        assert!(matches!(
            decide(&judged(ExitClass::Timeout), 1, &spec(2, true), &B),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            decide(&judged(ExitClass::Crashed), 3, &s, &B),
            Decision::Dead { .. }
        ));
        match decide(&judged(ExitClass::RetriableFailure), 3, &s, &B) {
            Decision::Fail { error } => {
                assert!(error.starts_with("gave up after 3 attempts: failure (retriable): why"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for _ in 0..100 {
            let d1 = B.delay(1).as_secs_f64();
            let d3 = B.delay(3).as_secs_f64();
            assert!((0.8..=1.2).contains(&d1), "{d1}");
            assert!((3.2..=4.8).contains(&d3), "{d3}");
            assert!(B.delay(40).as_secs_f64() <= 360.0);
        }
    }
}
