//! LangGraph's msgpack straight to the view's compact JSON text, with no tree on the
//! way: the text is, byte for byte, what the tree path ([`super::view_of_bytes`], then
//! [`crate::json_text`]) writes for the same bytes.
//!
//! Why: when the destination only writes the view out (JSON, Parquet), building a
//! `serde_json` tree per value (a hashed, ordered map per msgpack map, a `String` per
//! key and string) and freeing it again was most of a decoded export's work.
//!
//! What is streamed: every plain msgpack value, LangChain messages and documents
//! (pydantic extensions whose rendering is LangChain's `dumpd` form), which are most
//! of an agent's state, and other pydantic models (their fields plus `__type__`). Everything else with a rule of its own (other extensions,
//! non-string map keys) is rendered by the tree path on the spot and its tree
//! written out; so is a map whose keys collide once rendered (the tree keeps the
//! first position and the last value), from that map's first byte again.
//!
//! A message (any extension of a fair size) a thread's earlier checkpoint held is
//! written again from its text of then ([`super::ext_cache`]): each checkpoint holds
//! the whole conversation so far.

use rustc_hash::FxHasher;
use std::hash::Hasher;

use super::super::DecodeError;
use super::super::langchain;
use super::super::python::{self, Style};
use super::ext_cache::{self, ExtKey};
use super::{
    EXT_CONSTRUCTOR_KW_ARGS, EXT_CONSTRUCTOR_SINGLE_ARG, EXT_METHOD_SINGLE_ARG, EXT_PYDANTIC_V1,
    EXT_PYDANTIC_V2, MAX_DEPTH, STACK_RED_ZONE, STACK_SEGMENT, ViewReader,
};
use crate::json_text::{self, TextBuf as _};

/// The view of the one msgpack value `bytes` holds, as compact JSON text; notices as
/// [`super::view_of_bytes`] gives them.
pub fn view_text_of_bytes(bytes: &[u8], notices: &mut Vec<String>) -> Result<String, DecodeError> {
    let mut writer = TextWriter::new(bytes, notices);
    writer.value(Style::Python, 0)?;
    writer.finish()
}

/// Channel values stored apart from the document (PostgreSQL's and Redis's blobs):
/// each channel with its value's view as text, in the record's order.
pub type ChannelTexts = Vec<(String, String)>;

/// A checkpoint document's view as text, with its top-level `ts` when that is a
/// string. `None` when the document is not a msgpack map (the tree path says why).
///
/// With `channel_values`, those are set in the document's `channel_values` map as
/// the tree path sets them (a new channel after the stored ones; the map added last
/// when the document has none). A channel the document also holds is an error here:
/// the tree path replaces that value in place.
pub fn document_text(
    bytes: &[u8],
    channel_values: Option<ChannelTexts>,
    notices: &mut Vec<String>,
) -> Result<Option<(String, Option<String>)>, DecodeError> {
    if !is_map(bytes.first()) {
        return Ok(None);
    }
    let mut writer = TextWriter::new(bytes, notices);
    writer.channel_values = channel_values;
    writer.value(Style::Python, 0)?;
    if writer.channel_values.is_some() {
        return Err(left_to_the_tree());
    }
    let ts = writer.top_ts.take();
    Ok(Some((writer.finish()?, ts)))
}

/// What the text path cannot write exactly: a map whose keys collide while entries
/// are merged into it (channel values, a model's `__type__`). The caller takes the
/// tree path for the whole record.
fn left_to_the_tree() -> DecodeError {
    DecodeError::Shape("left to the tree path".into())
}

fn is_map(marker: Option<&u8>) -> bool {
    matches!(marker, Some(0x80..=0x8f | 0xde | 0xdf))
}

/// Writes the view's text while it reads the msgpack.
struct TextWriter<'a, 'n> {
    reader: ViewReader<'a>,
    /// UTF-8 by construction (strings are checked as they are copied), made a
    /// `String` once at the end.
    out: Vec<u8>,
    notices: &'n mut Vec<String>,
    /// Hashes of the keys of the maps being written, innermost last (one buffer for
    /// every level, so a map costs no allocation of its own).
    key_hashes: Vec<u64>,
    /// The top-level map's `ts`, when it is a string.
    top_ts: Option<String>,
    /// How many values the tree path rendered (the tests check what is streamed).
    trees: usize,
    /// Channel values to set in the top-level map's `channel_values`; taken when set.
    channel_values: Option<ChannelTexts>,
}

impl<'a, 'n> TextWriter<'a, 'n> {
    fn new(bytes: &'a [u8], notices: &'n mut Vec<String>) -> Self {
        Self {
            reader: ViewReader { bytes, pos: 0 },
            out: Vec::with_capacity(bytes.len() + bytes.len() / 2),
            notices,
            key_hashes: Vec::new(),
            top_ts: None,
            trees: 0,
            channel_values: None,
        }
    }

    fn finish(self) -> Result<String, DecodeError> {
        if self.reader.pos != self.reader.bytes.len() {
            return Err(DecodeError::Msgpack(format!(
                "trailing bytes after the value at byte {} (value of {} bytes)",
                self.reader.pos,
                self.reader.bytes.len()
            )));
        }
        String::from_utf8(self.out)
            .map_err(|e| DecodeError::Msgpack(format!("the view is not UTF-8: {e}")))
    }

