//! A task's progress reports (docs/protocol.md, section 9) on their way to its task source.
//!
//! The dispatcher's stderr hook parses each line ([`crate::protocol::parse_progress`]) and
//! hands reports to the task's [`Forwarder`], which never blocks it: reports go into a
//! one-slot channel (a newer report replaces one not sent yet) read by a background task that
//! calls [`TaskSource::progress`]. That task sends the first report at once, then at most one
//! per [`INTERVAL`]: the latest report waiting when the interval is up, or the next one to
//! arrive after it. Dropping the forwarder (the worker's stderr closed: the run is over) drops
//! a report still waiting, because the outcome recorded next supersedes it. A failed send is
//! logged and not retried (the next report replaces it); `LeaseLost` ends the forwarding for
//! that delivery.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Map;
use tokio::sync::watch;

use super::events::TaskRef;
use super::source::{Claimed, SourceError, TaskSource};
use crate::protocol::Progress;

/// The shortest time between two reports of one delivery sent to its source.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Sends one report of the delivery to its source.
type SendReport = Arc<dyn Fn(Progress) -> BoxFuture<'static, Result<(), SourceError>> + Send + Sync>;

/// Forwards one delivery's progress reports to its source. Make one per task run and drop it
/// when the run is over.
pub struct Forwarder {
    parts: Parts,
    /// Where the background task runs (the hook may be called from any thread).
    runtime: tokio::runtime::Handle,
    /// Created, with the background task, on the first report: most workers send none.
    reports: OnceLock<watch::Sender<Option<Progress>>>,
}

impl Forwarder {
    /// Must be called within a tokio runtime: the background task will run on it.
    pub fn new(source: Arc<dyn TaskSource>, task: Claimed) -> Forwarder {
        let (task_id, attempt) = (task.id.clone(), task.attempts);
        let task = Arc::new(task);
        let send: SendReport = Arc::new(move |report: Progress| {
            let (source, task) = (source.clone(), task.clone());
            Box::pin(async move {
                source
                    .progress(&task, report.percent, report.message.as_deref())
                    .await
            })
        });
        Forwarder::with_sender(send, task_id, attempt, INTERVAL)
    }

    fn with_sender(send: SendReport, task_id: String, attempt: u32, interval: Duration) -> Forwarder {
        Forwarder {
            parts: Parts {
                send,
                task_id,
                attempt,
                interval,
            },
            runtime: tokio::runtime::Handle::current(),
            reports: OnceLock::new(),
        }
    }

    /// Queues `report` for the source, replacing one not sent yet. Never blocks. The first
    /// call starts the background task, which sends that first report at once.
    pub fn report(&self, report: Progress) {
        let mut first = Some(report);
        let sender = self.reports.get_or_init(|| {
            let (sender, receiver) = watch::channel(None);
            let first = first.take().expect("taken once");
            self.runtime.spawn(forward(self.parts.clone(), first, receiver));
            sender
        });
        if let Some(report) = first {
            sender.send_replace(Some(report));
        }
    }
}

/// What the background task needs of its forwarder.
#[derive(Clone)]
struct Parts {
    send: SendReport,
    /// The delivery, for logs.
    task_id: String,
    attempt: u32,
    interval: Duration,
}

/// The delivery `task` names, as a [`Claimed`] with only its id, type and attempt (an empty
/// lease, no params): what the stderr hook knows. Sources identify such a delivery by id
/// and attempt (see [`TaskSource::progress`]).
pub fn delivery(task: &TaskRef) -> Claimed {
    Claimed {
        id: task.id.clone(),
        task_type: task.task_type.clone(),
        params: Map::new(),
        priority: 0,
        attempts: task.attempt,
        created_at: 0.0,
        lease: String::new(),
    }
}

