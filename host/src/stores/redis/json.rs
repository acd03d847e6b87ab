//! langgraph-redis (RedisJSON): `checkpoint:{thread}:{ns}:{id}` documents holding the
//! whole checkpoint as JSON (`lc` envelopes, `__bytes__` markers) and the metadata as
//! a JSON string; each pending write is a `checkpoint_write:…` document (value base64
//! in `blob`), listed by the `write_keys_zset:{thread}:{ns}:{id}` zset. The empty
//! namespace is stored as `__empty__`, empty ids as the all-zero UUID, no parent as "".

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Redis, ScanWalk, thread_glob};
use crate::codec;
use crate::error::StoreError;
use crate::filters::ThreadPushdown;
use crate::json_text;
use crate::read_pool;
use crate::record::{Checkpoint, CheckpointKey, PendingWrite, TypedValue};
use crate::sources::{BatchLimits, FailedRead, SourceBatch};

pub(super) const EMPTY_NS: &str = "__empty__";
pub(super) const EMPTY_ID: &str = "00000000-0000-0000-0000-000000000000";

pub struct JsonLayout {
    pub scan: ScanWalk,
    /// The next page, read in the background (on a clone of the walk and of the
    /// connection) while the last one is parsed and decoded; `scan` stays where the
    /// walk was before it until it is taken.
    ahead: Option<Ahead>,
}

/// A page being read in the background: the walk after it, and the page. Dropped, it
/// stops.
struct Ahead(tokio::task::JoinHandle<(ScanWalk, Result<Option<Page>, StoreError>)>);

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A page of checkpoint documents as the server answered them, with their writes.
struct Page {
    /// The keys holding documents and each one's answer to `JSON.GET` (bytes, checked
    /// as UTF-8 where they are parsed, on the read pool).
    documents: Vec<(Vec<u8>, Vec<u8>)>,
    /// For each document, the writes listed under the zset its key names, and that
    /// zset's name (see [`read_page`]).
    guessed: Vec<Option<(String, WriteAnswers)>>,
    /// The batch this page starts: its position, its vanished and refused keys.
    batch: SourceBatch,
}

impl JsonLayout {
    pub fn new(prefix: &str, pushdown: ThreadPushdown) -> Self {
        let mut pattern = prefix.as_bytes().to_vec();
        pattern.extend(thread_glob(&pushdown));
        pattern.extend(b":*");
        Self {
            scan: ScanWalk::new(pattern, format!("{prefix}*").into_bytes()),
            ahead: None,
        }
    }

    /// Where the walk is after the batches returned (a page read ahead not counted).
    pub fn position(&self) -> (u64, bool) {
        (self.scan.cursor, self.scan.done)
    }

    /// Goes back to a position [`Self::position`] gave, stopping and forgetting any
    /// page read ahead.
    pub fn restore(&mut self, (cursor, done): (u64, bool)) {
        self.ahead = None;
        (self.scan.cursor, self.scan.done) = (cursor, done);
    }

    /// The next page's checkpoints. Once a page is read, the next one is read in the
    /// background while this one is parsed and then decoded by the engine, so the
    /// server works while we do. A page read ahead that failed is read again here,
    /// where its error counts.
    pub async fn next_batch(
        &mut self,
        redis: &mut Redis,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        let read = match self.ahead.take() {
            Some(mut ahead) => match (&mut ahead.0).await {
                Ok((scan, Ok(page))) => {
                    self.scan = scan;
                    Ok(page)
                }
                _ => read_page(&mut self.scan, redis, limits.max_records).await,
            },
            None => read_page(&mut self.scan, redis, limits.max_records).await,
        };
        let Some(page) = read? else {
            return Ok(None);
        };
        let (mut scan, mut ahead_redis) = (self.scan.clone(), redis.clone());
        self.ahead = Some(Ahead(tokio::spawn(async move {
            let page = read_page(&mut scan, &mut ahead_redis, limits.max_records).await;
            (scan, page)
        })));
        checkpoints(page, redis).await.map(Some)
    }
}