    fn value(&mut self, style: Style, depth: usize) -> Result<(), DecodeError> {
        // Only containers and extensions recurse: scalars skip the stack check.
        match self.reader.bytes.get(self.reader.pos) {
            Some(0x80..=0x9f | 0xdc..=0xdf | 0xc7..=0xc9 | 0xd4..=0xd8) => {
                stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, || {
                    self.value_here(style, depth)
                })
            }
            _ => self.value_here(style, depth),
        }
    }

    fn value_here(&mut self, style: Style, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Msgpack(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let start = self.reader.pos;
        let [marker] = self.reader.array::<1>()?;
        match marker {
            0x00..=0x7f => write_integer(&mut self.out, marker),
            0xe0..=0xff => write_integer(&mut self.out, i8::from_be_bytes([marker])),
            0xc0 => self.out.push_text("null"),
            0xc2 => self.out.push_text("false"),
            0xc3 => self.out.push_text("true"),
            0xcc => write_integer(&mut self.out, u8::from_be_bytes(self.reader.array()?)),
            0xcd => write_integer(&mut self.out, u16::from_be_bytes(self.reader.array()?)),
            0xce => write_integer(&mut self.out, u32::from_be_bytes(self.reader.array()?)),
            0xcf => write_integer(&mut self.out, u64::from_be_bytes(self.reader.array()?)),
            0xd0 => write_integer(&mut self.out, i8::from_be_bytes(self.reader.array()?)),
            0xd1 => write_integer(&mut self.out, i16::from_be_bytes(self.reader.array()?)),
            0xd2 => write_integer(&mut self.out, i32::from_be_bytes(self.reader.array()?)),
            0xd3 => write_integer(&mut self.out, i64::from_be_bytes(self.reader.array()?)),
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.string(marker)?;
            }
            0xc4..=0xc6 => {
                let len = self.reader.length(1 << (marker - 0xc4))?;
                let bytes = self.reader.take(len)?;
                match std::str::from_utf8(bytes) {
                    // pydantic's JSON mode writes bytes as their UTF-8 text.
                    Ok(text) if style == Style::PydanticJson => {
                        json_text::write_str(&mut self.out, text)
                    }
                    _ => self.bytes_view(bytes),
                }
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                let len = self.reader.container_len(marker)?;
                self.out.push(b'[');
                for i in 0..len {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(style, depth + 1)?;
                }
                self.out.push(b']');
            }
            0x80..=0x8f | 0xde | 0xdf => {
                let len = self.reader.container_len(marker)?;
                self.map(start, len, style, depth)?;
            }
            0xd4..=0xd8 | 0xc7..=0xc9 => {
                if !self.extension(marker, style, depth)? {
                    self.as_tree(start, style, depth)?;
                }
            }
            0xca => {
                let f = f32::from_be_bytes(self.reader.array()?);
                json_text::write_value(&mut self.out, &super::float_in(style, f64::from(f)));
            }
            0xcb => {
                let f = f64::from_be_bytes(self.reader.array()?);
                json_text::write_value(&mut self.out, &super::float_in(style, f));
            }
            // The reserved marker: the tree path's error.
            _ => self.as_tree(start, style, depth)?,
        }
        Ok(())
    }

    /// The string whose marker was just read, written as a JSON string; its UTF-8
    /// bytes, read from the input.
    fn string(&mut self, marker: u8) -> Result<&'a [u8], DecodeError> {
        let len = self.reader.string_len(marker)?;
        let start = self.reader.pos;
        let text = self.reader.take(len)?;
        // The rest of the value from the string on: short strings scan faster.
        json_text::write_utf8(&mut self.out, &self.reader.bytes[start..], len)
            .map_err(|_| DecodeError::Msgpack("string is not valid UTF-8".into()))?;
        Ok(text)
    }

    /// `{"__bytes__": base64}` ([`super::super::python::bytes_view`]), written as is:
    /// base64 needs no escape.
    fn bytes_view(&mut self, bytes: &[u8]) {
        self.out.push_text("{\"__bytes__\":\"");
        json_text::write_base64(&mut self.out, bytes);
        self.out.push_text("\"}");
    }

    /// The value at `start` rendered by the tree path, its tree written out; what was
    /// written from there on (and noticed) is taken back first.
    fn as_tree_from(
        &mut self,
        start: usize,
        written: usize,
        noticed: usize,
        style: Style,
        depth: usize,
    ) -> Result<(), DecodeError> {
        self.out.truncate(written);
        self.notices.truncate(noticed);
        self.reader.pos = start;
        let tree = self.reader.render(self.notices, style, depth)?;
        self.trees += 1;
        if depth == 0 {
            self.top_ts = tree.get("ts").and_then(|t| t.as_str()).map(str::to_owned);
        }
        json_text::write_value(&mut self.out, &tree);
        Ok(())
    }

    fn as_tree(&mut self, start: usize, style: Style, depth: usize) -> Result<(), DecodeError> {
        let (written, noticed) = (self.out.len(), self.notices.len());
        self.as_tree_from(start, written, noticed, style, depth)
    }

    /// The map starting at `start`, whose header (`len` entries) was just read.
    fn map(
        &mut self,
        start: usize,
        len: usize,
        style: Style,
        depth: usize,
    ) -> Result<(), DecodeError> {
        self.map_with(start, len, style, depth, Vec::new())
    }

    /// [`TextWriter::map`], with `extra` entries (key, value text) after its own.
    fn map_with(
        &mut self,
        start: usize,
        len: usize,
        style: Style,
        depth: usize,
        extra: ChannelTexts,
    ) -> Result<(), DecodeError> {
        let (written, noticed) = (self.out.len(), self.notices.len());
        let keys_from = self.key_hashes.len();
        // Merging entries the tree path would merge differently cannot be undone by
        // rendering this map alone.
        let merging = !extra.is_empty() || (depth == 0 && self.channel_values.is_some());
        self.out.push(b'{');
        for i in 0..len {
            if i > 0 {
                self.out.push(b',');
            }
            let (key_at, key_end) = self.entry_key(style, depth + 1)?;
            let value_at = self.out.len();
            let key = &self.out[key_at..key_end];
            if depth == 0 && key == b"\"channel_values\"" && self.channel_values.is_some() {
                let channels = self.channel_values.take().unwrap_or_default();
                let values_at = self.reader.pos;
                let [marker] = self.reader.array::<1>()?;
                if !is_map(Some(&marker)) {
                    return Err(left_to_the_tree());
                }
                let values_len = self.reader.container_len(marker)?;
                self.map_with(values_at, values_len, style, depth + 1, channels)?;
            } else {
                self.value(style, depth + 1)?;
            }
            if depth == 0 && &self.out[key_at..key_end] == b"\"ts\"" {
                self.top_ts = serde_json::from_slice::<String>(&self.out[value_at..]).ok();
            }
        }
        let mut entries = len;
        for (key, value) in extra {
            self.extra_key(&mut entries, &key);
            self.out.push_text(&value);
        }
        if depth == 0
            && let Some(channels) = self.channel_values.take()
        {
            // No `channel_values` in the document: the tree path adds the map last.
            self.extra_key(&mut entries, "channel_values");
            self.map_with(self.reader.pos, 0, style, depth + 1, channels)?;
        }
        self.out.push(b'}');
        let collide = keys_collide(&mut self.key_hashes[keys_from..]);
        self.key_hashes.truncate(keys_from);
        if collide && merging {
            return Err(left_to_the_tree());
        }
        if collide {
            self.as_tree_from(start, written, noticed, style, depth)?;
        }
        Ok(())
    }

    /// The key of one more entry of the map being written (its value comes next),
    /// after `entries` entries.
    fn extra_key(&mut self, entries: &mut usize, key: &str) {
        if *entries > 0 {
            self.out.push(b',');
        }
        *entries += 1;
        json_text::write_str(&mut self.out, key);
        self.key_hashes.push(hash(key.as_bytes()));
        self.out.push(b':');
    }

    /// The map key at the reader written with its colon, its hash kept for the
    /// collision check; where its text starts and ends in the output.
    fn entry_key(&mut self, style: Style, depth: usize) -> Result<(usize, usize), DecodeError> {
        let key_at = self.out.len();
        let key_hash = self.key(style, depth)?;
        let key_end = self.out.len();
        self.key_hashes.push(key_hash);
        self.out.push(b':');
        Ok((key_at, key_end))
    }

    /// A map key as the tree path's `key` gives it, written as a JSON string; the
    /// hash of the key itself (its text before escaping).
    ///
    /// Why not hash the JSON text written: two keys' JSON texts are equal exactly when
    /// the keys are (the escape is one-to-one), and a string key's bytes are read from
    /// the input, not from text stored a moment ago (reading those back stalled on
    /// the stores still in flight: hashing was most of this function's time).
    fn key(&mut self, style: Style, depth: usize) -> Result<u64, DecodeError> {
        match self.reader.bytes.get(self.reader.pos) {
            Some(&marker @ (0xa0..=0xbf | 0xd9..=0xdb)) => {
                self.reader.pos += 1;
                Ok(hash(self.string(marker)?))
            }
            _ => {
                let key = self.reader.key(self.notices, style, depth)?;
                json_text::write_str(&mut self.out, &key);
                Ok(hash(key.as_bytes()))
            }
        }
    }

    /// An extension whose marker was just read, written when it is one of the common
    /// shapes: a pydantic model ([`TextWriter::constructor_form`]), a datetime, a UUID
    /// or a dataclass ([`TextWriter::python_object`]). `false`, with nothing written,
    /// for any other extension (the caller renders it from its first byte again).
    fn extension(&mut self, marker: u8, style: Style, depth: usize) -> Result<bool, DecodeError> {
        let len = match marker {
            0xc7 => self.reader.length(1)?,
            0xc8 => self.reader.length(2)?,
            0xc9 => self.reader.length(4)?,
            _ => 1 << (marker - 0xd4),
        };
        let [code] = self.reader.array::<1>()?;
        let code = i8::from_be_bytes([code]);
        let data = self.reader.take(len)?;
        if !matches!(
            code,
            EXT_PYDANTIC_V1
                | EXT_PYDANTIC_V2
                | EXT_CONSTRUCTOR_SINGLE_ARG
                | EXT_CONSTRUCTOR_KW_ARGS
                | EXT_METHOD_SINGLE_ARG
        ) {
            return Ok(false);
        }
        // A message the thread's earlier checkpoints held already: its text again.
        let key = ExtKey::new(code, style, depth, data);
        let cached = data.len() >= ext_cache::MIN_PAYLOAD;
        if cached
            && ext_cache::with_written(&key, |written| {
                self.out.extend_from_slice(&written.text);
                self.notices.extend_from_slice(&written.notices);
                self.trees += written.trees;
            })
        {
            return Ok(true);
        }
        let (written_at, noticed, trees) = (self.out.len(), self.notices.len(), self.trees);
        // The payload is `[module, class, fields, method?]`, read with a reader of its
        // own; the outer one is past the extension already.
        let outer = std::mem::replace(
            &mut self.reader,
            ViewReader {
                bytes: data,
                pos: 0,
            },
        );
        let written = match code {
            EXT_PYDANTIC_V1 | EXT_PYDANTIC_V2 => self.constructor_form(code, style, depth + 1),
            _ => self.python_object(code, style, depth + 1),
        };
        self.reader = outer;
        if cached && matches!(written, Ok(true)) {
            ext_cache::keep(
                &key,
                &self.out[written_at..],
                &self.notices[noticed..],
                self.trees - trees,
            );
        }
        written
    }

    /// The payload at the reader of a constructor or method extension, written when
    /// the tree path's rule for it is one of the common ones: a `datetime.datetime`
    /// (its ISO text; `Z` for UTC in pydantic's JSON mode), a `uuid.UUID` (hyphenated)
    /// and the field map of a class with no rule by name (a dataclass). `false`
    /// (nothing written) for everything else.
    fn python_object(&mut self, code: i8, style: Style, depth: usize) -> Result<bool, DecodeError> {
        let Some((count, module, name)) = self.payload_head(depth)? else {
            return Ok(false);
        };
        let single_arg = matches!(code, EXT_CONSTRUCTOR_SINGLE_ARG | EXT_METHOD_SINGLE_ARG);
        match (module, name) {
            ("datetime", "datetime") if single_arg => {
                let Some(iso) = self.reader.str_ref()? else {
                    return Ok(false);
                };
                if style == Style::PydanticJson {
                    json_text::write_str(&mut self.out, &python::utc_as_z(iso.to_owned()));
                } else {
                    json_text::write_str(&mut self.out, iso);
                }
            }
            ("uuid", "UUID") if code == EXT_CONSTRUCTOR_SINGLE_ARG => {
                let Some(hex) = self.reader.str_ref()? else {
                    return Ok(false);
                };
                json_text::write_str(&mut self.out, &python::hyphenate_uuid(hex));
            }
            _ if code == EXT_CONSTRUCTOR_KW_ARGS && !python::has_rule_by_name(module) => {
                let start = self.reader.pos;
                if !is_map(self.reader.bytes.get(start)) {
                    return Ok(false);
                }
                let [marker] = self.reader.array::<1>()?;
                let len = self.reader.container_len(marker)?;
                self.map(start, len, style, depth)?;
            }
            _ => return Ok(false),
        }
        self.method_name(count)?;
        Ok(true)
    }

    /// The constructor form of the pydantic payload at the reader; `false` (nothing
    /// written) when it is not a LangChain class with a field map.
    fn constructor_form(
        &mut self,
        code: i8,
        style: Style,
        depth: usize,
    ) -> Result<bool, DecodeError> {
        let Some((count, module, name)) = self.payload_head(depth)? else {
            return Ok(false);
        };
        let fields_at = self.reader.pos;
        if !is_map(self.reader.bytes.get(fields_at)) {
            return Ok(false);
        }
        if !langchain::is_serializable(module) {
            return self.model_fields(code, module, name, count, style, depth);
        }
        let [marker] = self.reader.array::<1>()?;
        let len = self.reader.container_len(marker)?;
        let (written, noticed) = (self.out.len(), self.notices.len());
        let keys_from = self.key_hashes.len();
        self.out
            .push_text("{\"lc\":1,\"type\":\"constructor\",\"id\":");
        json_text::write_array(
            &mut self.out,
            langchain::constructor_id(module, name),
            json_text::write_str,
        );
        self.out.push_text(",\"kwargs\":{");
        let added = langchain::added_fields(name);
        let mut added_present = [false; 2];
        let mut kept = 0;
        for _ in 0..len {
            let entry_at = self.out.len();
            if kept > 0 {
                self.out.push(b',');
            }
            let (key_at, key_end) = self.entry_key(style, depth + 1)?;
            let value_at = self.out.len();
            self.value(style, depth + 1)?;
            // The key's text between its quotes is the key itself whenever it can
            // equal a field name LangChain knows (those need no escape).
            let key = &self.out[key_at + 1..key_end - 1];
            let truthy = langchain::is_truthy_text(&self.out[value_at..]);
            if langchain::keeps_field(name, key, truthy) {
                if let Some(i) = added.iter().position(|a| a.as_bytes() == key) {
                    added_present[i] = true;
                }
                kept += 1;
            } else {
                self.out.truncate(entry_at);
            }
        }
        for (attr, present) in added.iter().zip(added_present) {
            if !present {
                if kept > 0 {
                    self.out.push(b',');
                }
                json_text::write_str(&mut self.out, attr);
                self.out.push_text(":[]");
                kept += 1;
            }
        }
        self.out.push_text("}}");
        let collide = keys_collide(&mut self.key_hashes[keys_from..]);
        self.key_hashes.truncate(keys_from);
        if collide {
            self.out.truncate(written);
            self.notices.truncate(noticed);
            return Ok(false);
        }
        self.method_name(count)?;
        Ok(true)
    }

    /// The head of an extension's payload at the reader, `[module, class, payload,
    /// method?]`: its item count and the two names, the reader then at the payload.
    /// `None` when it is not that shape (or nested too deep): the tree path decides.
    fn payload_head(
        &mut self,
        depth: usize,
    ) -> Result<Option<(usize, &'a str, &'a str)>, DecodeError> {
        if depth > MAX_DEPTH {
            return Ok(None);
        }
        let Some(count) = self.reader.array_len()? else {
            return Ok(None);
        };
        if count < 3 {
            return Ok(None);
        }
        match (self.reader.str_ref()?, self.reader.str_ref()?) {
            (Some(module), Some(name)) => Ok(Some((count, module, name))),
            _ => Ok(None),
        }
    }

    /// The method name that may follow an extension's payload, read (and checked) as
    /// the tree path reads it, then ignored.
    fn method_name(&mut self, count: usize) -> Result<(), DecodeError> {
        if count >= 4 {
            self.reader.str_ref()?;
        }
        Ok(())
    }

    /// A pydantic model of a class with no rule by name, its field map (whose marker
    /// is at the reader) written as the tree path renders it: the fields in pydantic's
    /// JSON mode (v2) or as they are (v1), then `__type__`. A field of that name, or
    /// keys that collide, leave the record to the tree path.
    fn model_fields(
        &mut self,
        code: i8,
        module: &str,
        name: &str,
        count: usize,
        style: Style,
        depth: usize,
    ) -> Result<bool, DecodeError> {
        if python::has_rule_by_name(module) {
            return Ok(false);
        }
        let style = if code == EXT_PYDANTIC_V2 {
            Style::PydanticJson
        } else {
            style
        };
        let start = self.reader.pos;
        let [marker] = self.reader.array::<1>()?;
        let len = self.reader.container_len(marker)?;
        let mut type_name = String::new();
        json_text::write_str(&mut type_name, &format!("{module}.{name}"));
        self.map_with(
            start,
            len,
            style,
            depth,
            vec![("__type__".into(), type_name)],
        )?;
        self.method_name(count)?;
        Ok(true)
    }
}

