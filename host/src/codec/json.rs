//! LangGraph's legacy `json` serialization: JSON text in which LangChain objects are
//! already in their `lc: 1` constructor form and other Python objects are
//! `{"lc": 2, "type": "constructor", "id": [...module, Class], "method"?, "args"?, "kwargs"?}`.

use serde_json::{Map, Value};

use super::DecodeError;
use super::python::{self, PyKind, PyObject};

/// Parses JSON as Python's `json.loads` does: also the bare `NaN`, `Infinity` and
/// `-Infinity` that `json.dumps` writes for non-finite floats (SqliteSaver metadata
/// holds them), which become their `float_view`.
pub fn parse(bytes: &[u8]) -> Result<Value, DecodeError> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(first) => match with_non_finite_floats(bytes) {
            Some(text) => serde_json::from_slice(&text),
            None => Err(first),
        }
        .map_err(|e| DecodeError::Json(e.to_string())),
    }
}

/// `bytes` with Python's non-finite float tokens (outside strings) replaced by their
/// view objects; `None` when there are none.
fn with_non_finite_floats(bytes: &[u8]) -> Option<Vec<u8>> {
    let tokens = [
        ("-Infinity", f64::NEG_INFINITY),
        ("Infinity", f64::INFINITY),
        ("NaN", f64::NAN),
    ]
    .map(|(token, f)| {
        (
            token.as_bytes(),
            python::float_view(f).to_string().into_bytes(),
        )
    });
    let mut out = Vec::with_capacity(bytes.len() + 32);
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
        } else if let Some((token, view)) = tokens.iter().find(|(t, _)| bytes[i..].starts_with(t)) {
            out.extend_from_slice(view);
            i += token.len();
            found = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    found.then_some(out)
}

/// Renders the `lc: 2` envelopes inside a parsed JSON value.
pub fn to_view(value: Value, notices: &mut Vec<String>) -> Value {
    render(value, notices, true)
}

/// The same for a langgraph-redis checkpoint document: LangGraph revives `Send`
/// markers in it but not `Interrupt` markers (its checkpoint path does not know
/// them), so an interrupt kept in a channel reads back as the plain map.
pub fn document_to_view(value: Value, notices: &mut Vec<String>) -> Value {
    render(value, notices, false)
}

fn render(value: Value, notices: &mut Vec<String>, interrupts: bool) -> Value {
    match value {
        // Rendered in place: the containers are reused, not rebuilt.
        Value::Array(mut items) => {
            for v in &mut items {
                *v = render(std::mem::take(v), notices, interrupts);
            }
            Value::Array(items)
        }
        Value::Object(mut map) => {
            for v in map.values_mut() {
                *v = render(std::mem::take(v), notices, interrupts);
            }
            if let Some(v) = marker(&map, interrupts) {
                return v;
            }
            match constructor(&map) {
                Some(obj) => match revival(&obj) {
                    Some(Revival::As(value, what)) => {
                        notices.push(lost(&obj, what));
                        value
                    }
                    Some(Revival::Envelope) => {
                        notices.push(lost(&obj, "the envelope itself, a plain map"));
                        Value::Object(map)
                    }
                    None => {
                        let rendered = python::render(obj, python::Style::Python);
                        notices.extend(rendered.notice);
                        rendered.value
                    }
                },
                None => Value::Object(map),
            }
        }
        other => other,
    }
}