/// The next SCAN page's documents and their writes; `None` at the end of the walk.
///
/// Each checkpoint's writes are listed in a zset named from its thread, namespace
/// and id, which its key holds too: they are fetched under that guess with the page,
/// and the guess is checked against each document's own fields when it is parsed.
async fn read_page(
    scan: &mut ScanWalk,
    redis: &mut Redis,
    want: usize,
) -> Result<Option<Page>, StoreError> {
    let Some((keys, mut batch)) = scan.next_page(redis, want).await? else {
        return Ok(None);
    };
    let documents = get_documents(redis, keys, &mut batch).await?;
    let guesses: Vec<Option<String>> = documents.iter().map(|(k, _)| zset_key_guess(k)).collect();
    let mut fetched = fetch_writes(redis, guesses.iter().flatten())
        .await?
        .into_iter();
    let guessed = guesses
        .into_iter()
        .map(|guess| guess.map(|guess| (guess, fetched.next().unwrap_or_default())))
        .collect();
    Ok(Some(Page {
        documents,
        guessed,
        batch,
    }))
}

/// Each key's answer to `JSON.GET key $`, asked straight away: keys gone since the
/// SCAN are counted in `batch.vanished`; a key the server refuses is then asked its
/// `TYPE`, so a key of another type fails into `batch.failed` named with its type (a
/// page of documents costs one request per key, not two).
async fn get_documents(
    redis: &mut Redis,
    keys: Vec<Vec<u8>>,
    batch: &mut SourceBatch,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
    let answers = json_get(redis, &keys, "JSON.GET").await?;
    let mut documents = Vec::with_capacity(keys.len());
    let mut refused = Vec::new();
    for (key, answer) in keys.into_iter().zip(answers) {
        match answer {
            Ok(Some(text)) => documents.push((key, text)),
            Ok(None) => batch.vanished += 1,
            Err(refusal) => refused.push((key, refusal)),
        }
    }
    if !refused.is_empty() {
        let keys = refused.iter().map(|(key, _)| key.clone()).collect();
        let typed = redis
            .keys_of_type(keys, "ReJSON-RL", "a RedisJSON document", batch)
            .await?;
        // Documents the server would not give for another reason: named with it.
        for (key, refusal) in refused {
            if typed.contains(&key) {
                batch.failed.push(FailedRead {
                    key: None,
                    origin: redis.origin(&key),
                    error: refusal,
                });
            }
        }
    }
    Ok(documents)
}

/// `JSON.GET key $` of each of `keys` in one pipeline: the answer (`None`: the key
/// is gone), or what the server said when it refused that key. A refusal worth a
/// retry (the server loading, `TRYAGAIN`) fails the whole request, as a lost
/// connection does.
async fn json_get(
    redis: &mut Redis,
    keys: impl IntoIterator<Item = &Vec<u8>>,
    what: &str,
) -> Result<Vec<Result<Option<Vec<u8>>, String>>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for key in keys {
        pipe.cmd("JSON.GET").arg(key).arg("$");
    }
    if pipe.cmd_iter().next().is_none() {
        return Ok(Vec::new());
    }
    let answers: Vec<redis::RedisResult<Option<Vec<u8>>>> = redis.pipe(what, &pipe).await?;
    answers
        .into_iter()
        .map(|answer| match answer {
            Ok(text) => Ok(Ok(text)),
            Err(e) => {
                let error = redis.failed(what, &e);
                if error.retriable {
                    Err(error)
                } else {
                    Ok(Err(format!("{what} refused it: {e}")))
                }
            }
        })
        .collect()
}

