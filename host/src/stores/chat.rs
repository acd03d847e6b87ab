//! Chat histories (LangChain `message_to_dict` messages kept per session) as records,
//! the same way for every store that has them: as stored (for exports), or upgraded
//! to a LangGraph `MessagesState` thread that LangGraph reads and continues.

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

use rmpv::Value as Mp;

use crate::codec::msgpack;
use crate::codec::redis_form::{AllowedJsonModules, Encoder, Walk};
use crate::record::{ChannelBlob, Checkpoint, CheckpointKey, Origin, TypedValue};

/// What a chat session becomes (`upgrade` in the source config, `--upgrade`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Upgrade {
    /// One record per session with the messages as stored (`message_to_dict` form):
    /// for JSON and Parquet exports and Unified Memory.
    #[default]
    None,
    /// One LangGraph checkpoint per session whose `messages` channel holds the
    /// messages, in order, as LangChain message objects: a `MessagesState` thread
    /// (thread id = session id) that LangGraph's savers read and a graph continues.
    MessagesState,
    /// The same thread as a chain of one checkpoint per message (each holding the
    /// messages so far, each the parent of the next), as if a graph had added the
    /// messages one step at a time: LangGraph's history and time travel show every
    /// turn.
    MessagesStatePerMessage,
}

/// How the sessions of a chat source become records: the upgrade, and the thread id
/// each session gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionsAs {
    pub upgrade: Upgrade,
    /// `{session_id}` in it is replaced by the session's id (`chat-{session_id}`);
    /// none: the thread id is the session id.
    thread_id_template: Option<String>,
}

impl SessionsAs {
    /// Checks that a template names LangGraph threads (an upgrade is asked for) and
    /// keeps sessions apart (it holds `{session_id}`).
    pub fn new(upgrade: Upgrade, thread_id_template: Option<String>) -> Result<Self, String> {
        if let Some(template) = &thread_id_template {
            if upgrade == Upgrade::None {
                return Err(
                    "thread_id_template names the LangGraph threads an upgrade writes: give `upgrade` too"
                        .into(),
                );
            }
            if !template.contains("{session_id}") {
                return Err(format!(
                    "thread_id_template {template:?} has no {{session_id}}: every session would become the same thread"
                ));
            }
        }
        Ok(Self {
            upgrade,
            thread_id_template,
        })
    }

    /// Whether thread ids differ from session ids (then thread filters cannot be
    /// pushed into the source's query on `session_id`).
    pub fn renames(&self) -> bool {
        self.thread_id_template.is_some()
    }

    /// The thread id of a session.
    pub fn thread_id(&self, session: &str) -> String {
        match &self.thread_id_template {
            Some(template) => template.replace("{session_id}", session),
            None => session.to_owned(),
        }
    }
}

/// One stored message: row id (or list position), its JSON text, when it was written.
pub type StoredMessage = (i64, String, Option<String>);

pub fn session_key(session: &str) -> CheckpointKey {
    CheckpointKey {
        thread_id: session.to_owned(),
        checkpoint_ns: String::new(),
        checkpoint_id: session.to_owned(),
    }
}

/// One chat session as a record: thread and checkpoint id are the session id, the
/// messages (stored `message` JSON, in id order) are the `messages` channel, row ids and
/// times are in the metadata.
pub fn session_record(
    table: &str,
    session: &str,
    messages: Vec<StoredMessage>,
    origin: Origin,
    sessions: &SessionsAs,
) -> Result<Vec<Checkpoint>, String> {
    let thread = sessions.thread_id(session);
    match sessions.upgrade {
        Upgrade::None => Ok(vec![stored_session(table, session, messages, origin)]),
        Upgrade::MessagesState => {
            messages_state_thread(table, (session, &thread), &messages, origin, false)
        }
        Upgrade::MessagesStatePerMessage => {
            messages_state_thread(table, (session, &thread), &messages, origin, true)
        }
    }
}

