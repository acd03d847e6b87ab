//! LangGraph's msgpack (ormsgpack with extension types 0–7) to a plain-JSON view.

use rmpv::Value as Mp;
use serde_json::{Map, Value};

use super::DecodeError;
use super::python::{self, PyKind, PyObject, Style};

pub mod ext_cache;
mod text;
pub use text::{ChannelTexts, document_text, view_text_of_bytes};

// LangGraph's msgpack extension codes (`langgraph.checkpoint.serde.jsonplus`).
pub const EXT_CONSTRUCTOR_SINGLE_ARG: i8 = 0;
pub const EXT_CONSTRUCTOR_POS_ARGS: i8 = 1;
pub const EXT_CONSTRUCTOR_KW_ARGS: i8 = 2;
pub const EXT_METHOD_SINGLE_ARG: i8 = 3;
pub const EXT_PYDANTIC_V1: i8 = 4;
pub const EXT_PYDANTIC_V2: i8 = 5;
pub const EXT_NUMPY_ARRAY: i8 = 6;
pub const EXT_DELTA_SNAPSHOT: i8 = 7;

/// Parses one complete msgpack value; trailing bytes are an error (a truncated or
/// concatenated value is corruption, not data).
pub fn parse(bytes: &[u8]) -> Result<Mp, DecodeError> {
    // rmpv reads the reserved marker 0xc1 as nil; ormsgpack (and so LangGraph) refuses
    // it, and so do we: check the structure first.
    validate(bytes)?;
    let mut cursor = bytes;
    let value = rmpv::decode::read_value(&mut cursor)
        .map_err(|e| DecodeError::Msgpack(format!("{e} (value of {} bytes)", bytes.len())))?;
    if !cursor.is_empty() {
        return Err(DecodeError::Msgpack(format!(
            "{} trailing bytes after the value (value of {} bytes)",
            cursor.len(),
            bytes.len()
        )));
    }
    Ok(value)
}

/// Writes a value as LangGraph's serializer (ormsgpack) does: every integer, string,
/// container and extension in its smallest form, floats as f64. A value parsed from
/// LangGraph's bytes writes back byte for byte (the type zoo tests check this).
pub fn encode(value: &Mp) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

/// Checks that `bytes` is exactly one well-formed msgpack value (no reserved marker,
/// no truncation, nothing after it).
fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
    let end = value_end(bytes, 0)?;
    if end != bytes.len() {
        return Err(DecodeError::Msgpack(format!(
            "trailing bytes after the value at byte {end} (value of {} bytes)",
            bytes.len()
        )));
    }
    Ok(())
}

