//! The artefacts in `deploy/`: the systemd unit passes `systemd-analyze verify` and its settings are
//! ones the binary accepts; the Kubernetes probes use the three health routes; the nginx example
//! streams unbuffered.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::tempdir::TempDir;

fn deploy(name: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// `KEY=value` settings of the unit's `[Service]` section, in order (repeated keys kept).
fn settings(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let (_, unit) = deploy("semantic.service");
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("SKIPPED: systemd-analyze is not installed (scripts/setup-tests installs the systemd package)");
        return;
    }
    let dir = TempDir::new("unit");
    // verify checks that ExecStart's binary exists: point it at the one under test.
    let copy = dir.path().join("semantic.service");
    std::fs::write(&copy, unit.replace("/opt/semantic/bin/semantic", env!("CARGO_BIN_EXE_semantic"))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Unknown keys and bad values are only warnings with exit 0: any output about the unit fails.
    assert!(out.status.success() && !said.contains("semantic.service"), "systemd-analyze verify:\n{said}");
}

#[test]
fn systemd_unit_settings_are_accepted_by_the_binary() {
    let (_, unit) = deploy("semantic.service");
    let settings = settings(&unit);
    let get = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    for (key, want) in [("Restart", "on-failure"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict")] {
        assert_eq!(get(key), Some(want), "{key}");
    }
    let exec = get("ExecStart").expect("ExecStart");
    assert!(!exec.contains("-key"), "no keys on the command line: {exec}");
    let inline =
        settings.iter().any(|(_, v)| v.starts_with("SEMANTIC_API_KEYS=") || v.starts_with("SEMANTIC_ADMIN_KEY="));
    assert!(!inline, "keys come from credential files, not the unit");
    let dir = TempDir::new("unit-env");
    let state = dir.path().join("state");
    let creds = dir.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("api-keys"), "# team a\nkey-aaaaaaaa\n").unwrap();
    std::fs::write(creds.join("admin-key"), "admin-key-123\n").unwrap();
    let mut config = Command::new(env!("CARGO_BIN_EXE_semantic"));
    config.arg("config").env_remove("SEMANTIC_CONFIG");
    for (_, value) in settings.iter().filter(|(k, _)| *k == "Environment") {
        let (name, value) = value.split_once('=').expect("Environment=NAME=value");
        let value = value.replace("%S", state.to_str().unwrap()).replace("%d", creds.to_str().unwrap());
        config.env(name, value);
    }
    let out = config.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("api_key_file = \"{}\"", creds.join("api-keys").display())), "{text}");
    assert!(text.contains(&format!("admin_key_file = \"{}\"", creds.join("admin-key").display())), "{text}");
    let grace: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("shutdown_grace_secs = "))
        .and_then(|v| v.parse().ok())
        .expect("grace in the config");
    let stop: u64 = get("TimeoutStopSec").and_then(|v| v.parse().ok()).expect("TimeoutStopSec in seconds");
    assert!(stop > grace, "TimeoutStopSec ({stop}) must exceed the drain grace ({grace}) plus the flush");
}

#[test]
fn kubernetes_probes_use_the_three_health_routes() {
    let (_, yaml) = deploy("kubernetes.yaml");
    for (probe, route) in
        [("startupProbe", "/health/startup"), ("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")]
    {
        let at = yaml.find(&format!("{probe}:")).unwrap_or_else(|| panic!("no {probe}"));
        let next = yaml[at..].lines().nth(1).unwrap_or_default();
        assert!(next.contains(&format!("path: {route}")), "{probe} must probe {route}: {next}");
    }
    assert!(yaml.contains("terminationGracePeriodSeconds: 90") && yaml.contains("type: Recreate"));
    for route in ["/health/startup", "/health/live", "/health/ready"] {
        assert!(semantic_api::routes().iter().any(|(_, path, _)| *path == route), "{route} is a route");
    }
}

#[test]
fn nginx_example_terminates_tls_and_does_not_buffer_streams() {
    let (_, conf) = deploy("nginx.conf");
    for line in ["listen 443 ssl;", "proxy_buffering off;", "proxy_http_version 1.1;", "proxy_pass http://semantic;"] {
        assert!(conf.contains(line), "{line} missing");
    }
}
