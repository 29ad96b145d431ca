//! `JsonGrammar`: a JSON Schema compiled into nodes the automaton walks. Owns which keywords are supported; every
//! other keyword is a [`SchemaError`] naming it and where it is, never silently ignored.
//!
//! Supported: `type` (object, array, string, number, integer, boolean, null, or a list of them), `properties`,
//! `required`, `additionalProperties` (false; true or absent also accepted: only declared properties are generated,
//! which every such schema allows), `items`, `minItems`, `maxItems`, `minLength`, `maxLength`, `enum`, `const`,
//! `minimum` / `maximum` on integers, `anyOf`, `$ref` to `#/$defs/...` or `#/definitions/...` (recursion allowed),
//! and the annotations `title`, `description`, `$schema`, `$id`, `default`, `examples`, `$comment`, `strict`.
//! An object's properties are generated in declared order; numbers have at most 15 integer digits and 6 fraction
//! digits and no exponent; no whitespace is generated outside strings.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Index of a node in [`JsonGrammar::nodes`].
pub(crate) type NodeId = u32;

/// The node every grammar has at index 0: any JSON value.
pub(crate) const ANY: NodeId = 0;

/// Literal indices of `true`, `false` and `null`, which every grammar holds first (for [`Node::Any`]).
pub(crate) const KEYWORDS: [u32; 3] = [0, 1, 2];

/// Largest number of integer digits a generated number has.
pub(crate) const MAX_INT_DIGITS: u8 = 15;

/// Largest number of fraction digits a generated number has.
pub(crate) const MAX_FRAC_DIGITS: u8 = 6;

/// A schema the grammar cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SchemaError {
    /// JSON pointer of the offending schema (`#/properties/a`).
    pub path: String,
    /// What is wrong or unsupported.
    pub reason: String,
}

/// One object property: the literal `"key":` and the value's node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prop {
    pub key: u32,
    pub value: NodeId,
    pub required: bool,
}

/// What a value must be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Any JSON value.
    Any,
    /// An object of any string keys and any values.
    AnyObject,
    /// An object of the declared properties, in order.
    Object(Vec<Prop>),
    Array {
        items: NodeId,
        min: u32,
        max: Option<u32>,
    },
    String {
        min: u32,
        max: Option<u32>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Number,
    /// One of these literals (indices into `literals`), e.g. `true` or `"red"`.
    Literals(Vec<u32>),
    AnyOf(Vec<NodeId>),
    /// These nodes one after the other (a tool call: marker, object, marker). Only ever the root: never
    /// inside `AnyOf` (its first bytes are not a single frame, see `starts`).
    Seq(Vec<NodeId>),
    /// Not compiled yet (a `$ref` being resolved); never walked.
    Pending,
}

/// A compiled schema, shared by every sequence that uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonGrammar {
    pub(crate) nodes: Vec<Node>,
    pub(crate) literals: Vec<Vec<u8>>,
    pub(crate) root: NodeId,
}

/// How a model writes one tool call around its JSON object: `{prefix}{"name":..,"{arguments_key}":..}{suffix}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallShape<'a> {
    /// Text before the object (`<tool_call>\n` for Hermes; may be empty).
    pub prefix: &'a str,
    /// The key of the arguments object (`arguments`, or `parameters` for Llama 3).
    pub arguments_key: &'a str,
    /// Text after the object (may be empty).
    pub suffix: &'a str,
}

/// One function a constrained tool call may name, with its parameters' JSON Schema (None: any object).
#[derive(Debug, Clone, Copy)]
pub struct CallableTool<'a> {
    /// The function's name.
    pub name: &'a str,
    /// Its `parameters` schema.
    pub parameters: Option<&'a Value>,
}

/// A tool's parameters schema the grammar cannot express: which tool (index into the list given) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tool {tool}: {source}")]
pub struct ToolSchemaError {
    /// Index of the tool in the list given to [`JsonGrammar::tool_call`].
    pub tool: usize,
    /// What the schema compiler refused.
    pub source: SchemaError,
}

