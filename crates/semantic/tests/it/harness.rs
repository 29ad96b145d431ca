//! A real server process and a tiny std-only HTTP/1.1 client for the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub fn model_path() -> PathBuf {
    std::env::var_os("SEMANTIC_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

/// A `semantic serve` child process; killed on drop if still running.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Owns the server's cache directory for its lifetime (removed on drop).
    pub cache_dir: tempdir::TempDir,
    /// Every line the server wrote to stderr so far.
    stderr: Arc<Mutex<Vec<String>>>,
}

pub mod tempdir {
    //! `tempfile::TempDir` named after the test that owns it (removed on drop).
    use std::path::Path;

    pub struct TempDir(tempfile::TempDir);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            Self(tempfile::Builder::new().prefix(&format!("semantic-it-{tag}-")).tempdir().unwrap())
        }
        pub fn path(&self) -> &Path {
            self.0.path()
        }
    }
}

impl Server {
    pub fn start(args: &[&str]) -> Self {
        Self::start_in(tempdir::TempDir::new("srv"), args)
    }

    /// Starts a server and returns once its model is loaded (`/health/ready` is 200).
    pub fn start_in(cache_dir: tempdir::TempDir, args: &[&str]) -> Self {
        let mut server = Self::launch(cache_dir, args);
        server.wait_ready();
        server
    }

    /// Starts a server and returns as soon as it listens, which is before its model is loaded.
    /// `args` may name its own `--model`.
    pub fn launch(cache_dir: tempdir::TempDir, args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_semantic"));
        command.arg("serve").args(["--port", "0"]);
        for (flag, default) in [("--agent-ctx", "4096"), ("--resident-agents", "8")] {
            if !args.contains(&flag) {
                command.args([flag, default]);
            }
        }
        if !args.contains(&"--model") {
            command.arg("--model").arg(model_path());
        }
        let mut child = command
            .arg("--cache-dir")
            .arg(cache_dir.path())
            .args(args)
            .env_remove("SEMANTIC_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the semantic binary");
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let seen = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("semantic listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
                seen.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server printed its address");
        Self { child, addr: addr.parse().unwrap(), cache_dir, stderr: lines }
    }

    /// Polls `/health/ready` (20 ms apart, for up to 120 s) until it is 200: the listener opens
    /// before the model is loaded.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited before it was ready ({status}):\n{}", self.stderr());
            }
            if http(self.addr, "GET", "/health/ready", &[], None).status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "the server was not ready after 120 s:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits up to `limit` for the process to exit (polled 20 ms apart); panics if it does not.
    pub fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit within {limit:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait, and hand back the cache directory for a restart.
    pub fn terminate_keeping_dir(mut self) -> (std::process::ExitStatus, tempdir::TempDir) {
        let dir = std::mem::replace(&mut self.cache_dir, tempdir::TempDir::new("spare"));
        (self.terminate(), dir)
    }

    /// SIGKILL (a crash: nothing is flushed), wait, and hand back the cache directory.
    pub fn kill_keeping_dir(mut self) -> tempdir::TempDir {
        let dir = std::mem::replace(&mut self.cache_dir, tempdir::TempDir::new("spare"));
        let _ = self.child.kill();
        let _ = self.child.wait();
        dir
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.request_with(method, path, &[], body)
    }

    pub fn request_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Response {
        http(self.addr, method, path, headers, body)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        self.request_with("POST", path, &[("content-type", "application/json")], Some(&body.to_string()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of an SSE body.
    pub fn sse_data(&self) -> Vec<String> {
        self.body.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect()
    }
}

/// One HTTP/1.1 request with `Connection: close`; chunked bodies are de-chunked.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Response {
    try_http(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// As [`http`], but a refused connection, a connection cut mid-response (a server killed) or a
/// malformed response is an error instead of a panic.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let body = body.unwrap_or("");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse::<u16>().ok());
    let status = status.ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut payload = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        payload = dechunk(&payload).ok_or_else(|| bad("a cut chunked body"))?;
    }
    Ok(Response { status, headers, body: String::from_utf8(payload).map_err(|_| bad("a body not UTF-8"))? })
}

/// The payload of a chunked body (what arrived, if it ends between chunks); `None` when a chunk
/// is cut short or malformed.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else { return Some(out) };
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).ok()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(eol + 2..eol + 2 + size)?);
        data = data.get(eol + 2 + size + 2..)?;
    }
}
