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
}
