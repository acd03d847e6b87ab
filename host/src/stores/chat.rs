//! Chat histories (LangChain `message_to_dict` messages kept per session) as records,
//! the same way for every store that has them.

use crate::record::{ChannelBlob, Checkpoint, CheckpointKey, Origin, TypedValue};

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
