//! A small blocking HTTP/1.1 client (std only, `Connection: close`) with SSE streaming, timed on
//! arrival of each event. Does not own: what the requests mean (see `target.rs`, `scenario.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Longest any single request may take (a cold 8K prefill on 2 cores takes about a minute).
const IO_TIMEOUT: Duration = Duration::from_secs(600);

/// A whole (non-streamed) response.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What a streamed chat completion measured.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Time from sending the request to the first non-empty content delta.
    pub ttft: Option<Duration>,
    /// Arrival time (from sending) of every content delta.
    pub deltas: Vec<Duration>,
    /// Time from sending to the end of the stream.
    pub total: Duration,
    /// The generated text.
    pub text: String,
    /// `usage.prompt_tokens`, when the server reported it.
    pub prompt_tokens: Option<u64>,
    /// `usage.completion_tokens`, when the server reported it.
    pub completion_tokens: Option<u64>,
    /// Prompt tokens the server says it reused (`prompt_tokens_details.cached_tokens`, or
    /// llama-server's `timings.cache_n`).
    pub cached_tokens: Option<u64>,
    /// The server's own prompt-processing time (`timings.prompt_ms`, reported by semantic and
    /// llama-server), when given.
    pub server_prompt_ms: Option<f64>,
}

/// POSTs `body` and returns the connection positioned at the start of a 200 response's body (the
/// caller reads as much as it likes and may hang up at any point).
pub fn open_stream(addr: SocketAddr, path: &str, body: &Value) -> Result<BufReader<TcpStream>> {
    let mut reader = send(addr, &[], "POST", path, Some(body))?;
    let (status, _, _) = read_head(&mut reader)?;
    if status != 200 {
        bail!("{path}: HTTP {status}");
    }
    Ok(reader)
}

/// Sends one request and reads the whole response.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
    request_with(addr, &[], method, path, body)
}

/// [`request`] with extra headers (`Authorization`, say).
pub fn request_with(
    addr: SocketAddr,
    headers: &[(String, String)],
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response> {
    let mut reader = send(addr, headers, method, path, body)?;
    let (status, chunked, length) = read_head(&mut reader)?;
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader)? {
            body.extend_from_slice(&chunk);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response { status, body })
}

/// POSTs a streaming chat completion and times every content delta. Fails on a non-200 status
/// or a stream that carries an error event.
pub fn stream_chat(addr: SocketAddr, path: &str, body: &Value) -> Result<Stream> {
    let started = Instant::now();
    let mut reader = send(addr, &[], "POST", path, Some(body))?;
    let (status, chunked, _) = read_head(&mut reader)?;
    if status != 200 {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&rest).chars().take(400).collect::<String>());
    }
    let mut out = Stream::default();
    let mut pending = Vec::new();
    loop {
        let data = if chunked {
            match read_chunk(&mut reader)? {
                Some(chunk) => chunk,
                None => break,
            }
        } else {
            let mut buf = vec![0u8; 8192];
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            buf
        };
        pending.extend_from_slice(&data);
        while let Some(end) = find_event_end(&pending) {
            let event: Vec<u8> = pending.drain(..end).collect();
            if handle_event(&event, started.elapsed(), &mut out)? {
                out.total = started.elapsed();
                return Ok(out);
            }
        }
    }
    out.total = started.elapsed();
    Ok(out)
}

/// Applies one SSE event; true at `[DONE]`.
fn handle_event(event: &[u8], at: Duration, out: &mut Stream) -> Result<bool> {
    let text = String::from_utf8_lossy(event);
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else { continue };
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        let Ok(value) = serde_json::from_str::<Value>(data) else { continue };
        if let Some(error) = value.get("error") {
            bail!("stream error: {error}");
        }
        if let Some(content) = value.pointer("/choices/0/delta/content").and_then(Value::as_str) {
            if !content.is_empty() {
                out.ttft.get_or_insert(at);
                out.deltas.push(at);
                out.text.push_str(content);
            }
        }
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            out.prompt_tokens = usage.get("prompt_tokens").and_then(Value::as_u64).or(out.prompt_tokens);
            out.completion_tokens = usage.get("completion_tokens").and_then(Value::as_u64).or(out.completion_tokens);
            if let Some(cached) = usage.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64) {
                out.cached_tokens = Some(cached);
            }
        }
        if let Some(cache_n) = value.pointer("/timings/cache_n").and_then(Value::as_u64) {
            out.cached_tokens.get_or_insert(cache_n);
        }
        if let Some(prompt_ms) = value.pointer("/timings/prompt_ms").and_then(Value::as_f64) {
            out.server_prompt_ms = Some(prompt_ms);
        }
    }
    Ok(false)
}

