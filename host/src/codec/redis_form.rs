//! langgraph-redis's JSON form ↔ LangGraph's msgpack.
//!
//! [`Encoder`]: JSON form → msgpack, for moving a RedisSaver checkpoint into the stores
//! whose serializer is `JsonPlusSerializer` (SqliteSaver, PostgresSaver).
//! [`JsonFormWriter`]: msgpack → JSON form, for writing RedisSaver's documents (see
//! there).
//!
//! `JsonPlusSerializer` reads `json`-typed values with a reviver that does not know
//! langgraph-redis's markers (`__interrupt__`, `__send__`, `__bytes__`, …) and revives
//! `lc: 2` envelopes of user classes only when allowed. So the values are re-encoded
//! in the form LangGraph writes natively, choosing for each one the msgpack whose
//! revival (`JsonPlusSerializer`'s ext hook) calls what RedisSaver's revival calls:
//!
//! | JSON form | RedisSaver revives | msgpack written |
//! |---|---|---|
//! | `{"__bytes__": b64}` (channel values, outside envelopes) | `bytes` | bin |
//! | `lc: 2` `builtins.set`, `args: [items]` | `set(items)` | ext 0 `set(items)` |
//! | other `lc: 2` with `kwargs` / one arg / `args` / neither | `cls(**kwargs)` / `cls(arg)` / `cls(*args)` / `cls()` | ext 2 / ext 0 / ext 1 / ext 1 with no args |
//! | `lc: 1` LangChain constructor (messages, documents) | LangChain's loader | ext 5 `cls(**kwargs)` |
//! | `__interrupt__` marker (inside values RedisSaver revives whole) | `Interrupt(value, id)` | ext 2 `Interrupt` |
//! | `__send__` marker | `Send(node, arg)` | ext 1 `Send` |
//! | `__delta_snapshot__` marker | `_DeltaSnapshot(value)` | ext 7 |
//!
//! RedisSaver walks a checkpoint's channel values with one function
//! (`_recursive_deserialize`: bytes markers, Send and DeltaChannel markers, and hands
//! whole `lc` envelopes to the serializer) and whole `json` values such as pending
//! writes with another (`_revive_if_needed`: no bytes markers, but Interrupt markers);
//! [`Walk`] says which one applies, and the envelope's insides always get the second.
//! A value reads back differently only where the class's constructor raises: RedisSaver
//! then gives `None`, LangGraph's ext hook the raw payload.

use base64::Engine as _;
use rmpv::Value as Mp;
use serde_json::{Map, Value};

use super::json::Revival;
use super::langchain;
use super::msgpack::{
    self, EXT_CONSTRUCTOR_KW_ARGS, EXT_CONSTRUCTOR_POS_ARGS, EXT_CONSTRUCTOR_SINGLE_ARG,
    EXT_DELTA_SNAPSHOT, EXT_METHOD_SINGLE_ARG, EXT_PYDANTIC_V1, EXT_PYDANTIC_V2,
};

/// Which of RedisSaver's two revivers reads the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// A checkpoint's channel values (`_recursive_deserialize`).
    ChannelValues,
    /// A `json`-typed value read by the serializer (`_revive_if_needed`).
    Serialized,
}

/// Which `lc: 2` classes the source app's serializer revives: its
/// `allowed_json_modules` (`true`, or a list of `module.Class`). LangGraph and
/// LangChain's own safe types are always revived.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum AllowedJsonModules {
    /// `true`: every class (`false` is the default: none).
    All(bool),
    /// These classes, as `module.Class`.
    Only(Vec<String>),
    /// None but the safe types.
    #[default]
    #[serde(skip)]
    SafeOnly,
}

impl AllowedJsonModules {
    fn allows(&self, dotted: &str) -> bool {
        SAFE_TYPES.contains(&dotted)
            || match self {
                AllowedJsonModules::All(all) => *all,
                AllowedJsonModules::Only(list) => list.iter().any(|c| c == dotted),
                AllowedJsonModules::SafeOnly => false,
            }
    }
}

