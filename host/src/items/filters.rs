//! The declarative filters as they apply to Store items: namespace prefix, the date
//! range on `updated_at`, and the shard (by namespace).

use crate::error::ConfigError;
use crate::filters::{FilterConfig, Filters};

use super::{StoreItem, namespace_of};

/// Compiled item filters. Sources push the namespace prefix into their query; the
/// driver applies everything again, so a pushdown only saves work.
#[derive(Debug, Clone)]
pub struct ItemFilters {
    /// The namespace labels an item's namespace must start with (empty: all).
    pub namespace_prefix: Vec<String>,
    filters: Filters,
}

impl ItemFilters {
    /// Refuses the filters that are about checkpoints (threads, plugins).
    pub fn compile(config: &FilterConfig) -> Result<Self, ConfigError> {
        let about_threads = config.thread_id.is_some()
            || config.thread_pattern.is_some()
            || !config.exclude_threads.is_empty();
        if about_threads {
            return Err(ConfigError::Invalid(
                "filters: thread filters do not apply to Store items (state: store); use \
                 `namespace_prefix`"
                    .into(),
            ));
        }
        let namespace_prefix = match config.namespace_prefix.as_deref() {
            None | Some("") => Vec::new(),
            Some(text) => {
                let labels = namespace_of(text);
                if labels.iter().any(String::is_empty) {
                    return Err(ConfigError::Invalid(format!(
                        "filters.namespace_prefix: {text:?} has an empty label"
                    )));
                }
                labels
            }
        };
        Ok(Self {
            namespace_prefix,
            filters: config.compile()?,
        })
    }

    /// No filter at all.
    pub fn none() -> Self {
        Self {
            namespace_prefix: Vec::new(),
            filters: Filters::none(),
        }
    }

    /// The prefix as the SQL stores hold it (`users.u-1`), when one is set.
    pub fn prefix_text(&self) -> Option<String> {
        (!self.namespace_prefix.is_empty()).then(|| self.namespace_prefix.join("."))
    }

    /// Whether a namespace (`users.u-1.memories`) is selected by prefix and shard.
    pub fn accepts_namespace(&self, prefix: &str) -> bool {
        let labels: Vec<&str> = prefix.split('.').collect();
        labels.starts_with(
            &self
                .namespace_prefix
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ) && self.filters.in_shard(prefix)
    }

    /// Whether the item is selected: namespace, shard and `updated_at` in the dates.
    pub fn accepts(&self, item: &StoreItem) -> bool {
        self.accepts_namespace(&item.key.prefix())
            && self.filters.accepts_time(Some(item.updated_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<ItemFilters, ConfigError> {
        let config: FilterConfig = serde_yaml::from_str(yaml).expect("yaml");
        ItemFilters::compile(&config)
    }

    #[test]
    fn prefixes_match_whole_labels() {
        let f = compile("namespace_prefix: users.u-1").expect("compiles");
        assert!(f.accepts_namespace("users.u-1"));
        assert!(f.accepts_namespace("users.u-1.memories"));
        assert!(!f.accepts_namespace("users.u-10"));
        assert!(!f.accepts_namespace("users"));
        assert_eq!(f.prefix_text().as_deref(), Some("users.u-1"));
        assert!(
            compile("{}")
                .expect("compiles")
                .accepts_namespace("any.thing")
        );
    }

    #[test]
    fn thread_filters_and_empty_labels_are_refused() {
        let e = compile("thread_id: t").unwrap_err().to_string();
        assert!(e.contains("namespace_prefix"), "{e}");
        let e = compile("namespace_prefix: users..x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty label"), "{e}");
    }
}