/// A page's checkpoints with their writes: the documents parsed on the read pool,
/// the writes fetched under a wrong guess fetched again.
async fn checkpoints(page: Page, redis: &mut Redis) -> Result<SourceBatch, StoreError> {
    let Page {
        documents,
        guessed,
        mut batch,
    } = page;
    let (json_keys, texts): (Vec<_>, Vec<_>) = documents.into_iter().unzip();
    let parsed = read_pool::map(texts, |text| {
        (text.len(), answer_text(&text).and_then(parse_checkpoint))
    })
    .await;
    let mut docs = Vec::new();
    let mut unguessed = Vec::new();
    for ((k, (len, parsed)), writes) in json_keys.into_iter().zip(parsed).zip(guessed) {
        batch.bytes += len;
        match parsed {
            Ok(doc) => {
                let writes = writes
                    .filter(|(guess, _)| *guess == doc.zset_key)
                    .map(|(_, writes)| writes);
                if writes.is_none() {
                    unguessed.push(docs.len());
                }
                docs.push((k, doc, writes));
            }
            Err(error) => batch.failed.push(FailedRead {
                key: None,
                origin: redis.origin(&k),
                error,
            }),
        }
    }
    // The zsets not guessed right (a key not named as langgraph-redis names it).
    let zsets = unguessed.iter().map(|&i| &docs[i].1.zset_key);
    let fetched = fetch_writes(redis, zsets).await?;
    for (i, writes) in unguessed.into_iter().zip(fetched) {
        docs[i].2 = Some(writes);
    }
    let (docs, writes): (Vec<_>, Vec<_>) = docs
        .into_iter()
        .map(|(k, doc, writes)| ((k, doc), writes.unwrap_or_default()))
        .unzip();
    let (write_keys, write_texts): (Vec<_>, Vec<_>) = writes.into_iter().unzip();
    let mut write_texts = read_pool::map(write_texts.into_iter().flatten().collect(), |text| {
        text.map(|text| text.map(|text| (text.len(), answer_text(&text).and_then(parse_write))))
    })
    .await
    .into_iter();
    for ((k, doc), keys) in docs.into_iter().zip(write_keys) {
        let origin = redis.origin(&k);
        let mut writes = Vec::with_capacity(keys.len());
        let mut error = None;
        for wk in keys {
            let parsed = match write_texts.next() {
                Some(Ok(Some((len, parsed)))) => {
                    batch.bytes += len;
                    parsed
                }
                Some(Err(refusal)) => Err(refusal),
                // Listed but gone (expired): the write is no longer there.
                Some(Ok(None)) | None => {
                    batch.vanished += 1;
                    continue;
                }
            };
            match parsed {
                Ok(w) => writes.push(w),
                Err(e) => error = Some(format!("write {:?}: {e}", String::from_utf8_lossy(&wk))),
            }
        }
        if let Some(error) = error {
            batch.failed.push(FailedRead {
                key: Some(doc.key),
                origin,
                error,
            });
            continue;
        }
        // Kept in the zset's order (score = idx, then key): the order RedisSaver's
        // own `_load_pending_writes` returns them in.
        batch.records.push(Checkpoint {
            key: doc.key,
            parent_checkpoint_id: doc.parent,
            checkpoint: doc.checkpoint,
            channel_blobs: Vec::new(),
            metadata: doc.metadata,
            pending_writes: writes,
            origin,
            view: None,
        });
    }
    batch.records.sort_by(|a, b| a.key.cmp(&b.key));
    batch.last_key = batch.records.last().map(|r| r.key.clone());
    Ok(batch)
}

