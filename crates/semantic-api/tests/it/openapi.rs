//! `/openapi.json` describes every route of the router.

use axum::body::Body;
use serde_json::Value;

use crate::harness::App;

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let app = App::new();
    let reply = app.call("GET", "/openapi.json", &[], Body::empty()).await;
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    let routes = semantic_api::routes();
    assert!(routes.len() >= 7);
    for (method, path, _) in routes {
        let operation = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
        assert!(operation.is_object(), "{method} {path} is missing from /openapi.json");
        let ok = if method == axum::http::Method::POST
            && ["/v1/coordination/sessions", "/v1/scenarios/runs"].contains(&path)
        {
            "201"
        } else {
            "200"
        };
        assert!(operation["responses"][ok].is_object(), "{method} {path} documents its {ok}");
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "ChatCompletionRequest",
        "ChatCompletion",
        "ChatCompletionChunk",
        "CompletionRequest",
        "TextCompletion",
        "MessagesRequest",
        "MessageResponse",
        "StreamEvent",
        "CountTokensRequest",
        "OpenAiErrorBody",
        "AnthropicErrorBody",
        "CreateSessionRequest",
        "TurnDoc",
    ] {
        assert!(schemas[name].is_object(), "schema {name} is missing");
    }
    let chat = &schemas["ChatCompletionRequest"]["properties"];
    for field in ["messages", "tools", "tool_choice", "agent_id", "session_id", "stream_options"] {
        assert!(chat[field] != Value::Null, "ChatCompletionRequest.{field}");
    }
}
