//! Over a thousand malformed or hostile requests generated from `/openapi.json` (issue 19): wrong
//! types, missing required fields, huge numbers, deep nesting, invalid UTF-8, a 10 MB string,
//! unknown fields, bad content types, truncated bodies, and path and header tricks in ids. Every
//! one is answered in its route's error shape, none with a 5xx, and the server serves afterwards.
//! The cases follow the document, so a new route is covered as soon as it is described.

use std::collections::BTreeSet;

use axum::body::Body;
use serde_json::{json, Map, Value};

use crate::harness::App;

/// What a case must get back.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// A 4xx: the request is wrong.
    Reject,
    /// Anything but a 5xx (the request may happen to be valid, e.g. an unknown but well-formed id
    /// for a route that answers "nothing there" with 200); a non-2xx is in the route's shape.
    NoServerError,
}

struct Case {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    expect: Expect,
    what: String,
}

/// One operation of the document: method, path template, and its JSON body schema if it has one.
struct Operation {
    method: String,
    path: String,
    body: Option<Value>,
    header_params: Vec<String>,
    query_params: Vec<String>,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let params = |place: &str| -> Vec<String> {
                op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == place)
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            };
            out.push(Operation {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                body: op["requestBody"]["content"]["application/json"].get("schema").cloned(),
                header_params: params("header"),
                query_params: params("query"),
            });
        }
    }
    out
}

/// Follows `$ref`s into `components/schemas`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let mut schema = schema;
    for _ in 0..32 {
        match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => schema = &doc["components"]["schemas"][name],
            None => return schema,
        }
    }
    panic!("$ref cycle at {schema}")
}

/// The JSON types a schema admits, or `None` when it admits anything (no `type` anywhere).
fn types(doc: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    let schema = resolve(doc, schema);
    let mut set = BTreeSet::new();
    match &schema["type"] {
        Value::String(t) => {
            set.insert(t.clone());
        }
        Value::Array(ts) => set.extend(ts.iter().filter_map(|t| t.as_str().map(str::to_string))),
        _ => {}
    }
    for key in ["oneOf", "anyOf"] {
        for alternative in schema[key].as_array().into_iter().flatten() {
            set.extend(types(doc, alternative)?);
        }
    }
    if set.is_empty() && schema.get("enum").is_some() {
        set.insert("string".into());
    }
    (!set.is_empty()).then_some(set)
}

/// A plausible value for a schema: required properties filled, first enum value, first
/// alternative.
fn sample(doc: &Value, schema: &Value, depth: usize) -> Value {
    let schema = resolve(doc, schema);
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            let chosen = alternatives.iter().find(|a| a["type"] != "null").unwrap_or(&alternatives[0]);
            return sample(doc, chosen, depth + 1);
        }
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ => "object",
    };
    match ty {
        "string" => json!("x"),
        "integer" => json!(1),
        "number" => json!(0.5),
        "boolean" => json!(true),
        "null" => Value::Null,
        "array" if depth < 6 => json!([sample(doc, &schema["items"], depth + 1)]),
        "array" => json!([]),
        _ => {
            let mut object = Map::new();
            for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let property = &schema["properties"][name];
                object.insert(name.into(), if depth < 6 { sample(doc, property, depth + 1) } else { json!("x") });
            }
            Value::Object(object)
        }
    }
}

/// A valid body for the schemas whose generated sample would not pass the routes' own checks, so
/// that mutations reach past the first validation. Other schemas use [`sample`].
fn base_body(doc: &Value, schema: &Value) -> Value {
    let name = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()).unwrap_or("");
    let user = json!([{"role": "user", "content": "hi"}]);
    match name {
        "ChatCompletionRequest" => json!({"messages": user, "max_tokens": 2}),
        "CompletionRequest" => json!({"prompt": "hi", "max_tokens": 2}),
        "MessagesRequest" => json!({"model": "default", "messages": user, "max_tokens": 2}),
        "CountTokensRequest" => json!({"model": "default", "messages": user}),
        _ => sample(doc, schema, 0),
    }
}

/// Values of the wrong JSON type for a property admitting `allowed` (raw JSON text).
fn wrong_values(allowed: &BTreeSet<String>) -> Vec<(&'static str, &'static str)> {
    let has = |t: &str| allowed.contains(t);
    let integer_only = has("integer") && !has("number");
    [
        (!has("string"), "a string", "\"not-this-type\""),
        (!has("number"), "a fraction", "1.5"),
        (!has("number") && !has("integer"), "an integer", "7"),
        (!has("boolean"), "a boolean", "true"),
        (!has("array"), "an array", "[1,\"two\"]"),
        (!has("object"), "an object", "{\"k\":1}"),
        (!has("null"), "null", "null"),
        (integer_only, "1e30", "1e30"),
        (integer_only, "a u64 overflow", "18446744073709551616000"),
    ]
    .into_iter()
    .filter(|(wrong, _, _)| *wrong)
    .map(|(_, what, raw)| (what, raw))
    .collect()
}

