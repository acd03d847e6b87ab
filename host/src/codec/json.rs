//! LangGraph's legacy `json` serialization: JSON text in which LangChain objects are
//! already in their `lc: 1` constructor form and other Python objects are
//! `{"lc": 2, "type": "constructor", "id": [...module, Class], "method"?, "args"?, "kwargs"?}`.

use std::ops::Range;

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

/// The view's text of the JSON value `bytes`, its notices added to `notices`: the
/// text the tree path ([`parse`], [`to_view`], then `json_text`) writes, written as
/// the text is read. Only the objects the view changes (`lc: 2` envelopes,
/// `__interrupt__` and `__send__` markers) and objects with a repeated key are made
/// trees, each on its own, and rendered. `None` (and no notice) whenever it is not
/// that simple: Python's non-finite floats, nesting deeper than 64, text that is not
/// JSON; the tree path then decides, errors included.
///
/// SqliteSaver and PostgresSaver keep metadata as JSON text, and parsing it into a
/// tree (a map per object, a `String` per number) was a twentieth of a decoded export.
pub fn view_text(bytes: &[u8], notices: &mut Vec<String>) -> Option<String> {
    let mut compact = Compact::new(bytes, Some(Render::new(true)));
    compact.value(0)?;
    compact.finish(notices)
}

/// The compact text serde_json writes of its tree of the JSON value `bytes` (the raw
/// form a store that keeps JSON documents gets, whitespace and escapes made
/// serde_json's), without building the tree. `None` whenever the tree would change
/// more than that (a repeated key, which the tree keeps once) or the text is not
/// plain JSON; the caller then takes the tree's text.
pub fn compact_text(bytes: &[u8]) -> Option<String> {
    let mut compact = Compact::new(bytes, None);
    compact.value(0)?;
    compact.finish(&mut Vec::new())
}

/// A JSON checkpoint document's view as text (PostgreSQL's JSONB, langgraph-redis'
/// documents) and its top-level `ts` when that is a string, its notices added to
/// `notices`: what the tree path ([`parse`], [`document_to_view`], then
/// `codec::document_tree_text`) writes, written as [`view_text`] writes JSON.
///
/// With `channels` (values stored apart, as view text), those are set in the
/// document's `channel_values` map as the tree path sets them: after the stored
/// channels, the map added last when the document has none. `None` (and no notice)
/// whenever it is not that simple: what [`view_text`] leaves to the tree, a document
/// that is not an object or whose top-level keys repeat, a `channel_values` that is
/// no plain object, a channel stored both in the document and apart (the tree path
/// replaces it in place).
///
/// The tree of a langgraph-redis document (its messages inline) was most of the
/// decoding of a Redis export.
pub fn document_view_text(
    bytes: &[u8],
    channels: Option<&[(String, String)]>,
    notices: &mut Vec<String>,
) -> Option<(String, Option<String>)> {
    let mut compact = Compact::new(bytes, Some(Render::new(false)));
    if compact.next()? != b'{' {
        return None;
    }
    let (mut ts, mut merged) = (None, false);
    compact.object_with(0, |compact, key, depth| {
        let name = &compact.out[key];
        let (is_ts, is_channels) = (name == b"ts", name == b"channel_values");
        match channels {
            Some(channels) if is_channels => {
                compact.channel_values(depth + 1, channels)?;
                merged = true;
            }
            _ => {
                let at = compact.out.len();
                compact.value(depth + 1)?;
                if is_ts {
                    ts = serde_json::from_slice::<String>(&compact.out[at..]).ok();
                }
            }
        }
        Some(())
    })?;
    if let Some(channels) = channels.filter(|_| !merged) {
        compact.out.pop();
        if compact.out.len() > 1 {
            compact.out.push(b',');
        }
        compact.out.extend_from_slice(b"\"channel_values\":{");
        compact.write_channels(false, channels);
        compact.out.push(b'}');
    }
    Some((compact.finish(notices)?, ts))
}

/// How deep [`Compact`] reads (containers in containers); deeper text is left to the
/// tree path, which fails at serde_json's recursion limit (128).
const MAX_DEPTH: usize = 64;

/// How many containers deep `value` is (0 for a scalar).
fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Reads JSON text and writes it compact, as serde_json writes its tree.
struct Compact<'a> {
    bytes: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    /// Writing the view: the objects it changes are rendered as trees.
    render: Option<Render>,
    /// The object being read was refused (a key the view renders, or repeated):
    /// the innermost object that can be a tree takes it.
    refused: bool,
    /// How many values were read again as trees (the tests check which are not).
    trees: usize,
}