/// `SAFE_MSGPACK_TYPES` of langgraph-checkpoint 4.x: revived without an allowlist.
const SAFE_TYPES: &[&str] = &[
    "datetime.datetime",
    "datetime.date",
    "datetime.time",
    "datetime.timedelta",
    "datetime.timezone",
    "uuid.UUID",
    "decimal.Decimal",
    "builtins.set",
    "builtins.frozenset",
    "collections.deque",
    "ipaddress.IPv4Address",
    "ipaddress.IPv4Interface",
    "ipaddress.IPv4Network",
    "ipaddress.IPv6Address",
    "ipaddress.IPv6Interface",
    "ipaddress.IPv6Network",
    "pathlib.Path",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib._local.Path",
    "pathlib._local.PosixPath",
    "pathlib._local.WindowsPath",
    "zoneinfo.ZoneInfo",
    "re.compile",
    "langchain_core.messages.base.BaseMessage",
    "langchain_core.messages.base.BaseMessageChunk",
    "langchain_core.messages.human.HumanMessage",
    "langchain_core.messages.human.HumanMessageChunk",
    "langchain_core.messages.ai.AIMessage",
    "langchain_core.messages.ai.AIMessageChunk",
    "langchain_core.messages.system.SystemMessage",
    "langchain_core.messages.system.SystemMessageChunk",
    "langchain_core.messages.chat.ChatMessage",
    "langchain_core.messages.chat.ChatMessageChunk",
    "langchain_core.messages.tool.ToolMessage",
    "langchain_core.messages.tool.ToolMessageChunk",
    "langchain_core.messages.function.FunctionMessage",
    "langchain_core.messages.function.FunctionMessageChunk",
    "langchain_core.messages.modifier.RemoveMessage",
    "langchain_core.documents.base.Document",
    "langgraph.types.Send",
    "langgraph.types.TimeoutPolicy",
    "langgraph.types.Interrupt",
    "langgraph.types.Command",
    "langgraph.types.StateSnapshot",
    "langgraph.types.PregelTask",
    "langgraph.types.Overwrite",
    "langgraph.store.base.Item",
    "langgraph.store.base.GetOp",
];

/// Re-encodes values; remembers the classes it kept as plain maps (not allowed).
pub struct Encoder<'a> {
    allowed: &'a AllowedJsonModules,
    /// `module.Class` of envelopes written as the plain map RedisSaver gives back.
    pub kept_as_maps: std::collections::BTreeSet<String>,
}

impl<'a> Encoder<'a> {
    pub fn new(allowed: &'a AllowedJsonModules) -> Self {
        Self {
            allowed,
            kept_as_maps: Default::default(),
        }
    }

    /// The msgpack LangGraph would have written for the Python value RedisSaver
    /// revives from `value`.
    pub fn to_msgpack(&mut self, value: &Value, walk: Walk) -> Result<Mp, String> {
        match value {
            Value::Null => Ok(Mp::Nil),
            Value::Bool(b) => Ok(Mp::Boolean(*b)),
            Value::Number(n) => number(n),
            Value::String(s) => Ok(Mp::from(s.as_str())),
            Value::Array(items) => items
                .iter()
                .map(|v| self.to_msgpack(v, walk))
                .collect::<Result<_, _>>()
                .map(Mp::Array),
            Value::Object(map) => self.object(map, walk),
        }
    }

    fn plain_map(&mut self, map: &Map<String, Value>, walk: Walk) -> Result<Mp, String> {
        map.iter()
            .map(|(k, v)| Ok((Mp::from(k.as_str()), self.to_msgpack(v, walk)?)))
            .collect::<Result<_, String>>()
            .map(Mp::Map)
    }

    fn object(&mut self, map: &Map<String, Value>, walk: Walk) -> Result<Mp, String> {
        let flag = |k: &str| map.get(k) == Some(&Value::Bool(true));
        if is_constructor(map) {
            // RedisSaver hands the whole envelope to the serializer's reviver.
            return self.constructor(map);
        }
        match walk {
            Walk::ChannelValues => {
                if let (1, Some(Value::String(b64))) = (map.len(), map.get("__bytes__")) {
                    return base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map(Mp::Binary)
                        .map_err(|e| format!("__bytes__ marker: {e}"));
                }
                if flag("__delta_snapshot__") {
                    // Its children are revived with the serializer's walk.
                    return self.object(map, Walk::Serialized);
                }
            }
            Walk::Serialized => {
                if flag("__interrupt__") && map.contains_key("value") {
                    let mut kwargs =
                        vec![(Mp::from("value"), self.to_msgpack(&map["value"], walk)?)];
                    if let Some(id) = map.get("id") {
                        kwargs.push((Mp::from("id"), self.to_msgpack(id, walk)?));
                    }
                    // As LangGraph writes an Interrupt; RedisSaver never stores it and
                    // revives the default.
                    kwargs.push((Mp::from("response_schema"), Mp::Nil));
                    return Ok(ext(
                        2,
                        vec![
                            "langgraph.types".into(),
                            "Interrupt".into(),
                            Mp::Map(kwargs),
                        ],
                    ));
                }
                if flag("__delta_snapshot__") && map.len() == 2 && map.contains_key("value") {
                    return Ok(Mp::Ext(
                        7,
                        msgpack::encode(&self.to_msgpack(&map["value"], walk)?),
                    ));
                }
            }
        }
        if flag("__send__") && map.len() == 3 && map.contains_key("node") && map.contains_key("arg")
        {
            let args = vec![
                self.to_msgpack(&map["node"], walk)?,
                self.to_msgpack(&map["arg"], walk)?,
            ];
            return Ok(ext(
                1,
                vec!["langgraph.types".into(), "Send".into(), Mp::Array(args)],
            ));
        }
        self.plain_map(map, walk)
    }

