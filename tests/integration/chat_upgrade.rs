//! Chat histories upgraded to LangGraph threads (`upgrade: messages_state`): LangGraph
//! itself reads each session back as a `MessagesState` thread and continues it.

use std::path::Path;

use serde_json::Value;

use crate::harness::{self, pg_database, pg_url_for};
use crate::store_destinations::{assert_ok, empty_database, python};

/// `tests/readback/chat_threads.py`: LangGraph's `get_state` of every session equals
/// the history as LangChain reads it, and `invoke` continues one.
fn langgraph_continues_the_threads(saver: &str, target: &str, source_db: &str) {
    check_threads(saver, target, source_db, false);
}

/// As [`langgraph_continues_the_threads`]; with `chain`, also that LangGraph's state
/// history has one step per message.
fn check_threads(saver: &str, target: &str, source_db: &str, chain: bool) {
    check_threads_named(saver, target, source_db, chain, "{session_id}");
}

/// As [`check_threads`], each session's thread named by `template`.
fn check_threads_named(saver: &str, target: &str, source_db: &str, chain: bool, template: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/readback/chat_threads.py");
    let output = std::process::Command::new(python())
        .arg(script)
        .args(["--saver", saver, "--target", target])
        .args(["--source-dsn", &pg_url_for(source_db)])
        .args(chain.then_some("--chain"))
        .args(["--thread-template", template])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{saver}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["sessions"], 4, "{summary}");
    assert_eq!(summary["messages"], 42, "{summary}");
}

/// A chat source (`kind`, `source`) upgraded into a destination, plus `extra` flags.
fn upgrade(
    dir: &Path,
    source: (&str, &Value),
    dest: (&str, &Value),
    extra: &[&str],
) -> harness::Run {
    harness::cli_between(dir, source, dest, extra)
}

fn upgrade_into(dir: &Path, source: &Value, kind: &str, dest: &Value) -> harness::Run {
    let flags = ["--upgrade", "messages_state", "--verify"];
    upgrade(dir, ("postgresql", source), (kind, dest), &flags)
}

/// A langchain-postgres chat table into SqliteSaver and PostgresSaver: one thread per
/// session that LangGraph reads message for message and continues; `verify` agrees; a
/// second run writes nothing twice.
#[tokio::test]
async fn chat_sessions_become_threads_langgraph_continues() {
    let dir = tempfile::tempdir().unwrap();
    let source_db = pg_database(&["chat_message_history.sql"]).await;
    let source = serde_json::json!({
        "connection_string": pg_url_for(&source_db),
        "table_name": "chat_message_history",
    });
    let sqlite = dir.path().join("threads.db");
    let sqlite_config = serde_json::json!({ "connection_string": sqlite.display().to_string() });
    let run = upgrade_into(dir.path(), &source, "sqlite", &sqlite_config);
    assert_ok(&run);
    assert!(run.stdout().contains("equal"), "{}", run.stdout());
    langgraph_continues_the_threads("sqlite", sqlite.to_str().unwrap(), &source_db);

    let pg = empty_database().await;
    let pg_config = serde_json::json!({ "connection_string": pg_url_for(&pg) });
    assert_ok(&upgrade_into(dir.path(), &source, "postgresql", &pg_config));
    // Again: the same checkpoint ids, so nothing is written twice.
    let again = upgrade(
        dir.path(),
        ("postgresql", &source),
        ("postgresql", &pg_config),
        &["--upgrade", "messages_state", "--restart"],
    );
    assert_ok(&again);
    assert!(
        again
            .stderr()
            .contains("0 checkpoint(s) written, 4 already there and kept"),
        "{}",
        again.stderr()
    );
    langgraph_continues_the_threads("postgres", &pg_url_for(&pg), &source_db);
}

/// A session with a message LangChain cannot read goes to the dead-letter file naming
/// the session and the message; the other sessions are migrated. `upgrade` on a
/// checkpoint table is refused, naming it.
#[tokio::test]
async fn a_bad_message_fails_its_session_only() {
    let dir = tempfile::tempdir().unwrap();
    let source_db = pg_database(&["chat_message_history.sql"]).await;
    harness::pg_execute(
        &source_db,
        &[
            "INSERT INTO chat_message_history (session_id, message) VALUES ('00000000-0000-0000-0000-00000000bad0', '{\"type\": \"alien\", \"data\": {\"content\": \"?\"}}')",
        ],
    )
    .await;
    let source = serde_json::json!({
        "connection_string": pg_url_for(&source_db),
        "table_name": "chat_message_history",
    });
    let out = dir.path().join("threads.db");
    let dest = serde_json::json!({ "connection_string": out.display().to_string() });
    let run = upgrade(
        dir.path(),
        ("postgresql", &source),
        ("sqlite", &dest),
        &[
            "--upgrade",
            "messages_state",
            "--dead-letter",
            "failed.jsonl",
        ],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.stderr().contains("written 4"), "{}", run.stderr());
    let dead = std::fs::read_to_string(dir.path().join("failed.jsonl")).unwrap();
    assert!(
        dead.contains("00000000-0000-0000-0000-00000000bad0") && dead.contains("alien"),
        "{dead}"
    );

    let checkpoints_db = pg_database(&["checkpoints.sql"]).await;
    let checkpoints = serde_json::json!({ "connection_string": pg_url_for(&checkpoints_db) });
    let refused = upgrade(
        dir.path(),
        ("postgresql", &checkpoints),
        ("json", &serde_json::json!({ "output_dir": "out" })),
        &["--upgrade", "messages_state"],
    );
    assert_eq!(refused.code(), 3, "{}", refused.stderr());
    assert!(
        refused
            .stderr()
            .contains("`upgrade` turns chat-history tables"),
        "{}",
        refused.stderr()
    );
}