/// How [`Compact`] renders what the view changes.
struct Render {
    /// Whether `__interrupt__` markers are rendered (not in documents: LangGraph's
    /// checkpoint path does not revive them).
    interrupts: bool,
    /// The notices of what was rendered, handed over once the whole text is read.
    notices: Vec<String>,
}

impl Render {
    fn new(interrupts: bool) -> Self {
        Render {
            interrupts,
            notices: Vec::new(),
        }
    }
}

impl<'a> Compact<'a> {
    fn new(bytes: &'a [u8], render: Option<Render>) -> Self {
        Compact {
            bytes,
            pos: 0,
            out: Vec::with_capacity(bytes.len()),
            render,
            refused: false,
            trees: 0,
        }
    }

    /// The text written, once the input is read to its end; the notices of what was
    /// rendered added to `notices`.
    fn finish(mut self, notices: &mut Vec<String>) -> Option<String> {
        self.skip_space();
        if self.pos != self.bytes.len() {
            return None;
        }
        let text = String::from_utf8(self.out).ok()?;
        if let Some(render) = &mut self.render {
            notices.append(&mut render.notices);
        }
        Some(text)
    }

    /// The value at `depth` that starts at `start` (written from `written` on, after
    /// `noted` notices) read again as a tree and written rendered, over what was
    /// written of it; `None` when the whole value nests deeper than [`MAX_DEPTH`], as
    /// the text itself does.
    fn tree_at(&mut self, start: usize, written: usize, noted: usize, depth: usize) -> Option<()> {
        let render = self.render.as_mut()?;
        self.trees += 1;
        render.notices.truncate(noted);
        self.out.truncate(written);
        let mut values = serde_json::Deserializer::from_slice(&self.bytes[start..]).into_iter();
        let value: Value = values.next()?.ok()?;
        if depth + nesting(&value) > MAX_DEPTH + 1 {
            return None;
        }
        self.pos = start + values.byte_offset();
        let value = self::render(value, &mut render.notices, render.interrupts);
        crate::json_text::write_value(&mut self.out, &value);
        Some(())
    }

    /// The document's `channel_values` object at the cursor, with `channels` set in
    /// it after the stored ones; `None` when it is no object or stores one of them.
    fn channel_values(&mut self, depth: usize, channels: &[(String, String)]) -> Option<()> {
        if self.next()? != b'{' {
            return None;
        }
        let stored = self.object(depth)?;
        let mut escaped = Vec::new();
        for (name, _) in channels {
            escaped.clear();
            crate::json_text::write_str(&mut escaped, name);
            let name = &escaped[1..escaped.len() - 1];
            if stored.iter().any(|key| &self.out[key.clone()] == name) {
                return None;
            }
        }
        self.out.pop();
        self.write_channels(!stored.is_empty(), channels);
        Some(())
    }

