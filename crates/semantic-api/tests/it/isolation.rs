//! Isolation between API keys through every route (issue 19): key B can never list, read,
//! continue, delete, pin, evict or infer the existence of key A's agents, coordination sessions
//! scenario runs and stored responses. For each route of `/openapi.json` with a path parameter, B's answer for A's
//! real ids is the same (status, error type and code) as for ids that exist nowhere, and A's
//! things are intact afterwards.

use axum::body::Body;
use semantic_api::{AuthConfig, ServeOptions};
use semantic_engine::FakeScript;
use serde_json::{json, Value};

use crate::harness::{options, App};

const ALPHA: &str = "Bearer key-alpha-0001";
const BETA: &str = "Bearer key-beta-00002";

async fn call(app: &App, key: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let headers = [("content-type", "application/json"), ("authorization", key)];
    let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
    let reply = app.call(method, path, &headers, body).await;
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status.as_u16(), json)
}

/// What B may learn from an answer: its status and error kind, not the echoed id in the message.
fn outcome((status, body): &(u16, Value)) -> (u16, Value, Value) {
    (*status, body["error"]["type"].clone(), body["error"]["code"].clone())
}

fn fill(template: &str, ids: &[(&str, &str)]) -> String {
    let mut path = template.to_string();
    for (name, value) in ids {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    path
}

#[tokio::test]
async fn key_b_cannot_see_or_touch_key_a_through_any_route() {
    let auth = AuthConfig::new(&["key-alpha-0001".into(), "key-beta-00002".into()], None, true);
    let app = App::with_options(FakeScript::reply("ok"), ServeOptions { auth, ..options() });

    // A's things: an agent with memory, a session with a permanent agent, a scenario run.
    let chat = json!({"messages": [{"role": "user", "content": "The password is swordfish."}], "agent_id": "vault",
                      "max_tokens": 4, "temperature": 0});
    assert_eq!(call(&app, ALPHA, "POST", "/v1/chat/completions", Some(&chat)).await.0, 200);
    let session = json!({"topology": "round_robin", "initial_prompt": "Plan.", "persistent_cache_prefix": "team",
                         "agents": [{"display_name": "Ann", "system_prompt": "Brief.", "lifecycle": "permanent"}],
                         "max_tokens": 4, "temperature": 0});
    let (status, made) = call(&app, ALPHA, "POST", "/v1/coordination/sessions", Some(&session)).await;
    assert_eq!(status, 201, "{made}");
    let session_id = made["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        call(&app, ALPHA, "POST", &format!("/v1/coordination/sessions/{session_id}/round"), Some(&json!({}))).await.0,
        200
    );
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/tiny.yaml")).unwrap();
    let (status, run) =
        call(&app, ALPHA, "POST", "/v1/scenarios/runs", Some(&json!({"yaml": yaml, "max_tokens": 4}))).await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (status, response) =
        call(&app, ALPHA, "POST", "/v1/responses", Some(&json!({"input": "Hi.", "max_output_tokens": 4}))).await;
    assert_eq!(status, 200, "{response}");
    let response_id = response["id"].as_str().unwrap().to_string();
    let a_agents = call(&app, ALPHA, "GET", "/v1/agents", None).await.1;
    let a_count = a_agents["data"].as_array().unwrap().len();
    assert!(a_count >= 2, "{a_agents}");

    // Lists: B sees none of it.
    assert!(call(&app, BETA, "GET", "/v1/agents", None).await.1["data"].as_array().unwrap().is_empty());
    assert!(call(&app, BETA, "GET", "/v1/coordination/sessions", None).await.1["sessions"]
        .as_array()
        .unwrap()
        .is_empty());

    // Every route with a path parameter: A's ids answer B exactly as ids that exist nowhere.
    let doc = app.call("GET", "/openapi.json", &[], Body::empty()).await.json();
    let mut checked = 0;
    for (template, operations) in doc["paths"].as_object().unwrap() {
        if !template.contains('{') {
            continue;
        }
        let real_id = if template.starts_with("/v1/coordination/sessions") {
            session_id.as_str()
        } else if template.starts_with("/v1/scenarios") {
            run_id.as_str()
        } else if template.starts_with("/v1/responses") {
            response_id.as_str()
        } else {
            "vault"
        };
        let real = [("id", real_id), ("agent_id", "ann"), ("prefix", "team")];
        let none = [("id", "resp_00000000000000000000dead"), ("agent_id", "nobody"), ("prefix", "no-such-prefix")];
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            let body = (method == "POST").then(|| json!({}));
            let theirs = call(&app, BETA, &method, &fill(template, &real), body.as_ref()).await;
            let nothing = call(&app, BETA, &method, &fill(template, &none), body.as_ref()).await;
            assert_eq!(outcome(&theirs), outcome(&nothing), "{method} {template}: {} vs {}", theirs.1, nothing.1);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} routes checked");

    // Continuing A's agent by name under B starts from nothing.
    let (_, reply) = call(&app, BETA, "POST", "/v1/chat/completions", Some(&chat)).await;
    assert_eq!(reply["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "{reply}");

    // A's things are intact.
    assert_eq!(call(&app, ALPHA, "GET", &format!("/v1/coordination/sessions/{session_id}"), None).await.0, 200);
    assert_eq!(call(&app, ALPHA, "GET", &format!("/v1/scenarios/runs/{run_id}"), None).await.0, 200);
    assert_eq!(call(&app, ALPHA, "GET", &format!("/v1/responses/{response_id}"), None).await.0, 200);
    let after = call(&app, ALPHA, "GET", "/v1/agents", None).await.1;
    let ids = |v: &Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
    };
    assert!(ids(&a_agents).iter().all(|id| ids(&after).contains(id)), "{a_agents} then {after}");
}
