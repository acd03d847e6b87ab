//! Declarative filters: by thread and by checkpoint time.
//!
//! Sources push what they can into their query ([`ThreadPushdown`]); the engine always
//! applies the full filter as well, so a pushdown can only save work, never change the
//! result.

use chrono::{DateTime, Days, NaiveDate, Utc};
use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::codec;
use crate::error::ConfigError;
use crate::record::Checkpoint;
use crate::shard::Shard;

/// The `filters:` block of the YAML.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Only this thread.
    pub thread_id: Option<String>,
    /// Only threads matching this glob (`*`, `?`, `[a-z]`, `{a,b}`).
    pub thread_pattern: Option<String>,
    /// Skip threads matching any of these globs.
    #[serde(default)]
    pub exclude_threads: Vec<String>,
    /// Only checkpoints at or after this date (`2025-01-01`, UTC) or instant (RFC 3339).
    pub date_from: Option<String>,
    /// Only checkpoints on or before this date (the whole day, UTC) or instant.
    pub date_to: Option<String>,
    /// Store items only (`state: store`): only namespaces that start with these
    /// labels, joined with dots (`users.u-1` is `("users", "u-1")`; LangGraph refuses
    /// dots inside a label). Dates then apply to the items' `updated_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_prefix: Option<String>,
    /// WASM filter plugins, run after the declarative filters (see docs/plugins.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<serde_json::Value>,
    /// Only the threads of this shard (`--shard`, or `shard:` at the top of the YAML
    /// file); part of the run's identity, so each shard keeps its own resume state.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl FilterConfig {
    /// `other`'s values win where set; exclusions add up.
    pub fn merged_with(mut self, other: FilterConfig) -> FilterConfig {
        self.thread_id = other.thread_id.or(self.thread_id);
        self.thread_pattern = other.thread_pattern.or(self.thread_pattern);
        self.exclude_threads.extend(other.exclude_threads);
        self.date_from = other.date_from.or(self.date_from);
        self.date_to = other.date_to.or(self.date_to);
        self.namespace_prefix = other.namespace_prefix.or(self.namespace_prefix);
        self.plugins.extend(other.plugins);
        self.shard = other.shard.or(self.shard);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.thread_id.is_none()
            && self.thread_pattern.is_none()
            && self.exclude_threads.is_empty()
            && !self.has_date_filter()
            && self.namespace_prefix.is_none()
            && self.plugins.is_empty()
            && self.shard.is_none()
    }

    pub fn has_date_filter(&self) -> bool {
        self.date_from.is_some() || self.date_to.is_some()
    }

    pub fn compile(&self) -> Result<Filters, ConfigError> {
        let glob = |field: &str, p: &str| {
            Glob::new(p).map_err(|e| ConfigError::Invalid(format!("filters.{field}: {p:?}: {e}")))
        };
        let pattern = match &self.thread_pattern {
            Some(p) => Some(glob("thread_pattern", p)?.compile_matcher()),
            None => None,
        };
        let mut excludes = GlobSetBuilder::new();
        for p in &self.exclude_threads {
            excludes.add(glob("exclude_threads", p)?);
        }
        let excludes = excludes
            .build()
            .map_err(|e| ConfigError::Invalid(format!("filters.exclude_threads: {e}")))?;
        let from = match &self.date_from {
            Some(text) => Some(parse_bound("date_from", text, false)?),
            None => None,
        };
        let until = match &self.date_to {
            Some(text) => Some(parse_bound("date_to", text, true)?),
            None => None,
        };
        if let (Some(from), Some(until)) = (&from, &until)
            && from.instant >= until.instant
        {
            return Err(ConfigError::Invalid(
                "filters: date_from is after date_to".into(),
            ));
        }
        Ok(Filters {
            config: self.clone(),
            pattern,
            excludes,
            from,
            until,
        })
    }
}