/// `body` with `field` set to the raw JSON `raw` (kept raw so overflowing numbers survive).
fn with_raw(body: &Value, field: &str, raw: &[u8]) -> Vec<u8> {
    let mut object = body.as_object().cloned().unwrap_or_default();
    object.insert(field.into(), json!("\u{1}PLACEHOLDER\u{1}"));
    let text = Value::Object(object).to_string();
    let (head, tail) = text.split_once("\"\\u0001PLACEHOLDER\\u0001\"").expect("placeholder");
    [head.as_bytes(), raw, tail.as_bytes()].concat()
}

/// Path parameter values that must be refused (traversal, separators, NUL, bad UTF-8, CRLF,
/// overlong), and some odd but harmless ones.
fn hostile_ids() -> Vec<(String, Expect)> {
    let reject = [
        "..",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc",
        "%2E%2E",
        "a%2Fb",
        "a%5Cb",
        "..%5C..%5Cwindows",
        "%00",
        "a%00b",
        "%ff%fe",
        "%C0%AE%C0%AE",
        "a%0D%0AX-Injected:%201",
        "%2F",
    ];
    let harmless = ["CON", "~root", "%E2%80%AE", "*", "a%20b", "agent%3Fq%3D1", "-", "%25"];
    let mut ids: Vec<(String, Expect)> = reject.iter().map(|s| (s.to_string(), Expect::Reject)).collect();
    ids.push(("x".repeat(5000), Expect::Reject));
    ids.extend(harmless.iter().map(|s| (s.to_string(), Expect::NoServerError)));
    ids
}

fn fill_path(template: &str, value: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("closing brace") + open;
        path.push_str(&rest[..open]);
        path.push_str(value);
        rest = &rest[close + 1..];
    }
    path.push_str(rest);
    path
}

fn json_headers() -> Vec<(String, Vec<u8>)> {
    vec![("content-type".into(), b"application/json".to_vec())]
}

fn cases(doc: &Value) -> Vec<Case> {
    let mut cases = Vec::new();
    for op in operations(doc) {
        let path = fill_path(&op.path, "probe-id");
        let mut push = |path: &str, headers: Vec<(String, Vec<u8>)>, body: Vec<u8>, expect: Expect, what: String| {
            cases.push(Case { method: op.method.clone(), path: path.to_string(), headers, body, expect, what });
        };
        let base = op.body.as_ref().map(|schema| base_body(doc, schema));
        let base_bytes = base.as_ref().map(|b| b.to_string().into_bytes()).unwrap_or_default();
        // Ids in the path.
        if op.path.contains('{') {
            for (id, expect) in hostile_ids() {
                let what = format!("path id {:.40}", id);
                push(&fill_path(&op.path, &id), json_headers(), base_bytes.clone(), expect, what);
            }
        }
        for name in &op.query_params {
            for value in ["..%2F..", "%ff", "x".repeat(5000).as_str(), "%00"] {
                let what = format!("query {name}={value:.20}");
                let expect = if name == "agent_id" { Expect::Reject } else { Expect::NoServerError };
                push(&format!("{path}?{name}={value}"), json_headers(), base_bytes.clone(), expect, what);
            }
        }
        for name in &op.header_params {
            let values: [&[u8]; 4] = [b"../../etc", b"a/b", b"\xff\xfeid", &[b'y'; 5000]];
            for value in values {
                let mut headers = json_headers();
                headers.push((name.clone(), value.to_vec()));
                let what = format!("header {name}: {:.20}", String::from_utf8_lossy(value));
                push(&path, headers, base_bytes.clone(), Expect::Reject, what);
            }
        }
        let (Some(schema), Some(base)) = (&op.body, &base) else { continue };
        // The body as a whole.
        let text = base.to_string();
        let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let deep_field = with_raw(base, "deep", format!("{}1{}", "{\"a\":".repeat(3000), "}".repeat(3000)).as_bytes());
        let whole: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("not JSON", b"hello".to_vec()),
            ("open brace", b"{".to_vec()),
            ("truncated", text.as_bytes()[..text.len() / 2].to_vec()),
            ("null", b"null".to_vec()),
            ("a number", b"42".to_vec()),
            ("a string", b"\"body\"".to_vec()),
            ("an array", format!("[{text}]").into_bytes()),
            ("invalid UTF-8", [b"{\"x\":\"".as_slice(), b"\xff\xfe\xfd", b"\"}"].concat()),
            ("deep nesting", nested.into_bytes()),
            ("trailing garbage", format!("{text} }}").into_bytes()),
        ];
        for (what, body) in whole {
            push(&path, json_headers(), body, Expect::Reject, format!("body: {what}"));
        }
        // A known field given twice.
        if let Some((first, value)) = base.as_object().and_then(|o| o.iter().next()) {
            let twice = text.replacen('{', &format!("{{{}:{value},", Value::from(first.as_str())), 1);
            push(&path, json_headers(), twice.into_bytes(), Expect::Reject, format!("{first} twice"));
        }
        // An unknown field 3,000 levels deep: skipped or refused, without exhausting the stack.
        push(&path, json_headers(), deep_field, Expect::NoServerError, "deep unknown field".into());
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let headers = vec![("content-type".to_string(), content_type.as_bytes().to_vec())];
            push(&path, headers, base_bytes.clone(), Expect::Reject, format!("content-type {content_type}"));
        }
        let schema = resolve(doc, schema);
        let properties = schema["properties"].as_object().cloned().unwrap_or_default();
        // A 10 MB string in the first string field: over the body limit.
        if let Some((field, _)) = properties.iter().find(|(_, p)| types(doc, p).is_some_and(|t| t.contains("string"))) {
            let big = with_raw(base, field, format!("\"{}\"", "z".repeat(10 << 20)).as_bytes());
            push(&path, json_headers(), big, Expect::Reject, format!("10 MB {field}"));
        }
        // Each required field missing.
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let mut body = base.as_object().cloned().unwrap_or_default();
            body.remove(name);
            let body = Value::Object(body).to_string().into_bytes();
            push(&path, json_headers(), body, Expect::Reject, format!("missing {name}"));
        }
        // Each property with values of the wrong type.
        for (name, property) in &properties {
            let Some(allowed) = types(doc, property) else { continue };
            for (what, raw) in wrong_values(&allowed) {
                let body = with_raw(base, name, raw.as_bytes());
                push(&path, json_headers(), body, Expect::Reject, format!("{name}: {what}"));
            }
        }
        // Unknown fields: either ignored or refused, never a server error.
        let unknown = with_raw(base, "no_such_field_\u{e9}", b"{\"nested\":[1,2,3]}");
        push(&path, json_headers(), unknown, Expect::NoServerError, "unknown field".into());
    }
    cases
}

