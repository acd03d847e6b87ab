//! langgraph-redis's JSON form → LangGraph's msgpack, for moving a RedisSaver
//! checkpoint into the stores whose serializer is `JsonPlusSerializer` (SqliteSaver,
//! PostgresSaver).
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
//! | other `lc: 2` with `kwargs` / `args` / neither | `cls(**kwargs)` / `cls(*args)` / `cls()` | ext 2 / ext 1 / ext 1 with no args |
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

use super::langchain;
use super::msgpack;

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
                let args = args
                    .into_iter()
                    .flatten()
                    .map(|v| self.to_msgpack(v, walk))
                    .collect::<Result<_, _>>()?;
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
            Mp::Ext(1, _)
        ));
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
