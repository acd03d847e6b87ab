//! Which `checkpoint_blobs` rows a page of checkpoints names, read from the page's
//! own documents.
//!
//! A checkpoint's blobs are those its `channel_versions` names (PostgresSaver joins
//! `jsonb_each_text(checkpoint -> 'channel_versions')` with the blobs' channel and
//! version). Joining that on the server read every checkpoint's JSONB a second time,
//! looked up every blob of the checkpoint's thread for each checkpoint, and sent a
//! blob once per checkpoint naming it (most blobs are named by many checkpoints: 170 000
//! rows for 39 000 blobs in the bench fixture). The page already holds each document
//! as PostgreSQL's own text, so the names are read from it here, and the server is
//! asked for each named blob once, by its primary key.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::json_text;
use crate::stores::named_once::NamedOnce;

/// A blob's key: thread, namespace, channel, version.
type BlobKey = (String, String, String, String);

/// The blobs a page's checkpoints name, each key once (the blobs query's
/// parameters), and per checkpoint the indices of its own.
#[derive(Default)]
pub(super) struct BlobRefs {
    named: NamedOnce<BlobKey>,
    /// Per page row: the indices of the blobs it names, by channel (bytewise); or
    /// why its `channel_versions` names none that could be looked up.
    pub(super) by_row: Vec<Result<Vec<usize>, String>>,
}

impl BlobRefs {
    /// Adds the next page row: its thread, namespace and document text (`None`: a
    /// row whose key or document could not be read names no blob).
    pub(super) fn push_row(&mut self, row: Option<(&str, &str, &str)>) {
        let Some((thread, namespace, document)) = row else {
            self.by_row.push(Ok(Vec::new()));
            return;
        };
        let named = channel_versions(document).map(|named| {
            named
                .into_iter()
                .map(|(channel, version)| {
                    let key = (thread.to_owned(), namespace.to_owned(), channel, version);
                    self.named.name(key)
                })
                .collect()
        });
        self.by_row.push(named);
    }

    /// How many distinct blobs the rows name (the blobs query is sent when any).
    pub(super) fn len(&self) -> usize {
        self.named.keys().len()
    }

    /// The blobs query's four array parameters: thread, namespace, channel and
    /// version of each distinct blob, blob `i` at `i`.
    pub(super) fn columns(&self) -> [Vec<&str>; 4] {
        let keys = self.named.keys();
        [
            keys.iter().map(|k| k.0.as_str()).collect(),
            keys.iter().map(|k| k.1.as_str()).collect(),
            keys.iter().map(|k| k.2.as_str()).collect(),
            keys.iter().map(|k| k.3.as_str()).collect(),
        ]
    }

    /// Blob `i`'s channel and version.
    pub(super) fn channel_version(&self, i: usize) -> (&str, &str) {
        let key = &self.named.keys()[i];
        (&key.2, &key.3)
    }

    /// Blob `i`'s value for one row naming it (see [`NamedOnce::hand_out`]).
    pub(super) fn hand_out<T: Clone>(&mut self, values: &mut [Option<T>], i: usize) -> Option<T> {
        self.named.hand_out(values, i)
    }
}

