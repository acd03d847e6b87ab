//! Values that many checkpoints of a batch name, fetched once.
//!
//! Stores that keep channel values apart from the checkpoint (PostgreSQL's
//! `checkpoint_blobs`, plainredis's blob keys) key each by (thread, namespace,
//! channel, version), and a checkpoint names the version of every channel it has, so
//! a value that did not change is named by every checkpoint after it (four to seven
//! times in a batch of the bench fixture). A reader names each checkpoint's values
//! here, fetches each distinct key once, and hands the values out: a copy to each
//! checkpoint naming one, the value itself to the last.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

/// The distinct keys a batch names, in the order first named, with how many names
/// each still has to be handed out to.
pub(crate) struct NamedOnce<K> {
    keys: Vec<K>,
    index: HashMap<K, usize>,
    uses: Vec<u32>,
}

impl<K> Default for NamedOnce<K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            index: HashMap::new(),
            uses: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> NamedOnce<K> {
    /// Names `key` once more; its index among the distinct keys.
    pub(crate) fn name(&mut self, key: K) -> usize {
        let next = self.keys.len();
        let i = match self.index.entry(key) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                self.keys.push(e.key().clone());
                self.uses.push(0);
                e.insert(next);
                next
            }
        };
        self.uses[i] += 1;
        i
    }

    /// The distinct keys, each once: what to fetch, value `i` for key `i`.
    pub(crate) fn keys(&self) -> &[K] {
        &self.keys
    }

    /// Hands value `i` to one checkpoint that named it: a copy while other names are
    /// still to be handed out, the value itself to the last (`None`: not fetched).
    pub(crate) fn hand_out<T: Clone>(&mut self, values: &mut [Option<T>], i: usize) -> Option<T> {
        self.uses[i] = self.uses[i].saturating_sub(1);
        if self.uses[i] == 0 {
            values[i].take()
        } else {
            values[i].clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_once_and_every_name_gets_its_value() {
        let mut named = NamedOnce::default();
        let names: Vec<usize> = ["a", "b", "a", "c", "a"]
            .into_iter()
            .map(|k| named.name(k))
            .collect();
        assert_eq!(names, [0, 1, 0, 2, 0]);
        assert_eq!(named.keys(), ["a", "b", "c"]);
        let mut values = vec![Some("A".to_owned()), Some("B".to_owned()), None];
        let handed: Vec<Option<String>> = names
            .iter()
            .map(|&i| named.hand_out(&mut values, i))
            .collect();
        assert_eq!(
            handed,
            [Some("A"), Some("B"), Some("A"), None, Some("A")].map(|v| v.map(str::to_owned))
        );
        // The last name of each took the value itself.
        assert_eq!(values, [None, None, None]);
    }
}
