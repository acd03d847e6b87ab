//! Plain-JSON rendering of the Python objects LangGraph's serializer encodes as
//! "constructor" records: msgpack extension types 0–5 and the legacy JSON
//! `{"lc": 2, "type": "constructor", …}` envelopes carry the same information
//! (module, class, positional args, keyword args, method), so both decoders build a
//! [`PyObject`] and render it here, once.
//!
//! The rules follow `fixtures/lgconv.py` (the oracle's converter): UUIDs hyphenated,
//! datetimes ISO 8601, sets sorted, dataclasses as maps, pydantic models as maps plus
//! `__type__`, LangChain messages in LangChain's own constructor form.

use serde_json::{Map, Value};

use super::langchain;

/// How the serializer described an object. Arguments are already rendered to JSON.
#[derive(Debug, Clone)]
pub struct PyObject {
    pub module: String,
    pub name: String,
    pub args: Vec<Value>,
    pub kwargs: Option<Map<String, Value>>,
    pub method: Option<String>,
    pub kind: PyKind,
}

/// What produced the object, when the encoding tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyKind {
    /// Constructor with arguments (ext 0–3, `lc: 2` with args/kwargs).
    Constructor,
    /// A pydantic model (ext 4/5, `lc: 2` with `model_construct` / `construct`).
    PydanticModel,
}

/// Which rules render a value. Inside a pydantic v2 model, LangGraph's read-back is
/// the model, and its view is `model_dump(mode="json")` (the fixtures' `lgconv` rule
/// 5): pydantic's own JSON forms apply to the model's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `lgconv`'s rules for Python objects.
    Python,
    /// pydantic v2's JSON mode: UTC datetimes end in `Z`, timedeltas are ISO 8601
    /// durations, bytes are UTF-8 text, sets keep their order, NaN/±inf are null.
    PydanticJson,
}

/// The rendered value, plus a note when the class was not one we know.
pub struct Rendered {
    pub value: Value,
    pub notice: Option<String>,
}

impl Rendered {
    fn known(value: Value) -> Self {
        Self {
            value,
            notice: None,
        }
    }
}

/// Whether objects of modules like `module` may have a rendering rule of their own
/// (by module and class), before the rules by shape. Every rule in [`render`]'s match
/// is behind this gate, so the list cannot miss one; the text path streams a pydantic
/// model only when this says no.
pub fn has_rule_by_name(module: &str) -> bool {
    matches!(
        module,
        "uuid"
            | "builtins"
            | "collections"
            | "decimal"
            | "ipaddress"
            | "zoneinfo"
            | "datetime"
            | "pathlib"
            | "re"
            | "pydantic.types"
            | "langgraph.types"
    )
}

