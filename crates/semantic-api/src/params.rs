//! Sampling and stop-string fields shared by the three generation routes, checked against each
//! API's documented ranges before anything is queued.

use std::collections::HashMap;

use std::sync::Arc;

use semantic_engine::{JsonGrammar, SamplingError, SamplingParams};

use crate::error::ApiError;
use crate::openai_wire::ResponseFormat;

/// Most stop strings per request.
pub const MAX_STOP_STRINGS: usize = 16;

/// Sampling fields as they arrive (OpenAI names; Anthropic's are mapped onto them).
#[derive(Debug, Default, Clone)]
pub(crate) struct SamplingFields<'a> {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub logit_bias: Option<&'a HashMap<String, f32>>,
}

/// The sampling fields of an OpenAI request (chat or legacy), which name them all alike.
macro_rules! openai_sampling_fields {
    ($req:expr) => {
        $crate::params::SamplingFields {
            temperature: $req.temperature,
            top_p: $req.top_p,
            top_k: $req.top_k,
            min_p: $req.min_p,
            seed: $req.seed,
            presence_penalty: $req.presence_penalty,
            frequency_penalty: $req.frequency_penalty,
            repetition_penalty: $req.repetition_penalty,
            logit_bias: $req.logit_bias.as_ref(),
        }
    };
}
pub(crate) use openai_sampling_fields;

/// Highest temperature each API accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_temperature: f32,
}

/// OpenAI: temperature in [0, 2].
pub(crate) const OPENAI: Limits = Limits { max_temperature: 2.0 };
/// Anthropic: temperature in [0, 1].
pub(crate) const ANTHROPIC: Limits = Limits { max_temperature: 1.0 };

/// Builds and validates sampling parameters. `top_p = 0` means greedy (the nucleus is then only
/// the most likely token), which the sampler spells `temperature = 0`.
pub(crate) fn sampling(
    fields: &SamplingFields<'_>,
    limits: Limits,
    n_vocab: usize,
) -> Result<SamplingParams, ApiError> {
    let mut params = SamplingParams::default();
    if let Some(t) = fields.temperature {
        if !(0.0..=limits.max_temperature).contains(&t) {
            return Err(ApiError::invalid(
                "temperature",
                format!("temperature must be in [0, {}], got {t}", limits.max_temperature),
            ));
        }
        params.temperature = t;
    }
    if let Some(p) = fields.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::invalid("top_p", format!("top_p must be in [0, 1], got {p}")));
        }
        if p == 0.0 {
            params.temperature = 0.0;
        } else {
            params.top_p = p;
        }
    }
    if let Some(k) = fields.top_k {
        params.top_k = k;
    }
    if let Some(p) = fields.min_p {
        params.min_p = p;
    }
    if let Some(p) = fields.presence_penalty {
        params.presence_penalty = p;
    }
    if let Some(p) = fields.frequency_penalty {
        params.frequency_penalty = p;
    }
    if let Some(p) = fields.repetition_penalty {
        params.repetition_penalty = p;
    }
    // Negative seeds (OpenAI allows any integer) keep their bits.
    params.seed = fields.seed.map(|s| s as u64);
    if let Some(bias) = fields.logit_bias {
        let mut entries: Vec<_> = bias.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (token, value) in entries {
            let id = token.parse::<i32>().ok().filter(|id| *id >= 0 && (*id as usize) < n_vocab).ok_or_else(|| {
                ApiError::invalid(
                    "logit_bias",
                    format!("logit_bias key {token:?} is not a token id of this model (0..{n_vocab})"),
                )
            })?;
            if !(-100.0..=100.0).contains(value) {
                return Err(ApiError::invalid(
                    "logit_bias",
                    format!("bias {value} for token {id} is outside [-100, 100]"),
                ));
            }
            params.logit_bias.push((id, *value));
        }
    }
    params.validate().map_err(|e| match e {
        SamplingError::Invalid { field, .. } => ApiError::invalid(field, e.to_string()),
    })?;
    Ok(params)
}

/// Validates stop strings: at most [`MAX_STOP_STRINGS`], none empty.
pub(crate) fn stop_strings(param: &str, stops: Vec<String>) -> Result<Vec<String>, ApiError> {
    if stops.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid(param, format!("at most {MAX_STOP_STRINGS} stop strings")));
    }
    if let Some(i) = stops.iter().position(String::is_empty) {
        return Err(ApiError::invalid(format!("{param}[{i}]"), "stop strings must not be empty"));
    }
    Ok(stops)
}

/// Validates `max_tokens`: at least 1 when given; the context check happens at submission.
pub(crate) fn max_tokens(param: &str, value: Option<u64>) -> Result<Option<usize>, ApiError> {
    match value {
        Some(0) => Err(ApiError::invalid(param, format!("{param} must be at least 1"))),
        // Capped so `prompt + max_tokens` cannot overflow downstream; any such value is a
        // context overflow anyway.
        Some(n) => Ok(Some(usize::try_from(n.min(1 << 31)).unwrap_or(1 << 31))),
        None => Ok(None),
    }
}

/// The grammar a `response_format` constrains decoding to: none for `text`, any object for `json_object`, the
/// compiled schema for `json_schema`. An unsupported keyword or type is a 400 on `response_format`.
pub(crate) fn response_format(format: Option<&ResponseFormat>) -> Result<Option<Arc<JsonGrammar>>, ApiError> {
    let Some(format) = format else { return Ok(None) };
    let grammar = match format.kind.as_str() {
        "text" => return Ok(None),
        "json_object" => JsonGrammar::any_object(),
        "json_schema" => {
            let Some(spec) = &format.json_schema else {
                return Err(ApiError::invalid("response_format", "json_schema needs a json_schema object"));
            };
            let any = serde_json::Value::Bool(true);
            JsonGrammar::compile(spec.schema.as_ref().unwrap_or(&any)).map_err(|e| {
                ApiError::invalid("response_format", format!("json_schema {:?}: {} at {}", spec.name, e.reason, e.path))
            })?
        }
        other => {
            return Err(ApiError::invalid(
                "response_format",
                format!("unknown response_format type {other:?}: use text, json_object or json_schema"),
            ))
        }
    };
    Ok(Some(Arc::new(grammar)))
}