/// Sends `first`, then the later reports of one delivery, until its forwarder is dropped or
/// the source says the delivery is no longer ours.
async fn forward(parts: Parts, first: Progress, mut reports: watch::Receiver<Option<Progress>>) {
    let Parts {
        send,
        task_id,
        attempt,
        interval,
    } = parts;
    let mut next = Some(first);
    while let Some(report) = next.take() {
        let sent = tokio::time::Instant::now();
        let percent = report.percent;
        match send(report).await {
            Ok(()) => tracing::trace!(task_id = %task_id, percent, "progress sent"),
            Err(SourceError::Unavailable(e)) => {
                tracing::debug!(task_id = %task_id, error = %e, "could not send progress; the next report replaces it");
            }
            Err(SourceError::LeaseLost(_)) if reports.is_closed() => {
                // The run ended meanwhile and its outcome was recorded first: nothing lost.
                tracing::debug!(task_id = %task_id, "progress arrived after the outcome; dropped");
                return;
            }
            Err(SourceError::LeaseLost(_)) => {
                tracing::warn!(
                    task_id = %task_id,
                    attempt,
                    "the source refused progress: the task is no longer claimed by this host (its claim timed out?); no more progress is sent for this run"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(task_id = %task_id, error = %e, "the source refused progress; no more progress is sent for this run");
                return;
            }
        }
        tokio::time::sleep_until(sent + interval).await;
        if reports.is_closed() {
            // The run is over: a report still waiting is superseded by the outcome.
            return;
        }
        // The next report; `changed` still answers one sent just before the forwarder was
        // dropped (it came after a quiet interval: sent at once, like the first).
        if reports.changed().await.is_err() {
            return;
        }
        next = reports.borrow_and_update().clone();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    /// Every report sent, with when; refused with `LeaseLost` after `lost_after` sends.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<(Instant, Progress)>>,
        lost_after: Option<usize>,
    }

    impl Recorder {
        fn percents(&self) -> Vec<u8> {
            self.sent.lock().unwrap().iter().map(|(_, p)| p.percent).collect()
        }
    }

    const STEP: Duration = Duration::from_millis(300);

    fn at(percent: u8) -> Progress {
        Progress {
            percent,
            message: Some(format!("at {percent}")),
        }
    }

    fn forwarder(recorder: &Arc<Recorder>) -> Forwarder {
        let recorder = recorder.clone();
        let send: SendReport = Arc::new(move |report: Progress| {
            let mut sent = recorder.sent.lock().unwrap();
            sent.push((Instant::now(), report));
            let answer = match recorder.lost_after {
                Some(n) if sent.len() > n => Err(SourceError::LeaseLost("t-9".into())),
                _ => Ok(()),
            };
            Box::pin(async move { answer })
        });
        Forwarder::with_sender(send, "t-9".into(), 2, STEP)
    }

    #[tokio::test]
    async fn the_first_report_goes_at_once_then_the_latest_once_per_interval() {
        let recorder = Arc::new(Recorder::default());
        let f = forwarder(&recorder);
        let start = Instant::now();
        for p in [10, 20, 30, 40] {
            f.report(at(p));
        }
        tokio::time::sleep(STEP / 3).await;
        assert_eq!(recorder.percents(), [10], "the first at once, the rest wait");
        tokio::time::sleep(STEP).await;
        assert_eq!(recorder.percents(), [10, 40], "the latest waiting wins");
        // Nothing new: nothing sent.
        tokio::time::sleep(STEP * 2).await;
        assert_eq!(recorder.percents(), [10, 40]);
        // A report after a quiet interval goes at once.
        f.report(at(90));
        tokio::time::sleep(STEP / 3).await;
        assert_eq!(recorder.percents(), [10, 40, 90]);

        let sent = recorder.sent.lock().unwrap();
        assert!(sent[0].0 - start < STEP / 3);
        assert!(sent[1].0 - sent[0].0 >= STEP, "at most one per interval");
        assert_eq!(sent[1].1.message.as_deref(), Some("at 40"));
    }

    #[tokio::test]
    async fn a_report_still_waiting_when_the_run_ends_is_dropped() {
        let recorder = Arc::new(Recorder::default());
        let f = forwarder(&recorder);
        f.report(at(10));
        f.report(at(99));
        tokio::time::sleep(STEP / 3).await;
        drop(f);
        tokio::time::sleep(STEP * 2).await;
        assert_eq!(recorder.percents(), [10]);
    }

    #[tokio::test]
    async fn no_report_no_task_and_a_lost_lease_ends_forwarding() {
        let recorder = Arc::new(Recorder::default());
        drop(forwarder(&recorder));
        assert!(recorder.percents().is_empty());

        let recorder = Arc::new(Recorder {
            lost_after: Some(1),
            ..Recorder::default()
        });
        let f = forwarder(&recorder);
        f.report(at(1));
        tokio::time::sleep(STEP + STEP / 3).await;
        f.report(at(2));
        tokio::time::sleep(STEP / 3).await;
        assert_eq!(recorder.percents(), [1, 2], "the second is refused");
        f.report(at(3));
        tokio::time::sleep(STEP * 2).await;
        assert_eq!(recorder.percents(), [1, 2], "nothing after LeaseLost");
    }

    #[test]
    fn the_hooks_delivery_has_no_lease() {
        let d = delivery(&TaskRef {
            id: "t-9".into(),
            task_type: "Demo".into(),
            attempt: 2,
        });
        assert_eq!(
            (d.id.as_str(), d.task_type.as_str(), d.attempts),
            ("t-9", "Demo", 2)
        );
        assert!(d.lease.is_empty() && d.params.is_empty());
    }
}