fn stored_session(
    table: &str,
    session: &str,
    messages: Vec<StoredMessage>,
    origin: Origin,
) -> Checkpoint {
    let last_at = messages.iter().rev().find_map(|m| m.2.clone());
    let version = messages.len().to_string();
    let document = serde_json::json!({
        "v": 4,
        "id": session,
        "ts": last_at,
        "channel_values": {},
        "channel_versions": { "messages": version },
        "versions_seen": {},
        "updated_channels": ["messages"],
    });
    let metadata = serde_json::json!({
        "source": "chat_history",
        "table": table,
        "message_count": messages.len(),
        "message_ids": messages.iter().map(|m| m.0).collect::<Vec<_>>(),
        "created_at": messages.iter().map(|m| m.2.clone()).collect::<Vec<_>>(),
    });
    let mut array = String::from("[");
    for (i, (_, message, _)) in messages.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(message);
    }
    array.push(']');
    Checkpoint {
        key: session_key(session),
        parent_checkpoint_id: None,
        checkpoint: TypedValue::new("json", document.to_string()),
        channel_blobs: vec![ChannelBlob {
            channel: "messages".into(),
            version,
            value: TypedValue::new(crate::codec::CHAT_MESSAGES, array),
        }],
        metadata: TypedValue::new("json", metadata.to_string()),
        pending_writes: Vec::new(),
        origin,
        view: None,
    }
}

/// A session as the checkpoint(s) LangGraph would have written for a `MessagesState`
/// graph holding these messages: `channel_values.messages` is the list of message
/// objects in LangGraph's msgpack (what `JsonPlusSerializer` writes for them), the
/// channel has a version in LangGraph's string form, and the metadata says where it
/// came from. One checkpoint, or (`per_message`) a chain of one per message.
///
/// Checkpoint ids are UUID v6 dated at their (last) message — 1970 when the store keeps
/// no times, one microsecond apart within a chain — so they sort before any checkpoint
/// LangGraph adds later, and are the same on every run (re-runs and resumes write
/// nothing twice).
fn messages_state_thread(
    table: &str,
    (session, thread): (&str, &str),
    messages: &[StoredMessage],
    origin: Origin,
    per_message: bool,
) -> Result<Vec<Checkpoint>, String> {
    let allowed = AllowedJsonModules::default();
    let mut encoder = Encoder::new(&allowed);
    let mut values = Vec::with_capacity(messages.len());
    for (i, (id, text, _)) in messages.iter().enumerate() {
        let stored: Value = serde_json::from_str(text)
            .map_err(|e| format!("message #{i} (id {id}) is not JSON: {e}"))?;
        let envelope =
            message_envelope(&stored).map_err(|e| format!("message #{i} (id {id}): {e}"))?;
        values.push(
            encoder
                .to_msgpack(&envelope, Walk::ChannelValues)
                .map_err(|e| format!("message #{i} (id {id}): {e}"))?,
        );
    }
    // The time of each message: its own, else the one before it, kept increasing.
    let mut times = Vec::with_capacity(messages.len());
    let mut last = chrono::DateTime::<chrono::Utc>::default();
    for (i, m) in messages.iter().enumerate() {
        let at = m.2.as_deref().and_then(parse_stored_time).unwrap_or(last);
        let at = if i > 0 && at <= last {
            last + chrono::Duration::microseconds(1)
        } else {
            at
        };
        times.push(at);
        last = at;
    }
    let ends: Vec<usize> = if per_message {
        (1..=messages.len()).collect()
    } else {
        vec![messages.len()]
    };
    let mut chain = Vec::with_capacity(ends.len());
    let mut parent: Option<String> = None;
    for (step, &end) in ends.iter().enumerate() {
        let at = times[..end].last().copied().unwrap_or_default();
        let id = checkpoint_id(session, at);
        let metadata = serde_json::json!({
            "source": "update",
            "step": step,
            "parents": {},
            "ckpt_migrate": {
                "upgraded_from": "chat_history",
                "table": table,
                "session_id": session,
                "message_count": end,
                "message_ids": messages[..end].iter().map(|m| m.0).collect::<Vec<_>>(),
            },
        });
        chain.push(Checkpoint {
            key: CheckpointKey {
                thread_id: thread.to_owned(),
                checkpoint_ns: String::new(),
                checkpoint_id: id.clone(),
            },
            parent_checkpoint_id: parent.replace(id.clone()),
            checkpoint: TypedValue::new(
                "msgpack",
                thread_checkpoint(&id, at, values[..end].to_vec(), step + 1),
            ),
            channel_blobs: Vec::new(),
            metadata: TypedValue::new("json", metadata.to_string()),
            pending_writes: Vec::new(),
            origin: origin.clone(),
            view: None,
        });
    }
    Ok(chain)
}