pub fn render(mut obj: PyObject, style: Style) -> Rendered {
    if !has_rule_by_name(&obj.module) {
        return render_class(obj);
    }
    // Copied only by the classes that read it (not by models, most objects).
    let arg0 = || obj.args.first().cloned();
    let pydantic = style == Style::PydanticJson;
    match (obj.module.as_str(), obj.name.as_str()) {
        ("uuid", "UUID") => match arg0() {
            Some(Value::String(hex)) => Rendered::known(Value::String(hyphenate_uuid(&hex))),
            _ => unknown(obj),
        },
        ("builtins", "set" | "frozenset") => match arg0() {
            // pydantic's JSON mode keeps a set's order.
            Some(Value::Array(items)) if pydantic => Rendered::known(Value::Array(items)),
            Some(Value::Array(items)) => Rendered::known(Value::Array(sort_set(items))),
            _ => unknown(obj),
        },
        ("collections", "deque") => match arg0() {
            Some(items @ Value::Array(_)) => Rendered::known(items),
            _ => unknown(obj),
        },
        ("builtins", "bytes" | "bytearray") => match arg0() {
            // langgraph-redis's JSON form: hex text.
            Some(Value::String(hex)) => match decode_hex(&hex) {
                Some(bytes) => Rendered::known(bytes_view(&bytes)),
                None => unknown(obj),
            },
            // msgpack: the bytes themselves (already rendered).
            Some(v @ Value::Object(_)) if v.get("__bytes__").is_some() => Rendered::known(v),
            _ => unknown(obj),
        },
        // An integer beyond 64 bits, which msgpack cannot hold, as `int("…")`.
        ("builtins", "int") => match arg0().as_ref().and_then(Value::as_str).map(str::parse) {
            Some(Ok(n)) => Rendered::known(Value::Number(n)),
            _ => unknown(obj),
        },
        ("decimal", "Decimal") | ("ipaddress", _) => match arg0() {
            Some(v @ Value::String(_)) => Rendered::known(v),
            _ => unknown(obj),
        },
        ("zoneinfo", "ZoneInfo") => match arg0() {
            Some(v @ Value::String(_)) => Rendered::known(v),
            _ => unknown(obj),
        },
        ("datetime", "datetime") => match arg0() {
            Some(Value::String(iso)) if pydantic => Rendered::known(Value::String(utc_as_z(iso))),
            Some(v @ Value::String(_)) => Rendered::known(v),
            // The constructor's own arguments: the form the langgraph-redis
            // destination writes a datetime in (codec::redis_form), which RedisSaver
            // revives.
            _ => match datetime_iso(&obj) {
                Some(iso) if pydantic => Rendered::known(Value::String(utc_as_z(iso))),
                Some(iso) => Rendered::known(Value::String(iso)),
                None => unknown(obj),
            },
        },
        ("datetime", "date") => match date_iso(&obj.args) {
            Some(s) => Rendered::known(Value::String(s)),
            None => match arg0() {
                Some(v @ Value::String(_)) => Rendered::known(v),
                _ => unknown(obj),
            },
        },
        ("datetime", "time") => match time_iso(&obj) {
            Some(s) if pydantic => Rendered::known(Value::String(utc_as_z(s))),
            Some(s) => Rendered::known(Value::String(s)),
            None => unknown(obj),
        },
        ("datetime", "timedelta") => match timedelta_micros(&obj.args) {
            Some(micros) if pydantic => Rendered::known(Value::String(iso_duration(micros))),
            Some(micros) => Rendered::known(number(micros_to_seconds(micros))),
            None => unknown(obj),
        },
        ("datetime", "timezone") => match timezone_str(&obj.args) {
            Some(s) => Rendered::known(Value::String(s)),
            None => unknown(obj),
        },
        ("pathlib", _) => match path_str(&obj.args) {
            Some(s) => Rendered::known(Value::String(s)),
            None => unknown(obj),
        },
        ("re", "compile") => {
            let mut args = std::mem::take(&mut obj.args).into_iter();
            Rendered::known(crate::json_value::object([
                ("pattern", args.next().unwrap_or(Value::Null)),
                ("flags", args.next().unwrap_or(Value::Null)),
            ]))
        }
        ("pydantic.types", "SecretStr" | "SecretBytes") => {
            // pydantic's own str() of a secret: never reveal it in the view.
            Rendered::known(Value::String("**********".into()))
        }
        ("langgraph.types", "Send") => {
            let (node, arg) = match &obj.kwargs {
                Some(kw) => (
                    kw.get("node").cloned().unwrap_or(Value::Null),
                    kw.get("arg").cloned().unwrap_or(Value::Null),
                ),
                None => (
                    obj.args.first().cloned().unwrap_or(Value::Null),
                    obj.args.get(1).cloned().unwrap_or(Value::Null),
                ),
            };
            Rendered::known(crate::json_value::object([("node", node), ("arg", arg)]))
        }
        _ => render_class(obj),
    }
}

/// Objects identified by their shape rather than their class: LangChain serializables,
/// pydantic models, dataclasses / namedtuples, enums.
fn render_class(mut obj: PyObject) -> Rendered {
    // Taken, not cloned (a message's fields are most of a checkpoint), and put back
    // for the rules below when no shape matched.
    if let Some(kwargs) = obj.kwargs.take() {
        if langchain::is_serializable(&obj.module) && obj.kind == PyKind::PydanticModel {
            return Rendered::known(langchain::constructor(&obj.module, &obj.name, kwargs));
        }
        if obj.kind == PyKind::PydanticModel {
            let mut map = kwargs;
            map.insert(
                "__type__".into(),
                Value::String(format!("{}.{}", obj.module, obj.name)),
            );
            return Rendered::known(Value::Object(map));
        }
        if obj.args.is_empty() {
            // dataclass, namedtuple, Interrupt, Command, store Item: a field map.
            return Rendered::known(Value::Object(kwargs));
        }
        obj.kwargs = Some(kwargs);
    }
    if obj.kwargs.is_none() && obj.args.len() == 1 && obj.method.is_none() {
        // A single-argument constructor of a class we do not know by name: LangGraph
        // uses this form for Enum members, whose view is their value.
        return Rendered::known(obj.args.into_iter().next().unwrap_or(Value::Null));
    }
    unknown(obj)
}

