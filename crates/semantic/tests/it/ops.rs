//! Operating the server: probes, metrics, request ids, graceful shutdown with streams in flight.

use serde_json::json;

use crate::harness::Server;

#[test]
fn probes_metrics_and_request_ids() {
    let server = Server::start(&[]);
    for path in ["/health", "/health/live", "/health/startup", "/health/ready"] {
        assert_eq!(server.request("GET", path, None).status, 200, "{path}");
    }
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4});
    let r = server.request_with(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json"), ("x-request-id", "my-request-42")],
        Some(&body.to_string()),
    );
    assert_eq!(r.header("x-request-id"), Some("my-request-42"));
    assert!(server.request("GET", "/nope", None).header("x-request-id").unwrap().starts_with("req_"));
    let metrics = server.request("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    let families: Vec<&str> = metrics.body.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    assert!(families.len() >= 15, "{families:?}");
    for name in semantic_api::metrics::FAMILIES.iter().map(|f| f.0) {
        assert!(metrics.body.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    assert!(metrics.body.contains("semantic_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1"));
    assert!(metrics.body.contains("route=\"unmatched\""), "raw paths never become labels");
    assert!(!metrics.body.contains("/nope"));
}

#[test]
fn sigterm_lets_streams_in_flight_finish_and_exits_zero() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let body = json!({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 48,
                      "temperature": 0, "stream": true})
    .to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let streams: Vec<_> = (0..8)
        .map(|_| {
            let body = body.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(());
                crate::harness::http(
                    addr,
                    "POST",
                    "/v1/chat/completions",
                    &[("content-type", "application/json")],
                    Some(&body),
                )
            })
        })
        .collect();
    for _ in 0..8 {
        rx.recv().unwrap();
    }
    // Wait until all eight are admitted before signalling (bounded polling of the server's own state).
    let mut in_flight = 0;
    for _ in 0..5000 {
        let health = server.request("GET", "/health", None).json();
        in_flight = health["running"].as_u64().unwrap() + health["queued"].as_u64().unwrap();
        if in_flight >= 8 {
            break;
        }
    }
    assert_eq!(in_flight, 8);
    let signalled = std::time::Instant::now();
    server.signal_term();
    for stream in streams {
        let r = stream.join().unwrap();
        assert_eq!(r.status, 200);
        let data = r.sse_data();
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{}", r.body);
        assert!(data.len() > 3, "the stream carried tokens: {}", r.body);
    }
    assert!(server.wait().success());
    eprintln!("shutdown with 8 streams in flight took {:.2} s", signalled.elapsed().as_secs_f64());
}

/// Every `semantic_*` metric named in the alert rules and the dashboard is one /metrics exports.
#[test]
fn alert_rules_and_dashboard_use_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops");
    let exported: Vec<&str> = semantic_api::metrics::FAMILIES.iter().map(|f| f.0).collect();
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut used = 0;
        for (i, _) in text.match_indices("semantic_") {
            let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            if base == "semantic_" || base.starts_with("semantic_overview") {
                continue;
            }
            assert!(exported.contains(&base), "{file} uses {name}, which /metrics does not export");
            used += 1;
        }
        assert!(used >= 7, "{file} uses only {used} metrics");
    }
    serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap())
        .expect("the dashboard is valid JSON");
}