/// The thread of a `checkpoint:` key, for counting: the text up to the next `:`
/// (thread ids with `:` are counted under their first part).
pub fn thread_of_key(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(b"checkpoint:")?;
    let end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The write zset langgraph-redis keeps for the checkpoint stored under `key`
/// (`checkpoint:{thread}:{ns}:{id}` → `write_keys_zset:{thread}:{ns}:{id}`); `None`
/// for a key not named that way.
fn zset_key_guess(key: &[u8]) -> Option<String> {
    let rest = std::str::from_utf8(key.strip_prefix(b"checkpoint:")?).ok()?;
    Some(format!("write_keys_zset:{rest}"))
}

/// What each zset in `zsets` lists (the keys of a checkpoint's write documents, in
/// order) and those documents' answers to `JSON.GET` (see [`json_get`]), in one
/// pipeline for the zsets and one for the documents.
async fn fetch_writes(
    redis: &mut Redis,
    zsets: impl Iterator<Item = &String>,
) -> Result<Vec<WriteAnswers>, StoreError> {
    let mut pipe = redis::pipe();
    for zset in zsets {
        pipe.cmd("ZRANGE").arg(zset).arg(0).arg(-1);
    }
    if pipe.cmd_iter().next().is_none() {
        return Ok(Vec::new());
    }
    let write_keys: Vec<Vec<Vec<u8>>> = redis.pipe("ZRANGE", &pipe).await?;
    let mut texts = json_get(redis, write_keys.iter().flatten(), "JSON.GET writes")
        .await?
        .into_iter();
    Ok(write_keys
        .into_iter()
        .map(|keys| {
            let answers = texts.by_ref().take(keys.len()).collect();
            (keys, answers)
        })
        .collect())
}

/// The keys of a checkpoint's write documents and their answers to `JSON.GET`.
type WriteAnswers = (Vec<Vec<u8>>, Vec<Result<Option<Vec<u8>>, String>>);

struct Document {
    key: CheckpointKey,
    parent: Option<String>,
    checkpoint: TypedValue,
    metadata: TypedValue,
    zset_key: String,
}

/// The text of an answer to `JSON.GET`.
fn answer_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("document is not UTF-8: {e}"))
}

/// `JSON.GET key $` gives a one-element array around the document: the document's
/// text.
fn unwrap_document(text: &str) -> Result<&str, String> {
    let not_json = |e: serde_json::Error| format!("document is not JSON: {e}");
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(not_json)?;
        if let [document] = items[..] {
            return Ok(document.get());
        }
    }
    Ok(text)
}

/// The raw text of the fields of a document that [`answer_fields`] read.
struct Fields<'a, const N: usize> {
    values: [Option<&'a str>; N],
    /// Every field's text is compact ([`json_text::is_compact_object`] accepted the
    /// document), so an object field is taken as it is, with no second scan.
    compact: bool,
}

/// The fields `names` of a document, raw; the others are skipped, never built.
fn fields<'a, const N: usize>(
    document: &'a str,
    names: [&str; N],
) -> Result<Fields<'a, N>, String> {
    let found = json_text::object_fields(document, names)
        .map_err(|e| format!("document is not JSON: {e}"))?;
    Ok(Fields {
        values: found.map(|raw| raw.map(RawValue::get)),
        compact: false,
    })
}

/// The fields `names` of the document in the answer `text` to `JSON.GET key $`.
/// The answer is `[document]`: the document is read in place, in one pass, which
/// also proves it compact, as RedisJSON writes it (reading the array first was a
/// third of the reader's time; parsing the document, then scanning its checkpoint
/// for compactness, a fifth of what was left). Anything else, an error included,
/// goes the long way ([`unwrap_document`]), which says what it is.
fn answer_fields<'a, const N: usize>(
    text: &'a str,
    names: [&str; N],
) -> Result<Fields<'a, N>, String> {
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    let Some(document) = inner else {
        return fields(unwrap_document(text)?, names);
    };
    if let Some(values) = json_text::compact_object_fields(document, names) {
        return Ok(Fields {
            values,
            compact: true,
        });
    }
    fields(document, names).or_else(|_| fields(unwrap_document(text)?, names))
}

/// A field's text when it is a JSON string.
fn string(raw: Option<&str>) -> Option<Cow<'_, str>> {
    raw.and_then(|raw| serde_json::from_str::<Cow<str>>(raw).ok())
}

fn field<'a>(raw: Option<&'a str>, name: &str) -> Result<Cow<'a, str>, String> {
    string(raw).ok_or_else(|| format!("document has no string field {name:?}"))
}

/// A JSON value as the compact text serde_json writes of its tree (the form the
/// tree's `to_string` gave), without the tree when the text allows. `known_compact`:
/// the text was proven compact where it was read.
fn compact(raw: &str, known_compact: bool) -> Result<String, String> {
    // RedisJSON answers compact text already: then it is taken as it is.
    let object = raw.starts_with('{');
    if object && (known_compact || json_text::is_compact_object(raw)) {
        return Ok(raw.to_owned());
    }
    match codec::compact_text(raw.as_bytes()) {
        Some(text) => Ok(text),
        None => serde_json::from_str::<Value>(raw)
            .map(|v| v.to_string())
            .map_err(|e| format!("document is not JSON: {e}")),
    }
}