/// End (exclusive, separator included) of the first complete SSE event in `buf`.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// GETs an SSE stream and hands each event (name, data) to `on_event` as it arrives, until the
/// stream ends or `on_event` returns false. Fails on a non-200 status.
pub fn follow_events(
    addr: SocketAddr,
    headers: &[(String, String)],
    path: &str,
    mut on_event: impl FnMut(&str, &str) -> Result<bool>,
) -> Result<()> {
    let mut reader = send(addr, headers, "GET", path, None)?;
    let (status, chunked, _) = read_head(&mut reader)?;
    if status != 200 {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&rest).chars().take(400).collect::<String>());
    }
    let mut pending = Vec::new();
    loop {
        let data = if chunked {
            match read_chunk(&mut reader)? {
                Some(chunk) => chunk,
                None => return Ok(()),
            }
        } else {
            let mut buf = vec![0u8; 8192];
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            buf
        };
        pending.extend_from_slice(&data);
        while let Some(end) = find_event_end(&pending) {
            let event: Vec<u8> = pending.drain(..end).collect();
            let text = String::from_utf8_lossy(&event);
            let mut name = "message";
            let mut data = Vec::new();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.trim_start());
                }
            }
            if !data.is_empty() && !on_event(name, &data.join("\n"))? {
                return Ok(());
            }
        }
    }
}

fn send(
    addr: SocketAddr,
    headers: &[(String, String)],
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if body.is_some() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", payload.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload.as_bytes())?;
    Ok(BufReader::new(stream))
}

/// Status line and headers: (status, chunked, content-length).
fn read_head(reader: &mut BufReader<TcpStream>) -> Result<(u16, bool, Option<usize>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let (mut chunked, mut length) = (false, None);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if name == "content-length" {
                length = value.parse().ok();
            }
        }
    }
    Ok((status, chunked, length))
}

/// One chunk of a chunked body; None after the last.
fn read_chunk(reader: &mut BufReader<TcpStream>) -> Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .with_context(|| format!("bad chunk size {line:?}"))?;
    if size == 0 {
        return Ok(None);
    }
    let mut chunk = vec![0u8; size + 2];
    reader.read_exact(&mut chunk)?;
    chunk.truncate(size);
    Ok(Some(chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_of_either_style() {
        assert_eq!(find_event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(find_event_end(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: a\n"), None);
    }

    #[test]
    fn content_usage_and_cache_counts_are_read_from_events() {
        let mut out = Stream::default();
        let at = Duration::from_millis(5);
        let first = br#"data: {"choices":[{"delta":{"role":"assistant","content":""}}]}"#;
        assert!(!handle_event(first, at, &mut out).unwrap());
        assert_eq!(out.ttft, None, "an empty delta is not the first token");
        let second = br#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#;
        handle_event(second, at * 2, &mut out).unwrap();
        let usage = br#"data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":3}},"timings":{"prompt_ms":1.5}}"#;
        handle_event(usage, at * 3, &mut out).unwrap();
        assert!(handle_event(b"data: [DONE]", at * 4, &mut out).unwrap());
        assert_eq!(out.ttft, Some(at * 2));
        assert_eq!(out.text, "Hi");
        assert_eq!((out.prompt_tokens, out.completion_tokens, out.cached_tokens), (Some(7), Some(1), Some(3)));
        assert_eq!(out.server_prompt_ms, Some(1.5));
    }

    #[test]
    fn an_error_event_fails_the_stream() {
        let mut out = Stream::default();
        assert!(handle_event(br#"data: {"error":{"message":"boom"}}"#, Duration::ZERO, &mut out).is_err());
    }
}