/// Sends one case; returns a failure message, if any.
async fn check(app: &App, case: &Case) -> Option<String> {
    let mut request = axum::http::Request::builder().method(case.method.as_str()).uri(case.path.as_str());
    for (name, value) in &case.headers {
        let Ok(value) = axum::http::HeaderValue::from_bytes(value) else { return None };
        request = request.header(name.as_str(), value);
    }
    let Ok(request) = request.body(Body::from(case.body.clone())) else {
        return Some(format!("{} {}: not a valid request to build", case.method, case.what));
    };
    let response = app.send(request).await;
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
    let label = format!("{} {:.80} ({}) -> {status}", case.method, case.path, case.what);
    if status.is_server_error() {
        return Some(format!("{label}: {}", String::from_utf8_lossy(&bytes)));
    }
    if case.expect == Expect::Reject && !status.is_client_error() {
        return Some(format!("{label}: expected a 4xx, body {:.200}", String::from_utf8_lossy(&bytes)));
    }
    if status.is_success() {
        return None;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return Some(format!("{label}: not JSON: {:.200}", String::from_utf8_lossy(&bytes)));
    };
    let shaped = if case.path.starts_with("/v1/messages") {
        body["type"] == "error" && body["error"]["type"].is_string() && body["error"]["message"].is_string()
    } else {
        body["error"]["type"].is_string() && body["error"]["message"].is_string()
    };
    (!shaped).then(|| format!("{label}: not the route's error shape: {body}"))
}

#[tokio::test]
async fn a_thousand_hostile_requests_get_4xx_in_their_routes_shape() {
    let app = App::replying("ok");
    let doc = app.call("GET", "/openapi.json", &[], Body::empty()).await.json();
    let cases = cases(&doc);
    assert!(cases.len() >= 1000, "only {} cases", cases.len());
    let rejected = cases.iter().filter(|c| c.expect == Expect::Reject).count();
    let mut failures = Vec::new();
    for case in &cases {
        failures.extend(check(&app, case).await);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    eprintln!("{} hostile requests ({rejected} that must be refused): all answered in shape", cases.len());
    assert_eq!(app.running_becomes(0).await, 0, "no request left running");
    let live = app.call("GET", "/health/live", &[], Body::empty()).await;
    assert_eq!(live.status, 200);
    let ok = app.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(ok.status, 200, "the server still serves: {}", ok.text());
}