fn id(stored: &str) -> String {
    if stored == EMPTY_ID {
        String::new()
    } else {
        stored.to_owned()
    }
}

fn parse_checkpoint(text: &str) -> Result<Document, String> {
    let Fields {
        values: [thread, ns, cid, parent, checkpoint, metadata],
        compact: known_compact,
    } = answer_fields(
        text,
        [
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            "parent_checkpoint_id",
            "checkpoint",
            "metadata",
        ],
    )?;
    let (thread, ns, cid) = (
        field(thread, "thread_id")?,
        field(ns, "checkpoint_ns")?,
        field(cid, "checkpoint_id")?,
    );
    let checkpoint = checkpoint.ok_or("document has no \"checkpoint\"")?;
    // The metadata is a JSON string inside the document (an object in older versions).
    let metadata = match metadata {
        Some(raw) => match string(Some(raw)) {
            Some(text) => text.into_owned().into_bytes(),
            None => compact(raw, known_compact)?.into_bytes(),
        },
        None => b"{}".to_vec(),
    };
    Ok(Document {
        key: CheckpointKey {
            thread_id: id(&thread),
            checkpoint_ns: if ns == EMPTY_NS {
                String::new()
            } else {
                ns.clone().into_owned()
            },
            checkpoint_id: id(&cid),
        },
        parent: string(parent).filter(|p| !p.is_empty()).map(|p| id(&p)),
        checkpoint: TypedValue::new("json", compact(checkpoint, known_compact)?),
        metadata: TypedValue::new("json", metadata),
        zset_key: format!("write_keys_zset:{thread}:{ns}:{cid}"),
    })
}

