//! JSON trees built from values already made, without serializing them again.
//!
//! `serde_json::json!` turns every value it is given into a new tree through
//! `Serialize` (`to_value`), a `Value` too: a deep copy of the whole subtree, slower
//! than `clone`. Where trees are put together on a hot path (decoded views, Unified
//! Memory payloads), they are moved in with [`object`] instead.

use serde_json::Value;

/// A JSON object of `fields`, in their order, the values moved in.
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}