    /// `channels` as members of the object being written (after others when
    /// `after_others`), and its closing brace.
    fn write_channels(&mut self, after_others: bool, channels: &[(String, String)]) {
        let mut comma = after_others;
        for (name, text) in channels {
            if std::mem::replace(&mut comma, true) {
                self.out.push(b',');
            }
            crate::json_text::write_str(&mut self.out, name);
            self.out.push(b':');
            self.out.extend_from_slice(text.as_bytes());
        }
        self.out.push(b'}');
    }

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
        if depth > MAX_DEPTH {
            return None;
        }
        match self.next()? {
            b'{' => {
                let start = (self.pos, self.out.len());
                let noted = self.render.as_ref().map_or(0, |r| r.notices.len());
                let object = match self.field_map_envelope(depth) {
                    Some(streamed) => streamed,
                    None => self.object(depth).map(|_keys| ()),
                };
                if object.is_none() && std::mem::take(&mut self.refused) {
                    return self.tree_at(start.0, start.1, noted, depth);
                }
                object
            }
            b'[' => self.array(depth),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An `lc: 2` envelope whose view is its keyword arguments, written as they are
    /// read, without a tree: a class with no rule of its own (a dataclass: its field
    /// map) or a pydantic model (that map and its `__type__`), as
    /// [`python::render`] renders them. Dataclasses and models are most of what a
    /// langgraph-redis document holds in envelopes, and their trees were a third of
    /// its decoding.
    ///
    /// `None`, the cursor where it was, when the text at the cursor is not such an
    /// envelope written as LangGraph's serializer writes one (`lc`, `type`, `id`,
    /// `method`?, then `kwargs`, plain keys); `Some(None)` with `refused` set when
    /// the rest of it shows the view renders it otherwise (its tree then decides).
    fn field_map_envelope(&mut self, depth: usize) -> Option<Option<()>> {
        self.render.as_ref()?;
        let start = self.pos;
        let head = self.envelope_head();
        let Some((module, name, pydantic)) = head.filter(|(module, name, pydantic)| {
            let other_rule = python::has_rule_by_name(module)
                || (*pydantic && super::langchain::is_serializable(module))
                || [true, false]
                    .into_iter()
                    .any(|no_kwargs| valueless_revival(module, name, true, no_kwargs).is_some());
            !other_rule
        }) else {
            self.pos = start;
            return None;
        };
        if self.next() != Some(b'{') {
            self.pos = start;
            return None;
        }
        let keys = match self.object(depth + 1) {
            Some(keys) => keys,
            // The arguments refused themselves: the envelope's tree decides.
            None => return Some(None),
        };
        let key_is = |name: &[u8]| keys.iter().any(|k| &self.out[k.clone()] == name);
        // An exception's notes (revived as None), a model's own `__type__` (replaced
        // in place), anything after the arguments (`args`: another rule).
        let other_rule = key_is(b"__notes__") || (pydantic && key_is(b"__type__"));
        if other_rule || self.next() != Some(b'}') {
            self.refused = true;
            return Some(None);
        }
        self.pos += 1;
        if pydantic {
            self.out.pop();
            if !keys.is_empty() {
                self.out.push(b',');
            }
            self.out.extend_from_slice(b"\"__type__\":");
            crate::json_text::write_str(&mut self.out, &format!("{module}.{name}"));
            self.out.push(b'}');
        }
        Some(Some(()))
    }

    /// The head of an `lc: 2` envelope up to its `kwargs` value, nothing written:
    /// the class's module and name, and whether it is a pydantic model (a `method`
    /// of `[null, name]`). `None` for anything else.
    fn envelope_head(&mut self) -> Option<(String, &'a str, bool)> {
        self.expect(b"{")?;
        self.expect(b"\"lc\"")?;
        self.expect(b":")?;
        if !self.at_token(b"2") {
            return None;
        }
        self.pos += 1;
        self.expect(b",")?;
        self.expect(b"\"type\"")?;
        self.expect(b":")?;
        self.expect(b"\"constructor\"")?;
        self.expect(b",")?;
        self.expect(b"\"id\"")?;
        self.expect(b":")?;
        self.expect(b"[")?;
        let mut id = vec![self.plain_string()?];
        while self.expect(b",").is_some() {
            id.push(self.plain_string()?);
        }
        self.expect(b"]")?;
        self.expect(b",")?;
        let pydantic = self.expect(b"\"method\"").is_some();
        if pydantic {
            self.expect(b":")?;
            self.expect(b"[")?;
            self.expect(b"null")?;
            self.expect(b",")?;
            self.plain_string()?;
            self.expect(b"]")?;
            self.expect(b",")?;
        }
        self.expect(b"\"kwargs\"")?;
        self.expect(b":")?;
        let (name, module) = id.split_last()?;
        Some((module.join("."), name, pydantic))
    }

    /// Steps over `token` after any whitespace; `None` (the cursor moved over the
    /// whitespace only) when the text does not go on with it.
    fn expect(&mut self, token: &[u8]) -> Option<()> {
        self.skip_space();
        self.bytes[self.pos..]
            .starts_with(token)
            .then(|| self.pos += token.len())
    }

    /// The string at the cursor when it has no escape, stepped over.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b"\"")?;
        let rest = &self.bytes[self.pos..];
        let end = crate::json_text::unescaped_len(rest);
        if rest.get(end) != Some(&b'"') {
            return None;
        }
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// The object at the cursor, written; where its keys' escaped texts are in `out`.
    fn object(&mut self, depth: usize) -> Option<Vec<Range<usize>>> {
        self.object_with(depth, |compact, _key, depth| compact.value(depth + 1))
    }

    /// The object at the cursor, each member's value written by `member`, given the
    /// key's escaped text (where it is in `out`) and the object's depth; where its
    /// keys' escaped texts are in `out`.
    fn object_with(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, Range<usize>, usize) -> Option<()>,
    ) -> Option<Vec<Range<usize>>> {
        if self.open(b'}')? {
            return Some(Vec::new());
        }
        // Where each key's escaped text is in the output: equal texts, equal keys.
        let mut keys: Vec<Range<usize>> = Vec::new();
        loop {
            if self.next()? != b'"' {
                return None;
            }
            let key_at = self.out.len() + 1;
            self.string()?;
            let key = key_at..self.out.len() - 1;
            let text = &self.out[key.clone()];
            let view = self.render.is_some();
            if (view && matches!(text, b"__interrupt__" | b"__send__"))
                || keys.iter().any(|k| &self.out[k.clone()] == text)
            {
                self.refused = true;
                return None;
            }
            let envelope_key = view && text == b"lc";
            keys.push(key.clone());
            if self.next()? != b':' {
                return None;
            }
            self.pos += 1;
            self.out.push(b':');
            // `lc: 1` is a LangChain object, kept as it is; any other `lc` may be an
            // envelope the view renders.
            if envelope_key && !self.at_token(b"1") {
                self.refused = true;
                return None;
            }
            member(self, key, depth)?;
            if !self.after_member(b'}')? {
                return Some(keys);
            }
        }
    }

