//! The tools a request offers this turn, shared by the OpenAI and Anthropic routes: each flavour
//! turns its wire shape into [`ToolDef`]s and a [`Choice`] (checking what only its shape can get
//! wrong); the name rules, duplicates, the named choice and the filtering are decided here once.

use serde_json::{json, Value};

use crate::error::ApiError;

/// One function tool as the template sees it, with the request field that named it (for errors).
pub(crate) struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
    pub name_param: String,
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
}

/// Applies `choice` to `defs`: `None` offers nothing, `Unset`, `Auto` and `Required` offer every
/// tool, `Named` only that one. Without a grammar over the call, `Required` and `Named` cannot force
/// a call: if the model makes none, its text is the answer.
pub(crate) fn offer(defs: Vec<ToolDef>, choice: Choice) -> Result<Offer, ApiError> {
    let mut tools: Vec<(String, Value)> = Vec::with_capacity(defs.len());
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
        if let Some(p) = def.parameters {
            function.insert("parameters".into(), p);
        }
        tools.push((def.name, json!({"type": "function", "function": function})));
    }
    if let Choice::Named { name, param } = &choice {
        if !tools.iter().any(|(n, _)| n == name) {
            return Err(ApiError::invalid(*param, format!("tool_choice names {name:?}, which is not in tools")));
        }
    }
    match choice {
        Choice::None => return Ok(Offer::default()),
        Choice::Required if tools.is_empty() => {
            return Err(ApiError::invalid("tool_choice", "tool_choice needs a non-empty tools list"))
        }
        Choice::Named { name, .. } => tools.retain(|(n, _)| *n == name),
        Choice::Unset | Choice::Auto | Choice::Required => {}
    }
    if tools.is_empty() {
        return Ok(Offer::default());
    }
    let names = tools.iter().map(|(n, _)| n.clone()).collect();
    Ok(Offer { tools: Some(tools.into_iter().map(|(_, d)| d).collect()), names: Some(names) })
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