/// Where the well-formed msgpack value starting at `start` ends. Iterative, so
/// nesting depth costs no stack.
pub fn value_end(bytes: &[u8], start: usize) -> Result<usize, DecodeError> {
    let err = |what: &str, at: usize| {
        DecodeError::Msgpack(format!(
            "{what} at byte {at} (value of {} bytes)",
            bytes.len()
        ))
    };
    let mut pos = start;
    // Values still to read.
    let mut pending: u64 = 1;
    let uint = |pos: usize, n: usize| -> Option<u64> {
        let b = bytes.get(pos..pos + n)?;
        Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    while pending > 0 {
        let at = pos;
        let marker = *bytes.get(pos).ok_or_else(|| err("truncated value", at))?;
        pos += 1;
        pending -= 1;
        // (bytes of length field, payload bytes fixed, children)
        let (len_bytes, fixed, children): (usize, u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0),
            0x80..=0x8f => (0, 0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, 0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (0, u64::from(marker & 0x1f), 0),
            0xc1 => return Err(err("reserved marker 0xc1", at)),
            0xc4 | 0xd9 => (1, 0, 0),
            0xc5 | 0xda => (2, 0, 0),
            0xc6 | 0xdb => (4, 0, 0),
            0xc7 => (1, 1, 0),
            0xc8 => (2, 1, 0),
            0xc9 => (4, 1, 0),
            0xca => (0, 4, 0),
            0xcb => (0, 8, 0),
            0xcc | 0xd0 => (0, 1, 0),
            0xcd | 0xd1 => (0, 2, 0),
            0xce | 0xd2 => (0, 4, 0),
            0xcf | 0xd3 => (0, 8, 0),
            0xd4 => (0, 2, 0),
            0xd5 => (0, 3, 0),
            0xd6 => (0, 5, 0),
            0xd7 => (0, 9, 0),
            0xd8 => (0, 17, 0),
            0xdc => (2, 0, u64::MAX),
            0xdd => (4, 0, u64::MAX),
            0xde => (2, 0, u64::MAX - 1),
            0xdf => (4, 0, u64::MAX - 1),
        };
        let mut length = 0;
        if len_bytes > 0 {
            length = uint(pos, len_bytes).ok_or_else(|| err("truncated length", at))?;
            pos += len_bytes;
        }
        let (payload, children) = match children {
            u64::MAX => (0, length),
            c if c == u64::MAX - 1 => (0, 2 * length),
            c => (fixed + if c == 0 { length } else { 0 }, c),
        };
        let end = u64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_add(payload))
            .filter(|&e| e <= bytes.len() as u64)
            .ok_or_else(|| err("truncated value", at))?;
        pos = end as usize;
        pending = pending
            .checked_add(children)
            .filter(|&p| p <= bytes.len() as u64)
            .ok_or_else(|| err("container longer than the value", at))?;
    }
    Ok(pos)
}

/// The entries of the map that starts at `pos`: each key (as text) with the byte
/// range of its value.
pub fn map_entry_ranges(
    bytes: &[u8],
    pos: usize,
) -> Result<Vec<(String, std::ops::Range<usize>)>, DecodeError> {
    let (count, mut at) = map_header(bytes, pos)?
        .ok_or_else(|| DecodeError::Shape(format!("expected a map at byte {pos}")))?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let key_end = value_end(bytes, at)?;
        let name = match parse(&bytes[at..key_end])? {
            Mp::String(s) => s.into_str().unwrap_or_default(),
            other => other.to_string(),
        };
        let end = value_end(bytes, key_end)?;
        out.push((name, key_end..end));
        at = end;
    }
    Ok(out)
}

