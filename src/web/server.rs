//! The web view's HTTP server: one thread accepts, one thread per connection answers one request
//! (parsed by `httparse`) and closes it, or streams Server-Sent Events. Every limit is here:
//! request heads of at most 16 KiB and 32 headers read within 10 s, bodies of at most 4 KiB,
//! 64 connections and 16 event streams at a time, writes that give up after 10 s. The routes
//! are a fixed table: nothing is looked up on disk from a request.

use super::{Shared, State};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;
const MAX_BODY: usize = 4096;
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 64;
const MAX_STREAMS: usize = 16;
/// At most ten events a second per stream: a fast render's steps coalesce (the latest wins).
const EVENT_INTERVAL: Duration = Duration::from_millis(100);
/// A comment line this often keeps idle streams (e.g. a paused render) open through proxies.
const KEEPALIVE: Duration = Duration::from_secs(15);

const PAGE: &str = include_str!("page.html");

/// Routes and the methods they answer; anything else is 404, a known route asked with another
/// method 405.
const ROUTES: [(&str, &str); 10] = [
    ("/", "GET"),
    ("/events", "GET"),
    ("/state.json", "GET"),
    ("/losses.json", "GET"),
    ("/image.png", "GET"),
    ("/content.png", "GET"),
    ("/stop", "POST"),
    ("/pause", "POST"),
    ("/resume", "POST"),
    ("/snapshot", "POST"),
];

/// One request's head: what the routes and the checks need.
struct Request {
    method: String,
    path: String,
    query: String,
    host: Option<String>,
    origin: Option<String>,
}

/// A refusal: the status and a one-line reason (0: close without answering).
type Refusal = (u16, String);

/// Counts a connection's thread while it lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections until the view shuts down, each answered on its own thread.
pub(super) fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if shared.lock().shutdown {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                // E.g. out of file descriptors: wait instead of spinning, and keep serving.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            continue; // dropped: closed at once
        }
        let slot = Slot(active.clone());
        let s = shared.clone();
        // If the thread cannot start, the closure (stream and slot) is dropped: closed, counted out.
        let _ = std::thread::Builder::new().name("stylize-web-conn".into()).spawn(move || {
            let _slot = slot;
            serve(stream, &s);
        });
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let req = match read_request(&mut stream) {
        Ok(r) => r,
        Err((0, _)) => return,
        Err((code, why)) => return respond_text(&mut stream, code, &why),
    };
    if let Err((code, why)) = check(&req, shared) {
        return respond_text(&mut stream, code, &why);
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => respond(&mut stream, 200, "text/html; charset=utf-8", PAGE.as_bytes(), &[]),
        ("GET", "/events") => events(stream, shared),
        ("GET", "/state.json") => {
            let status = polled(shared).status();
            respond_json(&mut stream, 200, &status)
        }
        ("GET", "/losses.json") => {
            let losses = Value::from(shared.lock().losses.clone());
            respond_json(&mut stream, 200, &losses)
        }
        ("GET", "/image.png") => {
            let image = polled(shared).image.as_ref().map(|i| (i.png.clone(), i.step));
            match image {
                Some((png, step)) => {
                    let step = step.to_string();
                    respond(&mut stream, 200, "image/png", &png, &[("X-Stylize-Step", &step)])
                }
                None => respond_text(&mut stream, 404, "no image yet: it comes at the preview cadence while watched"),
            }
        }
        ("GET", "/content.png") => thumbnail(&mut stream, shared, None),
        ("GET", p) if style_index(p).is_some() => thumbnail(&mut stream, shared, style_index(p)),
        ("POST", "/stop" | "/pause" | "/resume" | "/snapshot") => control(&mut stream, shared, &req.path),
        (_, p) => match ROUTES.iter().find(|r| r.0 == p).map(|r| r.1).or(style_index(p).map(|_| "GET")) {
            Some(allow) => respond(
                &mut stream,
                405,
                "text/plain; charset=utf-8",
                format!("{p} answers {allow} only\n").as_bytes(),
                &[("Allow", allow)],
            ),
            None => respond_text(&mut stream, 404, "no such page"),
        },
    }
}