/// A time bound; `until` is exclusive (`date_to: 2025-12-31` becomes
/// `< 2026-01-01T00:00:00Z`), an explicit instant is inclusive.
#[derive(Debug, Clone)]
struct Bound {
    instant: DateTime<Utc>,
    inclusive: bool,
}

fn parse_bound(field: &str, text: &str, is_upper: bool) -> Result<Bound, ConfigError> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if is_upper {
            date.checked_add_days(Days::new(1)).unwrap_or(date)
        } else {
            date
        };
        return Ok(Bound {
            instant: day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            inclusive: !is_upper,
        });
    }
    crate::codec::parse_timestamp(text)
        .map(|instant| Bound {
            instant,
            inclusive: true,
        })
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "filters.{field}: {text:?} is neither a date (2025-01-31) nor an RFC 3339 instant"
            ))
        })
}

/// Compiled filters.
#[derive(Debug, Clone)]
pub struct Filters {
    config: FilterConfig,
    pattern: Option<GlobMatcher>,
    excludes: GlobSet,
    from: Option<Bound>,
    until: Option<Bound>,
}

/// What a source can evaluate itself: thread equality, positive and negative globs
/// that mean the same in the store's matcher (only `*` and `?`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadPushdown {
    pub thread_id: Option<String>,
    pub include_glob: Option<String>,
    pub exclude_globs: Vec<String>,
    /// Stores that can hash the thread id in their query push the shard down.
    pub shard: Option<Shard>,
}

/// What the declarative filters make of one record ([`Filters::select`]).
pub enum Selected {
    /// Its thread is not selected.
    OtherThread,
    /// The decoder could not compute its view: the record, and why.
    Undecodable(Checkpoint, String),
    /// Decoded, and its time is outside the date filters.
    OutsideDates(Checkpoint),
    /// Selected (decoded when asked, or when a date filter needed it).
    Kept(Checkpoint),
}

impl Filters {
    /// The one way records are chosen, by the run, the dry run and `verify`: the
    /// thread filter first (cheap), then the decoder when `decode` (or a date filter)
    /// asks for the view, then the date filters on the decoded `ts`.
    pub fn select(&self, record: Checkpoint, decode: bool) -> Selected {
        self.select_as(record, decode, false)
    }

    /// [`Filters::select`], the view made as text when `as_text`
    /// ([`codec::decode_record_text`]).
    pub fn select_as(&self, mut record: Checkpoint, decode: bool, as_text: bool) -> Selected {
        if !self.accepts_thread(&record.key.thread_id) {
            return Selected::OtherThread;
        }
        if !decode && !self.filters_by_time() {
            return Selected::Kept(record);
        }
        let decoded = if as_text {
            codec::decode_record_text(&mut record)
        } else {
            codec::decode_record(&mut record)
        };
        if let Err(e) = decoded {
            return Selected::Undecodable(record, e.to_string());
        }
        if self.accepts_time(record.view.as_ref().and_then(|v| v.ts_parsed)) {
            Selected::Kept(record)
        } else {
            Selected::OutsideDates(record)
        }
    }

    /// No filter: every record.
    pub fn none() -> Self {
        Self {
            config: FilterConfig::default(),
            pattern: None,
            excludes: GlobSet::empty(),
            from: None,
            until: None,
        }
    }

    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    pub fn accepts_thread(&self, thread_id: &str) -> bool {
        if self
            .config
            .thread_id
            .as_deref()
            .is_some_and(|t| t != thread_id)
        {
            return false;
        }
        if self
            .pattern
            .as_ref()
            .is_some_and(|p| !p.is_match(thread_id))
        {
            return false;
        }
        !self.excludes.is_match(thread_id) && self.in_shard(thread_id)
    }

    /// Whether the thread is in this run's shard (every thread when not sharded).
    pub fn in_shard(&self, thread_id: &str) -> bool {
        self.config.shard.is_none_or(|s| s.contains(thread_id))
    }

