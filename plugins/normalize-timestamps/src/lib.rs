//! `normalize_timestamps`: rewrites timestamps as RFC 3339 UTC — the checkpoint's `ts`
//! and metadata fields (by default keys ending in `_at`, and `timestamp` / `ts`; or the
//! `fields` listed in the config). Understands epoch seconds, milliseconds and
//! microseconds (numbers or digit strings) and common date-time strings. Values it
//! cannot read are left as they are and reported in the log.
//!
//! config: `{ "fields": ["created_at", "last_seen"] }`

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use ckpt_migrate_plugin::serde_json::Value;
use ckpt_migrate_plugin::{Context, Info, Needs, Outcome, Record, Transformer, log};

struct NormalizeTimestamps {
    fields: Option<Vec<String>>,
}

/// The instant an epoch number denotes, choosing the unit by magnitude:
/// < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds.
fn from_epoch(n: f64) -> Option<DateTime<Utc>> {
    let abs = n.abs();
    let micros = if abs < 1e11 {
        n * 1e6
    } else if abs < 1e14 {
        n * 1e3
    } else if abs < 1e17 {
        n
    } else {
        return None;
    };
    DateTime::from_timestamp_micros(micros.round() as i64)
}

fn from_text(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && let Ok(n) = text.parse::<f64>()
    {
        return from_epoch(n);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    // No offset: taken as UTC.
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn normalize(value: &Value) -> Option<String> {
    // Already RFC 3339 in UTC (`Z` or `+00:00`): leave the text exactly as it is.
    if let Value::String(s) = value
        && let Ok(t) = DateTime::parse_from_rfc3339(s)
        && t.offset().local_minus_utc() == 0
    {
        return Some(s.clone());
    }
    let instant = match value {
        Value::Number(n) => from_epoch(n.as_f64()?),
        Value::String(s) => from_text(s),
        _ => None,
    }?;
    Some(instant.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl NormalizeTimestamps {
    fn is_timestamp_key(&self, key: &str) -> bool {
        match &self.fields {
            Some(fields) => fields.iter().any(|f| f == key),
            None => key.ends_with("_at") || key == "timestamp" || key == "ts",
        }
    }
}

impl Transformer for NormalizeTimestamps {
    fn info() -> Info {
        Info::new(
            "normalize_timestamps",
            env!("CARGO_PKG_VERSION"),
            Needs::METADATA,
        )
    }

    fn new(config: Value) -> Result<Self, String> {
        let fields = match config.get("fields") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or("`fields` must be a list of key names")
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err("`fields` must be a list of key names".into()),
        };
        Ok(Self { fields })
    }

    fn transform(&mut self, _ctx: &Context, record: Record) -> Outcome {
        let mut changed = false;
        let ts = match &record.ts {
            Some(ts) => match normalize(&Value::from(ts.as_str())) {
                Some(n) if n != *ts => Some(n),
                Some(_) => None,
                None => {
                    log::warn(&format!(
                        "{}: ts {ts:?} is not a timestamp I can read; left as is",
                        record.checkpoint_id
                    ));
                    None
                }
            },
            None => None,
        };
        let mut metadata = record.metadata.unwrap_or_default();
        let keys: Vec<String> = metadata
            .keys()
            .filter(|k| self.is_timestamp_key(k))
            .cloned()
            .collect();
        for key in keys {
            let value = &metadata[&key];
            match normalize(value) {
                Some(n) if value.as_str() != Some(n.as_str()) => {
                    metadata.insert(key, Value::from(n));
                    changed = true;
                }
                Some(_) => {}
                None => log::warn(&format!(
                    "{}: metadata {key} = {value} is not a timestamp I can read; left as is",
                    record.checkpoint_id
                )),
            }
        }
        let metadata = changed.then_some(metadata);
        if ts.is_none() && metadata.is_none() {
            Outcome::Keep
        } else {
            Outcome::Patch { ts, metadata }
        }
    }
}

ckpt_migrate_plugin::export_transformer!(NormalizeTimestamps);