fn write_integer(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn hash(key: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(key);
    hasher.finish()
}

/// Whether two of a map's key hashes are equal (then its keys may collide, and the
/// tree path decides). Reorders `hashes`.
fn keys_collide(hashes: &mut [u64]) -> bool {
    if hashes.len() <= 16 {
        return hashes
            .iter()
            .enumerate()
            .any(|(i, h)| hashes[i + 1..].contains(h));
    }
    hashes.sort_unstable();
    hashes.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use super::super::tests::{a_datetime, every_scalar_width, ext, pack};
    use super::*;
    use rmpv::Value as Mp;

    fn map(entries: Vec<(Mp, Mp)>) -> Mp {
        Mp::Map(entries)
    }

    fn message(class: &str, module: &str, fields: Vec<(&str, Mp)>) -> Mp {
        ext(
            EXT_PYDANTIC_V2,
            vec![
                module.into(),
                class.into(),
                map(fields.into_iter().map(|(k, v)| (k.into(), v)).collect()),
                "model_validate_json".into(),
            ],
        )
    }

    /// The text path gives the tree path's text and notices, or fails where it fails;
    /// how many values it left to the tree path.
    fn same_as_tree(bytes: &[u8]) -> usize {
        let mut tree_notices = Vec::new();
        let tree =
            super::super::view_of_bytes(bytes, &mut tree_notices).map(|v| json_text::to_string(&v));
        let mut text_notices = Vec::new();
        let mut writer = TextWriter::new(bytes, &mut text_notices);
        let text = writer.value(Style::Python, 0);
        let trees = writer.trees;
        let text = text.and_then(|()| writer.finish());
        match (tree, text) {
            (Ok(tree), Ok(text)) => {
                assert_eq!(text, tree, "for {bytes:02x?}");
                assert_eq!(text_notices, tree_notices, "for {bytes:02x?}");
            }
            (Err(_), Err(_)) => {}
            // The caller decodes the whole record by the tree path.
            (Ok(_), Err(e)) if e == left_to_the_tree() => return usize::MAX,
            (tree, text) => panic!("tree {tree:?}, text {text:?}, for {bytes:02x?}"),
        }
        trees
    }

    /// [`same_as_tree`], and nothing was left to the tree path.
    fn streamed(value: &Mp) {
        assert_eq!(same_as_tree(&pack(value)), 0, "for {value}");
    }

    /// [`same_as_tree`], and something was left to the tree path.
    fn not_streamed(value: &Mp) {
        assert!(same_as_tree(&pack(value)) > 0, "for {value}");
    }

    #[test]
    fn langchain_messages_keep_what_dumpd_keeps() {
        let ai = |tool_calls: Mp| {
            message(
                "AIMessage",
                "langchain_core.messages.ai",
                vec![
                    ("content", "".into()),
                    ("additional_kwargs", map(vec![])),
                    ("response_metadata", map(vec![("n".into(), 0.into())])),
                    ("type", "ai".into()),
                    ("name", Mp::Nil),
                    ("id", "run-1".into()),
                    ("tool_calls", tool_calls),
                    ("zero", Mp::F64(-0.0)),
                    ("small", Mp::F64(1e-300)),
                    ("flag", Mp::Boolean(false)),
                    ("usage_metadata", Mp::Nil),
                ],
            )
        };
        // Dropped and added again after the kept fields, or kept in place.
        streamed(&ai(Mp::Array(vec![])));
        streamed(&ai(Mp::Array(vec![map(vec![("name".into(), "f".into())])])));
        streamed(&message(
            "ToolMessage",
            "langchain_core.messages.tool",
            vec![("content", "".into()), ("tool_call_id", "".into())],
        ));
        streamed(&message(
            "Document",
            "langchain_core.documents.base",
            vec![("page_content", "".into()), ("metadata", map(vec![]))],
        ));
        // pydantic v1, no method name, a method that is not a string.
        let fields = map(vec![("content".into(), "hi".into())]);
        let human = |code, tail: Vec<Mp>| {
            let mut parts = vec![
                "langchain_core.messages.human".into(),
                "HumanMessageChunk".into(),
                fields.clone(),
            ];
            parts.extend(tail);
            ext(code, parts)
        };
        streamed(&human(EXT_PYDANTIC_V1, vec![]));
        streamed(&human(EXT_PYDANTIC_V2, vec![7.into()]));
        streamed(&human(EXT_PYDANTIC_V2, vec!["m".into(), "extra".into()]));
        // A field whose view is falsy only once rendered (an enum member of ""), and
        // one with a key that is not a string.
        not_streamed(&message(
            "HumanMessage",
            "langchain_core.messages.human",
            vec![
                ("content", "x".into()),
                ("status", ext(0, vec!["app".into(), "S".into(), "".into()])),
            ],
        ));
        streamed(&ext(
            EXT_PYDANTIC_V2,
            vec![
                "langchain_core.messages.human".into(),
                "HumanMessage".into(),
                map(vec![
                    (Mp::from(0), "zero".into()),
                    ("content".into(), "x".into()),
                ]),
            ],
        ));
    }

    #[test]
    fn datetimes_uuids_and_dataclasses_stream_as_their_rules_render_them() {
        let object = |code, module: &str, class: &str, payload: Mp, method: Option<&str>| {
            let mut parts = vec![module.into(), class.into(), payload];
            parts.extend(method.map(Mp::from));
            ext(code, parts)
        };
        let datetime = |iso: &str| {
            object(
                EXT_METHOD_SINGLE_ARG,
                "datetime",
                "datetime",
                iso.into(),
                Some("fromisoformat"),
            )
        };
        let uuid = |hex: &str| object(EXT_CONSTRUCTOR_SINGLE_ARG, "uuid", "UUID", hex.into(), None);
        let dataclass = |fields: Vec<(Mp, Mp)>| {
            object(
                EXT_CONSTRUCTOR_KW_ARGS,
                "app.models",
                "OrderRef",
                map(fields),
                None,
            )
        };
        streamed(&datetime("2024-05-01T12:30:00+00:00"));
        streamed(&datetime("2024-05-01T12:30:00.123456+02:00"));
        streamed(&uuid("0123456789abcdef0123456789abcdef"));
        streamed(&uuid("not a uuid"));
        streamed(&dataclass(vec![
            ("id".into(), "o-1".into()),
            ("when".into(), datetime("2024-05-01T12:30:00+00:00")),
            ("owner".into(), uuid("0123456789abcdef0123456789abcdef")),
            ("lines".into(), Mp::Array(vec![1.into(), Mp::F64(2.5)])),
        ]));
        // Inside a pydantic v2 model (pydantic's JSON mode: UTC written as `Z`).
        streamed(&ext(
            EXT_PYDANTIC_V2,
            vec![
                "app.models".into(),
                "Customer".into(),
                map(vec![
                    ("since".into(), datetime("2024-05-01T12:30:00+00:00")),
                    ("ref".into(), dataclass(vec![("id".into(), "o-2".into())])),
                ]),
            ],
        ));
        // Other shapes keep the tree path's rules (and its errors).
        not_streamed(&object(
            EXT_CONSTRUCTOR_SINGLE_ARG,
            "builtins",
            "set",
            Mp::Array(vec!["b".into(), "a".into()]),
            None,
        ));
        not_streamed(&datetime_with(Mp::from(5)));
        not_streamed(&object(
            EXT_CONSTRUCTOR_KW_ARGS,
            "datetime",
            "datetime",
            map(vec![("year".into(), 2024.into())]),
            None,
        ));
        same_as_tree(&pack(&dataclass(vec![
            ("a".into(), 1.into()),
            ("a".into(), 2.into()),
        ])));
        same_as_tree(&pack(&object(
            EXT_CONSTRUCTOR_KW_ARGS,
            "app.models",
            "OrderRef",
            "not a map".into(),
            None,
        )));
    }

    fn datetime_with(payload: Mp) -> Mp {
        ext(
            EXT_METHOD_SINGLE_ARG,
            vec!["datetime".into(), "datetime".into(), payload],
        )
    }

    #[test]
    fn pydantic_models_stream_unless_a_rule_or_a_collision_says_otherwise() {
        let model = |code, module: &str, fields: Vec<(Mp, Mp)>| {
            ext(code, vec![module.into(), "Profile".into(), map(fields)])
        };
        let fields = || {
            vec![
                ("name".into(), "Ada \"L\"".into()),
                ("photo".into(), Mp::Binary(b"png".to_vec())),
                ("score".into(), Mp::F64(f64::NAN)),
                ("tags".into(), Mp::Array(vec!["a".into()])),
                (
                    "nested".into(),
                    model(
                        EXT_PYDANTIC_V1,
                        "app",
                        vec![("b".into(), Mp::Binary(vec![1]))],
                    ),
                ),
            ]
        };
        streamed(&model(EXT_PYDANTIC_V2, "app.models", fields()));
        streamed(&model(EXT_PYDANTIC_V1, "app.models", fields()));
        streamed(&model(EXT_PYDANTIC_V2, "app.models", vec![]));
        // A module with rules by name; a `__type__` field; colliding keys.
        not_streamed(&model(EXT_PYDANTIC_V2, "datetime", fields()));
        let mut typed = fields();
        typed.push(("__type__".into(), "mine".into()));
        not_streamed(&model(EXT_PYDANTIC_V2, "app.models", typed));
        let mut twice = fields();
        twice.push(("name".into(), "again".into()));
        not_streamed(&model(EXT_PYDANTIC_V2, "app.models", twice));
    }

    /// A message written again (a thread's later checkpoints hold its earlier ones'
    /// messages) comes from the cache with the same text, notices and tree count; a
    /// record of another thread starts the cache over.
    #[test]
    fn a_threads_repeated_messages_are_written_from_the_cache() {
        super::ext_cache::enter_thread("thread-1");
        // An unknown extension inside: rendered by the tree path, with a notice.
        let m = message(
            "HumanMessage",
            "langchain_core.messages.human",
            vec![
                (
                    "content",
                    "a message long enough to be kept, with \"quotes\"".into(),
                ),
                ("id", Mp::Ext(9, vec![1, 2])),
            ],
        );
        let Mp::Ext(code, payload) = &m else {
            unreachable!()
        };
        let key = ExtKey::new(*code, Style::Python, 1, payload);
        let kept = || super::ext_cache::with_written(&key, |_| {});
        assert!(!kept());
        // Each of the two copies counts its tree, the second one from the cache.
        assert_eq!(
            same_as_tree(&pack(&Mp::Array(vec![m.clone(), m.clone()]))),
            2
        );
        assert!(kept());
        assert_eq!(same_as_tree(&pack(&Mp::Array(vec![m.clone()]))), 1);
        // At another depth the nesting limit may differ: written anew.
        assert_eq!(same_as_tree(&pack(&m)), 1);
        super::ext_cache::enter_thread("thread-1");
        assert!(kept());
        super::ext_cache::enter_thread("thread-2");
        assert!(!kept());
    }

    #[test]
    fn colliding_keys_are_left_to_the_tree() {
        let unknown = Mp::Ext(9, vec![1, 2]);
        // Twice the same key; a number and a string that render the same; inside a
        // message's fields; with a notice made inside the map (noticed once).
        not_streamed(&map(vec![
            ("a".into(), unknown.clone()),
            ("b".into(), 2.into()),
            ("a".into(), 3.into()),
        ]));
        not_streamed(&map(vec![
            (
                "x".into(),
                map(vec![(Mp::from(1), 1.into()), ("1".into(), unknown.clone())]),
            ),
            ("y".into(), 2.into()),
        ]));
        not_streamed(&message(
            "HumanMessage",
            "langchain_core.messages.human",
            vec![
                ("content", "a".into()),
                ("id", unknown),
                ("content", "b".into()),
            ],
        ));
        // Maps larger than the pairwise check, with and without a collision.
        let wide = |dup: bool| {
            let mut entries: Vec<(Mp, Mp)> = (0..40)
                .map(|i| (format!("k{i}").into(), i.into()))
                .collect();
            if dup {
                entries.push(("k7".into(), "again".into()));
            }
            map(entries)
        };
        streamed(&wide(false));
        not_streamed(&wide(true));
        // Keys that need an escape: the same key twice collides, two keys that differ
        // only where one is escaped do not (keys are compared before escaping).
        let escaped =
            |second: &str| map(vec![("a\"\nb".into(), 1.into()), (second.into(), 2.into())]);
        not_streamed(&escaped("a\"\nb"));
        streamed(&escaped("a\"nb"));
        streamed(&escaped("a\\\"\nb"));
    }

    #[test]
    fn plain_values_scalars_and_other_extensions_match_the_tree() {
        let dt = a_datetime();
        let model = ext(
            EXT_PYDANTIC_V2,
            vec![
                "app.models".into(),
                "Profile".into(),
                map(vec![
                    ("photo".into(), Mp::Binary(b"png".to_vec())),
                    ("raw".into(), Mp::Binary(vec![0xff, 0])),
                    ("score".into(), Mp::F64(f64::NAN)),
                    ("at".into(), dt.clone()),
                ]),
            ],
        );
        not_streamed(&map(vec![
            (Mp::from(1), dt.clone()),
            (Mp::Boolean(true), Mp::Binary(vec![0, 255])),
            (Mp::Nil, Mp::F64(0.5)),
            (dt, "keyed by a datetime".into()),
            ("model".into(), model),
            ("text".into(), "tab\t \"quote\" é 🚀 \u{1}".into()),
            ("scalars".into(), every_scalar_width()),
            ("inf".into(), Mp::F64(f64::NEG_INFINITY)),
            ("long".into(), "y".repeat(70_000).into()),
            ("bin".into(), Mp::Binary(vec![7; 70_000])),
            ("unknown".into(), Mp::Ext(9, vec![1, 2, 3])),
            ("empty".into(), map(vec![])),
        ]));
    }

    #[test]
    fn malformed_and_deep_values_fail_where_the_tree_fails() {
        for bytes in [
            &[0xc1][..],
            &[0x92, 0x01],
            &[0x01, 0x02],
            &[0xa3, b'a', 0xff, b'b'],
            &[0x81, 0xa1, b'a'],
            &[0xd6, 0x05, 0x93, 0xa1, b'm'],
        ] {
            same_as_tree(bytes);
        }
        for depth in [1000, 1023, 1024, 1025, 5000] {
            let mut bytes = vec![0x91; depth];
            bytes.push(0xc0);
            same_as_tree(&bytes);
            // A message at the deepest levels.
            let mut bytes = vec![0x91; depth];
            bytes.extend(pack(&message(
                "HumanMessage",
                "langchain_core.messages.human",
                vec![],
            )));
            same_as_tree(&bytes);
        }
    }

    #[test]
    fn the_documents_ts_is_found_as_the_tree_finds_it() {
        let doc = |entries: Vec<(Mp, Mp)>| {
            let bytes = pack(&map(entries));
            document_text(&bytes, None, &mut Vec::new())
                .unwrap()
                .unwrap()
                .1
        };
        assert_eq!(
            doc(vec![("ts".into(), "2025".into())]).as_deref(),
            Some("2025")
        );
        assert_eq!(doc(vec![("ts".into(), 5.into())]), None);
        // Two: the tree keeps the last.
        assert_eq!(
            doc(vec![("ts".into(), "a".into()), ("ts".into(), "b".into())]).as_deref(),
            Some("b")
        );
        // Only the top level's.
        assert_eq!(
            doc(vec![("x".into(), map(vec![("ts".into(), "in".into())]))]),
            None
        );
        assert!(
            document_text(&pack(&Mp::Array(vec![])), None, &mut Vec::new())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn channel_values_stored_apart_are_set_where_the_tree_sets_them() {
        let channels = || {
            Some(vec![
                ("b".to_owned(), "2".to_owned()),
                ("c\n".to_owned(), "[3]".to_owned()),
            ])
        };
        let text = |doc: Mp, channels| {
            document_text(&pack(&doc), channels, &mut Vec::new()).map(|t| t.unwrap().0)
        };
        let values = |entries: Vec<(Mp, Mp)>| ("channel_values".into(), map(entries));
        // Into the stored map, after its entries; or a map added last.
        assert_eq!(
            text(
                map(vec![
                    ("ts".into(), "t".into()),
                    values(vec![("a".into(), 1.into())]),
                    ("v".into(), 4.into()),
                ]),
                channels()
            )
            .unwrap(),
            r#"{"ts":"t","channel_values":{"a":1,"b":2,"c\n":[3]},"v":4}"#
        );
        assert_eq!(
            text(map(vec![("v".into(), 4.into())]), channels()).unwrap(),
            r#"{"v":4,"channel_values":{"b":2,"c\n":[3]}}"#
        );
        assert_eq!(
            text(map(vec![]), Some(Vec::new())).unwrap(),
            r#"{"channel_values":{}}"#
        );
        // Left to the tree path: a channel in both places, a `channel_values` that is
        // not a map, keys that collide in the document.
        for doc in [
            map(vec![values(vec![("b".into(), 1.into())])]),
            map(vec![("channel_values".into(), 5.into())]),
            map(vec![("v".into(), 1.into()), ("v".into(), 2.into())]),
        ] {
            assert!(text(doc, channels()).is_err());
        }
    }
}
