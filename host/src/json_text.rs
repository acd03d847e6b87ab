//! Compact JSON text of a view tree, byte for byte what `serde_json::to_vec` writes
//! for the same value, made faster where the view is mostly text.
//!
//! Why not serde_json itself: its string escape looks up every byte in a table, and
//! strings (message contents, base64) are most of a view; serializing the views was a
//! third of a decoded export's instructions, the escape alone 16 %. Here the escape
//! looks at eight bytes at a time while none of them needs escaping.
//!
//! The escaping rules are serde_json's: `"` and `\` get a backslash, the control
//! characters `\b \t \n \f \r` their short form, every other byte below 0x20 is
//! `\u00xx` (lower-case hex); nothing else is escaped. Numbers are written as their
//! text (the crate keeps numbers exact, as text, with `arbitrary_precision`).

use serde_json::Value;

/// Where JSON text is written: a `String`, or bytes that are UTF-8 by construction
/// (a writer that copies validated bytes as it goes, checked as a whole once at the
/// end: `std::str::from_utf8` per short string was a tenth of a decoded export).
pub trait TextBuf {
    /// Appends an ASCII byte.
    fn push_ascii(&mut self, byte: u8);
    /// Appends text.
    fn push_text(&mut self, text: &str);
    /// Makes room for `additional` more bytes.
    fn reserve_bytes(&mut self, additional: usize);
}

/// Appends `bytes` in padded base64, which never needs escaping inside a JSON string.
/// SIMD (`base64-simd`: a fifth of the scalar encoder's time); room is made the
/// amortized way first, as the encoder reserves exactly what it needs.
pub fn write_base64<T: TextBuf + base64_simd::AppendBase64Encode>(out: &mut T, bytes: &[u8]) {
    let base64 = base64_simd::STANDARD;
    out.reserve_bytes(base64.encoded_length(bytes.len()));
    base64.encode_append(bytes, out);
}