/// A class we cannot render by rule: keep everything we were given, say so.
fn unknown(obj: PyObject) -> Rendered {
    let type_name = format!("{}.{}", obj.module, obj.name);
    let mut map = Map::new();
    map.insert("__type__".into(), Value::String(type_name.clone()));
    map.insert("args".into(), Value::Array(obj.args));
    if let Some(kwargs) = obj.kwargs {
        map.insert("kwargs".into(), Value::Object(kwargs));
    }
    if let Some(method) = obj.method {
        map.insert("method".into(), Value::String(method));
    }
    Rendered {
        value: Value::Object(map),
        notice: Some(format!(
            "no rendering rule for Python type {type_name}; kept its arguments as they are"
        )),
    }
}

/// Python bytes in pydantic's JSON mode: their UTF-8 text (pydantic's default), or
/// the usual view when they are not UTF-8.
pub fn pydantic_bytes_view(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => bytes_view(bytes),
    }
}

/// `{"__bytes__": base64}`, the view of Python bytes.
pub fn bytes_view(bytes: &[u8]) -> Value {
    use base64::Engine as _;
    serde_json::json!({ "__bytes__": base64::engine::general_purpose::STANDARD.encode(bytes) })
}

pub fn hyphenate_uuid(hex: &str) -> String {
    match uuid::Uuid::try_parse(hex) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_) => hex.to_string(),
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Python's sort of a set's converted members: strings by code point, numbers
/// numerically, anything else by canonical JSON text.
pub fn sort_set(mut items: Vec<Value>) -> Vec<Value> {
    if items.iter().all(Value::is_string) {
        items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    } else if items.iter().all(Value::is_number) {
        items.sort_by(|a, b| {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        });
    } else {
        items.sort_by_cached_key(canonical_json);
    }
    items
}

/// JSON text with sorted keys and no spaces (Python's
/// `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`).
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