/// The msgpack checkpoint of a `MessagesState` thread holding `messages`, its
/// `messages` channel at `version` in LangGraph's string form (`get_next_version`: a
/// 32-digit counter, a dot and a fraction; LangGraph counts on from it).
fn thread_checkpoint(
    id: &str,
    at: chrono::DateTime<chrono::Utc>,
    messages: Vec<Mp>,
    version: usize,
) -> Vec<u8> {
    let ts = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let version = format!("{version:032}.0.0");
    let text = |s: &str| Mp::from(s);
    msgpack::encode(&Mp::Map(vec![
        (text("v"), Mp::from(4)),
        (text("ts"), text(&ts)),
        (text("id"), text(id)),
        (
            text("channel_values"),
            Mp::Map(vec![(text("messages"), Mp::Array(messages))]),
        ),
        (
            text("channel_versions"),
            Mp::Map(vec![(text("messages"), text(&version))]),
        ),
        (text("versions_seen"), Mp::Map(Vec::new())),
        (text("updated_channels"), Mp::Array(vec![text("messages")])),
    ]))
}

/// A stored `{"type": "human", "data": {…}}` message as the LangChain constructor
/// envelope of its class (what `messages_from_dict` builds).
fn message_envelope(stored: &Value) -> Result<Value, String> {
    let kind = stored["type"]
        .as_str()
        .ok_or("no \"type\" (not a LangChain message_to_dict message)")?;
    let class = match kind {
        "human" => "HumanMessage",
        "ai" => "AIMessage",
        "system" => "SystemMessage",
        "tool" => "ToolMessage",
        "function" => "FunctionMessage",
        "chat" => "ChatMessage",
        "remove" => "RemoveMessage",
        "HumanMessageChunk"
        | "AIMessageChunk"
        | "SystemMessageChunk"
        | "ToolMessageChunk"
        | "FunctionMessageChunk"
        | "ChatMessageChunk" => kind,
        other => return Err(format!("unknown message type {other:?}")),
    };
    let data = stored["data"].as_object().cloned().unwrap_or_else(Map::new);
    Ok(serde_json::json!({
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", class],
        "kwargs": data,
    }))
}

/// A stored message time: RFC 3339, or PostgreSQL's text form (`2026-11-23
/// 23:34:10.18+00`).
fn parse_stored_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    crate::codec::parse_timestamp(text).or_else(|| {
        chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    })
}