    /// An `lc` constructor envelope; its insides are revived by the serializer's walk.
    fn constructor(&mut self, map: &Map<String, Value>) -> Result<Mp, String> {
        let walk = Walk::Serialized;
        let id: Vec<String> = map
            .get("id")
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let args = map.get("args").and_then(Value::as_array);
        let kwargs = map.get("kwargs").and_then(Value::as_object);
        if map.get("lc").and_then(Value::as_u64) == Some(1) {
            let (module, name) = langchain::class_of(&id).ok_or_else(|| {
                format!(
                    "LangChain object {} has no known Python class",
                    id.join(".")
                )
            })?;
            let fields = match kwargs {
                Some(k) => self.plain_map(k, walk)?,
                None => Mp::Map(Vec::new()),
            };
            return Ok(ext(
                5,
                vec![
                    module.into(),
                    name.into(),
                    fields,
                    "model_validate_json".into(),
                ],
            ));
        }
        let Some((name, module)) = id.split_last().filter(|(_, m)| !m.is_empty()) else {
            return Err(format!(
                "constructor envelope without a class: {}",
                Value::Object(map.clone())
            ));
        };
        let module = module.join(".");
        if module == "builtins" && name == "set" {
            let items = match args.map(Vec::as_slice) {
                Some([Value::Array(items)]) => items,
                _ => return Err("set envelope without its items".into()),
            };
            let items = items
                .iter()
                .map(|v| self.to_msgpack(v, walk))
                .collect::<Result<_, _>>()?;
            return Ok(ext(
                0,
                vec!["builtins".into(), "set".into(), Mp::Array(items)],
            ));
        }
        let dotted = format!("{module}.{name}");
        let no_args = args.is_none_or(Vec::is_empty);
        let no_kwargs = kwargs.is_none_or(Map::is_empty);
        match super::json::valueless_revival(&module, name, no_args, no_kwargs) {
            // RedisSaver's revival raises for these and gives None (LangGraph's ext
            // hook would give the raw payload).
            Some(Revival::As(Value::Null, _)) => return Ok(Mp::Nil),
            // Never constructed: the envelope itself is what RedisSaver reads.
            Some(Revival::Envelope) => return self.plain_map(map, walk),
            _ => {}
        }
        if !self.allowed.allows(&dotted) {
            // RedisSaver without this class in its allowlist gives the envelope back
            // as a map (its children revived).
            self.kept_as_maps.insert(dotted);
            return self.plain_map(map, walk);
        }
        match (
            args.filter(|a| !a.is_empty()),
            kwargs.filter(|k| !k.is_empty()),
        ) {
            (Some(_), Some(_)) => Err(format!(
                "{module}.{name} envelope has both args and kwargs, which LangGraph's msgpack cannot call"
            )),
            (None, Some(k)) => Ok(ext(
                2,
                vec![
                    module.into(),
                    name.as_str().into(),
                    self.plain_map(k, walk)?,
                ],
            )),
            (args, None) => {
                let mut args: Vec<Mp> = args
                    .into_iter()
                    .flatten()
                    .map(|v| self.to_msgpack(v, walk))
                    .collect::<Result<_, _>>()?;
                // One argument: the single-argument constructor LangGraph writes for
                // UUID, Decimal, enums…; `cls(arg)` either way.
                if args.len() == 1 {
                    let arg = args.pop().expect("one argument");
                    return Ok(ext(0, vec![module.into(), name.as_str().into(), arg]));
                }
                Ok(ext(
                    1,
                    vec![module.into(), name.as_str().into(), Mp::Array(args)],
                ))
            }
        }
    }
}