/// The byte ranges of the items of the array that `bytes` holds.
pub fn array_item_ranges(bytes: &[u8]) -> Result<Vec<std::ops::Range<usize>>, DecodeError> {
    validate(bytes)?;
    let truncated = || DecodeError::Msgpack("truncated array header".into());
    let marker = *bytes.first().ok_or_else(truncated)?;
    let be = |n: usize| -> Result<usize, DecodeError> {
        let b = bytes.get(1..1 + n).ok_or_else(truncated)?;
        Ok(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    let (count, mut at) = match marker {
        0x90..=0x9f => (usize::from(marker & 0x0f), 1),
        0xdc => (be(2)?, 3),
        0xdd => (be(4)?, 5),
        _ => return Err(DecodeError::Shape("expected an array".into())),
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let end = value_end(bytes, at)?;
        out.push(at..end);
        at = end;
    }
    Ok(out)
}

/// The byte ranges of the entries of the `channel_values` map inside a msgpack
/// checkpoint document, by channel: each range is that value exactly as stored.
pub fn channel_value_ranges(
    bytes: &[u8],
) -> Result<Vec<(String, std::ops::Range<usize>)>, DecodeError> {
    let top = map_entry_ranges(bytes, 0)?;
    let (_, range) = top
        .into_iter()
        .find(|(k, _)| k == "channel_values")
        .ok_or_else(|| DecodeError::Shape("checkpoint has no channel_values map".into()))?;
    map_entry_ranges(bytes, range.start)
}

/// `(entries, first entry offset)` when a map starts at `pos`.
fn map_header(bytes: &[u8], pos: usize) -> Result<Option<(usize, usize)>, DecodeError> {
    let truncated = || DecodeError::Msgpack("truncated map header".into());
    let marker = *bytes.get(pos).ok_or_else(truncated)?;
    let be = |n: usize| -> Result<usize, DecodeError> {
        let b = bytes.get(pos + 1..pos + 1 + n).ok_or_else(truncated)?;
        Ok(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    Ok(match marker {
        0x80..=0x8f => Some((usize::from(marker & 0x0f), pos + 1)),
        0xde => Some((be(2)?, pos + 3)),
        0xdf => Some((be(4)?, pos + 5)),
        _ => None,
    })
}

/// Renders the one msgpack value that `bytes` holds; values without a rule are kept
/// and noted in `notices`. The bytes are read straight into the view: no msgpack tree
/// is built on the way (that tree was most of a decode's allocations).
pub fn view_of_bytes(bytes: &[u8], notices: &mut Vec<String>) -> Result<Value, DecodeError> {
    // One pass: the renderer checks every bound it reads and refuses the reserved
    // marker, as `parse` does; what is left after the value is refused here.
    let mut reader = ViewReader { bytes, pos: 0 };
    let value = reader.render(notices, Style::Python, 0)?;
    if reader.pos != bytes.len() {
        return Err(DecodeError::Msgpack(format!(
            "trailing bytes after the value at byte {} (value of {} bytes)",
            reader.pos,
            bytes.len()
        )));
    }
    Ok(value)
}

/// Renders one msgpack extension value (its type code and data) as [`view_of_bytes`]
/// renders it inside a value.
pub fn ext_view(code: i8, data: &[u8], notices: &mut Vec<String>) -> Result<Value, DecodeError> {
    ext_to_view(code, data, notices, Style::Python, 0)
}

/// Whether `bytes` holds one value made only of plain msgpack (nil, booleans,
/// integers up to `i64::MAX`, finite floats, strings, bytes, arrays, maps whose keys
/// are strings) and LangChain objects (pydantic extensions of LangChain's serializable
/// modules, whose payload is one value starting with the module's and the class's
/// names, and is not looked into further). `false` for anything else, malformed or
/// deeply nested bytes included.
///
/// Such a value is rendered by rules every JSON form of LangGraph's values shares
/// (LangChain objects as LangChain's own `dumpd`): langgraph-redis's form of it is
/// its view ([`crate::codec::redis_form`]).
pub fn plain_or_langchain(bytes: &[u8]) -> bool {
    let mut reader = ViewReader { bytes, pos: 0 };
    reader.plain_or_langchain(0).unwrap_or(false) && reader.pos == bytes.len()
}

/// Deeper than this, [`plain_or_langchain`] says no (the caller's general path
/// decides).
const PLAIN_DEPTH: usize = 64;

/// Nesting deeper than this is refused, as by the msgpack decoder used elsewhere
/// (rmpv): a hostile value must not take unbounded memory.
const MAX_DEPTH: usize = 1024;
/// Rendering recurses once per level: when less stack than this is left, the next
/// levels run on a fresh heap-allocated segment, so any thread (a test's, a rayon
/// worker's) can render the deepest value allowed.
const STACK_RED_ZONE: usize = 64 * 1024;
const STACK_SEGMENT: usize = 2 * 1024 * 1024;

/// A cursor over well-formed msgpack, rendering values into the view.
struct ViewReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ViewReader<'a> {
    fn truncated(&self) -> DecodeError {
        DecodeError::Msgpack(format!(
            "truncated value at byte {} (value of {} bytes)",
            self.pos,
            self.bytes.len()
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated())?;
        let taken = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let taken = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(taken);
        Ok(out)
    }

    /// A big-endian length of `n` bytes.
    fn length(&mut self, n: usize) -> Result<usize, DecodeError> {
        let b = self.take(n)?;
        Ok(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }

    /// The length of the array or map whose marker was just read: in the marker
    /// itself, or in the 16- or 32-bit field after it.
    fn container_len(&mut self, marker: u8) -> Result<usize, DecodeError> {
        match marker {
            0xdc | 0xde => self.length(2),
            0xdd | 0xdf => self.length(4),
            _ => Ok(usize::from(marker & 0x0f)),
        }
    }

    fn text(&mut self, len: usize) -> Result<String, DecodeError> {
        self.text_ref(len).map(str::to_owned)
    }

    /// The next `len` bytes as text, borrowed.
    fn text_ref(&mut self, len: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| DecodeError::Msgpack("string is not valid UTF-8".into()))
    }

    /// The item count of the array at the cursor, which it then passes; `None` (and
    /// the cursor kept) when something else is there.
    fn array_len(&mut self) -> Result<Option<usize>, DecodeError> {
        match self.bytes.get(self.pos) {
            Some(&m @ (0x90..=0x9f | 0xdc | 0xdd)) => {
                self.pos += 1;
                self.container_len(m).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The length of the string whose marker was just read: in the marker itself, or
    /// in the 8-, 16- or 32-bit field after it.
    fn string_len(&mut self, marker: u8) -> Result<usize, DecodeError> {
        match marker {
            0xd9..=0xdb => self.length(1 << (marker - 0xd9)),
            _ => Ok(usize::from(marker & 0x1f)),
        }
    }

    /// The string at the cursor, which it then passes; `None` (and the cursor kept)
    /// when something else is there.
    fn string(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(self.str_ref()?.map(str::to_owned))
    }

    /// [`ViewReader::string`], borrowed from the bytes.
    fn str_ref(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.bytes.get(self.pos) {
            Some(&m @ (0xa0..=0xbf | 0xd9..=0xdb)) => {
                self.pos += 1;
                let len = self.string_len(m)?;
                self.text_ref(len).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The type code and data of the extension whose marker was just read.
    fn extension(&mut self, marker: u8) -> Result<(i8, &'a [u8]), DecodeError> {
        let len = match marker {
            0xc7 => self.length(1)?,
            0xc8 => self.length(2)?,
            0xc9 => self.length(4)?,
            _ => 1 << (marker - 0xd4),
        };
        let [code] = self.array::<1>()?;
        Ok((i8::from_be_bytes([code]), self.take(len)?))
    }

    /// [`plain_or_langchain`] for the value at the cursor, which it passes when it
    /// says yes.
    fn plain_or_langchain(&mut self, depth: usize) -> Result<bool, DecodeError> {
        if depth > PLAIN_DEPTH {
            return Ok(false);
        }
        let [marker] = self.array::<1>()?;
        Ok(match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => true,
            // u8 to u32 and i8 to i64: one, two, four or eight bytes.
            0xcc..=0xce | 0xd0..=0xd3 => {
                self.take(1 << (marker & 3))?;
                true
            }
            0xcf => i64::try_from(u64::from_be_bytes(self.array()?)).is_ok(),
            0xca => f32::from_be_bytes(self.array()?).is_finite(),
            0xcb => f64::from_be_bytes(self.array()?).is_finite(),
            0xa0..=0xbf | 0xd9..=0xdb => {
                let len = self.string_len(marker)?;
                self.take(len)?;
                true
            }
            0xc4..=0xc6 => {
                let len = self.length(1 << (marker - 0xc4))?;
                self.take(len)?;
                true
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                let len = self.container_len(marker)?;
                for _ in 0..len {
                    if !self.plain_or_langchain(depth + 1)? {
                        return Ok(false);
                    }
                }
                true
            }
            0x80..=0x8f | 0xde | 0xdf => {
                let len = self.container_len(marker)?;
                for _ in 0..len {
                    if self.str_ref()?.is_none() || !self.plain_or_langchain(depth + 1)? {
                        return Ok(false);
                    }
                }
                true
            }
            0xd4..=0xd8 | 0xc7..=0xc9 => {
                let (code, data) = self.extension(marker)?;
                code == EXT_PYDANTIC_V2 && is_langchain_payload(data)?
            }
            _ => false,
        })
    }

    fn render(
        &mut self,
        notices: &mut Vec<String>,
        style: Style,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, || {
            self.render_here(notices, style, depth)
        })
    }

    fn render_here(
        &mut self,
        notices: &mut Vec<String>,
        style: Style,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Msgpack(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let pydantic = style == Style::PydanticJson;
        let float = |f: f64| float_in(style, f);
        let [marker] = self.array::<1>()?;
        Ok(match marker {
            0x00..=0x7f => Value::from(marker),
            0xe0..=0xff => Value::from(i8::from_be_bytes([marker])),
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xcc => Value::from(u8::from_be_bytes(self.array()?)),
            0xcd => Value::from(u16::from_be_bytes(self.array()?)),
            0xce => Value::from(u32::from_be_bytes(self.array()?)),
            0xcf => Value::from(u64::from_be_bytes(self.array()?)),
            0xd0 => Value::from(i8::from_be_bytes(self.array()?)),
            0xd1 => Value::from(i16::from_be_bytes(self.array()?)),
            0xd2 => Value::from(i32::from_be_bytes(self.array()?)),
            0xd3 => Value::from(i64::from_be_bytes(self.array()?)),
            0xca => float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => float(f64::from_be_bytes(self.array()?)),
            0xa0..=0xbf | 0xd9..=0xdb => {
                let len = self.string_len(marker)?;
                Value::String(self.text(len)?)
            }
            0xc4..=0xc6 => {
                let len = self.length(1 << (marker - 0xc4))?;
                let b = self.take(len)?;
                if pydantic {
                    python::pydantic_bytes_view(b)
                } else {
                    python::bytes_view(b)
                }
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                let len = self.container_len(marker)?;
                // Each item takes at least one byte: a bogus count cannot over-allocate.
                let mut items = Vec::with_capacity(len.min(self.bytes.len() - self.pos));
                for _ in 0..len {
                    items.push(self.render(notices, style, depth + 1)?);
                }
                Value::Array(items)
            }
            0x80..=0x8f | 0xde | 0xdf => {
                let len = self.container_len(marker)?;
                let mut map = Map::with_capacity(len.min(self.bytes.len() - self.pos));
                for _ in 0..len {
                    let key = self.key(notices, style, depth + 1)?;
                    map.insert(key, self.render(notices, style, depth + 1)?);
                }
                Value::Object(map)
            }
            0xd4..=0xd8 | 0xc7 | 0xc8 | 0xc9 => {
                let (code, data) = self.extension(marker)?;
                ext_to_view(code, data, notices, style, depth + 1)?
            }
            0xc1 => {
                return Err(DecodeError::Msgpack(format!(
                    "reserved marker 0xc1 at byte {}",
                    self.pos - 1
                )));
            }
        })
    }

    /// A map key as text: strings as they are; other keys as Python's `json.dumps`
    /// writes them (`1`, `true`, `null`), or their canonical JSON text when Python
    /// cannot even dump them.
    fn key(
        &mut self,
        notices: &mut Vec<String>,
        style: Style,
        depth: usize,
    ) -> Result<String, DecodeError> {
        if let Some(key) = self.string()? {
            return Ok(key);
        }
        // An extension may render as text (a UUID, a datetime): that text is the key.
        Ok(match self.render(notices, style, depth)? {
            Value::String(s) => s,
            other => python::canonical_json(&other),
        })
    }
}

/// Whether an extension's payload is one value, an array that starts with the names
/// of a LangChain serializable module and a class.
fn is_langchain_payload(data: &[u8]) -> Result<bool, DecodeError> {
    if value_end(data, 0)? != data.len() {
        return Ok(false);
    }
    let mut payload = ViewReader {
        bytes: data,
        pos: 0,
    };
    if payload.array_len()?.is_none_or(|len| len < 2) {
        return Ok(false);
    }
    let module = payload.str_ref()?;
    Ok(module.is_some_and(super::langchain::is_serializable) && payload.str_ref()?.is_some())
}

/// A float's view in `style`: pydantic's JSON mode writes NaN and the infinities as
/// null.
fn float_in(style: Style, f: f64) -> Value {
    if style == Style::PydanticJson && !f.is_finite() {
        Value::Null
    } else {
        python::float_view(f)
    }
}

fn is_container(marker: Option<&u8>) -> bool {
    matches!(marker, Some(0x80..=0x9f | 0xdc..=0xdf))
}

fn ext_to_view(
    code: i8,
    data: &[u8],
    notices: &mut Vec<String>,
    style: Style,
    depth: usize,
) -> Result<Value, DecodeError> {
    // Why an extension's bytes pass through undecoded, if they do.
    let kept_raw = match code {
        EXT_CONSTRUCTOR_SINGLE_ARG..=EXT_PYDANTIC_V2 => None,
        EXT_NUMPY_ARRAY => {
            let array = parse(data).map_err(|e| e.to_string());
            match array.and_then(|a| super::numpy::to_view(&a)) {
                Ok(view) => return Ok(view),
                Err(why) => Some(format!("numpy array kept undecoded: {why}")),
            }
        }
        // A DeltaChannel's value is this snapshot plus the writes of the checkpoints
        // after it: it means something only with its thread's parent chain.
        EXT_DELTA_SNAPSHOT => Some(
            "DeltaChannel snapshot (msgpack extension type 7) kept undecoded; it needs its thread's whole parent chain"
                .to_owned(),
        ),
        // Anything newer than LangGraph's types we know.
        _ => Some(format!("msgpack extension type {code} kept undecoded")),
    };
    if let Some(why) = kept_raw {
        notices.push(format!("{why} ({} bytes)", data.len()));
        let mut map = Map::new();
        map.insert("__ext__".into(), Value::from(code));
        map.insert("data".into(), python::bytes_view(data)["__bytes__"].clone());
        return Ok(Value::Object(map));
    }
    // [module, class, payload, method?]
    let mut reader = ViewReader {
        bytes: data,
        pos: 0,
    };
    let count = reader.array_len()?.ok_or_else(|| {
        DecodeError::Msgpack(format!("extension type {code} payload is not an array"))
    })?;
    let names = match count {
        2.. => (reader.string()?, reader.string()?),
        _ => (None, None),
    };
    let (Some(module), Some(name)) = names else {
        return Err(DecodeError::Msgpack(format!(
            "extension type {code} payload does not start with (module, class)"
        )));
    };
    if count < 3 {
        return Err(DecodeError::Msgpack(format!(
            "extension {module}.{name} has no payload"
        )));
    }
    // A pydantic v2 model's fields render as its `model_dump(mode="json")` does;
    // LangChain's (messages) as LangChain's `dumpd`, by the Python rules.
    let payload_style = if code == EXT_PYDANTIC_V2 && !super::langchain::is_serializable(&module) {
        Style::PydanticJson
    } else {
        style
    };
    // A set whose members were stored as lists or maps (tuples, dicts) cannot be
    // rebuilt by Python: LangGraph reads it back as the plain list, in stored order.
    let unhashable_set = code == EXT_CONSTRUCTOR_SINGLE_ARG
        && module == "builtins"
        && matches!(name.as_str(), "set" | "frozenset")
        && value_end(data, reader.pos)
            .and_then(|end| array_item_ranges(&data[reader.pos..end]))
            .is_ok_and(|items| {
                items
                    .iter()
                    .any(|r| is_container(data.get(reader.pos + r.start)))
            });
    let payload = reader.render(notices, payload_style, depth)?;
    let method = if count >= 4 { reader.string()? } else { None };
    if unhashable_set {
        return Ok(payload);
    }
    let mut obj = PyObject {
        module,
        name,
        args: Vec::new(),
        kwargs: None,
        method: None,
        kind: PyKind::Constructor,
    };
    match code {
        EXT_CONSTRUCTOR_SINGLE_ARG => obj.args.push(payload),
        EXT_CONSTRUCTOR_POS_ARGS => match payload {
            Value::Array(args) => obj.args = args,
            other => obj.args.push(other),
        },
        EXT_METHOD_SINGLE_ARG => {
            obj.args.push(payload);
            obj.method = method;
        }
        EXT_CONSTRUCTOR_KW_ARGS | EXT_PYDANTIC_V1 | EXT_PYDANTIC_V2 => {
            let Value::Object(kwargs) = payload else {
                return Err(DecodeError::Msgpack(format!(
                    "extension type {code} for {}.{} holds no field map",
                    obj.module, obj.name
                )));
            };
            obj.kwargs = Some(kwargs);
            if code == EXT_PYDANTIC_V1 || code == EXT_PYDANTIC_V2 {
                obj.kind = PyKind::PydanticModel;
            }
        }
        _ => {
            return Err(DecodeError::Msgpack(format!(
                "unexpected extension type {code}"
            )));
        }
    }
    let rendered = python::render(obj, style);
    notices.extend(rendered.notice);
    Ok(rendered.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn pack(value: &Mp) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    pub(super) fn ext(code: i8, parts: Vec<Mp>) -> Mp {
        Mp::Ext(code, pack(&Mp::Array(parts)))
    }

    fn view(value: &Mp) -> (Value, Vec<String>) {
        let mut notices = Vec::new();
        let v = view_of_bytes(&pack(value), &mut notices).unwrap();
        (v, notices)
    }

    /// A datetime as LangGraph stores it (extension 3, `fromisoformat`).
    pub(super) fn a_datetime() -> Mp {
        ext(
            3,
            vec![
                "datetime".into(),
                "datetime".into(),
                "2025-01-10T05:55:31.016899+00:00".into(),
                "fromisoformat".into(),
            ],
        )
    }

    #[test]
    fn nested_extensions_and_non_string_keys() {
        let dt = a_datetime();
        let dataclass = ext(
            2,
            vec![
                "app".into(),
                "Order".into(),
                Mp::Map(vec![("placed_at".into(), dt), ("n".into(), 3.into())]),
            ],
        );
        let value = Mp::Map(vec![
            (Mp::from(1), dataclass),
            (Mp::Boolean(true), Mp::Binary(vec![0, 255])),
            (Mp::Nil, Mp::F64(0.5)),
        ]);
        let (v, notices) = view(&value);
        assert!(notices.is_empty());
        assert_eq!(
            v,
            serde_json::json!({
                "1": {"placed_at": "2025-01-10T05:55:31.016899+00:00", "n": 3},
                "true": {"__bytes__": "AP8="},
                "null": 0.5
            })
        );
    }

    #[test]
    fn pydantic_models_get_their_type() {
        let model = ext(
            5,
            vec![
                "app.models".into(),
                "Profile".into(),
                Mp::Map(vec![("name".into(), "Ada".into())]),
                "model_validate_json".into(),
            ],
        );
        assert_eq!(
            view(&model).0,
            serde_json::json!({"name": "Ada", "__type__": "app.models.Profile"})
        );
    }

    #[test]
    fn unknown_extensions_pass_through_and_are_reported() {
        let (v, notices) = view(&Mp::Ext(9, vec![1, 2, 3]));
        assert_eq!(v, serde_json::json!({"__ext__": 9, "data": "AQID"}));
        assert_eq!(notices.len(), 1);
        let (v, notices) = view(&Mp::Ext(7, vec![1, 2, 3]));
        assert_eq!(v, serde_json::json!({"__ext__": 7, "data": "AQID"}));
        assert!(
            notices[0].starts_with("DeltaChannel snapshot"),
            "{notices:?}"
        );
        // A numpy payload we cannot read is kept the same way, saying why.
        let (v, notices) = view(&Mp::Ext(6, vec![1, 2, 3]));
        assert_eq!(v, serde_json::json!({"__ext__": 6, "data": "AQID"}));
        assert!(
            notices[0].starts_with("numpy array kept undecoded"),
            "{notices:?}"
        );
    }

    /// One value of every msgpack scalar form and width.
    pub(super) fn every_scalar_width() -> Mp {
        Mp::Array(vec![
            Mp::from(5u8),
            Mp::from(200u8),
            Mp::from(60_000u16),
            Mp::from(4_000_000_000u32),
            Mp::from(u64::MAX),
            Mp::from(-3i8),
            Mp::from(-100i8),
            Mp::from(-30_000i16),
            Mp::from(-2_000_000_000i32),
            Mp::from(i64::MIN),
            Mp::F32(1.5),
            Mp::F64(-0.0),
            Mp::F64(f64::NAN),
            Mp::from("x".repeat(40).as_str()),
            Mp::from("y".repeat(300).as_str()),
            Mp::Binary(vec![1, 2]),
            Mp::Nil,
            Mp::Boolean(false),
        ])
    }

    #[test]
    fn every_scalar_width_renders_its_value() {
        let value = every_scalar_width();
        let (v, _) = view(&value);
        assert_eq!(
            v,
            serde_json::json!([
                5, 200, 60000, 4000000000u64, u64::MAX, -3, -100, -30000, -2000000000,
                i64::MIN, 1.5, -0.0, {"__float__": "NaN"}, "x".repeat(40), "y".repeat(300),
                {"__bytes__": "AQI="}, null, false
            ])
        );
        assert_eq!(v[11].to_string(), "-0.0");
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error_not_a_crash() {
        let mut bytes = vec![0x91; 5000];
        bytes.push(0xc0);
        let err = view_of_bytes(&bytes, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        // The deepest value allowed renders on a test thread's small stack.
        let mut bytes = vec![0x91; 1000];
        bytes.push(0xc0);
        let view = view_of_bytes(&bytes, &mut Vec::new()).unwrap();
        assert_eq!(view.to_string().len(), 2004);
    }

    #[test]
    fn malformed_values_are_errors_in_the_view_too() {
        for bytes in [
            &[0xc1][..],
            &[0x92, 0x01],
            &[0x01, 0x02],
            &[0xa3, b'a', 0xff, b'b'],
        ] {
            assert!(view_of_bytes(bytes, &mut Vec::new()).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn the_reserved_marker_is_an_error() {
        assert!(parse(&[0xc1]).is_err());
        assert!(parse(&[0x92, 0x01, 0xc1]).is_err());
        assert!(parse(&[0x92, 0x01, 0xc0]).is_ok());
    }

    #[test]
    fn validation_accepts_every_kind_of_value() {
        let value = Mp::Map(vec![
            ("s".into(), Mp::String("x".repeat(300).into())),
            ("b".into(), Mp::Binary(vec![7; 70_000])),
            ("a".into(), Mp::Array((0..20).map(Mp::from).collect())),
            ("i".into(), Mp::from(-5_000_000_000i64)),
            ("u".into(), Mp::from(u64::MAX)),
            ("f".into(), Mp::F32(1.5)),
            ("e".into(), Mp::Ext(9, vec![1; 16])),
            ("e3".into(), Mp::Ext(9, vec![1; 3])),
        ]);
        assert!(parse(&pack(&value)).is_ok());
    }

    #[test]
    fn truncated_values_are_errors() {
        let bytes = pack(&Mp::Array(vec!["abc".into(), "def".into()]));
        assert!(parse(&bytes[..bytes.len() - 2]).is_err());
        let mut long = bytes.clone();
        long.push(0xc0);
        assert!(parse(&long).is_err());
    }
}
