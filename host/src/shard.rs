//! Sharded runs: `--shard I/N` moves the threads whose stable hash falls in shard `I`
//! of `N`, so N processes (pods of a Kubernetes Indexed Job, or local processes) share
//! one migration without a coordinator. A thread's whole chain, subgraph namespaces
//! included, lands in one shard, and the N shards together are exactly the unsharded
//! run.
//!
//! The hash is the first four bytes of SHA-256 over the thread id's UTF-8 bytes, read
//! big-endian, modulo N: the same in Rust and in PostgreSQL (`sha256()`), so it can
//! be pushed into the source's query.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// One shard of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    /// 0-based, below `count`.
    pub index: u32,
    /// How many shards the run is cut into.
    pub count: u32,
}

/// `shard:` in the YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// This process's shard, from 0: a number, or text such as
    /// `"${JOB_COMPLETION_INDEX}"` (a Kubernetes Indexed Job's pod index).
    pub index: ShardIndex,
    /// How many shards the run is cut into.
    pub count: u32,
}

/// A shard index as a number or as text naming an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ShardIndex {
    Number(u32),
    Text(String),
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is not below the shard count {count} (indexes start at 0)"
            ));
        }
        Ok(Self { index, count })
    }

    /// `I/N`, where `I` is a number or `$NAME` / `${NAME}`, an environment variable
    /// holding it (`--shard '$JOB_COMPLETION_INDEX/8'`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not I/N (e.g. 3/8, or $JOB_COMPLETION_INDEX/8)"))?;
        let count = count
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: the shard count {count:?} is not a number"))?;
        Self::new(index_value(index.trim())?, count)
    }

    /// The shard `thread_id` belongs to among `count`.
    pub fn of(thread_id: &str, count: u32) -> u32 {
        let digest = sha2::Sha256::digest(thread_id.as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        first % count
    }

    pub fn contains(&self, thread_id: &str) -> bool {
        Self::of(thread_id, self.count) == self.index
    }

    /// `part-00003-of-00008`: how this shard's files are named.
    pub fn part_name(&self) -> String {
        format!("part-{:05}-of-{:05}", self.index, self.count)
    }

    /// `dir/name.part-00003-of-00008.ext` for `dir/name.ext`: a file of this shard
    /// beside those of the others.
    pub fn file_path(&self, path: &Path) -> PathBuf {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let name = match path.extension() {
            Some(ext) => format!("{stem}.{}.{}", self.part_name(), ext.to_string_lossy()),
            None => format!("{stem}.{}", self.part_name()),
        };
        path.with_file_name(name)
    }

    /// A PostgreSQL condition true for the rows of this shard (`column` is a text
    /// expression). It hashes exactly as [`Shard::of`] does.
    pub fn postgres_condition(&self, column: &str) -> String {
        format!(
            "(('x00000000' || encode(substr(sha256(convert_to({column}, 'UTF8')), 1, 4), 'hex'))::bit(64)::bigint % {}) = {}",
            self.count, self.index
        )
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl ShardConfig {
    pub fn shard(&self) -> Result<Shard, String> {
        let index = match &self.index {
            ShardIndex::Number(n) => *n,
            ShardIndex::Text(text) => index_value(text.trim())?,
        };
        Shard::new(index, self.count)
    }
}

/// A shard index: a number, or `$NAME` / `${NAME}` naming the variable holding one.
fn index_value(text: &str) -> Result<u32, String> {
    let name = text
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .or_else(|| text.strip_prefix('$'));
    let (value, from) = match name {
        Some(name) => {
            let value = std::env::var(name)
                .map_err(|_| format!("the shard index comes from ${name}, which is not set"))?;
            (value, format!(" (from ${name})"))
        }
        None => (text.to_owned(), String::new()),
    };
    value
        .trim()
        .parse()
        .map_err(|_| format!("the shard index {value:?}{from} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_is_in_exactly_one_shard() {
        for count in [1, 3, 7] {
            for i in 0..500 {
                let thread = format!("thread-{i}");
                let shards: Vec<u32> = (0..count)
                    .filter(|&index| Shard { index, count }.contains(&thread))
                    .collect();
                assert_eq!(shards.len(), 1, "{thread} in {shards:?} of {count}");
            }
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // SHA-256("customer-0001") starts with 0x696e3e40, SHA-256("") with
        // 0xe3b0c442. Fixed here: a change would move threads between the shards of
        // runs already under way.
        assert_eq!(Shard::of("customer-0001", 7), 0x696e3e40 % 7);
        assert_eq!(Shard::of("customer-0001", 3), 2);
        assert_eq!(Shard::of("", 7), 0xe3b0c442 % 7);
    }

    #[test]
    fn parsing_names_what_is_wrong() {
        assert_eq!(Shard::parse("3/8").unwrap(), Shard { index: 3, count: 8 });
        assert!(Shard::parse("8/8").unwrap_err().contains("not below"));
        assert!(Shard::parse("1/0").unwrap_err().contains("at least 1"));
        assert!(Shard::parse("x").unwrap_err().contains("I/N"));
        let err = Shard::parse("$CKPT_SURELY_UNSET_SHARD_VAR/4").unwrap_err();
        assert!(err.contains("CKPT_SURELY_UNSET_SHARD_VAR"), "{err}");
    }

    #[test]
    fn files_are_named_by_shard() {
        let shard = Shard { index: 3, count: 7 };
        assert_eq!(
            shard.file_path(Path::new("out/dead-letter.jsonl")),
            PathBuf::from("out/dead-letter.part-00003-of-00007.jsonl")
        );
        assert_eq!(
            shard.file_path(Path::new("manifest")),
            PathBuf::from("manifest.part-00003-of-00007")
        );
    }
}
