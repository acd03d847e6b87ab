//! LangGraph Store items (long-term memory): the record, and what a store implements
//! to read or write them.
//!
//! A LangGraph `BaseStore` keeps JSON documents by namespace (a tuple of strings) and
//! key, with their times, an optional TTL, and — when a vector index is configured —
//! one embedding per indexed field. `PostgresStore` and `SqliteStore` keep them in a
//! `store` table (namespace joined with `.` in `prefix`) and a `store_vectors` table.
//! The run driver is [`crate::migrate_items`]; the stores implement [`ItemSource`] and
//! [`ItemSink`] in their folders.

pub mod filters;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::StoreError;
use crate::record::Origin;

pub use filters::ItemFilters;

/// Where an item lives: its namespace and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemKey {
    pub namespace: Vec<String>,
    pub key: String,
}

impl ItemKey {
    /// The namespace as LangGraph's SQL stores keep it: labels joined with `.`.
    pub fn prefix(&self) -> String {
        namespace_text(&self.namespace)
    }
}

impl std::fmt::Display for ItemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "namespace={:?} key={:?}", self.namespace, self.key)
    }
}

/// `("users", "u-1")` → `users.u-1`, as `PostgresStore` / `SqliteStore` store it.
pub fn namespace_text(namespace: &[String]) -> String {
    namespace.join(".")
}

/// The inverse of [`namespace_text`] (LangGraph refuses `.` inside a label).
pub fn namespace_of(prefix: &str) -> Vec<String> {
    prefix.split('.').map(str::to_owned).collect()
}

/// One embedding of an item: the indexed field (`text`, `items.0`…) and its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemVector {
    pub field_name: String,
    pub embedding: Vec<f32>,
}

/// One Store item, as its store held it.
#[derive(Debug, Clone)]
pub struct StoreItem {
    pub key: ItemKey,
    /// The JSON object exactly as stored (text), never re-encoded on the way.
    pub value: Box<RawValue>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a TTL was set: the time the item expires (LangGraph refreshes it on reads).
    pub expires_at: Option<DateTime<Utc>>,
    /// The TTL in minutes (SqliteStore keeps fractions, PostgresStore whole minutes).
    pub ttl_minutes: Option<f64>,
    /// Embeddings of the indexed fields, ordered by field name.
    pub vectors: Vec<ItemVector>,
    pub origin: Origin,
}

impl StoreItem {
    /// Checks that `text` is a JSON object (LangGraph's stores hold nothing else) and
    /// keeps it as written.
    pub fn value_from_text(text: String) -> Result<Box<RawValue>, String> {
        let value = RawValue::from_string(text).map_err(|e| format!("value is not JSON: {e}"))?;
        if !value.get().trim_start().starts_with('{') {
            return Err("value is not a JSON object".into());
        }
        Ok(value)
    }

    /// Raw size, to bound batches by bytes.
    pub fn raw_size(&self) -> usize {
        self.value.get().len()
            + self.key.key.len()
            + self.key.namespace.iter().map(String::len).sum::<usize>()
            + self
                .vectors
                .iter()
                .map(|v| v.embedding.len() * 4 + v.field_name.len())
                .sum::<usize>()
    }

    /// The item's JSON form (exports, the dead-letter file): every field, the value
    /// embedded as stored, times in RFC 3339 with microseconds.
    pub fn to_json(&self) -> serde_json::Value {
        let mut line = serde_json::json!({
            "namespace": self.key.namespace,
            "key": self.key.key,
            "value": self.value,
            "created_at": rfc3339(&self.created_at),
            "updated_at": rfc3339(&self.updated_at),
            "expires_at": self.expires_at.as_ref().map(rfc3339),
            "ttl_minutes": self.ttl_minutes,
        });
        if !self.vectors.is_empty() {
            line["vectors"] = serde_json::json!(self.vectors);
        }
        line
    }

