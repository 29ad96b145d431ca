//! The artefacts in `deploy/`: the systemd unit passes `systemd-analyze verify` and its settings are
//! ones the binary accepts; the Kubernetes probes use the three health routes; the nginx example
//! loads in the distribution's nginx and proxies a stream over TLS.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::tempdir::TempDir;
use crate::harness::Server;

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
    for line in ["proxy_buffering off;", "proxy_http_version 1.1;", "proxy_pass http://semantic;"] {
        assert!(conf.contains(line), "{line} missing");
    }
}

/// The shipped nginx example, with only its ports and certificate paths changed, passes `nginx -t`
/// on the distribution's nginx and really proxies: a streamed chat over TLS, `/metrics` refused,
/// plain HTTP redirected. Regression: `http2 on;` needs nginx 1.25.1, so the example failed to load
/// on Debian 12's 1.22.
#[test]
fn nginx_example_proxies_a_stream_over_tls() {
    let (_, conf) = deploy("nginx.conf");
    let server = Server::start(&[]);
    let dir = TempDir::new("nginx");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=semantic.example.com"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/setup-tests installs it)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (tls, plain) = (free_port(), free_port());
    let mut site = conf.clone();
    for (from, to) in [
        ("127.0.0.1:8000".to_string(), server.addr.to_string()),
        ("listen 443 ssl".to_string(), format!("listen 127.0.0.1:{tls} ssl")),
        ("listen 80;".to_string(), format!("listen 127.0.0.1:{plain};")),
        ("/etc/letsencrypt/live/semantic.example.com/fullchain.pem".to_string(), cert.display().to_string()),
        ("/etc/letsencrypt/live/semantic.example.com/privkey.pem".to_string(), key.display().to_string()),
    ] {
        assert!(site.contains(&from), "the example no longer has {from:?}");
        site = site.replace(&from, &to);
    }
    std::fs::write(dir.path().join("site.conf"), site).unwrap();
    // One process in the foreground (no master, no daemon), logs and temp files inside the test dir.
    let main = "daemon off;\nmaster_process off;\npid nginx.pid;\nerror_log error.log;\nevents {}\n\
                http {\n    access_log off;\n    include site.conf;\n}\n";
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    let nginx = |extra: &[&str]| {
        let mut command = Command::new("nginx");
        command.arg("-p").arg(dir.path()).args(["-c", "nginx.conf"]).args(extra);
        command
    };
    let checked = nginx(&["-t"]).output().expect("nginx (scripts/setup-tests installs it)");
    let said = String::from_utf8_lossy(&checked.stderr);
    // nginx 1.25.1 and later deprecate `listen ... http2` (with a warning) for `http2 on;`.
    let warned = said.lines().any(|l| l.contains("[warn]") && !l.contains("http2\" directive is deprecated"));
    assert!(checked.status.success() && !warned, "nginx -t:\n{said}");
    let proxy = Proxy(nginx(&[]).stderr(Stdio::null()).spawn().unwrap());
    let url = |scheme: &str, port: u16, path: &str| format!("{scheme}://semantic.example.com:{port}{path}");
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "120", "--resolve"])
            .arg(format!("semantic.example.com:{tls}:127.0.0.1"))
            .arg("--resolve")
            .arg(format!("semantic.example.com:{plain}:127.0.0.1"))
            .arg("--cacert")
            .arg(&cert)
            .args(args)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), out.stderr)
    };
    // nginx opens its ports a moment after it starts: poll the health route, 20 ms apart, up to 10 s.
    let live = url("https", tls, "/health/live");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !curl(&["-f", &live]).0 {
        assert!(Instant::now() < deadline, "nginx did not answer on {live}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = r#"{"messages":[{"role":"user","content":"Say hi."}],"max_tokens":6,"stream":true}"#;
    let (ok, stream, err) =
        curl(&["-N", "-H", "content-type: application/json", "-d", body, &url("https", tls, "/v1/chat/completions")]);
    assert!(ok, "{}", String::from_utf8_lossy(&err));
    let chunks = stream.lines().filter(|l| l.starts_with("data: {")).count();
    assert!(chunks >= 2 && stream.trim_end().ends_with("data: [DONE]"), "stream through nginx:\n{stream}");
    let code = |scheme: &str, port: u16, path: &str| {
        curl(&["-o", "/dev/null", "-w", "%{http_code}", &url(scheme, port, path)]).1
    };
    assert_eq!(code("https", tls, "/metrics"), "403", "/metrics stays inside");
    assert_eq!(code("https", tls, "/admin/models/current"), "403", "the admin API stays inside");
    assert_eq!(code("http", plain, "/v1/models"), "301", "plain HTTP is redirected to TLS");
    drop(proxy);
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The nginx child, killed when the test ends however it ends.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
