//! The plugin sandbox against hostile components (`plugins/test-guests/hostile`, a
//! Rust guest, and `hoard`, written in WebAssembly text): whatever a plugin does, the
//! host's time, memory, files and log stay bounded, and the run goes on with the
//! other batches.

use std::time::{Duration, Instant};

use crate::harness::{cli_yaml, read_json_export, spawn_cli, sqlite_fixture, state_of, wait_until};
use crate::plugins::{wasm, yaml};

/// Runs the hostile plugin in `mode` on batch 0 (50 records): that batch ends in the
/// dead-letter file, the other 221 records are written, the process survives.
fn hostile(mode: &str, extra: &str) -> (crate::harness::Run, String) {
    let (run, dead, _) = hostile_with(&format!("mode: {mode}"), extra);
    (run, dead)
}

/// `hostile` with more config keys (`mode: sleep, seconds: 30`); also says how long
/// the run took.
fn hostile_with(config: &str, extra: &str) -> (crate::harness::Run, String, Duration) {
    let mode = config.to_owned();
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let spec = format!(
        "transformers:\n  - path: {}\n    config: {{ {config}, batch: 0 }}\n{extra}",
        wasm("hostile").display()
    );
    let started = Instant::now();
    let run = cli_yaml(dir.path(), &yaml(&spec), &[]);
    let took = started.elapsed();
    let dead =
        std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap_or_default();
    if run.code() == 1 {
        assert_eq!(
            read_json_export(&dir.path().join("out")).len(),
            221,
            "{mode}: the rest migrates"
        );
        assert_eq!(
            dead.lines().count(),
            50,
            "{mode}: exactly the first batch fails"
        );
        assert!(
            run.stderr()
                .contains("read 271  written 221  filtered 0  failed 50"),
            "{}",
            run.stderr()
        );
    }
    (run, dead, took)
}

#[test]
fn an_infinite_loop_is_stopped_within_the_time_limit() {
    let (run, dead) = hostile("loop", "    timeout_ms: 300\n");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        dead.contains("timed out (limit 300 ms per batch)"),
        "{dead}"
    );
}

#[test]
fn a_huge_allocation_is_refused_and_the_host_lives() {
    let (run, dead) = hostile("alloc", "    memory_mb: 64\n");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        dead.contains("plugin ") && dead.contains("trapped"),
        "{dead}"
    );
    assert!(dead.contains("memory limit reached"), "{dead}");
}

#[test]
fn files_and_environment_are_denied() {
    let (run, dead) = hostile("read-file", "");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(dead.contains("could not read /etc/passwd"), "{dead}");
    assert!(!dead.contains("root:"), "the file leaked");
    // SAFETY of the check: HOME is set for the host process; the plugin must not see it.
    let (run, dead) = hostile("read-env", "");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        dead.contains("could not read the environment variable HOME"),
        "{dead}"
    );
}

#[test]
fn a_panic_traps_that_batch_only() {
    let (run, dead) = hostile("panic", "");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(dead.contains("trapped"), "{dead}");
    // The next batch got a fresh instance: later batches were written (checked above).
}

#[test]
fn a_plugin_blocked_in_a_host_call_is_stopped_at_the_time_limit() {
    // A 30 s sleep per record (25 minutes for the batch) under a 500 ms limit.
    let (run, dead, took) = hostile_with("mode: sleep, seconds: 30", "    timeout_ms: 500\n");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        dead.contains("timed out (limit 500 ms per batch)"),
        "{dead}"
    );
    assert!(took < Duration::from_secs(25), "the run took {took:?}");
    let (run, dead, took) = hostile_with("mode: sleep-forever", "    timeout_ms: 500\n");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        dead.contains("timed out (limit 500 ms per batch)"),
        "{dead}"
    );
    assert!(took < Duration::from_secs(25), "the run took {took:?}");
}

#[test]
fn ctrl_c_stops_a_run_whose_plugin_is_inside_a_call() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let spec = format!(
        "transformers:\n  - path: {}\n    config: {{ mode: sleep-forever, batch: 0 }}\n    timeout_ms: 600000\n",
        wasm("hostile").display()
    );
    std::fs::write(dir.path().join("migration.yaml"), yaml(&spec)).unwrap();
    let mut child = spawn_cli(dir.path(), &["--config", "migration.yaml"], &[]);
    wait_until("the run to start", || state_of(dir.path()).is_some());
    // The plugin is loaded before the state is written; give it time to enter batch 0.
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut waited = None;
    while signalled.elapsed() < Duration::from_secs(20) {
        if let Some(status) = child.try_wait().unwrap() {
            waited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(status) = waited else {
        child.kill().unwrap();
        panic!("the run did not stop within 20 s of Ctrl-C");
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        !dir.path().join("out/dead-letter.jsonl").exists(),
        "an interrupted batch is not a failed one: {stderr}"
    );
    let state = state_of(dir.path()).unwrap();
    assert_eq!(state["status"], "interrupted", "{state}");
    assert_eq!(state["counts"]["written"], 0, "{state}");
}

/// The host's peak memory, from the run summary.
fn peak_mib(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("peak memory "))
        .unwrap_or_else(|| panic!("no peak memory in the summary: {stderr}"));
    line.trim_end_matches(" MiB").parse().unwrap()
}