/// The (channel, version) pairs of a checkpoint document's `channel_versions`, by
/// channel (bytewise), each version as `jsonb_each_text` gives it: a string unescaped, a `null` left out (it
/// equals no version), anything else as its text in the document (PostgreSQL prints
/// a JSONB value the same way inside the document and alone).
///
/// A document that is not an object, or has no `channel_versions`, names no blob
/// (`->` gives SQL NULL there). A `channel_versions` that is not an object is an
/// error: the server's join failed the whole batch on it; here it is that
/// checkpoint's reason to go to the dead-letter file.
pub(super) fn channel_versions(document: &str) -> Result<Vec<(String, String)>, String> {
    let unreadable = |e: serde_json::Error| format!("unreadable checkpoint document: {e}");
    // A document that is no object gives no field, as `->` gives SQL NULL.
    let [channel_versions] =
        json_text::object_fields(document, ["channel_versions"]).map_err(unreadable)?;
    let Some(raw) = channel_versions else {
        return Ok(Vec::new());
    };
    if !raw.get().starts_with('{') {
        return Err(format!(
            "channel_versions is not an object but {}: its blobs cannot be named",
            raw.get()
        ));
    }
    let versions: BTreeMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(unreadable)?;
    let mut named = Vec::with_capacity(versions.len());
    for (channel, value) in versions {
        let text = value.get();
        let version = match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(text).map_err(unreadable)?,
            _ if text == "null" => continue,
            _ => text.to_owned(),
        };
        named.push((channel, version));
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(c, v)| ((*c).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn versions_read_as_jsonb_each_text_gives_them() {
        let doc = r#"{"v": 4, "channel_values": {"x": {"channel_versions": {"no": "1"}}}, "channel_versions": {"a\"b": "00000003.0.1\n", "n": 2, "f": 1.50, "big": 123456789012345678901234567890, "t": true, "o": {"k": [1, 2]}, "gone": null}, "versions_seen": {}}"#;
        assert_eq!(
            channel_versions(doc).unwrap(),
            pairs(&[
                ("a\"b", "00000003.0.1\n"),
                ("big", "123456789012345678901234567890"),
                ("f", "1.50"),
                ("n", "2"),
                ("o", r#"{"k": [1, 2]}"#),
                ("t", "true"),
            ])
        );
    }

    #[test]
    fn documents_without_channel_versions_name_no_blob() {
        for doc in [
            "null",
            "[1, 2]",
            r#""text""#,
            "{}",
            r#"{"channel_versions_x": {"a": "1"}}"#,
            r#" {"channel_versions": {}}"#,
        ] {
            assert_eq!(channel_versions(doc).unwrap(), Vec::new(), "{doc}");
        }
    }

    #[test]
    fn channel_versions_that_is_no_object_is_the_checkpoints_error() {
        for doc in [
            r#"{"channel_versions": null}"#,
            r#"{"channel_versions": ["a"]}"#,
            r#"{"channel_versions": "1"}"#,
        ] {
            let e = channel_versions(doc).unwrap_err();
            assert!(e.contains("channel_versions is not an object"), "{e}");
        }
        assert!(
            channel_versions("{not json")
                .unwrap_err()
                .contains("unreadable")
        );
    }

    #[test]
    fn a_blob_named_by_many_checkpoints_is_asked_for_once() {
        let mut refs = BlobRefs::default();
        refs.push_row(Some((
            "t1",
            "",
            r#"{"channel_versions": {"m": "2", "a": "1"}}"#,
        )));
        refs.push_row(Some((
            "t1",
            "",
            r#"{"channel_versions": {"m": "2", "a": "3"}}"#,
        )));
        refs.push_row(Some(("t2", "", r#"{"channel_versions": {"m": "2"}}"#)));
        refs.push_row(None);
        refs.push_row(Some(("t2", "", r#"{"channel_versions": 5}"#)));
        assert_eq!(refs.len(), 4);
        let [threads, namespaces, channels, versions] = refs.columns();
        assert_eq!(threads, ["t1", "t1", "t1", "t2"]);
        assert_eq!(namespaces, ["", "", "", ""]);
        assert_eq!(channels, ["a", "m", "a", "m"]);
        assert_eq!(versions, ["1", "2", "3", "2"]);
        assert_eq!(refs.by_row[0], Ok(vec![0, 1]));
        assert_eq!(refs.by_row[1], Ok(vec![2, 1]));
        assert_eq!(refs.by_row[2], Ok(vec![3]));
        assert_eq!(refs.by_row[3], Ok(vec![]));
        assert!(refs.by_row[4].is_err());
        assert_eq!(refs.channel_version(2), ("a", "3"));
        assert_eq!(BlobRefs::default().len(), 0);
    }
}