fn number(n: &serde_json::Number) -> Result<Mp, String> {
    let text = n.to_string();
    if text.contains(['.', 'e', 'E']) {
        return text
            .parse()
            .map(Mp::F64)
            .map_err(|_| format!("number {text} is not a float"));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Mp::from(u));
    }
    n.as_i64()
        .map(Mp::from)
        .ok_or_else(|| format!("integer {text} does not fit in 64 bits"))
}

/// LangGraph's msgpack extension `code` with payload `items`.
fn ext(code: i8, items: Vec<Mp>) -> Mp {
    Mp::Ext(code, msgpack::encode(&Mp::Array(items)))
}

fn is_constructor(map: &Map<String, Value>) -> bool {
    matches!(map.get("lc").and_then(Value::as_u64), Some(1 | 2))
        && map.get("type").and_then(Value::as_str) == Some("constructor")
}

// ---------------------------------------------------------------------------------
// LangGraph's msgpack → langgraph-redis's JSON form (writing RedisSaver's documents)

/// Why a value has no exact JSON form that RedisSaver revives to the same Python value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss(pub String);

/// Writes channel values in RedisSaver's JSON form so that RedisSaver's reader gives
/// back the Python values LangGraph's msgpack holds. Where RedisSaver's own writer
/// drops a stdlib object's value (it stores `__dict__`, which `Decimal`, `UUID`,
/// `timedelta`… lack), this writes an `lc: 2` envelope with the constructor's
/// arguments instead, which RedisSaver revives exactly for LangGraph's safe types.
/// Without `allow_lossy`, a value no JSON form holds exactly is an error naming it;
/// with it, the nearest form is written and the loss counted.
pub struct JsonFormWriter {
    pub allow_lossy: bool,
    /// What was bent, by kind (with `allow_lossy`).
    pub losses: std::collections::BTreeMap<String, u64>,
}

/// Where in RedisSaver's reader a value sits: `__bytes__` markers are decoded only in
/// a checkpoint's channel values outside envelopes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    ChannelValues,
    InEnvelope,
}

impl JsonFormWriter {
    pub fn new(allow_lossy: bool) -> Self {
        Self {
            allow_lossy,
            losses: Default::default(),
        }
    }

    /// One channel value (LangGraph's msgpack bytes) in RedisSaver's JSON form.
    pub fn channel_value(&mut self, bytes: &[u8]) -> Result<Value, Loss> {
        let value = msgpack::parse(bytes).map_err(|e| Loss(e.to_string()))?;
        self.value(&value, Place::ChannelValues)
    }

    /// [`JsonFormWriter::channel_value`]'s compact JSON text, appended to `out`.
    ///
    /// A value of plain msgpack and LangChain objects (most of an agent's state: its
    /// messages) has the view as its JSON form, so its text is written straight from
    /// the bytes ([`msgpack::view_text_of_bytes`], which also writes a thread's
    /// repeated messages again from their text of before). Anything else, and anything
    /// that path refuses, goes through the tree, which says what is wrong.
    pub fn write_channel_value(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), Loss> {
        if msgpack::plain_or_langchain(bytes) {
            // The view's notices say what a view leaves out; this form keeps it all.
            if let Ok(text) = msgpack::view_text_of_bytes(bytes, &mut Vec::new()) {
                out.extend_from_slice(text.as_bytes());
                return Ok(());
            }
        }
        let value = self.channel_value(bytes)?;
        crate::json_text::write_value(out, &value);
        Ok(())
    }

    fn lossy(&mut self, what: &str, nearest: Value) -> Result<Value, Loss> {
        if self.allow_lossy {
            *self.losses.entry(what.to_owned()).or_default() += 1;
            Ok(nearest)
        } else {
            Err(Loss(what.to_owned()))
        }
    }