    /// Reads back what [`StoreItem::to_json`] wrote.
    pub fn from_json(line: &serde_json::Value, origin: Origin) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Line {
            namespace: Vec<String>,
            key: String,
            value: serde_json::Value,
            created_at: DateTime<Utc>,
            updated_at: DateTime<Utc>,
            expires_at: Option<DateTime<Utc>>,
            ttl_minutes: Option<f64>,
            #[serde(default)]
            vectors: Vec<ItemVector>,
        }
        let line: Line = serde_json::from_value(line.clone()).map_err(|e| e.to_string())?;
        Ok(StoreItem {
            key: ItemKey {
                namespace: line.namespace,
                key: line.key,
            },
            // Numbers keep their exact text (serde_json's `arbitrary_precision`).
            value: Self::value_from_text(line.value.to_string())?,
            created_at: line.created_at,
            updated_at: line.updated_at,
            expires_at: line.expires_at,
            ttl_minutes: line.ttl_minutes,
            vectors: line.vectors,
            origin,
        })
    }

    /// The differences between this item and `other` as LangGraph's store classes
    /// read them (the value compared as JSON, numbers as `numbers` says; times to the
    /// microsecond; TTL; vectors), for `verify`.
    pub fn differences(&self, other: &StoreItem, numbers: NumberFidelity) -> Vec<String> {
        let mut found = Vec::new();
        let parsed = |v: &RawValue| serde_json::from_str::<serde_json::Value>(v.get()).ok();
        let same_value = match (parsed(&self.value), parsed(&other.value)) {
            (Some(a), Some(b)) => same_json(&a, &b, numbers),
            _ => false,
        };
        if !same_value {
            found.push("value".to_owned());
        }
        if self.created_at != other.created_at {
            found.push("created_at".into());
        }
        if self.updated_at != other.updated_at {
            found.push("updated_at".into());
        }
        if self.expires_at != other.expires_at {
            found.push("expires_at".into());
        }
        if self.ttl_minutes != other.ttl_minutes {
            found.push("ttl_minutes".into());
        }
        if self.vectors != other.vectors {
            found.push("vectors".into());
        }
        found
    }
}

/// How exactly a destination keeps the numbers of a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NumberFidelity {
    /// Every number keeps its decimal value.
    #[default]
    Exact,
    /// A float may come back as a neighbouring double (one unit in the last place):
    /// RedisJSON parses floats approximately, for `RedisStore.put` as for us.
    NeighbourFloat,
}

/// JSON equality where numbers are equal when their decimal values are (`1e+308`
/// and the 309-digit integer PostgreSQL's `jsonb` gives back for it, `-0.0` and
/// `0`), or as `numbers` allows, and objects are equal whatever their key order
/// (`jsonb` sorts keys).
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value, numbers: NumberFidelity) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            decimal_of(&x.to_string()) == decimal_of(&y.to_string())
                || (numbers == NumberFidelity::NeighbourFloat && neighbour_floats(x, y))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y, numbers))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w, numbers)))
        }
        _ => a == b,
    }
}

/// Two non-integer numbers whose doubles are at most one unit in the last place apart.
fn neighbour_floats(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    if x.is_i64() || x.is_u64() || y.is_i64() || y.is_u64() {
        return false;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() && a.signum() == b.signum() => {
            a.to_bits().abs_diff(b.to_bits()) <= 1
        }
        _ => false,
    }
}