/// A UUID v6 (time-ordered, as LangGraph's own checkpoint ids) at `at`, its node the
/// start of SHA-256 of the session id.
fn checkpoint_id(session: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let digest = sha2::Sha256::digest(session.as_bytes());
    let node = [
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5],
    ];
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        at.timestamp().max(0) as u64,
        at.timestamp_subsec_nanos(),
    );
    uuid::Uuid::new_v6(ts, &node).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_of_every_store_are_read() {
        let pg = parse_stored_time("2026-11-23 23:34:10.184627+00").unwrap();
        assert_eq!(pg.to_rfc3339(), "2026-11-23T23:34:10.184627+00:00");
        assert!(parse_stored_time("2026-11-23T23:34:10Z").is_some());
    }

    #[test]
    fn checkpoint_ids_are_time_ordered_and_stable() {
        let early = parse_stored_time("2025-01-01T00:00:00Z").unwrap();
        let late = parse_stored_time("2026-01-01T00:00:00Z").unwrap();
        let a = checkpoint_id("s", early);
        assert_eq!(a, checkpoint_id("s", early));
        assert!(a < checkpoint_id("s", late));
        assert_ne!(a, checkpoint_id("t", early));
        assert_eq!(&a[14..15], "6");
    }

    #[test]
    fn an_upgraded_session_decodes_to_its_messages_in_order() {
        let messages = vec![
            (1, r#"{"type": "human", "data": {"content": "hi", "type": "human", "id": "m1"}}"#.to_owned(), Some("2026-11-23 23:34:10.1+00".to_owned())),
            (2, r#"{"type": "ai", "data": {"content": "hello", "type": "ai", "id": "m2", "tool_calls": []}}"#.to_owned(), Some("2026-11-23 23:34:11+00".to_owned())),
        ];
        let origin = Origin {
            store: "test".into(),
            locator: "x".into(),
        };
        let as_thread = SessionsAs::new(Upgrade::MessagesState, None).unwrap();
        let mut chain =
            session_record("t", "s1", messages.clone(), origin.clone(), &as_thread).unwrap();
        assert_eq!(chain.len(), 1);
        let mut record = chain.remove(0);
        crate::codec::decode_record(&mut record).unwrap();
        let view = record.view.unwrap();
        let listed = &view.checkpoint["channel_values"]["messages"];
        assert_eq!(listed[0]["kwargs"]["content"], "hi");
        assert_eq!(listed[1]["id"][3], "AIMessage");
        assert_eq!(view.ts.as_deref(), Some("2026-11-23T23:34:11.000000+00:00"));
        // One checkpoint per message: a chain, each the parent of the next.
        let as_chain = SessionsAs::new(Upgrade::MessagesStatePerMessage, None).unwrap();
        let chain = session_record("t", "s1", messages.clone(), origin.clone(), &as_chain).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].parent_checkpoint_id, None);
        assert_eq!(
            chain[1].parent_checkpoint_id.as_ref(),
            Some(&chain[0].key.checkpoint_id)
        );
        assert!(chain[0].key.checkpoint_id < chain[1].key.checkpoint_id);
        assert_eq!(chain[1].key.checkpoint_id, record.key.checkpoint_id);
        let bad = vec![(7, r#"{"type": "alien", "data": {}}"#.to_owned(), None)];
        let origin = Origin {
            store: "test".into(),
            locator: "x".into(),
        };
        let err = session_record("t", "s2", bad, origin, &as_thread).unwrap_err();
        assert!(err.contains("id 7") && err.contains("alien"), "{err}");
        // Renamed threads keep the session in their metadata and their ids.
        let renamed =
            SessionsAs::new(Upgrade::MessagesState, Some("chat-{session_id}".into())).unwrap();
        let other = session_record("t", "s1", messages, chain[0].origin.clone(), &renamed)
            .unwrap()
            .remove(0);
        assert_eq!(other.key.thread_id, "chat-s1");
        assert_eq!(other.key.checkpoint_id, record.key.checkpoint_id);
    }

    #[test]
    fn thread_id_templates_need_an_upgrade_and_the_session() {
        assert!(SessionsAs::new(Upgrade::None, Some("x-{session_id}".into())).is_err());
        let e = SessionsAs::new(Upgrade::MessagesState, Some("x".into())).unwrap_err();
        assert!(e.contains("{session_id}"), "{e}");
        let ok = SessionsAs::new(Upgrade::MessagesState, None).unwrap();
        assert_eq!(ok.thread_id("s"), "s");
        assert!(!ok.renames());
    }
}