/// Redis chat lists (RedisChatMessageHistory: newest first) become the same threads:
/// LangGraph reads every session oldest message first and continues it.
#[tokio::test]
async fn redis_chat_lists_become_threads_too() {
    let dir = tempfile::tempdir().unwrap();
    let url = harness::redis_db();
    harness::redis_load_chat_lists(&url).await;
    let out = dir.path().join("threads.db");
    let redis = serde_json::json!({ "redis_url": url, "key_prefix": "message_store:" });
    let dest = serde_json::json!({ "connection_string": out.display().to_string() });
    let run = upgrade(
        dir.path(),
        ("redis", &redis),
        ("sqlite", &dest),
        &["--upgrade", "messages_state"],
    );
    assert_ok(&run);
    // The same sessions as the PostgreSQL table the lists were made from.
    let source_db = pg_database(&["chat_message_history.sql"]).await;
    langgraph_continues_the_threads("sqlite", out.to_str().unwrap(), &source_db);
}

/// `messages_state_per_message`: a chain of one checkpoint per message, which
/// LangGraph's state history shows turn by turn, and which it continues as well.
#[tokio::test]
async fn one_checkpoint_per_message_is_a_history_langgraph_walks() {
    let dir = tempfile::tempdir().unwrap();
    let source_db = pg_database(&["chat_message_history.sql"]).await;
    let source = serde_json::json!({
        "connection_string": pg_url_for(&source_db),
        "table_name": "chat_message_history",
        "upgrade": "messages_state_per_message",
    });
    let out = dir.path().join("chain.db");
    let dest = serde_json::json!({ "connection_string": out.display().to_string() });
    let run = upgrade(
        dir.path(),
        ("postgresql", &source),
        ("sqlite", &dest),
        &["--verify"],
    );
    assert_ok(&run);
    assert!(run.stderr().contains("written 42"), "{}", run.stderr());
    check_threads("sqlite", out.to_str().unwrap(), &source_db, true);
}

/// `thread_id_template` names each session's thread; thread filters are about those
/// names; LangGraph reads and continues the renamed threads.
#[tokio::test]
async fn sessions_become_threads_under_the_names_a_template_gives() {
    let dir = tempfile::tempdir().unwrap();
    let source_db = pg_database(&["chat_message_history.sql"]).await;
    let source = serde_json::json!({
        "connection_string": pg_url_for(&source_db),
        "table_name": "chat_message_history",
        "thread_id_template": "support-{session_id}",
    });
    let sqlite = dir.path().join("threads.db");
    let dest = serde_json::json!({ "connection_string": sqlite.display().to_string() });
    let run = upgrade_into(dir.path(), &source, "sqlite", &dest);
    assert_ok(&run);
    check_threads_named(
        "sqlite",
        sqlite.to_str().unwrap(),
        &source_db,
        false,
        "support-{session_id}",
    );

    // A thread filter names the new thread ids (not pushed into the query on sessions).
    let filtered = dir.path().join("filtered.db");
    let dest = serde_json::json!({ "connection_string": filtered.display().to_string() });
    let run = upgrade(
        dir.path(),
        ("postgresql", &source),
        ("sqlite", &dest),
        &[
            "--upgrade",
            "messages_state",
            "--thread-pattern",
            "support-*",
        ],
    );
    assert_ok(&run);
    assert!(run.stderr().contains("written 4"), "{}", run.stderr());

    // Without an upgrade, or without {session_id}, the template is refused by name.
    for (template, extra, expect) in [
        ("x-{session_id}", vec![], "give `upgrade` too"),
        (
            "x",
            vec!["--upgrade", "messages_state"],
            "has no {session_id}",
        ),
    ] {
        let mut bad = source.clone();
        bad["thread_id_template"] = template.into();
        let run = upgrade(dir.path(), ("postgresql", &bad), ("sqlite", &dest), &extra);
        assert_eq!(run.code(), 2, "{}", run.stderr());
        assert!(run.stderr().contains(expect), "{}", run.stderr());
    }
}
