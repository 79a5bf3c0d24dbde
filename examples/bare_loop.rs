//! The physical limit for persistent workers (bench/persistent.sh): P worker processes in
//! persistent mode, each driven by its own thread with strict request/response round trips
//! (write one task line, read one result line), and nothing else: no queue, no JSON parsing,
//! no process supervision. `wh host` in persistent mode does the same round trips plus all of
//! that, so its rate over this one is what wh's machinery costs.
//!
//! Usage: bare_loop TASKS PROCESSES -- PROGRAM ARGS...
//! Prints one line: `tasks=N processes=P seconds=S rate=R`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bare_loop TASKS PROCESSES -- PROGRAM ARGS...";
    let sep = args.iter().position(|a| a == "--").expect(usage);
    let tasks: usize = args.first().and_then(|a| a.parse().ok()).expect(usage);
    let processes: usize = args.get(1).and_then(|a| a.parse().ok()).expect(usage);
    let program = &args[sep + 1..];
    assert!(!program.is_empty() && processes > 0, "{usage}");

    // Start every process and wait for its handshake before the clock starts, as a warm pool.
    let mut workers = Vec::new();
    for _ in 0..processes {
        let mut child = Command::new(&program[0])
            .args(&program[1..])
            .env("WH_WORKER_MODE", "persistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("a handshake line");
        assert!(line.contains("\"ready\""), "no handshake: {line:?}");
        workers.push((child, stdin, stdout));
    }

    let started = Instant::now();
    let mut threads = Vec::new();
    for (i, (child, mut stdin, mut stdout)) in workers.into_iter().enumerate() {
        let share = tasks / processes + usize::from(i < tasks % processes);
        threads.push(std::thread::spawn(move || {
            let mut line = String::new();
            for n in 0..share {
                // The same shape and size as the task line wh host writes.
                let task = format!(
                    "{{\"id\":\"{i}-{n}\",\"type\":\"Bench.Trivial\",\"params\":{{}},\"metadata\":{{\"priority\":0,\"created_at\":\"2026-12-01T00:00:00Z\",\"worker_id\":\"bench:1\",\"attempt\":1}}}}\n"
                );
                stdin.write_all(task.as_bytes()).expect("write a task");
                stdin.flush().expect("flush");
                line.clear();
                let read = stdout.read_line(&mut line).expect("read a result");
                assert!(read > 0, "the worker ended early");
            }
            (child, stdin)
        }));
    }
    let mut children = Vec::new();
    for t in threads {
        children.push(t.join().expect("a driver thread"));
    }
    let seconds = started.elapsed().as_secs_f64();
    for (mut child, stdin) in children {
        drop(stdin);
        let _ = child.wait();
    }
    println!(
        "tasks={tasks} processes={processes} seconds={seconds:.3} rate={:.0}",
        tasks as f64 / seconds
    );
}
