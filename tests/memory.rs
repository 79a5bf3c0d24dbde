//! Memory stays bounded when a worker floods stdout. Its own test binary, so the
//! peak-RSS reading (the largest of this process's waited-for descendants) sees only `wh` and
//! the flooding worker.

use nix::sys::resource::{UsageWho, getrusage};

#[test]
fn a_stdout_flood_leaves_wh_under_64_mib() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wh"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["send", "--type", "T", "fixtures/workers/stdout_flood.py"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 16 * 1024 * 1024, "the default cap is 16 MiB");
    // ru_maxrss is in KiB on Linux.
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
}