    fn value(&mut self, value: &Mp, place: Place) -> Result<Value, Loss> {
        Ok(match value {
            Mp::Nil => Value::Null,
            Mp::Boolean(b) => Value::Bool(*b),
            Mp::Integer(i) => match (i.as_i64(), i.as_u64()) {
                (Some(n), _) => Value::from(n),
                (None, Some(n)) => {
                    return self.lossy(
                        "an integer above 2^63 (RedisJSON keeps it as a double)",
                        Value::from(n as f64),
                    );
                }
                _ => Value::Null,
            },
            Mp::F32(f) => self.float(f64::from(*f))?,
            Mp::F64(f) => self.float(*f)?,
            Mp::String(s) => match s.as_str() {
                Some(text) => Value::String(text.to_owned()),
                None => return Err(Loss("a string is not valid UTF-8".into())),
            },
            Mp::Binary(b) => {
                let marker = serde_json::json!({ "__bytes__": base64::engine::general_purpose::STANDARD.encode(b) });
                match place {
                    Place::ChannelValues => marker,
                    Place::InEnvelope => {
                        return self.lossy("bytes inside an object (RedisSaver reads its bytes marker back as a dict there)", marker);
                    }
                }
            }
            Mp::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.value(v, place))
                    .collect::<Result<_, _>>()?,
            ),
            Mp::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    let key = match k {
                        Mp::String(s) if s.as_str().is_some() => {
                            s.as_str().unwrap_or_default().to_owned()
                        }
                        other => {
                            let key = other.to_string();
                            self.lossy(
                                "a map key that is not a string (JSON keys are strings)",
                                Value::Null,
                            )?;
                            key
                        }
                    };
                    map.insert(key, self.value(v, place)?);
                }
                Value::Object(map)
            }
            Mp::Ext(code, data) => self.ext(*code, data, place)?,
        })
    }

    fn float(&mut self, f: f64) -> Result<Value, Loss> {
        match serde_json::Number::from_f64(f) {
            Some(n) => Ok(Value::Number(n)),
            None => self.lossy("NaN or an infinity (JSON has none)", Value::Null),
        }
    }

    fn ext(&mut self, code: i8, data: &[u8], place: Place) -> Result<Value, Loss> {
        let payload = msgpack::parse(data).map_err(|e| Loss(e.to_string()))?;
        if code == EXT_DELTA_SNAPSHOT {
            return Ok(
                serde_json::json!({ "__delta_snapshot__": true, "value": self.value(&payload, place)? }),
            );
        }
        let Mp::Array(parts) = &payload else {
            return self.lossy(&format!("msgpack extension {code}"), Value::Null);
        };
        let text = |i: usize| parts.get(i).and_then(Mp::as_str).map(str::to_owned);
        let (Some(module), Some(name)) = (text(0), text(1)) else {
            return self.lossy(&format!("msgpack extension {code}"), Value::Null);
        };
        let arg = parts.get(2).cloned().unwrap_or(Mp::Nil);
        let inner = Place::InEnvelope;
        match (code, module.as_str(), name.as_str()) {
            (EXT_CONSTRUCTOR_POS_ARGS, "langgraph.types", "Send") => {
                let args = match &arg {
                    Mp::Array(a) => a.clone(),
                    _ => Vec::new(),
                };
                let node = self.value(args.first().unwrap_or(&Mp::Nil), place)?;
                let send_arg = self.value(args.get(1).unwrap_or(&Mp::Nil), place)?;
                Ok(serde_json::json!({ "__send__": true, "node": node, "arg": send_arg }))
            }
            (EXT_CONSTRUCTOR_SINGLE_ARG, _, _) => {
                let arg = self.value(&arg, inner)?;
                Ok(envelope(&module, &name, Some(vec![arg]), None))
            }
            (EXT_CONSTRUCTOR_POS_ARGS, _, _) => {
                let args = match self.value(&arg, inner)? {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                Ok(envelope(&module, &name, Some(args), None))
            }
            (EXT_CONSTRUCTOR_KW_ARGS | EXT_PYDANTIC_V1, _, _) => {
                let kwargs = self.value(&arg, inner)?;
                Ok(envelope(&module, &name, None, Some(kwargs)))
            }
            (EXT_PYDANTIC_V2, _, _) if langchain::is_serializable(&module) => {
                // LangChain objects are written as their own `to_json()` (lc: 1),
                // which RedisSaver revives with LangChain's loader.
                let mut notices = Vec::new();
                msgpack::ext_view(code, data, &mut notices).map_err(|e| Loss(e.to_string()))
            }
            (EXT_PYDANTIC_V2, _, _) => {
                let kwargs = self.value(&arg, inner)?;
                Ok(envelope(&module, &name, None, Some(kwargs)))
            }
            (EXT_METHOD_SINGLE_ARG, "datetime", "datetime") => {
                let iso = arg.as_str().unwrap_or_default();
                match datetime_args(iso) {
                    Some(args) => Ok(envelope("datetime", "datetime", Some(args), None)),
                    None => self.lossy(&format!("datetime {iso:?}"), Value::String(iso.to_owned())),
                }
            }
            _ => self.lossy(
                &format!("{module}.{name} (msgpack extension {code}; RedisSaver's JSON form has no way to rebuild it)"),
                envelope(&module, &name, None, Some(Value::Object(Map::new()))),
            ),
        }
    }
}