/// The state, noting that someone fetched it (which keeps images coming for a while).
fn polled(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    let mut s = shared.lock();
    s.last_poll = Some(Instant::now());
    s
}

/// `/style/K.png` -> K.
fn style_index(path: &str) -> Option<usize> {
    let k = path.strip_prefix("/style/")?.strip_suffix(".png")?;
    if k.is_empty() || k.len() > 3 || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse().ok()
}

/// Reads and parses one request head (and any small body, discarded: the controls take none)
/// within the size and time limits.
fn read_request(stream: &mut TcpStream) -> Result<Request, Refusal> {
    let start = Instant::now();
    let mut buf = vec![0u8; MAX_HEAD];
    let mut n = 0;
    loop {
        let left = HEAD_DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err((408, "the request head took too long".into()));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf[n..]) {
            Ok(0) => return Err((0, String::new())),
            Ok(k) => n += k,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err((408, "the request head took too long".into()))
            }
            Err(_) => return Err((0, String::new())),
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Request::new(&mut headers);
        match r.parse(&buf[..n]) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    r.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                if header("transfer-encoding").is_some() {
                    return Err((400, "request bodies must have a Content-Length".into()));
                }
                let length = match header("content-length") {
                    None => 0,
                    Some(v) => v.trim().parse::<usize>().map_err(|_| (400, "bad Content-Length".to_string()))?,
                };
                if length > MAX_BODY {
                    return Err((413, "request bodies are limited to 4 KiB".into()));
                }
                let target = r.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let req = Request {
                    method: r.method.unwrap_or("").to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    host: header("host"),
                    origin: header("origin"),
                };
                // Read (and drop) the rest of the body so that closing does not reset the
                // connection before the client reads the answer.
                let mut rest = (len + length).saturating_sub(n);
                let mut sink = [0u8; 1024];
                while rest > 0 {
                    match stream.read(&mut sink[..rest.min(1024)]) {
                        Ok(0) | Err(_) => return Err((0, String::new())),
                        Ok(k) => rest -= k,
                    }
                }
                return Ok(req);
            }
            Ok(httparse::Status::Partial) if n == MAX_HEAD => {
                return Err((431, "request heads are limited to 16 KiB".into()))
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err((431, "at most 32 request headers".into())),
            Err(e) => return Err((400, format!("malformed request: {e}"))),
        }
    }
}

/// The token (beyond loopback), the host (on loopback: no DNS rebinding), the methods, and for
/// controls the origin (no cross-site posts).
fn check(req: &Request, shared: &Shared) -> Result<(), Refusal> {
    if let Some(token) = &shared.token {
        let given = req.query.split('&').find_map(|kv| kv.strip_prefix("token=")).unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            return Err((403, "this server needs the token printed with its address (?token=...)".into()));
        }
    } else if let Some(host) = &req.host {
        if !loopback_host(host) {
            return Err((403, format!("the host {host:?} is not this machine's loopback address")));
        }
    }
    if req.method != "GET" && req.method != "POST" {
        return Err((405, format!("{} is not answered here: pages and data are GET, controls POST", req.method)));
    }
    if req.method == "POST" {
        if let (Some(origin), Some(host)) = (&req.origin, &req.host) {
            let o = origin.strip_prefix("http://").unwrap_or(origin);
            if !o.eq_ignore_ascii_case(host) {
                return Err((403, format!("controls are taken from this server's own page, not from {origin}")));
            }
        }
    }
    Ok(())
}

/// Equal byte strings, compared in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a Host header names the loopback interface (any port: e.g. an SSH forward). Not
/// 0.0.0.0 or [::]: browsers have routed those to loopback for pages of any site.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(stream: &mut TcpStream, code: u16, ctype: &str, body: &[u8], extra: &[(&str, &str)]) {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n\
         Content-Security-Policy: default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         img-src 'self' data:; frame-ancestors 'none'\r\nConnection: close\r\n",
        reason(code),
        body.len()
    );
    for (k, v) in extra {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)).and_then(|_| stream.flush());
    let _ = stream.shutdown(Shutdown::Write);
}

