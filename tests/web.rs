//! `render --serve`: the web view through HTTP (a plain TcpStream client): the page, the image,
//! the loss data, every control, the token, and requests meant to break it.

mod common;
use common::tmpdir;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use stylize::render::{render_with, RenderOptions, RenderReport, WeightsSource};
use stylize::web::{End, WebView};

/// A tiny render (32 px, two shallow taps, random weights): fast on lavapipe.
fn options(dir: &Path, steps: u32) -> RenderOptions {
    RenderOptions {
        content: "builtin:photo".into(),
        styles: vec!["builtin:painting".into()],
        output: dir.join("out.png"),
        log_json: Some(dir.join("log.jsonl")),
        size: 32,
        steps,
        print_every: 2,
        preview_every: 2,
        weights: WeightsSource::Random(3),
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        ..Default::default()
    }
}

/// A render on its own thread, watched by a web view on 127.0.0.1 (a free port).
fn start(o: RenderOptions) -> (SocketAddr, JoinHandle<(stylize::Result<RenderReport>, WebView)>) {
    let web = WebView::start("", &o).expect("server");
    let addr = web.addr();
    let h = std::thread::spawn(move || {
        let mut web = web;
        let r = render_with(&o, &mut web);
        let end = match &r {
            Ok(_) => End::Finished,
            Err(stylize::Error::Interrupted { .. }) => End::Stopped,
            Err(_) => End::Failed,
        };
        web.finish(end, "", Duration::from_secs(10));
        (r, web)
    });
    (addr, h)
}

/// Sends `raw` and reads the answer to the end (the server closes every connection): status,
/// head, body.
fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (and close) before it has read everything sent: ignore such errors.
    let _ = s.write_all(raw);
    let mut out = vec![];
    let _ = s.read_to_end(&mut out);
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no answer: {out:?}"));
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head, out[end + 4..].to_vec())
}

fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    (status, body)
}