/// What LangGraph reads back for an envelope langgraph-redis wrote without the
/// object's value (it stores `__dict__`, and these classes have none).
pub enum Revival {
    /// The class called with no arguments (`Decimal()`), or None when that fails.
    As(Value, &'static str),
    /// A class LangGraph will not construct: the envelope comes back as a map.
    Envelope,
}

fn revival(obj: &PyObject) -> Option<Revival> {
    // `__notes__` is an exception's own attribute (`add_note`): LangGraph's error
    // writes are exceptions, stored as their `__dict__`, and `cls(**kwargs)` raises.
    if obj
        .kwargs
        .as_ref()
        .is_some_and(|k| k.contains_key("__notes__"))
    {
        return Some(Revival::As(
            Value::Null,
            "None (an exception takes no keyword arguments)",
        ));
    }
    let no_kwargs = obj.kwargs.as_ref().is_none_or(Map::is_empty);
    valueless_revival(&obj.module, &obj.name, obj.args.is_empty(), no_kwargs)
}

/// [`Revival`] of an envelope of `module.name` by whether it carries arguments.
pub fn valueless_revival(
    module: &str,
    name: &str,
    no_args: bool,
    no_kwargs: bool,
) -> Option<Revival> {
    let empty = no_args && no_kwargs;
    let revived = |v: Value, what| Some(Revival::As(v, what));
    match (module, name) {
        ("decimal", "Decimal") if empty => revived("0".into(), "Decimal('0')"),
        ("datetime", "timedelta") if empty => revived(0.0.into(), "timedelta(0)"),
        ("builtins", "frozenset") if empty => {
            revived(Value::Array(Vec::new()), "an empty frozenset")
        }
        ("collections", "deque") if empty => revived(Value::Array(Vec::new()), "an empty deque"),
        ("pathlib", _) if empty => revived(".".into(), "Path('.')"),
        ("datetime", "timezone") | ("zoneinfo", "ZoneInfo") | ("langgraph.store.base", "Item")
            if empty =>
        {
            revived(Value::Null, "None")
        }
        // Networks and interfaces keep their parts as envelopes that revive to None.
        ("ipaddress", _) if no_args => revived(Value::Null, "None"),
        // An exception's `__dict__` holds only its notes; `ValueError(**kwargs)` raises.
        ("builtins", name) if !no_kwargs && is_builtin_exception(name) => revived(
            Value::Null,
            "None (an exception takes no keyword arguments)",
        ),
        ("re", "Pattern")
        | ("numpy", "ndarray")
        | ("pydantic.types", "SecretStr" | "SecretBytes") => Some(Revival::Envelope),
        _ => None,
    }
}

/// Python's built-in exception classes, by their naming convention.
fn is_builtin_exception(name: &str) -> bool {
    name.ends_with("Error")
        || name.ends_with("Exception")
        || name.ends_with("Warning")
        || matches!(
            name,
            "StopIteration"
                | "StopAsyncIteration"
                | "KeyboardInterrupt"
                | "SystemExit"
                | "GeneratorExit"
        )
}

fn lost(obj: &PyObject, what: &str) -> String {
    format!(
        "langgraph-redis stored {}.{} without its value; LangGraph reads back {what}",
        obj.module, obj.name
    )
}

/// langgraph-redis' markers for LangGraph types: `{"__interrupt__": true, "value",
/// "id"}` is an `Interrupt` (its dataclass fields, `response_schema` defaulting to
/// null), `{"__send__": true, "node", "arg"}` a `Send`.
fn marker(map: &Map<String, Value>, interrupts: bool) -> Option<Value> {
    let field = |name: &str| map.get(name).cloned().unwrap_or(Value::Null);
    if interrupts && map.get("__interrupt__") == Some(&Value::Bool(true)) {
        return Some(crate::json_value::object([
            ("value", field("value")),
            ("id", field("id")),
            ("response_schema", field("response_schema")),
        ]));
    }
    if map.get("__send__") == Some(&Value::Bool(true)) {
        return Some(crate::json_value::object([
            ("node", field("node")),
            ("arg", field("arg")),
        ]));
    }
    None
}

fn constructor(map: &Map<String, Value>) -> Option<PyObject> {
    if map.get("lc")?.as_i64()? != 2 || map.get("type")?.as_str()? != "constructor" {
        return None;
    }
    let id: Vec<&str> = map
        .get("id")?
        .as_array()?
        .iter()
        .map(Value::as_str)
        .collect::<Option<_>>()?;
    let (name, module) = id.split_last()?;
    let (method, kind) = match map.get("method") {
        Some(Value::String(m)) => (Some(m.clone()), PyKind::Constructor),
        // `[null, "model_construct"]` (pydantic v2) / `[null, "construct"]` (v1).
        Some(Value::Array(_)) => (None, PyKind::PydanticModel),
        _ => (None, PyKind::Constructor),
    };
    Some(PyObject {
        module: module.join("."),
        name: (*name).to_owned(),
        args: match map.get("args") {
            Some(Value::Array(args)) => args.clone(),
            _ => Vec::new(),
        },
        kwargs: match map.get("kwargs") {
            Some(Value::Object(kw)) => Some(kw.clone()),
            _ => None,
        },
        method,
        kind,
    })
}

/// The view's text of the JSON value `bytes` when rendering it changes nothing but
/// its whitespace and escapes (no `lc` envelope, no `__interrupt__` or `__send__`
/// marker, no repeated key, finite numbers): the compact text the tree path
/// ([`parse`], [`to_view`], then `json_text`) writes, without building the tree.
/// `None` whenever it is not that simple (the tree path then decides, errors included).
///
/// SqliteSaver and PostgresSaver keep metadata as JSON text, and parsing it into a
/// tree (a map per object, a `String` per number) was a twentieth of a decoded export.
pub fn plain_view_text(bytes: &[u8]) -> Option<String> {
    compact(bytes, true)
}

/// The compact text serde_json writes of its tree of the JSON value `bytes` (the raw
/// form a store that keeps JSON documents gets, whitespace and escapes made
/// serde_json's), without building the tree. `None` whenever the tree would change
/// more than that (a repeated key, which the tree keeps once) or the text is not
/// plain JSON; the caller then takes the tree's text.
pub fn compact_text(bytes: &[u8]) -> Option<String> {
    compact(bytes, false)
}

/// `bytes` written compact; with `view`, `None` at the markers the view renders.
fn compact(bytes: &[u8], view: bool) -> Option<String> {
    let mut compact = Compact {
        bytes,
        pos: 0,
        out: Vec::with_capacity(bytes.len()),
        view,
    };
    compact.value(0)?;
    compact.skip_space();
    if compact.pos != bytes.len() {
        return None;
    }
    String::from_utf8(compact.out).ok()
}

/// Reads JSON text and writes it compact, as serde_json writes its tree.
struct Compact<'a> {
    bytes: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    /// Refuse the keys the view renders (`lc` envelopes, `__interrupt__`, `__send__`).
    view: bool,
}