    /// Whether the value at the cursor is the number `token` (not a longer one).
    fn at_token(&mut self, token: &[u8]) -> bool {
        self.next().is_some()
            && self.bytes[self.pos..].starts_with(token)
            && !matches!(
                self.bytes.get(self.pos + token.len()),
                Some(b'0'..=b'9' | b'.' | b'e' | b'E')
            )
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
            // Nothing serde_json escapes (no quote, backslash or control byte): the
            // bytes are its text. Their UTF-8 is checked once, with the whole output,
            // in `finish`.
            b'"' => {
                self.out
                    .extend_from_slice(&self.bytes[self.pos..=start + end]);
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
    fn json_is_written_as_the_tree_path_writes_it_or_left_to_it() {
        let tree = |text: &str| {
            let mut notices = Vec::new();
            parse(text.as_bytes()).ok().map(|v| {
                let text = crate::json_text::to_string(&to_view(v, &mut notices));
                (text, notices)
            })
        };
        let written = [
            r#"{"source": "loop", "step": -1, "parents": {}, "writes": null}"#,
            r#" { "a" : [ 1 , 2.50 , -0 , 1e5 , 1E+5 , -1.5e-7 , 123456789012345678901234567890 ] } "#,
            r#"{"t": true, "f": false, "n": null, "e": [], "o": {"x": {}}}"#,
            r#"{"esc": "a\"b\\c\/d\n\t\u0001\u00e9\u65e5\ud83d\ude80", "raw": "Grüße 日本"}"#,
            r#"["lc", {"lcx": 1, "Lc": 2}]"#,
            r#""just a string""#,
            "null",
            "12",
            // LangChain's own objects are kept as they are.
            r#"{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"], "kwargs": {"content": "hi"}}"#,
            r#"[{"\u006cc" : 1 }, {"lc": 1, "type": "not_implemented", "id": ["x"]}]"#,
            // What the view renders, each object a tree of its own, notices in order.
            r#"{"lc": 2, "type": "constructor", "id": ["uuid", "UUID"], "args": ["0"]}"#,
            r#"{"a": [{"__interrupt__": true, "value": 1}, {"lc": 2, "type": "constructor", "id": ["decimal", "Decimal"]}], "b": 1}"#,
            r#"{"__send__": true, "node": "n", "arg": 1}"#,
            r#"{"x": {"lc": 2, "type": "constructor", "id": ["datetime", "timedelta"]}, "lc": 2, "type": "constructor", "id": ["pathlib", "Path"]}"#,
            r#"{"x": {"lc": 2, "type": "constructor", "id": ["datetime", "timedelta"]}, "y": {"lc": 2, "type": "constructor", "id": ["builtins", "frozenset"]}}"#,
            r#"{"\u006cc": 2, "type": "constructor", "id": ["builtins", "set"], "args": [[1]]}"#,
            r#"{"lc": 1.0}"#,
            r#"{"lc": 10}"#,
            r#"{"lc": "1"}"#,
            // Repeated keys: the tree keeps the last value, where the first was.
            r#"{"a": 1, "b": {"c": 1, "c": [2]}, "a": 2}"#,
            r#"{"a": 1, "\u0061": 2}"#,
        ];
        for text in written {
            let mut notices = Vec::new();
            let fast = view_text(text.as_bytes(), &mut notices);
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast.map(|t| (t, notices)), tree(text), "{text}");
        }
        // Left to the tree path, with no notice: Python's non-finite floats, deep
        // nesting, and what is not JSON (the tree path's error).
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        // An envelope's tree nests no deeper than the text is read.
        let deep_envelope = format!(
            r#"{{"x": {{"lc": 2, "type": "constructor", "id": ["builtins", "set"], "args": {}1{}}}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        let left = [
            r#"{"x": NaN}"#,
            r#"{"d": {"lc": 2, "type": "constructor", "id": ["decimal", "Decimal"]}, "x": -Infinity}"#,
            r#"{"x": 1,}"#,
            r#"{"x": 01}"#,
            r#"{"x": "tab	inside"}"#,
            r#"{"x": 1} trailing"#,
            r#"{"x": {"lc": 2, "a": 1,}}"#,
            &deep,
            &deep_envelope,
            "",
            "\u{ff}",
        ];
        for text in left {
            let mut notices = Vec::new();
            assert_eq!(view_text(text.as_bytes(), &mut notices), None, "{text}");
            assert!(notices.is_empty(), "{text}");
        }
        assert_eq!(view_text(b"{\"bad\": \"\xff\"}", &mut Vec::new()), None);
    }

    /// Envelopes whose view is their keyword arguments (dataclasses, pydantic
    /// models, classes with no rule of their own) are written as they are read, with
    /// no tree of their own, and give the tree path's text and notices; written any
    /// other way, or rendered by another rule, they take the tree.
    #[test]
    fn field_map_envelopes_are_written_without_a_tree() {
        let tree = |text: &str| {
            let mut notices = Vec::new();
            let view = to_view(parse(text.as_bytes()).unwrap(), &mut notices);
            (crate::json_text::to_string(&view), notices)
        };
        let dataclass = r#"{"lc": 2, "type": "constructor", "id": ["fixture_models", "CustomerProfile"], "kwargs": {"customer_id": "C0002", "flags": ["beta", "vip"], "address": {"city": "Paris"}, "notes": null}}"#;
        let model = r#"{"lc":2,"type":"constructor","id":["app","models","Order"],"method":[null,"model_construct"],"kwargs":{"id":7,"when":{"lc":2,"type":"constructor","id":["datetime","timedelta"],"args":[1,2,3]}}}"#;
        let streamed = [
            (dataclass.to_owned(), 0),
            (model.to_owned(), 1),
            (format!("[{dataclass}, {model}]"), 1),
            (
                r#"{"lc": 2, "type": "constructor", "id": ["m", "Empty"], "method": [null, "construct"], "kwargs": {}}"#.to_owned(),
                0,
            ),
            (
                r#"{"lc": 2, "type": "constructor", "id": ["m", "Empty"], "kwargs": {}}"#.to_owned(),
                0,
            ),
            (r#"{ "lc" : 2 , "type" : "constructor" , "id" : [ "Solo" ] , "kwargs" : { "a" : 1 } }"#.to_owned(), 0),
            // An unknown class inside: a tree of its own, its notice given.
            (
                r#"{"lc": 2, "type": "constructor", "id": ["m", "Outer"], "kwargs": {"u": {"lc": 2, "type": "constructor", "id": ["m", "Odd"], "args": [1, 2]}, "i": {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"], "kwargs": {"content": "hi"}}}}"#.to_owned(),
                1,
            ),
        ];
        // Each is a tree: another rule, another order, escapes, what follows.
        let refused = [
            r#"{"lc": 2, "type": "constructor", "id": ["datetime", "timedelta"], "kwargs": {}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["langchain_core", "messages", "ai", "AIMessage"], "method": [null, "model_construct"], "kwargs": {"content": "x"}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["builtins", "ValueError"], "kwargs": {"__notes__": ["n"]}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "E"], "kwargs": {"__notes__": ["n"]}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "M"], "method": [null, "model_construct"], "kwargs": {"__type__": "x", "a": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "C"], "kwargs": {"a": 1}, "args": [1]}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "C"], "method": "from_dict", "kwargs": {"a": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "C"], "kwargs": {"a": 1, "a": 2}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "C"], "kwargs": {"lc": 2, "type": "constructor", "id": ["uuid", "UUID"], "args": ["0"]}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "C"], "kwargs": {"__send__": true, "node": "n", "arg": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "C"], "kwargs": {"a": 1}, "lc": 3}"#,
            r#"{"type": "constructor", "lc": 2, "id": ["m", "C"], "kwargs": {"a": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "C\u0031"], "kwargs": {"a": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": [], "kwargs": {"a": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", 1], "kwargs": {"a": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["m", "C"], "kwargs": [1]}"#,
            r#"{"lc": 2.0, "type": "constructor", "id": ["m", "C"], "kwargs": {"a": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["numpy", "ndarray"], "kwargs": {"a": 1}}"#,
            r#"{"lc": 2, "type": "constructor", "id": ["langgraph", "store", "base", "Item"], "kwargs": {}}"#,
        ];
        let fast = |text: &str| {
            let mut compact = Compact::new(text.as_bytes(), Some(Render::new(true)));
            compact.value(0).unwrap();
            let trees = compact.trees;
            let mut notices = Vec::new();
            (compact.finish(&mut notices).unwrap(), notices, trees)
        };
        for (text, trees) in &streamed {
            let (written, notices, made) = fast(text);
            assert_eq!((written, notices), tree(text), "{text}");
            assert_eq!(made, *trees, "{text}");
        }
        for text in refused {
            let (written, notices, made) = fast(text);
            assert_eq!((written, notices), tree(text), "{text}");
            assert_eq!(made, 1, "{text}");
        }
    }

    #[test]
    fn documents_are_written_as_the_tree_path_writes_them_or_left_to_it() {
        let channels: Vec<(String, String)> = vec![
            (
                "messages".into(),
                r#"[{"lc":1,"type":"constructor"}]"#.into(),
            ),
            ("q\"uote".into(), "7".into()),
        ];
        let tree = |text: &str, channels: Option<&[(String, String)]>| {
            let mut notices = Vec::new();
            let doc = document_to_view(parse(text.as_bytes()).unwrap(), &mut notices);
            crate::codec::document_tree_text(&doc, channels.map(<[_]>::to_vec))
                .map(|text| (text, notices))
        };
        let documents = [
            r#"{"v": 4, "ts": "2025-01-01T00:00:00+00:00", "channel_values": {"a": 1, "m": [{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"], "kwargs": {"content": "hi"}}]}, "channel_versions": {"a": "00001.0"}}"#,
            r#" { "channel_values" : { } , "t\u0073" : "when\n" } "#,
            r#"{"ts": 12, "id": "x"}"#,
            r#"{"id": "x"}"#,
            "{}",
            // Envelopes and markers: trees of their own (an interrupt is no marker in
            // a document).
            r#"{"channel_values": {"d": {"lc": 2, "type": "constructor", "id": ["decimal", "Decimal"]}, "i": {"__interrupt__": true, "value": 1}}}"#,
        ];
        for text in documents {
            for channels in [None, Some(channels.as_slice()), Some(&[][..])] {
                let mut notices = Vec::new();
                let fast = document_view_text(text.as_bytes(), channels, &mut notices);
                assert!(fast.is_some(), "{text} {channels:?}");
                assert_eq!(
                    fast.map(|f| (f, notices)),
                    tree(text, channels),
                    "{text} {channels:?}"
                );
            }
        }
        let (_, ts) = document_view_text(documents[1].as_bytes(), None, &mut Vec::new()).unwrap();
        assert_eq!(ts.as_deref(), Some("when\n"));
        // Left to the tree path: what it renders or replaces, and documents that are
        // not objects.
        let left = [
            (
                r#"{"channel_values": {"__send__": true}}"#,
                Some(channels.as_slice()),
            ),
            (
                r#"{"channel_values": {"x": 1, "x": 2}}"#,
                Some(channels.as_slice()),
            ),
            (
                r#"{"channel_values": {"messages": 1}}"#,
                Some(channels.as_slice()),
            ),
            (
                r#"{"channel_values": {"q\u0022uote": 1}}"#,
                Some(channels.as_slice()),
            ),
            (r#"{"channel_values": [1]}"#, Some(channels.as_slice())),
            (r#"{"a": 1, "a": 2}"#, None),
            ("[1]", None),
            (r#""text""#, None),
            (r#"{"a": 1} {}"#, None),
        ];
        for (text, channels) in left {
            let mut notices = Vec::new();
            assert_eq!(
                document_view_text(text.as_bytes(), channels, &mut notices),
                None,
                "{text}"
            );
            assert!(notices.is_empty(), "{text}");
        }
    }
}