const ANNOTATIONS: &[&str] =
    &["title", "description", "$schema", "$id", "default", "examples", "$comment", "strict", "$defs", "definitions"];

impl JsonGrammar {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn any_object() -> Self {
        let mut g = Self::empty();
        g.root = g.push(Node::AnyObject);
        g
    }

    /// Compiles a JSON Schema; the error names the first unsupported keyword.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let mut c = Compiler { g: Self::empty(), root: schema, refs: HashMap::new() };
        c.g.root = c.node(schema, "#")?;
        Ok(c.g)
    }

    /// Exactly one call to one of `tools`, written in `shape`: the name is one of theirs and the arguments valid
    /// against that tool's schema. The error names the first tool whose schema is not supported.
    pub fn tool_call(tools: &[CallableTool<'_>], shape: CallShape<'_>) -> Result<Self, ToolSchemaError> {
        let mut g = Self::empty();
        let mut calls = Vec::with_capacity(tools.len());
        let name_key = g.literal(b"\"name\":".to_vec());
        let mut args_key = serde_json::to_vec(shape.arguments_key).unwrap_or_default();
        args_key.push(b':');
        let args_key = g.literal(args_key);
        for (tool, def) in tools.iter().enumerate() {
            let args = match def.parameters {
                None => g.push(Node::AnyObject),
                Some(schema) => {
                    let mut c = Compiler { g, root: schema, refs: HashMap::new() };
                    let args = c.node(schema, "#");
                    g = c.g;
                    args.map_err(|source| ToolSchemaError { tool, source })?
                }
            };
            let name = g.literal(serde_json::to_vec(def.name).unwrap_or_default());
            let name = g.push(Node::Literals(vec![name]));
            let props = vec![
                Prop { key: name_key, value: name, required: true },
                Prop { key: args_key, value: args, required: true },
            ];
            calls.push(g.push(Node::Object(props)));
        }
        let mut seq = Vec::with_capacity(3);
        if !shape.prefix.is_empty() {
            let lit = g.literal(shape.prefix.as_bytes().to_vec());
            seq.push(g.push(Node::Literals(vec![lit])));
        }
        seq.push(match calls.as_slice() {
            [one] => *one,
            _ => g.push(Node::AnyOf(calls)),
        });
        if !shape.suffix.is_empty() {
            let lit = g.literal(shape.suffix.as_bytes().to_vec());
            seq.push(g.push(Node::Literals(vec![lit])));
        }
        g.root = g.push(Node::Seq(seq));
        Ok(g)
    }

    fn empty() -> Self {
        let literals = ["true", "false", "null"].iter().map(|k| k.as_bytes().to_vec()).collect();
        Self { nodes: vec![Node::Any], literals, root: ANY }
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    pub(crate) fn literal(&mut self, bytes: Vec<u8>) -> u32 {
        if let Some(i) = self.literals.iter().position(|l| *l == bytes) {
            return i as u32;
        }
        self.literals.push(bytes);
        (self.literals.len() - 1) as u32
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }
}

struct Compiler<'a> {
    g: JsonGrammar,
    root: &'a Value,
    refs: HashMap<String, NodeId>,
}

fn err(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError { path: path.to_string(), reason: reason.into() }
}

const KNOWN: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "enum",
    "const",
    "minimum",
    "maximum",
    "anyOf",
    "$ref",
];