/// A JSON number's value as (negative, significant digits, exponent of the last
/// digit), zero as `(false, "", 0)`; `None` when the text is not a number.
fn decimal_of(text: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let mut exponent = exponent - i64::try_from(fraction.len()).ok()?;
    let trimmed = digits.trim_start_matches('0');
    let significant = trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    exponent += i64::try_from(trimmed.len() - significant.len()).ok()?;
    Some((negative, significant.to_owned(), exponent))
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A row the source could not make an item of: where it is and why.
#[derive(Debug, Clone)]
pub struct FailedItem {
    pub key: ItemKey,
    pub reason: String,
    pub origin: Origin,
    /// What was read, for the dead-letter file.
    pub raw: serde_json::Value,
}

/// A row read: an item, or why it is not one (boxed: failures are rare and large).
pub type ItemRead = Result<StoreItem, Box<FailedItem>>;

/// One page of a source, in `(prefix, key)` order.
#[derive(Debug, Default)]
pub struct ItemBatch {
    pub items: Vec<StoreItem>,
    pub failed: Vec<FailedItem>,
    /// Where the source continues after this page (its own form: the last
    /// `(namespace, key)` for the SQL stores), kept in the resume state.
    pub position: serde_json::Value,
}

/// A store that Store items are read from.
#[async_trait]
pub trait ItemSource: Send {
    /// What we read, fit for logs (no secrets).
    fn describe(&self) -> String;

    /// The next page of at most `limit` items after the last one returned (or after
    /// [`ItemSource::resume_from`]); `None` at the end.
    async fn next_batch(&mut self, limit: usize) -> Result<Option<ItemBatch>, StoreError>;

    /// Continue after a page's `position` (a resumed run).
    fn resume_from(&mut self, position: &serde_json::Value) -> Result<(), StoreError>;

    /// Items per namespace (`users.u-1`) within the namespace filter, for the dry run.
    async fn count_by_namespace(
        &mut self,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError>;
}

/// What writing a batch did.
#[derive(Debug, Default)]
pub struct ItemWrite {
    pub written: u64,
    /// Items the destination already held and kept (`on_conflict: skip`).
    pub kept: u64,
    /// Items refused by the destination, by index in the batch, with the reason.
    pub rejected: Vec<(usize, String)>,
}

/// A store that Store items are written to.
#[async_trait]
pub trait ItemSink: Send {
    /// Where we write, fit for logs (no secrets).
    fn describe(&self) -> String;

    /// Where failed items go unless the config says otherwise.
    fn default_dead_letter_path(&self) -> std::path::PathBuf {
        "store-items.dead-letter.jsonl".into()
    }

    /// Creates what the destination needs (tables, as LangGraph's `setup()` would),
    /// before anything is read.
    async fn prepare(&mut self) -> Result<(), StoreError>;

    /// Writes one batch; it is durable when this returns, and writing it again writes
    /// nothing twice.
    async fn write(&mut self, items: &[StoreItem]) -> Result<ItemWrite, StoreError>;

    /// The item as this destination keeps it (what `verify` expects to read back).
    fn written_form(&self, item: StoreItem) -> StoreItem {
        item
    }

    /// How exactly the destination keeps numbers (what `verify` accepts as equal).
    fn number_fidelity(&self) -> NumberFidelity {
        NumberFidelity::Exact
    }

    /// What the destination holds for each key, for `verify`.
    async fn read_back(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError>;

    /// What [`ItemSink::resume`] needs to continue after the last written batch
    /// (stores that write idempotently need nothing).
    fn resume_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Continue a run whose last confirmed batch left `state` (before `prepare`).
    fn resume(&mut self, _state: &serde_json::Value) {}

    /// Whether a run can continue after its last written batch; a destination that
    /// cannot (one Parquet file) is written again from the start by a resumed run.
    fn continues_mid_run(&self) -> bool {
        true
    }

    /// Called once at the end of a run.
    async fn finish(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A position that is an item's key (the SQL stores and JSON: pages in key order).
pub fn key_position(position: &serde_json::Value) -> Result<ItemKey, StoreError> {
    serde_json::from_value(position.clone()).map_err(|e| {
        StoreError::fatal(format!(
            "the resume state's position {position} is not an item key: {e}"
        ))
    })
}

/// Parses the times LangGraph's SQL stores write: SQLite's `CURRENT_TIMESTAMP`
/// (`2026-12-02 10:00:00`, UTC), Python's `str(datetime)` with or without an offset,
/// and RFC 3339.
pub fn parse_store_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    crate::codec::parse_timestamp(text)
}

/// The inverse of [`parse_store_time`] in SQLite's own style: `2026-12-02 10:00:00`,
/// with `.ffffff` only when there are microseconds, and `+00:00` when `offset` (how
/// Python's sqlite3 writes a `datetime` with a time zone, as `expires_at` is).
pub fn store_time_text(t: &DateTime<Utc>, offset: bool) -> String {
    let mut text = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.timestamp_subsec_micros();
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    if offset {
        text.push_str("+00:00");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_times_round_trip_in_sqlite_style() {
        for text in [
            "2026-12-02 10:00:00",
            "2026-12-02 10:00:00.000001",
            "2026-12-02 10:00:00.123456",
        ] {
            let t = parse_store_time(text).expect("parses");
            assert_eq!(store_time_text(&t, false), text);
        }
        let t = parse_store_time("2036-11-29 10:00:00.5+00:00").expect("parses");
        assert_eq!(
            store_time_text(&t, true),
            "2036-11-29 10:00:00.500000+00:00"
        );
        let shifted = parse_store_time("2026-12-02 12:00:00+02:00").expect("parses");
        assert_eq!(store_time_text(&shifted, false), "2026-12-02 10:00:00");
        assert!(parse_store_time("yesterday").is_none());
    }

    #[test]
    fn numbers_compare_by_value() {
        let v = |t: &str| serde_json::from_str::<serde_json::Value>(t).expect("json");
        let big = format!("{{\"x\": 1{}}}", "0".repeat(308));
        let same = |a: &str, b: &str| same_json(&v(a), &v(b), NumberFidelity::Exact);
        assert!(same(r#"{"x": 1e+308}"#, &big));
        assert!(same(r#"{"x": -0.0, "y": 1.50}"#, r#"{"y": 1.5, "x": 0}"#));
        assert!(same("[0.1]", "[1e-1]"));
        assert!(!same("[0.9949503943874963]", "[0.9949503943874964]"));
        assert!(!same("[1]", "[-1]"));
        assert!(!same(r#"{"a": 1}"#, r#"{"a": 1, "b": 2}"#));
        // RedisJSON's neighbouring doubles, and only those.
        let near = |a: &str, b: &str| same_json(&v(a), &v(b), NumberFidelity::NeighbourFloat);
        assert!(near("[0.9949503943874963]", "[0.9949503943874964]"));
        assert!(near("[123456789.12345679]", "[123456789.1234568]"));
        assert!(!near("[0.9949503943874963]", "[0.9949503943874966]"));
        assert!(!near("[1]", "[2]"));
        assert!(!near("[1e-320]", "[-1e-320]"));
    }

    #[test]
    fn values_must_be_objects() {
        assert!(StoreItem::value_from_text(r#"{"a": 0.9949503943874963}"#.into()).is_ok());
        assert_eq!(
            StoreItem::value_from_text("[1]".into()).unwrap_err(),
            "value is not a JSON object"
        );
        assert!(StoreItem::value_from_text("{".into()).is_err());
    }

    #[test]
    fn json_form_round_trips_exactly() {
        let origin = Origin {
            store: "sqlite".into(),
            locator: "x".into(),
        };
        let item = StoreItem {
            key: ItemKey {
                namespace: vec!["users".into(), "ü".into()],
                key: "k 🙂".into(),
            },
            value: StoreItem::value_from_text(r#"{"f":5e-324,"n":18446744073709551615}"#.into())
                .expect("object"),
            created_at: parse_store_time("2026-12-02 10:00:00").expect("time"),
            updated_at: parse_store_time("2026-12-02 10:00:01.25").expect("time"),
            expires_at: None,
            ttl_minutes: Some(90.5),
            vectors: vec![ItemVector {
                field_name: "text".into(),
                embedding: vec![0.1, -2.5e-8],
            }],
            origin: origin.clone(),
        };
        let back = StoreItem::from_json(&item.to_json(), origin).expect("reads back");
        assert!(item.differences(&back, NumberFidelity::Exact).is_empty());
        assert_eq!(back.value.get(), item.value.get());
    }
}