fn number(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn int_arg(args: &[Value], i: usize) -> Option<i64> {
    args.get(i)?.as_i64()
}

fn date_iso(args: &[Value]) -> Option<String> {
    let (y, m, d) = (int_arg(args, 0)?, int_arg(args, 1)?, int_arg(args, 2)?);
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

/// `datetime.isoformat()` from the constructor's positional arguments `(year, month,
/// day[, hour, minute, second, microsecond[, tzinfo]])`, the tzinfo rendered already
/// (a fixed offset is "UTC" or "UTC±HH:MM"). `None` for any other timezone (a name,
/// whose offset is not in the value) or other arguments.
fn datetime_iso(obj: &PyObject) -> Option<String> {
    let args = &obj.args;
    if obj.kwargs.is_some() || obj.method.is_some() || !(3..=8).contains(&args.len()) {
        return None;
    }
    let date = date_iso(args)?;
    let int = |i: usize| args.get(i).map_or(Some(0), Value::as_i64);
    let (h, mi, s, us) = (int(3)?, int(4)?, int(5)?, int(6)?);
    let mut out = format!("{date}T{h:02}:{mi:02}:{s:02}");
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
    match args.get(7) {
        None | Some(Value::Null) => {}
        Some(Value::String(tz)) => match tz.strip_prefix("UTC") {
            Some("") => out.push_str("+00:00"),
            Some(offset) if offset.len() == 6 => out.push_str(offset),
            _ => return None,
        },
        Some(_) => return None,
    }
    Some(out)
}

/// `datetime.time.isoformat()`: `HH:MM:SS[.ffffff][+HH:MM]`.
fn time_iso(obj: &PyObject) -> Option<String> {
    let field = |name: &str, pos: usize| -> Option<Value> {
        match &obj.kwargs {
            Some(kw) if kw.contains_key(name) => kw.get(name).cloned(),
            _ => obj.args.get(pos).cloned(),
        }
    };
    let h = field("hour", 0)?.as_i64()?;
    let m = field("minute", 1).and_then(|v| v.as_i64()).unwrap_or(0);
    let s = field("second", 2).and_then(|v| v.as_i64()).unwrap_or(0);
    let us = field("microsecond", 3)
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let mut out = format!("{h:02}:{m:02}:{s:02}");
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
    if let Some(Value::String(tz)) = field("tzinfo", 4) {
        // A rendered fixed-offset timezone is "UTC" or "UTC+05:30".
        match tz.strip_prefix("UTC") {
            Some("") => out.push_str("+00:00"),
            Some(offset) if offset.len() >= 6 => out.push_str(&offset[..6]),
            _ => {}
        }
    }
    Some(out)
}

/// A timedelta's `(days, seconds, microseconds)` as one exact count of microseconds.
fn timedelta_micros(args: &[Value]) -> Option<i128> {
    let days = i128::from(int_arg(args, 0)?);
    let secs = i128::from(int_arg(args, 1).unwrap_or(0));
    let micros = i128::from(int_arg(args, 2).unwrap_or(0));
    Some((days * 86_400 + secs) * 1_000_000 + micros)
}

/// `timedelta.total_seconds()`: Python divides the exact integer, correctly rounded.
/// Above 2^53 µs an `as f64` first would round twice; the decimal text of the exact
/// quotient, parsed, rounds once.
fn micros_to_seconds(micros: i128) -> f64 {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
        .parse()
        .unwrap_or(f64::NAN)
}

/// pydantic's ISO 8601 form of a timedelta (`PT1H30M0.000005S`, `-P1DT2H`, `PT0S`).
fn iso_duration(micros: i128) -> String {
    let mut out = String::from(if micros < 0 { "-P" } else { "P" });
    let abs = micros.unsigned_abs();
    let (days, rest) = (abs / 86_400_000_000, abs % 86_400_000_000);
    let (years, days) = (days / 365, days % 365);
    if years != 0 {
        out.push_str(&format!("{years}Y"));
    }
    if days != 0 {
        out.push_str(&format!("{days}D"));
    }
    if rest != 0 {
        let (secs, frac) = (rest / 1_000_000, rest % 1_000_000);
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        out.push('T');
        if h != 0 {
            out.push_str(&format!("{h}H"));
        }
        if m != 0 {
            out.push_str(&format!("{m}M"));
        }
        if s != 0 || frac != 0 {
            if frac == 0 {
                out.push_str(&format!("{s}S"));
            } else {
                let digits = format!("{frac:06}");
                out.push_str(&format!("{s}.{}S", digits.trim_end_matches('0')));
            }
        }
    } else if years == 0 && days == 0 {
        out.push_str("T0S");
    }
    out
}

/// pydantic writes a UTC offset as `Z`.
pub fn utc_as_z(iso: String) -> String {
    match iso.strip_suffix("+00:00") {
        Some(head) => format!("{head}Z"),
        None => iso,
    }
}

/// `str(datetime.timezone(offset[, name]))`: the name if given, else `UTC±HH:MM`.
fn timezone_str(args: &[Value]) -> Option<String> {
    if let Some(Value::String(name)) = args.get(1) {
        return Some(name.clone());
    }
    let secs = args.first()?.as_f64()?;
    if secs == 0.0 {
        return Some("UTC".into());
    }
    let sign = if secs < 0.0 { '-' } else { '+' };
    let total = secs.abs() as i64;
    Some(format!(
        "UTC{sign}{:02}:{:02}",
        total / 3600,
        (total % 3600) / 60
    ))
}

/// `str(PurePath(*parts))`.
fn path_str(args: &[Value]) -> Option<String> {
    let parts: Vec<&str> = match args {
        [Value::Array(parts)] => parts.iter().map(Value::as_str).collect::<Option<_>>()?,
        parts => parts.iter().map(Value::as_str).collect::<Option<_>>()?,
    };
    let mut out = String::new();
    for part in parts {
        if !out.is_empty() && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(part);
    }
    Some(if out.is_empty() { ".".into() } else { out })
}

/// A Python float in the view: finite floats are JSON numbers (exact: serde_json
/// writes the shortest text that reads back as the same double); NaN and the
/// infinities, which JSON has no number for, are `{"__float__": "NaN" | "Infinity" |
/// "-Infinity"}` (the fixtures' `lgconv` rule 3a).
pub fn float_view(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None => {
            let name = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            serde_json::json!({ "__float__": name })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(module: &str, name: &str, args: Vec<Value>) -> PyObject {
        PyObject {
            module: module.into(),
            name: name.into(),
            args,
            kwargs: None,
            method: None,
            kind: PyKind::Constructor,
        }
    }

    #[test]
    fn timedeltas_are_exact_and_pydantic_writes_iso_durations() {
        // timedelta.min: beyond 2^53 µs, rounded once as Python's division does (a
        // float conversion first gave -86399999913599.98).
        let micros = timedelta_micros(&[(-999_999_999i64).into(), 0.into(), 0.into()]).unwrap();
        assert_eq!(micros_to_seconds(micros), -86_399_999_913_600.0);
        assert_eq!(micros_to_seconds(5_400_000_005), 5400.000005);
        assert_eq!(iso_duration(5_400_000_005), "PT1H30M0.000005S");
        assert_eq!(iso_duration(0), "PT0S");
        assert_eq!(iso_duration(-(86_400_000_000 + 7_200_000_000)), "-P1DT2H");
        assert_eq!(iso_duration(365 * 86_400_000_000 + 1_500_000), "P1YT1.5S");
        assert_eq!(
            utc_as_z("2025-01-01T12:00:00.250000+00:00".into()),
            "2025-01-01T12:00:00.250000Z"
        );
        assert_eq!(
            utc_as_z("2025-01-01T12:00:00+05:30".into()),
            "2025-01-01T12:00:00+05:30"
        );
    }

    #[test]
    fn renders_python_scalars_like_lgconv() {
        let r = |o| render(o, Style::Python).value;
        assert_eq!(
            r(obj(
                "uuid",
                "UUID",
                vec!["4b28a002f4e4447fa46615ac55d6bd95".into()]
            )),
            "4b28a002-f4e4-447f-a466-15ac55d6bd95"
        );
        assert_eq!(
            r(obj(
                "builtins",
                "set",
                vec![serde_json::json!(["vip", "shipping"])]
            )),
            serde_json::json!(["shipping", "vip"])
        );
        assert_eq!(
            r(obj(
                "builtins",
                "set",
                vec![serde_json::json!([10, 2.5, 3])]
            )),
            serde_json::json!([2.5, 3, 10])
        );
        assert_eq!(
            r(obj(
                "datetime",
                "timedelta",
                vec![1.into(), 30.into(), 500_000.into()]
            )),
            serde_json::json!(86430.5)
        );
        assert_eq!(
            r(obj(
                "datetime",
                "date",
                vec![2025.into(), 3.into(), 4.into()]
            )),
            "2025-03-04"
        );
        assert_eq!(
            r(obj(
                "pathlib",
                "PosixPath",
                vec![serde_json::json!(["/", "usr", "lib"])]
            )),
            "/usr/lib"
        );
        assert_eq!(
            r(obj("datetime", "timezone", vec![19800.0.into()])),
            "UTC+05:30"
        );
        assert_eq!(r(obj("app.models", "Color", vec!["red".into()])), "red");
        assert_eq!(
            r(obj("builtins", "bytes", vec!["00ff".into()])),
            serde_json::json!({"__bytes__": "AP8="})
        );
    }

    /// Regression: a datetime in its constructor's arguments (what the langgraph-redis
    /// destination writes) was kept as `{"__type__": "datetime.datetime", "args": …}`
    /// with a notice, so a Redis copy's view of it was not the ISO text the source's
    /// view gave.
    #[test]
    fn datetimes_in_constructor_arguments_render_as_isoformat() {
        let args = |tz: Option<&str>| {
            let mut a: Vec<Value> = vec![2024, 12, 29, 17, 52, 40, 786_757]
                .into_iter()
                .map(Value::from)
                .collect();
            a.extend(tz.map(Value::from));
            a
        };
        let r = |args: Vec<Value>, style| render(obj("datetime", "datetime", args), style);
        for (tz, style, iso) in [
            (
                Some("UTC+05:30"),
                Style::Python,
                "2024-12-29T17:52:40.786757+05:30",
            ),
            (
                Some("UTC-03:00"),
                Style::Python,
                "2024-12-29T17:52:40.786757-03:00",
            ),
            (
                Some("UTC"),
                Style::Python,
                "2024-12-29T17:52:40.786757+00:00",
            ),
            (
                Some("UTC"),
                Style::PydanticJson,
                "2024-12-29T17:52:40.786757Z",
            ),
            (None, Style::Python, "2024-12-29T17:52:40.786757"),
        ] {
            assert_eq!(r(args(tz), style).value, iso, "{tz:?}");
        }
        assert_eq!(
            r(vec![2025.into(), 1.into(), 2.into()], Style::Python).value,
            "2025-01-02T00:00:00"
        );
        // A named timezone's offset is not in the value: kept, and said.
        let named = r(args(Some("IST")), Style::Python);
        assert_eq!(named.value["__type__"], "datetime.datetime");
        assert!(named.notice.is_some());
    }

    #[test]
    fn unknown_positional_classes_are_kept_and_reported() {
        let rendered = render(obj("app", "Thing", vec![1.into(), 2.into()]), Style::Python);
        assert!(rendered.notice.unwrap().contains("app.Thing"));
        assert_eq!(rendered.value["args"], serde_json::json!([1, 2]));
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v = serde_json::json!({"b": 1, "a": {"d": 2, "c": [ {"z": 1, "y": 2} ]}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":[{"y":2,"z":1}],"d":2},"b":1}"#
        );
    }
}