fn post(addr: SocketAddr, path: &str) -> u16 {
    exchange(addr, format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").as_bytes()).0
}

fn state(addr: SocketAddr) -> Value {
    let (status, body) = get(addr, "/state.json");
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

/// Polls the state until `ok` holds (a minute at most: pipelines compile slowly on lavapipe).
fn wait_for(addr: SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let s = state(addr);
        if ok(&s) {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "waited too long for {what}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn image_step(s: &Value) -> Option<u64> {
    s["image"]["step"].as_u64()
}

fn png_step(path: &Path) -> u32 {
    let text = stylize::image_io::read_png_text(path).unwrap();
    text.iter().find(|(k, _)| k == "stylize:step").map(|(_, v)| v.parse().unwrap()).unwrap()
}

#[test]
fn page_image_losses_snapshot_and_stop() {
    let d = tmpdir("stop");
    let (addr, h) = start(options(&d, 100_000));
    let (status, page) = get(addr, "/");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("new EventSource") && page.contains("<canvas id=\"chart\""), "{page}");
    assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from elsewhere");

    // The image: a PNG at the working size that changes as steps pass.
    let s = wait_for(addr, "a first image", |s| image_step(s).is_some());
    let (w, hgt) = (s["stage"]["width"].as_u64().unwrap(), s["stage"]["height"].as_u64().unwrap());
    assert_eq!((w, hgt), (32, 21));
    let (status, first) = get(addr, "/image.png");
    assert_eq!(status, 200);
    let img = image::load_from_memory(&first).unwrap().to_rgb8();
    assert_eq!((img.width() as u64, img.height() as u64), (w, hgt));
    let step0 = image_step(&s).unwrap();
    assert!(step0 > 0 && step0.is_multiple_of(2), "images come at the preview cadence: {s}");
    // Abuse while it renders: idle connections, an event stream never read, endless and garbage
    // heads. The render must go on stepping (and the server answering) meanwhile.
    let idle: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut unread = TcpStream::connect(addr).unwrap();
    unread.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let abuse = std::thread::spawn(move || {
        for _ in 0..5 {
            let big = format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(1 << 20));
            assert_eq!(exchange(addr, big.as_bytes()).0, 431);
            assert_eq!(exchange(addr, b"\x00\xff\x13garbage\r\n\r\n").0, 400);
        }
    });
    wait_for(addr, "a later image", |s| image_step(s).is_some_and(|k| k >= step0 + 10));
    abuse.join().unwrap();
    drop((idle, unread));
    let (_, later) = get(addr, "/image.png");
    let later = image::load_from_memory(&later).unwrap().to_rgb8();
    let changed = img.pixels().zip(later.pixels()).filter(|(a, b)| a != b).count();
    assert!(changed > 20, "only {changed} pixels changed after 10 steps");

    // Thumbnails of the render's own inputs; nothing else.
    for p in ["/content.png", "/style/0.png"] {
        let (status, body) = get(addr, p);
        assert_eq!(status, 200, "{p}");
        let t = image::load_from_memory(&body).unwrap();
        assert_eq!(t.width().max(t.height()), 160, "{p}");
    }
    assert_eq!(get(addr, "/style/1.png").0, 404);

    // Snapshot: written after the next step as OUT_NNNNN.png, recording that step.
    assert_eq!(post(addr, "/snapshot"), 200);
    let s = wait_for(addr, "the snapshot", |s| !s["snapshots"].as_array().unwrap().is_empty());
    let line = s["snapshots"][0].as_str().unwrap().to_string();
    let snap = PathBuf::from(line.split(": ").nth(1).unwrap());
    let k: u32 = snap.file_stem().unwrap().to_str().unwrap().trim_start_matches("out_").parse().unwrap();
    assert_eq!(png_step(&snap), k, "{line}");
    assert!(line.starts_with(&format!("step {k}:")), "{line}");

    // Stop: the current image is saved with the step it had reached, and the render ends there.
    assert_eq!(post(addr, "/stop"), 200);
    let (r, _web) = h.join().unwrap();
    let step = match r {
        Err(stylize::Error::Interrupted { step, saved: Some(_) }) => step,
        other => panic!("not stopped: {other:?}"),
    };
    assert!(step >= k, "{step} < {k}");
    assert_eq!(png_step(&d.join("out.png")), step);
    let s = state(addr);
    assert_eq!(s["phase"], "stopped");
    assert_eq!(image_step(&s), Some(step as u64), "the page shows the image saved: {s}");
    assert_eq!(post(addr, "/pause"), 409, "controls after the end are refused");

    // The loss data: the --log-json lines, plus x.
    let (status, body) = get(addr, "/losses.json");
    assert_eq!(status, 200);
    let losses: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let log: Vec<Value> = std::fs::read_to_string(d.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(losses.len() >= 5, "{losses:?}");
    assert_eq!(losses.len(), log.len());
    for (a, b) in losses.iter().zip(&log) {
        let mut a = a.clone();
        assert_eq!(a.as_object_mut().unwrap().remove("x"), b.get("step").cloned(), "x is the step (one frame)");
        assert_eq!(&a, b);
        assert!(b["total"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn pause_holds_the_render_and_resume_finishes_it() {
    let d = tmpdir("pause");
    let steps = 120;
    let (addr, h) = start(options(&d, steps));
    // Two viewers' event streams, each read on a thread as a page would.
    let viewer = || {
        let mut es = TcpStream::connect(addr).unwrap();
        es.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
        std::thread::spawn(move || {
            let mut phases = vec![];
            for line in BufReader::new(es).lines() {
                let line = line.unwrap();
                if let Some(data) = line.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(data).unwrap();
                    phases.push((v["phase"].as_str().unwrap().to_string(), v["step"].as_u64().unwrap()));
                }
            }
            phases // the stream ends after the render's end
        })
    };
    let viewers = [viewer(), viewer()];
    wait_for(addr, "step 5", |s| s["step"].as_u64().unwrap() >= 5);
    assert_eq!(post(addr, "/pause"), 200);
    let s = wait_for(addr, "the pause", |s| s["phase"] == "paused");
    let held = s["step"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(state(addr)["step"].as_u64().unwrap(), held, "steps ran while paused");
    assert_eq!(post(addr, "/resume"), 200);
    wait_for(addr, "steps after resuming", |s| s["step"].as_u64().unwrap() > held);
    let (r, _web) = h.join().unwrap();
    let r = r.expect("finished");
    assert_eq!(r.steps, steps);
    assert_eq!(png_step(&d.join("out.png")), steps);
    let s = state(addr);
    assert_eq!(s["phase"], "finished");
    assert_eq!(image_step(&s), Some(steps as u64));
    for v in viewers {
        let phases = v.join().unwrap();
        assert!(phases.iter().any(|(p, _)| p == "paused"), "{phases:?}");
        assert_eq!(phases.last().unwrap(), &("finished".to_string(), steps as u64), "{phases:?}");
        assert!(phases.windows(2).all(|w| w[0].1 <= w[1].1), "steps go forward: {phases:?}");
    }
}

#[test]
fn a_token_is_required_beyond_loopback() {
    let d = tmpdir("token");
    let web = WebView::start("0.0.0.0", &options(&d, 1)).expect("server");
    let url = web.url().to_string();
    let token = url.split("?token=").nth(1).expect("a token in the URL").to_string();
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let other = WebView::start("0.0.0.0", &options(&d, 1)).unwrap();
    assert_ne!(other.url().split("?token=").nth(1).unwrap(), token, "tokens are random");
    let addr: SocketAddr = format!("127.0.0.1:{}", web.addr().port()).parse().unwrap();
    assert_eq!(get(addr, "/state.json").0, 403);
    assert_eq!(get(addr, "/").0, 403);
    assert_eq!(get(addr, &format!("/state.json?token={}", &token[..31])).0, 403);
    assert_eq!(get(addr, &format!("/state.json?token={token}x")).0, 403);
    assert_eq!(post(addr, "/stop"), 403);
    assert_eq!(get(addr, &format!("/state.json?token={token}")).0, 200);
    assert_eq!(get(addr, &format!("/?v=1&token={token}")).0, 200);
    // Loopback needs no token, and prints none.
    let local = WebView::start("", &options(&d, 1)).unwrap();
    assert!(!local.url().contains("token") && local.addr().ip().is_loopback(), "{}", local.url());
}

#[test]
fn bad_requests_are_refused_and_the_server_goes_on() {
    let d = tmpdir("bad");
    let web = WebView::start("", &options(&d, 1)).unwrap();
    let a = web.addr();
    let host = format!("Host: {a}\r\n");
    let req = |s: &str| exchange(a, s.replace("HOST\r\n", &host).as_bytes());
    // Methods: GET for pages and data, POST for controls, nothing else.
    assert_eq!(req("PUT / HTTP/1.1\r\nHOST\r\n\r\n").0, 405);
    assert_eq!(req("OPTIONS /stop HTTP/1.1\r\nHOST\r\n\r\n").0, 405);
    let (status, head, _) = req("GET /stop HTTP/1.1\r\nHOST\r\n\r\n");
    assert!(status == 405 && head.contains("Allow: POST"), "{head}");
    let (status, head, _) = req("POST / HTTP/1.1\r\nHOST\r\nContent-Length: 0\r\n\r\n");
    assert!(status == 405 && head.contains("Allow: GET"), "{head}");
    // No file is ever looked up from a path.
    for p in ["/../Cargo.toml", "/%2e%2e/%2e%2e/etc/passwd", "/style/../../Cargo.toml", "/style/-1.png", "/etc/passwd"]
    {
        assert_eq!(req(&format!("GET {p} HTTP/1.1\r\nHOST\r\n\r\n")).0, 404, "{p}");
    }
    // Another site's page can neither read (DNS rebinding: a foreign Host) nor post.
    assert_eq!(req("GET /state.json HTTP/1.1\r\nHost: evil.example:80\r\n\r\n").0, 403);
    assert_eq!(req("POST /stop HTTP/1.1\r\nHOST\r\nOrigin: http://evil.example\r\nContent-Length: 0\r\n\r\n").0, 403);
    assert_eq!(req(&format!("POST /pause HTTP/1.1\r\nHOST\r\nOrigin: http://{a}\r\nContent-Length: 0\r\n\r\n")).0, 200);
    // Garbage, a head that never ends, too many headers, a huge body.
    let mut garbage = vec![0u8; 4096];
    let mut rng = stylize::rng::SplitMix64::new(7);
    garbage.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
    garbage[..4].copy_from_slice(b"\x16\x03\x01\x02"); // e.g. a TLS hello
    assert_eq!(exchange(a, &garbage).0, 400);
    assert_eq!(req("GET / HTTP/9.9\r\n\r\n").0, 400);
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(1 << 20));
    let (status, _, body) = exchange(a, huge.as_bytes());
    assert_eq!(status, 431, "{}", String::from_utf8_lossy(&body));
    let many: String = (0..40).map(|k| format!("X-{k}: v\r\n")).collect();
    assert_eq!(req(&format!("GET / HTTP/1.1\r\nHOST\r\n{many}\r\n")).0, 431);
    assert_eq!(req("POST /stop HTTP/1.1\r\nHOST\r\nContent-Length: 100000000\r\n\r\n").0, 413);
    assert_eq!(req("POST /stop HTTP/1.1\r\nHOST\r\nTransfer-Encoding: chunked\r\n\r\n").0, 400);
    // A client that connects and sends nothing does not hold up the others.
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(a).unwrap()).collect();
    let t = Instant::now();
    assert_eq!(get(a, "/state.json").0, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(idle);
}

#[test]
fn the_command_line_prints_the_url_and_lingers() {
    let d = tmpdir("cli");
    let out = d.join("o.png");
    let t = Instant::now();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_stylize"))
        .args(["render", "builtin:photo", "builtin:painting", "-o", out.to_str().unwrap(), "--size", "24"])
        .args(["--steps", "6", "--weights", "random:1", "--content-layers", "relu1_2", "--style-layers", "relu1_1"])
        .args(["--serve", "--serve-linger", "1.5", "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("watch and steer this render at http://127.0.0.1:"), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(1500), "no linger: {:?}", t.elapsed());
    assert_eq!(png_step(&out), 6);
    // An address must follow `=`; without it, it would be taken for an image (a style or the
    // content).
    for (args, want) in [
        (["render", "builtin:photo", "0.0.0.0:8080", "--serve"], "--serve=0.0.0.0:8080"),
        (["render", "--serve", "8080", "builtin:painting"], "--serve=8080"),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_stylize")).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
    }
}

/// Pauses once, before frame step `at`, for `polls` questions, and times the loop and the pause.
struct Pauser {
    at: u32,
    polls: u32,
    done: u32,
    stage_at: Option<Instant>,
    last_step_at: Option<Instant>,
    paused: (Option<Instant>, Option<Instant>),
}

impl stylize::render::Observer for Pauser {
    fn stage_started(
        &mut self,
        _: &stylize::render::StageInfo,
        _: &stylize::runner::Losses,
        _: f64,
    ) -> stylize::Result<()> {
        self.stage_at = Some(Instant::now());
        Ok(())
    }
    fn control(&mut self) -> stylize::render::Control {
        if self.done == self.at - 1 && self.polls > 0 {
            self.polls -= 1;
            self.paused.0.get_or_insert_with(Instant::now);
            return stylize::render::Control::Pause;
        }
        if self.paused.0.is_some() {
            self.paused.1.get_or_insert_with(Instant::now);
        }
        stylize::render::Control::Continue
    }
    fn step(&mut self, s: &stylize::render::StepInfo) -> stylize::Result<()> {
        self.done = s.frame_step;
        self.last_step_at = Some(Instant::now());
        Ok(())
    }
}

#[test]
fn time_paused_is_not_render_time() {
    use stylize::image_io::{synthetic_painting, synthetic_photo};
    let o = RenderOptions {
        size: 24,
        steps: 10,
        content_layers: vec!["relu1_2".into()],
        style_layers: vec!["relu1_1".into()],
        ..Default::default()
    };
    let (content, style, weights) =
        (synthetic_photo(48, 32, 1), synthetic_painting(32, 32, 2), stylize::weights::random(1, 2));
    // 20 polls of 50 ms: a pause of about a second before step 4.
    let mut p = Pauser { at: 4, polls: 20, done: 0, stage_at: None, last_step_at: None, paused: (None, None) };
    let out = stylize::render::stylize(&content, &[style], &weights, &o, &mut p).unwrap();
    assert_eq!(p.polls, 0);
    let pause = p.paused.1.unwrap() - p.paused.0.unwrap();
    assert!(pause >= Duration::from_millis(950), "the pause did not hold: {pause:?}");
    // The loop's wall time holds the pause; the reported time per step must not.
    let wall = (p.last_step_at.unwrap() - p.stage_at.unwrap()).as_secs_f64() * 1000.0;
    let reported = out.stages[0].ms_per_iter * 10.0;
    println!("loop {wall:.0} ms with a {pause:?} pause; reported {reported:.0} ms for 10 steps");
    assert!(reported < wall - 0.8 * pause.as_secs_f64() * 1000.0, "the pause was counted as render time");
}
