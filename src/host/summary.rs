//! The per-worker table `wh host` prints when it stops: an observer that counts outcomes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::events::{Event, Observer};

#[derive(Debug, Default, Clone)]
struct Counts {
    completed: u64,
    retried: u64,
    failed: u64,
    dead: u64,
    released: u64,
    total_time: Duration,
    runs: u64,
}

/// Counts outcomes per worker.
#[derive(Default)]
pub struct Summary {
    counts: Mutex<BTreeMap<String, Counts>>,
}

impl Observer for Summary {
    fn on_event(&self, event: &Event) {
        let mut counts = self.counts.lock().expect("no panics while counting");
        let worker = |w: &str| {
            if w.is_empty() {
                "(no worker)".to_string()
            } else {
                w.to_string()
            }
        };
        match event {
            Event::Completed { worker: w, .. } => counts.entry(worker(w)).or_default().completed += 1,
            Event::Retrying { worker: w, .. } => counts.entry(worker(w)).or_default().retried += 1,
            Event::Failed { worker: w, .. } => counts.entry(worker(w)).or_default().failed += 1,
            Event::Dead { worker: w, .. } => counts.entry(worker(w)).or_default().dead += 1,
            Event::Released { worker: w, .. } => counts.entry(worker(w)).or_default().released += 1,
            Event::WorkerExited {
                worker: w, duration, ..
            }
            | Event::Answered {
                worker: w, duration, ..
            } => {
                let c = counts.entry(worker(w)).or_default();
                c.total_time += *duration;
                c.runs += 1;
            }
            _ => {}
        }
    }
}

impl Summary {
    /// Tasks that ended (completed, failed or dead) in this run.
    pub fn finished(&self) -> u64 {
        let counts = self.counts.lock().expect("no panics while counting");
        counts.values().map(|c| c.completed + c.failed + c.dead).sum()
    }

    /// The table: one row per worker, and a total.
    pub fn table(&self) -> String {
        let counts = self.counts.lock().expect("no panics while counting");
        let mut out = format!(
            "{:<28} {:>9} {:>7} {:>6} {:>4} {:>8} {:>9}\n",
            "worker", "completed", "retried", "failed", "dead", "released", "mean run"
        );
        let mut total = Counts::default();
        for (name, c) in counts.iter() {
            out.push_str(&row(name, c));
            total.completed += c.completed;
            total.retried += c.retried;
            total.failed += c.failed;
            total.dead += c.dead;
            total.released += c.released;
            total.total_time += c.total_time;
            total.runs += c.runs;
        }
        out.push_str(&row("total", &total));
        out
    }
}

fn row(name: &str, c: &Counts) -> String {
    let mean = if c.runs == 0 {
        "-".to_string()
    } else {
        format!("{} ms", (c.total_time / c.runs as u32).as_millis())
    };
    format!(
        "{:<28} {:>9} {:>7} {:>6} {:>4} {:>8} {:>9}\n",
        name, c.completed, c.retried, c.failed, c.dead, c.released, mean
    )
}