    /// Checkpoints without a parseable `ts` fail any date filter.
    pub fn accepts_time(&self, ts: Option<DateTime<Utc>>) -> bool {
        if self.from.is_none() && self.until.is_none() {
            return true;
        }
        let Some(ts) = ts else { return false };
        let after_from = self.from.as_ref().is_none_or(|b| ts >= b.instant);
        let before_until = self.until.as_ref().is_none_or(|b| {
            if b.inclusive {
                ts <= b.instant
            } else {
                ts < b.instant
            }
        });
        after_from && before_until
    }

    /// The lower time bound as `(instant, inclusive)`, for stores that filter by time.
    /// Whether a date filter is set (records must be decoded to read their `ts`).
    pub fn filters_by_time(&self) -> bool {
        self.time_from().is_some() || self.time_until().is_some()
    }

    pub fn time_from(&self) -> Option<(DateTime<Utc>, bool)> {
        self.from.as_ref().map(|b| (b.instant, b.inclusive))
    }

    /// The upper time bound as `(instant, inclusive)`.
    pub fn time_until(&self) -> Option<(DateTime<Utc>, bool)> {
        self.until.as_ref().map(|b| (b.instant, b.inclusive))
    }

    /// The thread filters a glob-capable store can apply with the same meaning.
    pub fn thread_pushdown(&self) -> ThreadPushdown {
        ThreadPushdown {
            thread_id: self.config.thread_id.clone(),
            include_glob: self
                .config
                .thread_pattern
                .clone()
                .filter(|p| is_simple_glob(p)),
            exclude_globs: self
                .config
                .exclude_threads
                .iter()
                .filter(|p| is_simple_glob(p))
                .cloned()
                .collect(),
            shard: self.config.shard,
        }
    }
}

/// A glob using only `*` and `?`, which SQLite `GLOB`, Redis `MATCH` and globset all
/// read the same way.
fn is_simple_glob(pattern: &str) -> bool {
    !pattern.contains(['[', ']', '{', '}', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(yaml: &str) -> Filters {
        serde_yaml::from_str::<FilterConfig>(yaml)
            .unwrap()
            .compile()
            .unwrap()
    }

    #[test]
    fn thread_globs_and_exclusions() {
        let f = filters("thread_pattern: 'customer-*'\nexclude_threads: ['*-0003', 'test-*']");
        assert!(f.accepts_thread("customer-0001"));
        assert!(!f.accepts_thread("customer-0003"));
        assert!(!f.accepts_thread("test-abc"));
        assert!(!f.accepts_thread("debug-xyz"));
        assert_eq!(
            f.thread_pushdown().exclude_globs,
            vec!["*-0003".to_string(), "test-*".to_string()]
        );
    }

    #[test]
    fn dates_are_inclusive_whole_days_in_utc() {
        let f = filters("date_from: '2025-01-01'\ndate_to: '2025-12-31'");
        let at = |s: &str| crate::codec::parse_timestamp(s);
        assert!(f.accepts_time(at("2025-01-01T00:00:00+00:00")));
        assert!(f.accepts_time(at("2025-12-31T23:59:59.999999+00:00")));
        assert!(!f.accepts_time(at("2026-01-01T00:00:00+00:00")));
        // 2026-01-01T01:00+05:30 is 2025-12-31T19:30Z: inside.
        assert!(f.accepts_time(at("2026-01-01T01:00:00+05:30")));
        assert!(!f.accepts_time(at("2024-12-31T23:59:59+00:00")));
        assert!(!f.accepts_time(None));
    }

    #[test]
    fn complex_globs_are_not_pushed_down() {
        let f = filters("thread_pattern: 'customer-{1,2}'");
        assert_eq!(f.thread_pushdown().include_glob, None);
        assert!(f.accepts_thread("customer-1"));
    }

    #[test]
    fn bad_dates_name_the_key() {
        let err = serde_yaml::from_str::<FilterConfig>("date_from: 'last week'")
            .unwrap()
            .compile()
            .unwrap_err();
        assert!(err.to_string().contains("filters.date_from"));
    }
}
