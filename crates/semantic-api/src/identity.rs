//! Who a request is for: the model name rule and the agent identity (`agent_id` / `session_id`
//! body fields, `X-Agent-ID` / `X-Session-ID` headers), checked before any work is done.

use axum::http::HeaderMap;
use semantic_scheduler::{AgentId, AgentRef, Namespace};

use crate::error::ApiError;
use crate::AppState;

/// Names every request may use for the one loaded model besides its own.
pub const MODEL_ALIASES: [&str; 2] = ["default", "semantic"];

/// Checks the requested model name: absent or a name of the loaded model
/// ([`names_loaded_model`]) is fine; anything else is a 404 `model_not_found`. Returns the name to
/// echo in responses.
pub(crate) fn check_model(state: &AppState, requested: Option<&str>) -> Result<String, ApiError> {
    match requested {
        None => Ok(state.options.model_name.clone()),
        Some(name) if names_loaded_model(state, name) => Ok(name.to_owned()),
        Some(name) => Err(ApiError::model_not_found(name)),
    }
}

/// The names of the loaded model: its served name (file stem), its GGUF `general.name`, the
/// built-in [`MODEL_ALIASES`] and the configured `--model-alias` names (so a client with a
/// hard-coded model name such as `gpt-4o-mini` works).
fn names_loaded_model(state: &AppState, name: &str) -> bool {
    name == state.options.model_name
        || name == state.scheduler.facts().name
        || MODEL_ALIASES.contains(&name)
        || state.options.model_aliases.iter().any(|alias| alias == name)
}

/// What every generation route settles before any work: the model name to echo and the agent.
pub(crate) struct Target {
    pub model: String,
    pub agent: AgentRef,
}

/// The generation routes' shared preamble: [`check_model`], then [`agent_ref`] in the caller's
/// namespace.
pub(crate) fn target(
    state: &AppState,
    namespace: &Namespace,
    model: Option<&str>,
    body: BodyIds<'_>,
    headers: &HeaderMap,
) -> Result<Target, ApiError> {
    let model = check_model(state, model)?;
    let agent = agent_ref(namespace, body, headers)?;
    Ok(Target { model, agent })
}

/// The agent-identity fields a request body may carry.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BodyIds<'a> {
    pub agent_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

/// Resolves the agent a request names, in the caller's namespace (one per API key). Every id
/// given is validated (1-128 chars of `[A-Za-z0-9._-]`, not `.` or `..`); the first of body
/// `agent_id`, body `session_id`, `X-Agent-ID`, `X-Session-ID` wins.
pub(crate) fn agent_ref(namespace: &Namespace, body: BodyIds<'_>, headers: &HeaderMap) -> Result<AgentRef, ApiError> {
    let mut chosen: Option<AgentId> = None;
    let header = |name: &'static str| -> Result<Option<&str>, ApiError> {
        match headers.get(name) {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .map(Some)
                .map_err(|_| ApiError::invalid(name, format!("the {name} header is not visible ASCII"))),
        }
    };
    let candidates = [
        ("agent_id", body.agent_id),
        ("session_id", body.session_id),
        ("X-Agent-ID", header("x-agent-id")?),
        ("X-Session-ID", header("x-session-id")?),
    ];
    for (field, value) in candidates {
        let Some(value) = value else { continue };
        let id = AgentId::parse(value).map_err(|e| {
            ApiError::invalid(field, format!("invalid {field} {value:?}: {e}")).with_code("invalid_agent_id")
        })?;
        chosen.get_or_insert(id);
    }
    Ok(AgentRef { namespace: namespace.clone(), agent: chosen })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).expect("test header"));
        }
        map
    }

    fn agent(body: BodyIds<'_>, pairs: &[(&'static str, &str)]) -> Result<Option<String>, Option<String>> {
        agent_ref(&Namespace::default_ns(), body, &headers(pairs))
            .map(|r| r.agent.map(|a| a.as_str().to_owned()))
            .map_err(|e| e.param)
    }

    #[test]
    fn body_beats_headers_and_agent_beats_session() {
        let none = BodyIds::default();
        assert_eq!(agent(none, &[]), Ok(None));
        assert_eq!(agent(none, &[("x-session-id", "s1")]), Ok(Some("s1".into())));
        assert_eq!(agent(none, &[("x-session-id", "s1"), ("x-agent-id", "a1")]), Ok(Some("a1".into())));
        let body = BodyIds { agent_id: Some("b.1"), session_id: Some("s-2") };
        assert_eq!(agent(body, &[("x-agent-id", "a1")]), Ok(Some("b.1".into())));
        let session = BodyIds { agent_id: None, session_id: Some("s_2") };
        assert_eq!(agent(session, &[("x-agent-id", "a1")]), Ok(Some("s_2".into())));
    }

    #[test]
    fn every_given_id_is_validated() {
        let long = "a".repeat(129);
        for (body, pairs, param) in [
            (BodyIds { agent_id: Some(""), session_id: None }, vec![], "agent_id"),
            (BodyIds { agent_id: Some("a/b"), session_id: None }, vec![], "agent_id"),
            (BodyIds { agent_id: Some(".."), session_id: None }, vec![], "agent_id"),
            (BodyIds { agent_id: Some(&long), session_id: None }, vec![], "agent_id"),
            (BodyIds { agent_id: Some("ok"), session_id: Some("not ok") }, vec![], "session_id"),
            (BodyIds::default(), vec![("x-agent-id", "bad id")], "X-Agent-ID"),
            (BodyIds { agent_id: Some("ok"), session_id: None }, vec![("x-session-id", "a:b")], "X-Session-ID"),
        ] {
            assert_eq!(agent(body, &pairs), Err(Some(param.to_owned())), "{body:?} {pairs:?}");
        }
        assert_eq!(
            agent(BodyIds { agent_id: Some(&"a".repeat(128)), session_id: None }, &[]).map(|a| a.is_some()),
            Ok(true)
        );
    }
}