impl Compact<'_> {
    fn skip_space(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        // Deep nesting is the tree path's to refuse (serde_json's recursion limit).
        if depth > 64 {
            return None;
        }
        match self.next()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if self.open(b'}')? {
            return Some(());
        }
        // Where each key's escaped text is in the output: equal texts, equal keys.
        let mut keys: Vec<(usize, usize)> = Vec::new();
        loop {
            if self.next()? != b'"' {
                return None;
            }
            let key_at = self.out.len() + 1;
            self.string()?;
            let key_end = self.out.len() - 1;
            let key = &self.out[key_at..key_end];
            if (self.view && matches!(key, b"lc" | b"__interrupt__" | b"__send__"))
                || keys.iter().any(|&(a, b)| &self.out[a..b] == key)
            {
                return None;
            }
            keys.push((key_at, key_end));
            if self.next()? != b':' {
                return None;
            }
            self.pos += 1;
            self.out.push(b':');
            self.value(depth + 1)?;
            if !self.after_member(b'}')? {
                return Some(());
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if self.open(b']')? {
            return Some(());
        }
        loop {
            self.value(depth + 1)?;
            if !self.after_member(b']')? {
                return Some(());
            }
        }
    }

    /// Opens the container at the cursor (its opening byte), closed by `close`;
    /// `true` when it is empty (then written whole).
    fn open(&mut self, close: u8) -> Option<bool> {
        self.out.push(self.bytes[self.pos]);
        self.pos += 1;
        let empty = self.next()? == close;
        if empty {
            self.pos += 1;
            self.out.push(close);
        }
        Some(empty)
    }

    /// After a member of a container closed by `close`: `true` at a comma (another
    /// member follows), `false` at `close` (the container ended); both written.
    fn after_member(&mut self, close: u8) -> Option<bool> {
        let byte = self.next()?;
        if byte != b',' && byte != close {
            return None;
        }
        self.pos += 1;
        self.out.push(byte);
        Some(byte == b',')
    }

    /// The string at the cursor (its opening quote), written with serde_json's
    /// escapes: as it is when it holds no escape, else decoded by serde_json first.
    fn string(&mut self) -> Option<()> {
        let start = self.pos + 1;
        let rest = self.bytes.get(start..)?;
        let end = crate::json_text::unescaped_len(rest);
        match *rest.get(end)? {
            b'"' => {
                let text = std::str::from_utf8(&rest[..end]).ok()?;
                crate::json_text::write_str(&mut self.out, text);
                self.pos = start + end + 1;
            }
            b'\\' => {
                let mut at = end;
                loop {
                    match *rest.get(at)? {
                        b'\\' => at += 2,
                        b'"' => break,
                        _ => at += 1,
                    }
                }
                let token = &self.bytes[self.pos..=start + at];
                let text: String = serde_json::from_slice(token).ok()?;
                crate::json_text::write_str(&mut self.out, &text);
                self.pos = start + at + 1;
            }
            // A raw control character: not JSON.
            _ => return None,
        }
        Some(())
    }

    /// A number, as serde_json keeps it (its text, checked by serde_json).
    fn number(&mut self) -> Option<()> {
        let rest = &self.bytes[self.pos..];
        let len = rest
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(rest.len());
        let number: serde_json::Number = serde_json::from_slice(&rest[..len]).ok()?;
        self.out.extend_from_slice(number.as_str().as_bytes());
        self.pos += len;
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.bytes[self.pos..].starts_with(word) {
            return None;
        }
        self.out.extend_from_slice(word);
        self.pos += word.len();
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lc2_envelopes_and_keeps_lc1() {
        let text = br#"{
          "when": {"lc": 2, "type": "constructor", "id": ["datetime", "datetime"],
                   "method": "fromisoformat", "args": ["2025-01-01T00:00:00+00:00"]},
          "tags": {"lc": 2, "type": "constructor", "id": ["builtins", "set"], "args": [["b", "a"]]},
          "msg": {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
                  "kwargs": {"content": "hi", "type": "human"}},
          "profile": {"lc": 2, "type": "constructor", "id": ["app", "Profile"],
                      "method": [null, "model_construct"], "kwargs": {"name": "Ada"}}
        }"#;
        let mut notices = Vec::new();
        let view = to_view(parse(text).unwrap(), &mut notices);
        assert_eq!(view["when"], "2025-01-01T00:00:00+00:00");
        assert_eq!(view["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(view["msg"]["lc"], 1);
        assert_eq!(view["profile"]["__type__"], "app.Profile");
        assert!(notices.is_empty());
    }

    /// Every JSON number keeps its exact value through a parse and a write: random
    /// f64 bit patterns, -0.0, exponents, integers past 2^53 and past 64 bits.
    #[test]
    fn numbers_round_trip_exactly() {
        use rand::{RngExt as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut texts: Vec<String> = (0..20_000)
            .map(|_| f64::from_bits(rng.random::<u64>()))
            .filter(|f| f.is_finite())
            .map(|f| serde_json::to_string(&f).unwrap())
            .collect();
        texts.extend(
            [
                "0.9949503943874963",
                "-0.0",
                "5e-324",
                "1e308",
                "1e+308",
                "1E-7",
                "2.5e-05",
                "9007199254740993",
                "-9223372036854775808",
                "18446744073709551615",
                "1267650600228229401496703205376",
                "-1208925819614629174706176",
            ]
            .map(String::from),
        );
        for text in &texts {
            let doc = format!("{{\"m\": {text}}}");
            let value = parse(doc.as_bytes()).unwrap();
            let written = value.to_string();
            let again = parse(written.as_bytes()).unwrap();
            let (a, b) = (&value["m"], &again["m"]);
            assert_eq!(a, b, "{text} -> {written}");
            // The same double (or the same digits) as the text Python wrote.
            match text.parse::<f64>() {
                Ok(f) if text.contains(['.', 'e', 'E']) => {
                    assert_eq!(a.as_f64().unwrap().to_bits(), f.to_bits(), "{text}")
                }
                _ => assert_eq!(a.to_string(), *text, "{text}"),
            }
        }
    }

    #[test]
    fn valueless_envelopes_read_as_langgraph_reads_them() {
        let text = br#"{
          "d": {"lc": 2, "type": "constructor", "id": ["decimal", "Decimal"], "kwargs": {}},
          "t": {"lc": 2, "type": "constructor", "id": ["datetime", "timedelta"], "kwargs": {}},
          "z": {"lc": 2, "type": "constructor", "id": ["zoneinfo", "ZoneInfo"], "kwargs": {}},
          "n": {"lc": 2, "type": "constructor", "id": ["ipaddress", "IPv4Network"],
                "kwargs": {"network_address": {"lc": 2, "type": "constructor", "id": ["ipaddress", "IPv4Address"], "kwargs": {}}}},
          "r": {"lc": 2, "type": "constructor", "id": ["re", "Pattern"], "kwargs": {}},
          "s": {"lc": 2, "type": "constructor", "id": ["builtins", "set"], "args": [["b", "a"]]}
        }"#;
        let mut notices = Vec::new();
        let view = to_view(parse(text).unwrap(), &mut notices);
        assert_eq!(view["d"], "0");
        assert_eq!(view["t"], 0.0);
        assert_eq!(view["z"], Value::Null);
        assert_eq!(view["n"], Value::Null);
        assert_eq!(view["r"]["id"], serde_json::json!(["re", "Pattern"]));
        assert_eq!(view["s"], serde_json::json!(["a", "b"]));
        assert_eq!(notices.len(), 6, "{notices:?}");
        assert!(
            notices[0].contains("decimal.Decimal without its value"),
            "{notices:?}"
        );
    }

    #[test]
    fn reads_python_non_finite_floats_outside_strings() {
        let text = br#"{"a": NaN, "b": [Infinity, -Infinity], "s": "NaN \" Infinity", "c": 0.9949503943874963}"#;
        let v = parse(text).unwrap();
        assert_eq!(v["a"], serde_json::json!({"__float__": "NaN"}));
        assert_eq!(v["b"][0], serde_json::json!({"__float__": "Infinity"}));
        assert_eq!(v["b"][1], serde_json::json!({"__float__": "-Infinity"}));
        assert_eq!(v["s"], "NaN \" Infinity");
        assert_eq!(v["c"].as_f64(), Some(0.9949503943874963));
        assert!(parse(b"{\"a\": Nope}").is_err());
    }

    #[test]
    fn compact_text_is_the_trees_text_markers_included() {
        let tree = |text: &str| serde_json::from_str::<Value>(text).unwrap().to_string();
        for text in [
            r#" { "a" : [ 1 , 2.50 , -0 , 1e5 , 1E+5 , 123456789012345678901234567890 ] } "#,
            r#"{"esc": "a\"b\\c\/d\n\t\u0001\u00e9\ud83d\ude80", "raw": "Grüße 日本"}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["uuid", "UUID"], "args": ["0"]}"#,
            r#"{"a": {"__interrupt__": true, "value": 1}, "b": {"__send__": true}}"#,
            r#"{"__bytes__": "AAE=", "e": [], "o": {}}"#,
        ] {
            assert_eq!(compact_text(text.as_bytes()), Some(tree(text)), "{text}");
        }
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": 1, "\u0061": 2}"#,
            "{",
            r#"{"x": NaN}"#,
        ] {
            assert_eq!(compact_text(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn plain_json_is_written_as_the_tree_path_writes_it_or_left_to_it() {
        let tree = |text: &str| {
            parse(text.as_bytes())
                .map(|v| crate::json_text::to_string(&to_view(v, &mut Vec::new())))
                .ok()
        };
        let plain = [
            r#"{"source": "loop", "step": -1, "parents": {}, "writes": null}"#,
            r#" { "a" : [ 1 , 2.50 , -0 , 1e5 , 1E+5 , -1.5e-7 , 123456789012345678901234567890 ] } "#,
            r#"{"t": true, "f": false, "n": null, "e": [], "o": {"x": {}}}"#,
            r#"{"esc": "a\"b\\c\/d\n\t\u0001\u00e9\u65e5\ud83d\ude80", "raw": "Grüße 日本"}"#,
            r#"["lc", {"lcx": 1, "Lc": 2}]"#,
            r#""just a string""#,
            "null",
            "12",
        ];
        for text in plain {
            let fast = plain_view_text(text.as_bytes());
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, tree(text), "{text}");
        }
        // Left to the tree path: what it renders, repeated keys, Python's
        // non-finite floats, and what is not JSON (the tree path's error).
        let left = [
            r#"{"lc": 2, "type": "constructor", "id": ["uuid", "UUID"], "args": ["0"]}"#,
            r#"{"a": {"__interrupt__": true, "value": 1}}"#,
            r#"{"__send__": true, "node": "n", "arg": 1}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": 1, "\u0061": 2}"#,
            r#"{"\u006cc": 1}"#,
            r#"{"x": NaN}"#,
            r#"{"x": -Infinity}"#,
            r#"{"x": 1,}"#,
            r#"{"x": 01}"#,
            r#"{"x": "tab	inside"}"#,
            r#"{"x": 1} trailing"#,
            "",
            "\u{ff}",
        ];
        for text in left {
            assert_eq!(plain_view_text(text.as_bytes()), None, "{text}");
        }
        assert_eq!(plain_view_text(b"{\"bad\": \"\xff\"}"), None);
    }
}