fn respond_text(stream: &mut TcpStream, code: u16, text: &str) {
    respond(stream, code, "text/plain; charset=utf-8", format!("{text}\n").as_bytes(), &[])
}

fn respond_json(stream: &mut TcpStream, code: u16, v: &Value) {
    respond(stream, code, "application/json", v.to_string().as_bytes(), &[])
}

fn thumbnail(stream: &mut TcpStream, shared: &Shared, style: Option<usize>) {
    match shared.thumbnail(style) {
        Some(png) => respond(stream, 200, "image/png", &png, &[]),
        None => respond_text(stream, 404, "no such input image"),
    }
}

/// The page's buttons.
fn control(stream: &mut TcpStream, shared: &Shared, path: &str) {
    let refused = shared.update(|s| {
        if s.ended() {
            return Some("the render has ended");
        }
        match path {
            "/stop" => (s.want_stop, s.want_pause) = (true, false),
            "/pause" => s.want_pause = true,
            "/resume" => s.want_pause = false,
            _ if s.output.as_os_str().is_empty() => return Some("this render writes no files to snapshot"),
            _ => s.want_snapshot = true,
        }
        None
    });
    match refused {
        Some(why) => respond_text(stream, 409, why),
        None => respond_json(stream, 200, &json!({"ok": true, "asked": path.trim_start_matches('/')})),
    }
}

/// Counts an event stream while it lives.
struct Viewer<'a>(&'a Shared);

impl Drop for Viewer<'_> {
    fn drop(&mut self) {
        self.0.lock().viewers -= 1;
    }
}

/// `/events`: the state as one JSON event whenever it changes (at most every
/// [`EVENT_INTERVAL`]), each carrying the loss points this stream has not sent yet; the stream
/// ends after the render's end has been sent.
fn events(mut stream: TcpStream, shared: &Shared) {
    {
        let mut s = shared.lock();
        if s.viewers >= MAX_STREAMS {
            drop(s);
            return respond_text(&mut stream, 503, "too many viewers");
        }
        s.viewers += 1;
    }
    let _viewer = Viewer(shared);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 2000\n\n";
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let (mut seen, mut sent) = (None, 0);
    loop {
        let (payload, ended) = {
            let mut s = shared.lock();
            let t = Instant::now();
            while Some(s.version) == seen && !s.shutdown && t.elapsed() < KEEPALIVE {
                s = shared.changed.wait_timeout(s, KEEPALIVE).unwrap_or_else(|e| e.into_inner()).0;
            }
            if s.shutdown {
                return;
            }
            if Some(s.version) == seen {
                (": keepalive\n\n".to_string(), false)
            } else {
                seen = Some(s.version);
                let mut v = s.status();
                v["loss_from"] = json!(sent);
                v["losses"] = Value::from(s.losses[sent.min(s.losses.len())..].to_vec());
                sent = s.losses.len();
                (format!("data: {v}\n\n"), s.ended())
            }
        };
        if stream.write_all(payload.as_bytes()).and_then(|_| stream.flush()).is_err() || ended {
            return;
        }
        std::thread::sleep(EVENT_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:9", "127.1.2.3:80", "[::1]:8080", "[::1]"] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:80",
            "localhost.evil.example",
            "[::2]:1",
            "",
            "0.0.0.0:80",
            "[::]:8080",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn style_paths_and_token_comparison() {
        assert_eq!(style_index("/style/0.png"), Some(0));
        assert_eq!(style_index("/style/12.png"), Some(12));
        for p in ["/style/.png", "/style/-1.png", "/style/1.jpg", "/style/../1.png", "/style/1234.png", "/style/+1.png"]
        {
            assert_eq!(style_index(p), None, "{p}");
        }
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab") && !same(b"", b"a"));
    }
}