impl Compiler<'_> {
    fn node(&mut self, schema: &Value, path: &str) -> Result<NodeId, SchemaError> {
        let obj = match schema {
            Value::Bool(true) => return Ok(ANY),
            Value::Object(obj) => obj,
            _ => return Err(err(path, "a schema must be an object or true")),
        };
        for key in obj.keys() {
            if !KNOWN.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                return Err(err(path, format!("unsupported JSON Schema keyword {key:?}")));
            }
        }
        if let Some(r) = obj.get("$ref") {
            if obj.keys().any(|k| KNOWN.contains(&k.as_str()) && k != "$ref") {
                return Err(err(path, "$ref beside other constraints is not supported"));
            }
            return self.reference(r, path);
        }
        if let Some(values) = obj.get("enum") {
            let Value::Array(values) = values else { return Err(err(path, "enum must be an array")) };
            if values.is_empty() {
                return Err(err(path, "enum must not be empty"));
            }
            return Ok(self.literals(values));
        }
        if let Some(value) = obj.get("const") {
            return Ok(self.literals(std::slice::from_ref(value)));
        }
        if let Some(any) = obj.get("anyOf") {
            let Value::Array(list) = any else { return Err(err(path, "anyOf must be an array")) };
            if list.is_empty() {
                return Err(err(path, "anyOf must not be empty"));
            }
            if obj.keys().any(|k| KNOWN.contains(&k.as_str()) && k != "anyOf") {
                return Err(err(path, "anyOf beside other constraints is not supported; put them in each branch"));
            }
            let ids = list
                .iter()
                .enumerate()
                .map(|(i, s)| self.node(s, &format!("{path}/anyOf/{i}")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(self.g.push(Node::AnyOf(ids)));
        }
        let types: Vec<&str> = match obj.get("type") {
            None if obj.contains_key("properties") => vec!["object"],
            None if obj.contains_key("items") => vec!["array"],
            None => return Ok(ANY),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .map(|t| t.as_str().ok_or_else(|| err(path, "type must be strings")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(path, "type must be a string or an array of strings")),
        };
        let ids = types.iter().map(|t| self.typed(t, &types, obj, path)).collect::<Result<Vec<_>, _>>()?;
        match ids.as_slice() {
            [one] => Ok(*one),
            [] => Err(err(path, "type must not be empty")),
            _ => Ok(self.g.push(Node::AnyOf(ids))),
        }
    }

    fn typed(
        &mut self,
        kind: &str,
        types: &[&str],
        obj: &Map<String, Value>,
        path: &str,
    ) -> Result<NodeId, SchemaError> {
        let allowed: &[&str] = match kind {
            "object" => &["properties", "required", "additionalProperties"],
            "array" => &["items", "minItems", "maxItems"],
            "string" => &["minLength", "maxLength"],
            "integer" => &["minimum", "maximum"],
            _ => &[],
        };
        for key in obj.keys().filter(|k| KNOWN.contains(&k.as_str()) && *k != "type") {
            let elsewhere = types.iter().any(|&t| t != kind && keyword_of(t, key));
            if !allowed.contains(&key.as_str()) && !elsewhere {
                let note = if kind == "number" && (key == "minimum" || key == "maximum") {
                    " (bounds are supported on integers only)"
                } else {
                    ""
                };
                return Err(err(path, format!("keyword {key:?} is not supported on type {kind:?}{note}")));
            }
        }
        let node = match kind {
            "object" => self.object(obj, path)?,
            "array" => {
                let items = match obj.get("items") {
                    Some(s) => self.node(s, &format!("{path}/items"))?,
                    None => ANY,
                };
                let min = count(obj, "minItems", path)?.unwrap_or(0);
                let max = count(obj, "maxItems", path)?;
                if max.is_some_and(|m| m < min) {
                    return Err(err(path, "maxItems is below minItems"));
                }
                Node::Array { items, min, max }
            }
            "string" => {
                let min = count(obj, "minLength", path)?.unwrap_or(0);
                let max = count(obj, "maxLength", path)?;
                if max.is_some_and(|m| m < min) {
                    return Err(err(path, "maxLength is below minLength"));
                }
                Node::String { min, max }
            }
            "integer" => {
                let min = bound(obj, "minimum", path, f64::ceil)?;
                let max = bound(obj, "maximum", path, f64::floor)?;
                if let (Some(a), Some(b)) = (min, max) {
                    if a > b {
                        return Err(err(path, "no integer lies between minimum and maximum"));
                    }
                }
                Node::Integer { min, max }
            }
            "number" => Node::Number,
            "boolean" => return Ok(self.literals(&[Value::Bool(true), Value::Bool(false)])),
            "null" => return Ok(self.literals(&[Value::Null])),
            other => return Err(err(path, format!("unknown type {other:?}"))),
        };
        Ok(self.g.push(node))
    }

    fn object(&mut self, obj: &Map<String, Value>, path: &str) -> Result<Node, SchemaError> {
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|k| k.as_str().ok_or_else(|| err(path, "required must list strings")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(path, "required must be an array")),
        };
        match obj.get("additionalProperties") {
            None | Some(Value::Bool(_)) => {}
            Some(_) => {
                return Err(err(path, "additionalProperties must be false (or true); schemas are not supported"))
            }
        }
        let props = match obj.get("properties") {
            None => {
                if let Some(k) = required.first() {
                    return Err(err(path, format!("required property {k:?} is not in properties")));
                }
                let closed = obj.get("additionalProperties") == Some(&Value::Bool(false));
                return Ok(if closed { Node::Object(Vec::new()) } else { Node::AnyObject });
            }
            Some(Value::Object(p)) => p,
            Some(_) => return Err(err(path, "properties must be an object")),
        };
        for k in &required {
            if !props.contains_key(*k) {
                return Err(err(path, format!("required property {k:?} is not in properties")));
            }
        }
        let mut out = Vec::with_capacity(props.len());
        for (name, schema) in props {
            let value = self.node(schema, &format!("{path}/properties/{name}"))?;
            let mut key = serde_json::to_vec(name).unwrap_or_default();
            key.push(b':');
            out.push(Prop { key: self.g.literal(key), value, required: required.contains(&name.as_str()) });
        }
        Ok(Node::Object(out))
    }

    fn reference(&mut self, r: &Value, path: &str) -> Result<NodeId, SchemaError> {
        let Some(r) = r.as_str() else { return Err(err(path, "$ref must be a string")) };
        if let Some(&id) = self.refs.get(r) {
            return Ok(id);
        }
        let target = ["#/$defs/", "#/definitions/"].iter().find_map(|prefix| {
            let name = r.strip_prefix(prefix)?;
            self.root.get(&prefix[2..prefix.len() - 1])?.get(name)
        });
        let Some(target) = target else {
            return Err(err(path, format!("$ref {r:?} is not supported: only #/$defs/NAME or #/definitions/NAME")));
        };
        let id = self.g.push(Node::Pending);
        self.refs.insert(r.to_string(), id);
        let compiled = self.node(target, r)?;
        self.g.nodes[id as usize] = Node::AnyOf(vec![compiled]);
        Ok(id)
    }

    fn literals(&mut self, values: &[Value]) -> NodeId {
        let ids = values.iter().map(|v| self.g.literal(serde_json::to_vec(v).unwrap_or_default())).collect();
        self.g.push(Node::Literals(ids))
    }
}

/// Whether `key` is a keyword of type `kind` (so a multi-type schema may carry it for another of its types).
fn keyword_of(kind: &str, key: &str) -> bool {
    match kind {
        "object" => ["properties", "required", "additionalProperties"].contains(&key),
        "array" => ["items", "minItems", "maxItems"].contains(&key),
        "string" => ["minLength", "maxLength"].contains(&key),
        "integer" => ["minimum", "maximum"].contains(&key),
        _ => false,
    }
}

fn count(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u32>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| err(path, format!("{key} must be a non-negative integer"))),
    }
}

fn bound(obj: &Map<String, Value>, key: &str, path: &str, round: fn(f64) -> f64) -> Result<Option<i64>, SchemaError> {
    let limit = 10f64.powi(i32::from(MAX_INT_DIGITS));
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.abs() < limit => Ok(Some(round(x) as i64)),
            _ => Err(err(path, format!("{key} must be a number of at most {MAX_INT_DIGITS} digits"))),
        },
    }
}
