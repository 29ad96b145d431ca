//! The tools a request offers this turn, shared by the OpenAI and Anthropic routes: each flavour
//! turns its wire shape into [`ToolDef`]s and a [`Choice`] (checking what only its shape can get
//! wrong); the name rules, duplicates, the named choice and the filtering are decided here once,
//! and so is the constraint that makes a `required` or named choice produce a call
//! ([`Offer::call_constraint`]).

use std::sync::Arc;

use semantic_chat::ToolSyntax;
use semantic_engine::{CallShape, CallableTool, JsonGrammar};
use serde_json::{json, Value};

use crate::error::ApiError;

/// One function tool as the template sees it, with the request field that named it (for errors).
pub(crate) struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
    pub name_param: String,
    /// The request field that holds `parameters` (named in a 400 when the constraint cannot express it).
    pub parameters_param: String,
}

/// `tool_choice`, in either flavour.
pub(crate) enum Choice {
    /// Absent: every tool is offered.
    Unset,
    /// Offer nothing.
    None,
    /// Offer every tool (`auto`).
    Auto,
    /// Offer every tool; the caller wants a call (OpenAI `required`, Anthropic `any`).
    Required,
    /// Offer only this tool; `param` is the request field that named it.
    Named { name: String, param: &'static str },
}

/// The tools offered this turn, as the template sees them, and their names.
#[derive(Debug, Default)]
pub(crate) struct Offer {
    pub tools: Option<Vec<Value>>,
    pub names: Option<Vec<String>>,
    /// `required` or named: the tools one of which the reply must call, with their parameters and the request
    /// field holding them (empty: the model may answer in text).
    forced: Vec<(String, Option<Value>, String)>,
}

impl Offer {
    /// The grammar that makes the reply exactly one call, in `syntax`, to one of the forced tools with arguments
    /// valid against its schema; None when the choice forces nothing. A schema the grammar cannot express is a 400
    /// naming its field (for `auto` nothing is compiled, so such a tool is still offered, unconstrained).
    pub fn call_constraint(&self, syntax: ToolSyntax) -> Result<Option<Arc<JsonGrammar>>, ApiError> {
        if self.forced.is_empty() {
            return Ok(None);
        }
        let tools: Vec<CallableTool<'_>> = self
            .forced
            .iter()
            .map(|(name, parameters, _)| CallableTool { name, parameters: parameters.as_ref() })
            .collect();
        let frame = syntax.call_frame();
        let shape = CallShape { prefix: frame.prefix, arguments_key: frame.arguments_key, suffix: frame.suffix };
        let grammar = JsonGrammar::tool_call(&tools, shape).map_err(|e| {
            let (name, _, param) = &self.forced[e.tool];
            let why = format!(
                "{param}: tool_choice forces a call to {name:?}, whose schema cannot be enforced: {} at {}; \
                 use tool_choice auto or a supported schema",
                e.source.reason, e.source.path
            );
            ApiError::invalid(param.clone(), why)
        })?;
        Ok(Some(Arc::new(grammar)))
    }
}

/// Applies `choice` to `defs`: `None` offers nothing, `Unset`, `Auto` and `Required` offer every
/// tool, `Named` only that one; `Required` and `Named` also force a call (see [`Offer::call_constraint`]).
pub(crate) fn offer(defs: Vec<ToolDef>, choice: Choice) -> Result<Offer, ApiError> {
    let mut tools: Vec<(String, Value)> = Vec::with_capacity(defs.len());
    let mut schemas: Vec<(String, Option<Value>, String)> = Vec::with_capacity(defs.len());
    for def in defs {
        check_tool_name(&def.name).map_err(|m| ApiError::invalid(def.name_param.clone(), m))?;
        if tools.iter().any(|(name, _)| *name == def.name) {
            return Err(ApiError::invalid(def.name_param, format!("duplicate tool name {:?}", def.name)));
        }
        let mut function = serde_json::Map::new();
        function.insert("name".into(), Value::String(def.name.clone()));
        if let Some(d) = def.description {
            function.insert("description".into(), Value::String(d));
        }
        if let Some(p) = &def.parameters {
            function.insert("parameters".into(), p.clone());
        }
        schemas.push((def.name.clone(), def.parameters, def.parameters_param));
        tools.push((def.name, json!({"type": "function", "function": function})));
    }
    if let Choice::Named { name, param } = &choice {
        if !tools.iter().any(|(n, _)| n == name) {
            return Err(ApiError::invalid(*param, format!("tool_choice names {name:?}, which is not in tools")));
        }
    }
    let forced = match choice {
        Choice::None => return Ok(Offer::default()),
        Choice::Required if tools.is_empty() => {
            return Err(ApiError::invalid("tool_choice", "tool_choice needs a non-empty tools list"))
        }
        Choice::Named { name, .. } => {
            tools.retain(|(n, _)| *n == name);
            schemas.retain(|(n, _, _)| *n == name);
            schemas
        }
        Choice::Required => schemas,
        Choice::Unset | Choice::Auto => Vec::new(),
    };
    if tools.is_empty() {
        return Ok(Offer::default());
    }
    let names = tools.iter().map(|(n, _)| n.clone()).collect();
    Ok(Offer { tools: Some(tools.into_iter().map(|(_, d)| d).collect()), names: Some(names), forced })
}

/// OpenAI's rule for function names: 1-64 chars of `[A-Za-z0-9_-]`.
fn check_tool_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid function name {name:?}: 1-64 chars of A-Z a-z 0-9 _ -"))
    }
}