/// An `lc: 2` constructor envelope, as RedisSaver writes and revives them.
fn envelope(module: &str, name: &str, args: Option<Vec<Value>>, kwargs: Option<Value>) -> Value {
    let mut id: Vec<Value> = module.split('.').map(Value::from).collect();
    id.push(Value::from(name));
    let mut map = Map::new();
    map.insert("lc".into(), Value::from(2));
    map.insert("type".into(), Value::from("constructor"));
    map.insert("id".into(), Value::Array(id));
    if let Some(args) = args {
        map.insert("args".into(), Value::Array(args));
    }
    if let Some(kwargs) = kwargs {
        map.insert("kwargs".into(), kwargs);
    }
    Value::Object(map)
}

/// `datetime(y, mo, d, h, mi, s, us[, tzinfo])` arguments from Python's `isoformat()`
/// (`2025-03-14T09:26:53.589793+05:45:30`), the offset as a `timezone(timedelta(…))`
/// envelope. `None` when the text is not in that form.
fn datetime_args(iso: &str) -> Option<Vec<Value>> {
    let (date, time) = iso.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let split = time.find(['+', '-']).unwrap_or(time.len());
    let (clock, offset) = time.split_at(split);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    let micro = |f: &str| -> Option<i64> {
        if f.is_empty() {
            return Some(0);
        }
        (f.len() <= 6 && f.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!("{f:0<6}").parse().ok())?
    };
    let mut args: Vec<Value> = [y, mo, day, h, mi, s, micro(fraction)?]
        .into_iter()
        .map(Value::from)
        .collect();
    if !offset.is_empty() {
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (ohms, ofrac) = offset[1..].split_once('.').unwrap_or((&offset[1..], ""));
        let parts: Vec<i64> = ohms
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let seconds = parts.first()? * 3600
            + parts.get(1).copied().unwrap_or(0) * 60
            + parts.get(2).copied().unwrap_or(0);
        let delta = envelope(
            "datetime",
            "timedelta",
            Some(vec![
                Value::from(0),
                Value::from(sign * seconds),
                Value::from(sign * micro(ofrac)?),
            ]),
            None,
        );
        args.push(envelope("datetime", "timezone", Some(vec![delta]), None));
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn to_msgpack(v: &Value, walk: Walk) -> Result<Mp, String> {
        Encoder::new(&AllowedJsonModules::All(true)).to_msgpack(v, walk)
    }

    fn payload(v: &Mp) -> (i8, Mp) {
        match v {
            Mp::Ext(code, data) => (*code, msgpack::parse(data).unwrap()),
            other => panic!("not an ext: {other:?}"),
        }
    }

    #[test]
    fn bytes_markers_only_outside_envelopes() {
        let v = json!({"__bytes__": "AAD/"});
        assert_eq!(
            to_msgpack(&v, Walk::ChannelValues).unwrap(),
            Mp::Binary(vec![0, 0, 255])
        );
        // RedisSaver's serializer walk leaves the marker a dict.
        assert!(matches!(
            to_msgpack(&v, Walk::Serialized).unwrap(),
            Mp::Map(_)
        ));
    }

    #[test]
    fn envelopes_become_the_ext_langgraph_would_write() {
        let msg = json!({"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
                         "kwargs": {"content": "hi", "type": "human"}});
        let (code, p) = payload(&to_msgpack(&msg, Walk::ChannelValues).unwrap());
        assert_eq!(code, 5);
        assert_eq!(p[0].as_str(), Some("langchain_core.messages.human"));
        let set = json!({"lc": 2, "type": "constructor", "id": ["builtins", "set"], "args": [["a", "b"]]});
        let (code, p) = payload(&to_msgpack(&set, Walk::ChannelValues).unwrap());
        assert_eq!((code, p[1].as_str()), (0, Some("set")));
        let model = json!({"lc": 2, "type": "constructor", "id": ["app", "models", "Order"],
                           "kwargs": {"id": 1, "blob": {"__bytes__": "AA=="}}});
        let (code, p) = payload(&to_msgpack(&model, Walk::ChannelValues).unwrap());
        assert_eq!(
            (code, p[0].as_str(), p[1].as_str()),
            (2, Some("app.models"), Some("Order"))
        );
        assert!(
            matches!(&p[2].as_map().unwrap()[1].1, Mp::Map(_)),
            "bytes marker inside an envelope stays a dict"
        );
    }

    #[test]
    fn markers_follow_the_reviver_that_reads_them() {
        let interrupt = json!([{"__interrupt__": true, "value": {"q": "ok?"}, "id": "abc"}]);
        let Mp::Array(items) = to_msgpack(&interrupt, Walk::Serialized).unwrap() else {
            panic!()
        };
        let (code, p) = payload(&items[0]);
        assert_eq!((code, p[1].as_str()), (2, Some("Interrupt")));
        // In channel values RedisSaver leaves it a dict.
        assert!(
            matches!(to_msgpack(&interrupt, Walk::ChannelValues).unwrap(), Mp::Array(ref v) if matches!(v[0], Mp::Map(_)))
        );
        let send = json!({"__send__": true, "node": "worker", "arg": {"i": 1}});
        let (code, p) = payload(&to_msgpack(&send, Walk::ChannelValues).unwrap());
        assert_eq!((code, p[1].as_str()), (1, Some("Send")));
        let delta = json!({"__delta_snapshot__": true, "value": [1, 2]});
        assert!(matches!(
            to_msgpack(&delta, Walk::ChannelValues).unwrap(),
            Mp::Ext(7, _)
        ));
    }

    #[test]
    fn classes_the_app_does_not_allow_stay_maps() {
        let model =
            json!({"lc": 2, "type": "constructor", "id": ["app", "Order"], "kwargs": {"id": 1}});
        let allowed = AllowedJsonModules::Only(vec!["app.Other".into()]);
        let mut encoder = Encoder::new(&allowed);
        assert!(matches!(
            encoder.to_msgpack(&model, Walk::ChannelValues).unwrap(),
            Mp::Map(_)
        ));
        assert_eq!(
            encoder.kept_as_maps.iter().collect::<Vec<_>>(),
            ["app.Order"]
        );
        // Safe types are revived whatever the list says.
        let uuid = json!({"lc": 2, "type": "constructor", "id": ["uuid", "UUID"], "args": ["00"]});
        assert!(matches!(
            encoder.to_msgpack(&uuid, Walk::ChannelValues).unwrap(),
            Mp::Ext(0, _)
        ));
    }

    #[test]
    fn datetimes_become_their_constructor_arguments() {
        let args = datetime_args("2025-03-14T09:26:53.5+05:45:30").unwrap();
        assert_eq!(
            &args[..7],
            &[2025, 3, 14, 9, 26, 53, 500000].map(Value::from)
        );
        assert_eq!(args[7]["id"], json!(["datetime", "timezone"]));
        assert_eq!(args[7]["args"][0]["args"], json!([0, 20730, 0]));
        assert_eq!(datetime_args("2025-03-14T09:26:53").unwrap().len(), 7);
        assert!(datetime_args("yesterday").is_none());
        // The view renders the written form back to the isoformat it came from.
        for iso in [
            "2025-03-14T09:26:53.500000+05:45",
            "2025-03-14T09:26:53-03:00",
            "2025-03-14T09:26:53",
        ] {
            let written = envelope("datetime", "datetime", datetime_args(iso), None);
            let mut notices = Vec::new();
            assert_eq!(super::super::json::to_view(written, &mut notices), iso);
            assert!(notices.is_empty(), "{notices:?}");
        }
    }

    #[test]
    fn msgpack_to_json_form_and_back_gives_the_same_msgpack() {
        // The JSON form this module writes, read back the way RedisSaver reads it
        // (then written as LangGraph's msgpack), is the msgpack we started from.
        let uuid = ext(0, vec!["uuid".into(), "UUID".into(), "00ff".into()]);
        let set = ext(
            0,
            vec!["builtins".into(), "set".into(), Mp::Array(vec!["a".into()])],
        );
        let model = ext(
            2,
            vec![
                "app".into(),
                "Order".into(),
                Mp::Map(vec![("id".into(), 1.into())]),
            ],
        );
        let original = Mp::Map(vec![
            ("u".into(), uuid),
            ("s".into(), set),
            ("m".into(), model),
            ("b".into(), Mp::Binary(vec![0, 1])),
        ]);
        let json_form = JsonFormWriter::new(false)
            .channel_value(&msgpack::encode(&original))
            .unwrap();
        let back = Encoder::new(&AllowedJsonModules::All(true))
            .to_msgpack(&json_form, Walk::ChannelValues)
            .unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn values_without_an_exact_json_form_are_named() {
        let nan = msgpack::encode(&Mp::F64(f64::NAN));
        assert!(
            JsonFormWriter::new(false)
                .channel_value(&nan)
                .unwrap_err()
                .0
                .contains("NaN")
        );
        let mut lossy = JsonFormWriter::new(true);
        assert_eq!(lossy.channel_value(&nan).unwrap(), Value::Null);
        assert_eq!(lossy.losses.values().sum::<u64>(), 1);
        let nested_bytes = msgpack::encode(&ext(
            2,
            vec![
                "a".into(),
                "B".into(),
                Mp::Map(vec![("x".into(), Mp::Binary(vec![1]))]),
            ],
        ));
        assert!(
            JsonFormWriter::new(false)
                .channel_value(&nested_bytes)
                .is_err()
        );
    }

    /// What the text path leaves to the tree (or takes and hands back) comes out as
    /// the tree's text, losses and errors: values with no exact JSON form, keys that
    /// collide or are not strings, other extensions, LangChain payloads that are not
    /// what they claim, bytes in and out of envelopes.
    #[test]
    fn channel_value_text_is_the_trees_text_at_every_edge() {
        let message = |payload: Vec<Mp>| ext(5, payload);
        let human = || {
            message(vec![
                "langchain_core.messages.human".into(),
                "HumanMessage".into(),
                Mp::Map(vec![("content".into(), "hi".into())]),
            ])
        };
        let values = [
            Mp::Map(vec![("a".into(), 1.into()), ("b".into(), Mp::F64(1.5))]),
            Mp::Array(vec![
                human(),
                Mp::Binary(vec![0, 255]),
                Mp::Nil,
                true.into(),
            ]),
            Mp::Map(vec![("a".into(), 1.into()), ("a".into(), 2.into())]),
            Mp::Map(vec![(1.into(), "x".into())]),
            Mp::Integer(u64::MAX.into()),
            Mp::Integer(i64::MIN.into()),
            Mp::F64(f64::NAN),
            Mp::F32(f32::INFINITY),
            Mp::String("caf\u{e9} \"q\" \u{1}".into()),
            message(vec!["langchain_core.messages.human".into()]),
            message(vec!["app.models".into(), "Order".into(), Mp::Map(vec![])]),
            message(vec![
                "langchain_core.messages.ai".into(),
                Mp::Binary(vec![1]),
                Mp::Map(vec![]),
            ]),
            ext(5, vec![]),
            Mp::Ext(5, vec![0x92, 0xa1, b'l']),
            ext(
                2,
                vec![
                    "a".into(),
                    "B".into(),
                    Mp::Map(vec![("x".into(), Mp::Binary(vec![1]))]),
                ],
            ),
            ext(
                0,
                vec![
                    "uuid".into(),
                    "UUID".into(),
                    "00000000000000000000000000000000".into(),
                ],
            ),
            Mp::Array(vec![Mp::Array(vec![]); 3]),
        ];
        // A string that is not UTF-8, as bytes: no tree holds it.
        let not_utf8 = vec![0xa2, 0xff, 0xfe];
        let encoded = values.iter().map(msgpack::encode).chain([not_utf8]);
        for (value, bytes) in values.iter().map(Some).chain([None]).zip(encoded) {
            for lossy in [false, true] {
                let mut tree_writer = JsonFormWriter::new(lossy);
                let tree = tree_writer.channel_value(&bytes).map(|tree| {
                    let mut text = Vec::new();
                    crate::json_text::write_value(&mut text, &tree);
                    text
                });
                let mut text_writer = JsonFormWriter::new(lossy);
                let mut text = Vec::new();
                let written = text_writer
                    .write_channel_value(&bytes, &mut text)
                    .map(|()| text);
                assert_eq!(
                    written.as_ref().map_err(|e| &e.0),
                    tree.as_ref().map_err(|e| &e.0),
                    "{value:?} (lossy: {lossy})"
                );
                assert_eq!(text_writer.losses, tree_writer.losses, "{value:?}");
            }
        }
        // Plain values and LangChain messages are the ones written from the bytes.
        let streamed: Vec<bool> = values
            .iter()
            .map(|v| msgpack::plain_or_langchain(&msgpack::encode(v)))
            .collect();
        assert_eq!(streamed[..4], [true, true, true, false]);
        assert!(!streamed[4] && streamed[5] && !streamed[6] && !streamed[7]);
        assert!(streamed[10..16].iter().all(|s| !s));
    }

    #[test]
    fn unknown_langchain_classes_are_refused() {
        let v = json!({"lc": 1, "type": "constructor", "id": ["langchain", "prompts", "Foo"], "kwargs": {}});
        assert!(
            to_msgpack(&v, Walk::ChannelValues)
                .unwrap_err()
                .contains("no known Python class")
        );
    }
}