#[test]
fn one_memory_budget_covers_every_memory_and_table_of_a_plugin() {
    let run_with = |plugin: &str| {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        let spec = format!(
            "transformers:\n  - path: {}\n    config: {{ mode: none }}\n    memory_mb: 64\n",
            wasm(plugin).display()
        );
        let run = cli_yaml(dir.path(), &yaml(&spec), &[]);
        assert_eq!(run.code(), 0, "{plugin}: {}", run.stderr());
        assert_eq!(read_json_export(&dir.path().join("out")).len(), 271);
        peak_mib(&run.stderr())
    };
    // The same run with a plugin that allocates nothing, for the host's own share.
    let baseline = run_with("hostile");
    // hoard tries 24 memories x 32 MiB (touched) and 16 tables x 10M elements: 2 GB
    // without one budget for the instance.
    let hoard = run_with("hoard");
    assert!(
        hoard < baseline + 64.0 + 32.0,
        "peak {hoard:.1} MiB with the hoarding plugin vs {baseline:.1} MiB without"
    );
}

#[test]
fn a_huge_error_is_stored_once_per_batch_and_bounded() {
    let (_, small, _) = hostile_with("mode: error", "");
    let (run, dead, _) = hostile_with("mode: error, bytes: 4194304", "");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    // One bounded copy of the message (16 KiB), not 50 copies of 4 MiB.
    assert!(
        dead.len() < small.len() + 64 * 1024,
        "dead-letter file {} bytes (30-byte error: {})",
        dead.len(),
        small.len()
    );
    assert!(
        run.stderr().len() < 256 * 1024,
        "log {} bytes",
        run.stderr().len()
    );
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let detailed: Vec<_> = lines
        .iter()
        .filter(|l| l.get("error_detail").is_some())
        .collect();
    assert_eq!(detailed.len(), 1, "the whole message once per batch");
    let detail = detailed[0]["error_detail"].as_str().unwrap();
    assert!(
        detail.starts_with("plugin ") && detail.contains("more bytes cut)"),
        "{detail:.300}"
    );
    for line in &lines {
        let error = line["error"].as_str().unwrap();
        assert!(error.len() < 512, "{error}");
        assert!(error.contains("error_detail"), "{error}");
    }
}

#[test]
fn huge_reject_reasons_are_bounded() {
    let (run, dead, _) = hostile_with("mode: reject-huge, bytes: 1048576", "");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    for line in dead.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let error = line["error"].as_str().unwrap();
        assert!(
            error.starts_with("plugin ") && error.contains("rejected it: RRR"),
            "{error:.200}"
        );
        assert!(error.len() < 1200, "{} bytes", error.len());
    }
    assert!(
        run.stderr().len() < 256 * 1024,
        "log {} bytes",
        run.stderr().len()
    );
}

#[test]
fn a_log_flood_is_cut_and_said_once() {
    let (run, _, _) = hostile_with("mode: log-flood, count: 2000, bytes: 65536", "");
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let stderr = run.stderr();
    assert!(stderr.len() < 256 * 1024, "log {} bytes", stderr.len());
    assert!(
        stderr.contains("more log message(s) of this call not shown"),
        "{:.2000}",
        stderr
    );
}

#[test]
fn plugin_log_lines_cannot_forge_host_lines() {
    let (run, _, _) = hostile_with("mode: log-inject", "");
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let stderr = run.stderr();
    let injected: Vec<&str> = stderr.lines().filter(|l| l.contains("forged")).collect();
    assert!(!injected.is_empty(), "{stderr}");
    for line in injected {
        assert!(
            line.contains("plugin ") && line.contains("innocent\\ndone: forged"),
            "a plugin's text outside its own line: {line}"
        );
    }
}

#[test]
fn a_plugin_that_returned_an_error_gets_a_fresh_instance() {
    let (run, dead, _) = hostile_with("mode: error-then-check", "");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(dead.contains("failing on purpose"), "{dead:.500}");
    assert!(!dead.contains("instance reused"), "{dead:.500}");
}

#[test]
fn a_patched_ts_langgraph_cannot_read_is_rejected() {
    let (run, dead, _) = hostile_with("mode: bad-ts", "");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    for line in dead.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let error = line["error"].as_str().unwrap();
        assert!(
            error.contains("patched ts \"yesterday, around noon\" is not an ISO 8601 timestamp"),
            "{error}"
        );
        // The record is kept as it was read.
        let raw = &line["record"]["checkpoint"];
        assert!(raw.is_object(), "{line}");
    }
}
