//! Helpers: run `wh` from the project root, read its JSON report, look for stray processes.

use std::path::Path;

use serde_json::Value;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `wh` from the project root, with a clean environment for the parts that change output.
pub fn wh() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_wh"));
    cmd.current_dir(ROOT).env_remove("WH_PYTHON").env("NO_COLOR", "1");
    cmd
}

/// Runs `wh test-worker --format json ARGS...` and returns (exit code, report).
pub fn report(args: &[&str]) -> (i32, Value) {
    let out = wh()
        .arg("test-worker")
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// The status of one case in a report.
pub fn status<'a>(report: &'a Value, id: &str) -> &'a str {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no case {id}"))["status"]
        .as_str()
        .unwrap()
}

/// Ids of the cases that did not pass.
pub fn not_passed(report: &Value) -> Vec<String> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "passed")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// Live processes whose command line mentions `needle` (Linux).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !zombie && cmd.contains(needle) {
            found.push(cmd);
        }
    }
    found
}

/// Waits for a condition instead of sleeping a fixed time.
pub fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_within(what, std::time::Duration::from_secs(10), check);
}

/// The same with a longer limit, for work that depends on how loaded the machine is.
pub fn eventually_within(what: &str, limit: std::time::Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A private copy of a fixture, so process checks cannot see another test's processes.
pub fn private_copy(fixture: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let name = Path::new(fixture).file_name().unwrap();
    let dest = dir.path().join(name);
    std::fs::copy(Path::new(ROOT).join(fixture), &dest).unwrap();
    let path = dest.to_string_lossy().into_owned();
    (dir, path)
}