fn parse_write(text: &str) -> Result<PendingWrite, String> {
    let Fields {
        values: [blob, task_id, task_path, idx, channel, kind],
        ..
    } = answer_fields(
        text,
        ["blob", "task_id", "task_path", "idx", "channel", "type"],
    )?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(field(blob, "blob")?.as_bytes())
        .map_err(|e| format!("blob is not base64: {e}"))?;
    Ok(PendingWrite {
        task_id: field(task_id, "task_id")?.into_owned(),
        task_path: string(task_path).unwrap_or_default().into_owned(),
        idx: idx
            .and_then(|raw| serde_json::from_str::<i64>(raw).ok())
            .ok_or("write has no integer idx")?,
        channel: field(channel, "channel")?.into_owned(),
        value: TypedValue::new(field(kind, "type")?, bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the reader took from a document's tree before it read fields raw: the
    /// same key, parent, texts and write, whatever the server's whitespace and escapes.
    #[test]
    fn fields_read_raw_give_what_the_tree_gave() {
        let checkpoint = r#"{"v": 4, "id": "1f0", "channel_values": {"m": {"lc": 1, "type": "constructor", "kwargs": {"content": "caf\u00e9 \"x\""}}, "n": 1.50}, "a": 1, "a": 2}"#;
        let compact_checkpoint = serde_json::from_str::<Value>(checkpoint)
            .unwrap()
            .to_string();
        let spaced = |inner: &str| {
            format!(
                r#"[{{"thread_id": "t\u0031", "checkpoint_ns": "__empty__", "checkpoint_id": "1f0", "parent_checkpoint_id": "", "checkpoint": {inner}, "metadata": "{{\"step\": 1}}", "other": [1, {{"thread_id": 5}}]}}]"#
            )
        };
        // As RedisJSON answers: compact, read in one pass.
        let compact_document = serde_json::from_str::<Value>(&spaced(checkpoint))
            .unwrap()
            .to_string();
        assert!(json_text::is_compact_object(
            &compact_document[1..compact_document.len() - 1]
        ));
        for document in [
            spaced(checkpoint),
            spaced(&compact_checkpoint),
            compact_document,
        ] {
            let doc = parse_checkpoint(&document).unwrap();
            assert_eq!(
                doc.key.to_string(),
                CheckpointKey {
                    thread_id: "t1".into(),
                    checkpoint_ns: String::new(),
                    checkpoint_id: "1f0".into(),
                }
                .to_string()
            );
            assert_eq!(doc.parent, None);
            let tree: Value = serde_json::from_str(&document).unwrap();
            assert_eq!(
                doc.checkpoint.bytes,
                tree[0]["checkpoint"].to_string().into_bytes()
            );
            assert_eq!(doc.metadata.bytes, br#"{"step": 1}"#);
            assert_eq!(doc.zset_key, "write_keys_zset:t1:__empty__:1f0");
        }
        let metadata_object = r#"{"thread_id": "t", "checkpoint_ns": "n", "checkpoint_id": "c", "parent_checkpoint_id": "p", "checkpoint": {}, "metadata": {"b": 1,  "a": [ ]}}"#;
        let doc = parse_checkpoint(metadata_object).unwrap();
        assert_eq!(doc.metadata.bytes, br#"{"b":1,"a":[]}"#);
        assert_eq!(doc.parent.as_deref(), Some("p"));
        for (bad, error) in [
            (r#"[{"thread_id": 1}]"#, "no string field \"thread_id\""),
            (
                r#"{"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c"}"#,
                "no \"checkpoint\"",
            ),
            ("[1, 2]", "no string field"),
            // Two documents in one answer: not read as the first.
            (
                r#"[{"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c", "checkpoint": {}}, {}]"#,
                "no string field \"thread_id\"",
            ),
            ("{", "not JSON"),
        ] {
            let e = parse_checkpoint(bad).err().unwrap();
            assert!(e.contains(error), "{bad}: {e}");
        }
        assert!(
            answer_text(b"[\"\xff\"]")
                .unwrap_err()
                .contains("not UTF-8")
        );
        let write = parse_write(
            r#"[{"blob": "AAE=", "task_id": "t", "idx": 3, "channel": "c", "type": "msgpack", "extra": {}}]"#,
        )
        .unwrap();
        assert_eq!(
            (
                write.idx,
                write.value.bytes.as_slice(),
                write.task_path.as_str()
            ),
            (3, &[0u8, 1][..], "")
        );
        assert!(
            parse_write(
                r#"{"blob": "AAE=", "task_id": "t", "idx": 1.5, "channel": "c", "type": "x"}"#
            )
            .unwrap_err()
            .contains("integer idx")
        );
    }

    /// A batch that fails goes back to where the walk was before its own page, not
    /// to after the page read ahead, and stops and forgets that page.
    #[tokio::test]
    async fn a_failed_batch_goes_back_before_the_page_read_ahead() {
        let mut layout = JsonLayout::new("checkpoint:", ThreadPushdown::default());
        (layout.scan.cursor, layout.scan.done) = (5, false);
        let (started, running) = tokio::sync::oneshot::channel();
        let walk_after = layout.scan.clone();
        layout.ahead = Some(Ahead(tokio::spawn(async move {
            let _ = started.send(());
            std::future::pending::<()>().await;
            (walk_after, Ok(None))
        })));
        running.await.unwrap();
        let saved = layout.position();
        assert_eq!(saved, (5, false));
        let ahead = layout.ahead.as_ref().unwrap().0.abort_handle();
        layout.restore(saved);
        assert!(layout.ahead.is_none());
        assert_eq!((layout.scan.cursor, layout.scan.done), (5, false));
        // The read ahead was stopped, not left running.
        tokio::task::yield_now().await;
        assert!(ahead.is_finished());
    }

    #[test]
    fn the_zset_is_guessed_from_a_langgraph_redis_key_only() {
        assert_eq!(
            zset_key_guess(b"checkpoint:t:1:__empty__:1f0").as_deref(),
            Some("write_keys_zset:t:1:__empty__:1f0")
        );
        assert_eq!(zset_key_guess(b"app:checkpoint:t:__empty__:1f0"), None);
        assert_eq!(zset_key_guess(b"checkpoint:\xff"), None);
    }
}