impl TextBuf for String {
    fn push_ascii(&mut self, byte: u8) {
        self.push(char::from(byte));
    }
    fn push_text(&mut self, text: &str) {
        self.push_str(text);
    }
    fn reserve_bytes(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl TextBuf for Vec<u8> {
    fn push_ascii(&mut self, byte: u8) {
        self.push(byte);
    }
    fn push_text(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }
    fn reserve_bytes(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

/// Appends the compact JSON text of `value` to `out`.
pub fn write_value<T: TextBuf>(out: &mut T, value: &Value) {
    match value {
        Value::Null => out.push_text("null"),
        Value::Bool(true) => out.push_text("true"),
        Value::Bool(false) => out.push_text("false"),
        Value::Number(n) => out.push_text(n.as_str()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_array(out, items, write_value),
        Value::Object(map) => {
            out.push_ascii(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_ascii(b',');
                }
                write_str(out, key);
                out.push_ascii(b':');
                write_value(out, item);
            }
            out.push_ascii(b'}');
        }
    }
}

/// Appends a JSON array of `items`, each written by `write_item`.
pub fn write_array<T: TextBuf, I>(
    out: &mut T,
    items: impl IntoIterator<Item = I>,
    mut write_item: impl FnMut(&mut T, I),
) {
    out.push_ascii(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_ascii(b',');
        }
        write_item(out, item);
    }
    out.push_ascii(b']');
}

/// The compact JSON text of `value`.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends `text` as a JSON string (quoted and escaped).
pub fn write_str<T: TextBuf>(out: &mut T, text: &str) {
    out.reserve_bytes(text.len() + 2);
    out.push_ascii(b'"');
    write_str_body(out, text);
    out.push_ascii(b'"');
}

/// Appends `window[..len]` as a JSON string when it is UTF-8, checking it while it is
/// escaped: ASCII is checked by the escape scan itself, and only from the first byte
/// beyond ASCII on is the rest handed to `std::str::from_utf8`.
///
/// `window` may go on past the string (the rest of the msgpack value it is read
/// from): short strings are then scanned eight bytes at once too, the bytes after
/// the string looked at but never written.
pub fn write_utf8(out: &mut Vec<u8>, window: &[u8], len: usize) -> Result<(), std::str::Utf8Error> {
    let bytes = &window[..len];
    out.reserve(len + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let at = start + plain_len::<true>(&window[start..], len - start);
        out.extend_from_slice(&bytes[start..at]);
        match bytes.get(at) {
            None => break,
            Some(&byte) if byte < 0x80 => {
                write_escape(out, byte);
                start = at + 1;
            }
            Some(_) => {
                write_str_body(out, std::str::from_utf8(&bytes[at..])?);
                break;
            }
        }
    }
    out.push(b'"');
    Ok(())
}

/// `text` escaped, without the quotes.
fn write_str_body<T: TextBuf>(out: &mut T, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    loop {
        // `at` is at an ASCII byte or the end: a character boundary.
        let at = start + plain_len::<false>(&bytes[start..], bytes.len() - start);
        out.push_text(&text[start..at]);
        let Some(&byte) = bytes.get(at) else { break };
        write_escape(out, byte);
        start = at + 1;
    }
}

/// How many leading bytes of `window[..len]` are written as they are: none below 0x20,
/// no `"` or `\\`, and with `ASCII_ONLY` none from 0x80 on. Eight bytes are looked at
/// together ([`special_bytes`]), reading past `len` where `window` goes on; the last
/// few bytes of a window one at a time.
fn plain_len<const ASCII_ONLY: bool>(window: &[u8], len: usize) -> usize {
    let mut at = 0;
    while at < len {
        let Some(word) = window[at..].first_chunk::<8>() else {
            return at
                + window[at..len]
                    .iter()
                    .position(|&byte| special_byte::<ASCII_ONLY>(byte))
                    .unwrap_or(len - at);
        };
        let flags = special_bytes::<ASCII_ONLY>(u64::from_le_bytes(*word));
        if flags != 0 {
            return (at + flags.trailing_zeros() as usize / 8).min(len);
        }
        at += 8;
    }
    len
}

/// How many leading bytes of `text` need no escape: where the next escape (or a
/// string's closing quote) is, or its length.
pub fn unescaped_len(text: &[u8]) -> usize {
    plain_len::<false>(text, text.len())
}

/// Whether `byte` must be escaped, or with `ASCII_ONLY` is beyond ASCII: what
/// [`special_bytes`] flags, one byte at a time.
fn special_byte<const ASCII_ONLY: bool>(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || (ASCII_ONLY && byte >= 0x80)
}

/// The high bit of every byte of `word` (eight bytes, the first lowest) that must be
/// escaped, or with `ASCII_ONLY` is beyond ASCII. Bytes after the first flagged one
/// may be flagged wrongly (a borrow carries into them), never bytes before it: the
/// lowest flag is exact, and that is the one used.
fn special_bytes<const ASCII_ONLY: bool>(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = zero_bytes(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_bytes(word ^ (ONES * u64::from(b'\\')));
    let beyond_ascii = if ASCII_ONLY { word & HIGHS } else { 0 };
    below_space | quote | backslash | beyond_ascii
}

/// Whether `text` is a JSON object exactly as [`to_string`] writes the tree parsed
/// from it (`serde_json::from_str`): no whitespace, strings escaped only where and as
/// [`write_escape`] escapes them, numbers as they are kept (serde_json's
/// `arbitrary_precision`), no key twice in one object (the tree keeps one). Such text
/// can be taken as it is; `false` only means the caller parses it.
pub fn is_compact_object(text: &str) -> bool {
    let mut scan = CompactScan {
        bytes: text.as_bytes(),
        at: 0,
        keys: Vec::new(),
    };
    scan.bytes.first() == Some(&b'{') && scan.value(0) && scan.at == scan.bytes.len()
}

/// The raw text of the fields `names` of `text` when `text` is an object that
/// [`is_compact_object`] accepts (and with it the text of every field); `None` for
/// any other text, which the caller reads the long way ([`object_fields`]). One pass
/// both finds the fields and proves them compact, where the long way parses the
/// object and the caller then scans a field again to see it is compact. `names` hold
/// no byte JSON escapes, so a key is compared as it is written.
pub fn compact_object_fields<'a, const N: usize>(
    text: &'a str,
    names: [&str; N],
) -> Option<[Option<&'a str>; N]> {
    debug_assert!(names.iter().all(|n| !n.bytes().any(special_byte::<false>)));
    let mut scan = CompactScan {
        bytes: text.as_bytes(),
        at: 0,
        keys: Vec::new(),
    };
    let mut found = [None; N];
    let object = scan.bytes.first() == Some(&b'{')
        && scan.object_with(0, |key, value| {
            if let Some(i) = names.iter().position(|n| n.as_bytes() == key) {
                // A value starts after a `:` and ends before a `,` or `}`: both are
                // character boundaries.
                found[i] = Some(&text[value]);
            }
        });
    (object && scan.at == scan.bytes.len()).then_some(found)
}

/// Deeper than this, [`is_compact_object`] says no (serde_json refuses 128 levels).
const MAX_COMPACT_DEPTH: usize = 64;

/// [`is_compact_object`]'s reader: `at` moves past each value it accepts.
struct CompactScan<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The keys of the objects being read, innermost last, as written (escapes
    /// included: with one way to escape, equal keys are equal bytes).
    keys: Vec<&'a [u8]>,
}

impl<'a> CompactScan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let here = self.peek() == Some(byte);
        self.at += usize::from(here);
        here
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_COMPACT_DEPTH {
            return false;
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn word(&mut self, word: &[u8]) -> bool {
        let here = self.bytes[self.at..].starts_with(word);
        if here {
            self.at += word.len();
        }
        here
    }

    fn object(&mut self, depth: usize) -> bool {
        self.object_with(depth, |_, _| {})
    }

    /// An object, each member's key (as written) and the span of its value given to
    /// `member` once the value is read.
    fn object_with(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&'a [u8], std::ops::Range<usize>),
    ) -> bool {
        self.at += 1;
        let from = self.keys.len();
        if !self.eat(b'}') {
            loop {
                let Some(key) = self.string() else {
                    return false;
                };
                self.keys.push(key);
                if !self.eat(b':') {
                    return false;
                }
                let start = self.at;
                if !self.value(depth + 1) {
                    return false;
                }
                member(key, start..self.at);
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return false;
                }
            }
        }
        let keys = &mut self.keys[from..];
        keys.sort_unstable();
        let unique = keys.windows(2).all(|pair| pair[0] != pair[1]);
        self.keys.truncate(from);
        unique
    }

    fn array(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            if self.eat(b']') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// A string escaped as [`write_escape`] escapes; the bytes between its quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        loop {
            let rest = &self.bytes[self.at..];
            self.at += plain_len::<false>(rest, rest.len());
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(&self.bytes[start..self.at - 1]);
                }
                b'\\' => {
                    let digit = |d: u8| match d {
                        b'0'..=b'9' => Some(d - b'0'),
                        b'a'..=b'f' => Some(d - b'a' + 10),
                        _ => None,
                    };
                    let (byte, len) = match self.bytes.get(self.at + 1)? {
                        b'"' => (b'"', 2),
                        b'\\' => (b'\\', 2),
                        b'b' => (0x08, 2),
                        b'f' => (0x0c, 2),
                        b'n' => (b'\n', 2),
                        b'r' => (b'\r', 2),
                        b't' => (b'\t', 2),
                        b'u' => {
                            let hex = self.bytes.get(self.at + 2..self.at + 6)?;
                            if hex[..2] != *b"00" {
                                return None;
                            }
                            ((digit(hex[2])? << 4) | digit(hex[3])?, 6)
                        }
                        _ => return None,
                    };
                    // Only a byte `write_escape` escapes, escaped as it does.
                    let mut canonical = Vec::with_capacity(6);
                    write_escape(&mut canonical, byte);
                    let written = self.bytes.get(self.at..self.at + len)?;
                    if !special_byte::<false>(byte) || written != canonical.as_slice() {
                        return None;
                    }
                    self.at += len;
                }
                // A control byte unescaped: not JSON.
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?(e[+-][0-9]+)?`: a JSON number as the tree writes
    /// it back (serde_json's `arbitrary_precision` keeps the digits as written, and
    /// writes an exponent as `e` with its sign).
    fn number(&mut self) -> bool {
        let digits = |scan: &mut Self| {
            let from = scan.at;
            while scan.peek().is_some_and(|b| b.is_ascii_digit()) {
                scan.at += 1;
            }
            scan.at - from
        };
        self.eat(b'-');
        if self.eat(b'0') {
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return false;
            }
        } else if digits(self) == 0 {
            return false;
        }
        if self.eat(b'.') && digits(self) == 0 {
            return false;
        }
        // The tree writes an exponent as `e`, then its sign always.
        if self.eat(b'e') && !((self.eat(b'+') || self.eat(b'-')) && digits(self) > 0) {
            return false;
        }
        // `E`, or anything else after the number, is for the caller to find.
        true
    }
}

fn write_escape<T: TextBuf>(out: &mut T, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.push_text("\\u00");
            out.push_ascii(HEX[usize::from(byte >> 4)]);
            out.push_ascii(HEX[usize::from(byte & 0xf)]);
            return;
        }
    };
    out.push_ascii(b'\\');
    out.push_ascii(short);
}

/// A serde visitor that reads the fields `names` of a JSON object as `T`s and skips
/// the others without building them: `None` for a field that is absent, and for every
/// field when the value is no object (any JSON is accepted, as indexing a tree of it
/// would); a field given twice has its last value (as a tree keeps it).
pub struct ObjectFields<'n, T, const N: usize> {
    names: [&'n str; N],
    value: std::marker::PhantomData<T>,
}

impl<'n, T, const N: usize> ObjectFields<'n, T, N> {
    pub fn new(names: [&'n str; N]) -> Self {
        Self {
            names,
            value: std::marker::PhantomData,
        }
    }
}

impl<'de, T: serde::Deserialize<'de>, const N: usize> serde::de::Visitor<'de>
    for ObjectFields<'_, T, N>
{
    type Value = [Option<T>; N];

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = std::array::from_fn(|_| None);
        while let Some(name) = map.next_key::<String>()? {
            match self.names.iter().position(|n| *n == name) {
                Some(i) => fields[i] = Some(map.next_value::<T>()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(std::array::from_fn(|_| None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(std::array::from_fn(|_| None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(std::array::from_fn(|_| None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(std::array::from_fn(|_| None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(std::array::from_fn(|_| None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(std::array::from_fn(|_| None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(std::array::from_fn(|_| None))
    }
}

/// The raw text of the fields `names` of the JSON object `text`, read as
/// [`ObjectFields`] reads them. An error when `text` is not JSON.
pub fn object_fields<'a, const N: usize>(
    text: &'a str,
    names: [&str; N],
) -> Result<[Option<&'a serde_json::value::RawValue>; N], serde_json::Error> {
    use serde::Deserializer as _;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let fields = (&mut deserializer).deserialize_any(ObjectFields::new(names))?;
    deserializer.end()?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same_as_serde_json(value: &Value) {
        assert_eq!(
            to_string(value),
            serde_json::to_string(value).unwrap(),
            "for {value:?}"
        );
    }

    /// What `is_compact_object` accepts, the tree parsed from it writes back as it is;
    /// and it accepts the compact text of every object.
    #[test]
    fn compact_objects_are_exactly_the_ones_written_back_as_they_are() {
        let written_back = |text: &str| {
            serde_json::from_str::<Value>(text)
                .is_ok_and(|v| v.is_object() && to_string(&v) == text)
        };
        let deep = format!("{}1{}", "{\"a\":[".repeat(30), "]}".repeat(30));
        let mut every_byte = String::from("{\"s\":");
        write_str(
            &mut every_byte,
            &(0u8..0x80).map(char::from).collect::<String>(),
        );
        every_byte.push('}');
        let compact = [
            "{}",
            r#"{"a":1}"#,
            r#"{"a":1,"b":[true,false,null,{"c":{}}],"d":"é ✓ \"q\" \\ \n\t\r\b\f\u0001\u001f"}"#,
            r#"{"n":-0,"m":1.50,"p":1e+5,"q":-2.5e-3,"z":1e+05,"big":123456789012345678901234567890}"#,
            r#"{"sentiment":-0.089,"step":-1,"parents":{},"source":"input"}"#,
            r#"{"a\"b":1,"a\\b":2,"ab":3}"#,
            &deep,
            &every_byte,
        ];
        // The fields found in one pass are the ones the parser finds.
        const NAMES: [&str; 5] = ["a", "b", "s", "x", "n"];
        let parsed = |text: &str| {
            object_fields(text, NAMES)
                .unwrap()
                .map(|raw| raw.map(|raw| raw.get().to_owned()))
        };
        for text in compact {
            assert!(written_back(text), "{text}");
            assert!(is_compact_object(text), "{text}");
            let found = compact_object_fields(text, NAMES).expect(text);
            assert_eq!(found.map(|f| f.map(str::to_owned)), parsed(text), "{text}");
        }
        let not_compact = [
            "",
            "[1]",
            "\"a\"",
            "{",
            r#"{"a":1}x"#,
            r#"{"a":1} "#,
            r#"{ "a":1}"#,
            r#"{"a": 1}"#,
            r#"{"a":1 ,"b":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"a":1,"b":2,"a":3}}"#,
            r#"{"a\u0062":1,"ab":2}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u0008"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\x"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"n":01}"#,
            r#"{"n":1e5}"#,
            r#"{"n":1E+5}"#,
            r#"{"n":1e+}"#,
            r#"{"n":1.}"#,
            r#"{"n":.5}"#,
            r#"{"n":+1}"#,
            r#"{"n":1e}"#,
            r#"{"n":-}"#,
            r#"{"n":NaN}"#,
            r#"{"t":tru}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
        ];
        for text in not_compact {
            assert!(!is_compact_object(text), "{text}");
            assert!(compact_object_fields(text, NAMES).is_none(), "{text}");
        }
        // Beyond the depth it reads, it leaves the text to the parser.
        let deeper = format!("{}1{}", "{\"a\":[".repeat(70), "]}".repeat(70));
        assert!(!is_compact_object(&deeper));
        // The compact text of trees of every kind of value is accepted.
        for value in [
            json!({"a": [1, 2.5, -3, "x\u{7f}y", null], "b": {"c": true}, "": ""}),
            json!({"k": "\u{0}\u{1f}\"\\/", "l": [[], {}], "m": 1e300}),
        ] {
            let text = to_string(&value);
            assert!(is_compact_object(&text), "{text}");
            let found = compact_object_fields(&text, NAMES).unwrap();
            assert_eq!(found.map(|f| f.map(str::to_owned)), parsed(&text), "{text}");
        }
    }

    #[test]
    fn every_byte_escapes_as_serde_json_escapes_it() {
        // Every ASCII byte, alone and at every position of a word (the fast scan
        // reads eight at a time), with multi-byte UTF-8 around it.
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            for pad in 0..17 {
                let text = format!("{}{c}é{}", "a".repeat(pad), "日本".repeat(pad % 3));
                same_as_serde_json(&Value::String(text));
                same_as_serde_json(&Value::String(format!("{}{c}", "b".repeat(pad))));
            }
        }
        same_as_serde_json(&json!("\u{7f}\u{80}\u{2028}\u{10ffff}\"\\/"));
        same_as_serde_json(&json!(""));
    }

    #[test]
    fn bytes_are_checked_and_escaped_as_text_is() {
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            for pad in 0..35 {
                for text in [
                    format!("{}{c}é{}", "a".repeat(pad), "日本".repeat(pad % 3)),
                    format!("{}{c}{}", "b".repeat(pad), "c".repeat(pad % 17)),
                ] {
                    // Alone, and followed by bytes that would need escaping.
                    let alone = text.as_bytes();
                    let followed = [alone, &[b'"', 0, 0xff][..], &[b'\\'; 20][..]].concat();
                    for window in [alone, &followed[..]] {
                        let mut out = Vec::new();
                        write_utf8(&mut out, window, alone.len()).unwrap();
                        assert_eq!(out, serde_json::to_vec(&text).unwrap(), "{text:?}");
                    }
                }
            }
        }
        // Not UTF-8, wherever it is: refused.
        for pad in 0..35 {
            for bad in [&[0xff][..], &[0xc3], &[0xe6, 0x97], &[0xed, 0xa0, 0x80]] {
                let bytes = [&b"x".repeat(pad)[..], bad, &b"\"y\"".repeat(pad % 3)].concat();
                assert!(
                    write_utf8(&mut Vec::new(), &bytes, bytes.len()).is_err(),
                    "{bytes:?}"
                );
            }
        }
    }

    #[test]
    fn trees_are_written_as_serde_json_writes_them() {
        let value = json!({
            "a\"key\n": [1, -2, 3.5, 1e300, 18446744073709551616u128.to_string(), null, true, false],
            "nested": {"": {}, "list": [], "deep": [[[{"x": "y\u{1}"}]]]},
            "unicode": "Grüße 🚀\t",
        });
        same_as_serde_json(&value);
        // Numbers kept as text (exact) are written as they are.
        let exact: Value = serde_json::from_str(
            r#"[1.0, 1e-7, 150000000000000000000.0, -0.0, 123456789012345678901234567890]"#,
        )
        .unwrap();
        same_as_serde_json(&exact);
    }

    #[test]
    fn object_fields_are_picked_raw_and_the_rest_skipped() {
        let text = r#"{"a": "x\"y", "skip": {"deep": [1, {"a": 0}]}, "b": {"k": [1, 2]}, "a": 7}"#;
        let [a, b, c] = object_fields(text, ["a", "b", "c"]).unwrap();
        assert_eq!(
            a.map(|r| r.get()),
            Some("7"),
            "the last of a repeated field"
        );
        assert_eq!(b.map(|r| r.get()), Some(r#"{"k": [1, 2]}"#));
        assert!(c.is_none());
        for other in ["[1, {\"a\": 1}]", "\"a\"", "12", "1.5", "true", "null"] {
            assert!(object_fields(other, ["a"]).unwrap()[0].is_none(), "{other}");
        }
        assert!(object_fields("{\"a\": 1", ["a"]).is_err());
        assert!(object_fields("{} trailing", ["a"]).is_err());
    }
}
