//! `stylize render --serve`: watch and steer a render from a browser. [`WebView`] is an
//! [`Observer`] that keeps the render's state (progress, losses, the latest image) for a small
//! HTTP server on its own threads (server.rs) and turns the page's buttons into
//! [`Control`]s; the page itself is one self-contained file (page.html).
//!
//! The render thread never waits on a viewer: it asks for an image (a GPU read-back) only at the
//! preview cadence while someone watches, or when a snapshot was asked for, and only when the
//! encoder thread has taken the previous one; it hands the pixels over and goes on. PNG encoding
//! and snapshot files happen on the encoder thread, and every viewer gets the latest encoded image
//! (frames are dropped, never queued).

mod server;

use crate::error::{Error, Result};
use crate::image_io::{resize_longest, DecodeLimits, Planar, SaveOptions};
use crate::render::{
    load_input, plan_frames, save_with_text, snapshot_path, Control, Observer, RenderInfo, RenderOptions, StageInfo,
    StepInfo,
};
use crate::runner::Losses;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A viewer that fetched state or an image this recently counts as watching (a page keeps an
/// event stream open instead).
const POLL_WATCH: Duration = Duration::from_secs(5);
/// Longest side of the content and style thumbnails.
const THUMB_SIDE: u32 = 160;

/// How a render watched by a [`WebView`] ended, for [`WebView::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Every step ran.
    Finished,
    /// Stopped early (from the page or otherwise); the current image was saved.
    Stopped,
    /// Failed with an error.
    Failed,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Finished => "finished",
            End::Stopped => "stopped",
            End::Failed => "failed",
        }
    }
}

/// A frame handed from the render thread to the encoder thread.
struct Pending {
    image: Planar,
    step: u32,
    /// Where to write it as a snapshot.
    snapshot: Option<Snapshot>,
}

/// A snapshot to write: the file, its PNG text and how to write it (bit depth, ICC profile).
struct Snapshot {
    path: PathBuf,
    text: Vec<(String, String)>,
    opts: SaveOptions,
}

/// An encoded image and where it comes from.
struct Shown {
    png: Arc<Vec<u8>>,
    step: u32,
    width: u32,
    height: u32,
    /// Counts the images shown, so a page fetches each once.
    version: u64,
}

/// Everything the page shows, behind one lock that is never held across I/O or GPU work.
#[derive(Default)]
struct State {
    /// Bumped on every change; event streams wait for it to move.
    version: u64,
    /// "starting", "running", "paused", or an [`End`]'s name.
    phase: &'static str,
    message: String,
    info: Value,
    stage: Option<StageInfo>,
    frame_step: u32,
    stage_step: u32,
    ms_per_step: Option<f64>,
    /// Loss points as `--log-json` writes them, plus `x`, the step over every frame.
    losses: Vec<Value>,
    output: PathBuf,
    settings: Vec<(String, String)>,
    /// How the frame's images are written (snapshots alike).
    save: SaveOptions,
    /// The latest encoded image.
    image: Option<Shown>,
    pending: Option<Pending>,
    encoding: bool,
    snapshots: Vec<String>,
    want_stop: bool,
    want_pause: bool,
    want_snapshot: bool,
    /// Open event streams, and when state or an image was last fetched without one.
    viewers: usize,
    last_poll: Option<Instant>,
    /// Step timing without the time paused.
    last_step_at: Option<Instant>,
    paused_at: Option<Instant>,
    paused_since_step: Duration,
    shutdown: bool,
}

impl State {
    fn changed(&mut self) {
        self.version += 1;
    }

    fn watched(&self) -> bool {
        self.viewers > 0 || self.last_poll.is_some_and(|t| t.elapsed() < POLL_WATCH)
    }

    fn ended(&self) -> bool {
        matches!(self.phase, "finished" | "stopped" | "failed")
    }

    /// The page's view of the state (without the loss history).
    fn status(&self) -> Value {
        // u64: thousands of frames times thousands of steps.
        let frames = self.info["frames"].as_u64().unwrap_or(1);
        let frame_steps = self.info["frame_steps"].as_u64().unwrap_or(0);
        let frame = self.stage.as_ref().map_or(0, |s| s.frame as u64);
        let left = frames.saturating_sub(frame + 1) * frame_steps + frame_steps.saturating_sub(self.frame_step as u64);
        let eta = self.ms_per_step.filter(|_| !self.ended()).map(|ms| ms * left as f64 / 1000.0);
        let stage = self.stage.as_ref().map(|s| {
            json!({
                "frame": s.frame, "frames": s.frames, "scale": s.scale, "scales": s.scales,
                "width": s.width, "height": s.height, "steps": s.steps, "step": self.stage_step,
                "tiles": s.tiles.map(|(n, size)| json!({"count": n, "size": size})),
            })
        });
        let image = self
            .image
            .as_ref()
            .map(|i| json!({"step": i.step, "width": i.width, "height": i.height, "version": i.version}));
        json!({
            "phase": self.phase,
            "message": self.message,
            "info": self.info,
            "stage": stage,
            "step": self.frame_step,
            "frame_steps": frame_steps,
            "ms_per_step": self.ms_per_step.map(|v| (v * 100.0).round() / 100.0),
            "eta_s": eta.map(|v| v.round()),
            "image": image,
            "snapshots": self.snapshots,
            "settings": self.settings.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "paused": self.want_pause,
            "can_snapshot": !self.output.as_os_str().is_empty(),
        })
    }
}

/// State shared by the render thread, the encoder thread and the server's threads.
struct Shared {
    state: Mutex<State>,
    /// Signalled on every change of `state`.
    changed: Condvar,
    /// Required in every request when the server listens beyond loopback.
    token: Option<String>,
    /// The address listened on.
    addr: SocketAddr,
    preview_every: u32,
    /// The render's own input images, the only files ever served (as thumbnails).
    contents: Vec<PathBuf>,
    styles: Vec<PathBuf>,
    thumbs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking thread cannot leave this state inconsistent (plain values), so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state, then wakes every waiting thread.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.lock();
        let r = f(&mut s);
        s.changed();
        drop(s);
        self.changed.notify_all();
        r
    }

    /// A thumbnail (PNG) of the current frame's content (`None`) or style image `Some(k)`.
    fn thumbnail(&self, style: Option<usize>) -> Option<Arc<Vec<u8>>> {
        let path = match style {
            Some(k) => self.styles.get(k)?,
            None => {
                let frame = self.lock().stage.as_ref().map_or(0, |s| s.frame);
                self.contents.get(frame).or(self.contents.first())?
            }
        };
        let key = path.display().to_string();
        if let Some(t) = self.thumbs.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Some(t.clone());
        }
        let image = load_input(path, &DecodeLimits::default()).ok()?;
        let png = Arc::new(encode_png(&resize_longest(&image, THUMB_SIDE)));
        self.thumbs.lock().unwrap_or_else(|e| e.into_inner()).insert(key, png.clone());
        Some(png)
    }
}

/// The live web view of a render: an [`Observer`] plus the HTTP server and PNG encoder threads
/// that serve it. Dropping it stops the server.
pub struct WebView {
    shared: Arc<Shared>,
    url: String,
    threads: Vec<JoinHandle<()>>,
}

impl WebView {
    /// Starts serving the page of a render with options `o` at `addr` ("" for 127.0.0.1 and a
    /// free port; "PORT", "HOST" or "HOST:PORT"). Beyond loopback every request must carry the
    /// random token that [`WebView::url`] includes.
    pub fn start(addr: &str, o: &RenderOptions) -> Result<WebView> {
        let addr = parse_addr(addr)?;
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::InvalidArgument(format!("--serve: cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::InvalidArgument(format!("--serve: {e}")))?;
        let token = if addr.ip().is_loopback() { None } else { Some(random_token()?) };
        let contents = match plan_frames(o) {
            Ok((frames, _)) => frames.into_iter().map(|f| f.content).collect(),
            Err(_) => vec![o.content.clone()],
        };
        let state = State { phase: "starting", info: json!({}), ..Default::default() };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            token: token.clone(),
            addr,
            preview_every: o.preview_every.max(1),
            contents,
            styles: o.styles.clone(),
            thumbs: Mutex::new(HashMap::new()),
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| Error::InvalidArgument(format!("--serve: cannot start a thread: {e}")))
        };
        let s = shared.clone();
        let encoder = spawn("stylize-web-encoder", Box::new(move || encode_loop(&s)))?;
        let s = shared.clone();
        let server = spawn("stylize-web", Box::new(move || server::accept_loop(listener, s)))?;
        let host = if addr.ip().is_unspecified() { "0.0.0.0".to_string() } else { addr.ip().to_string() };
        let host = if addr.is_ipv6() { format!("[{host}]") } else { host };
        let mut url = format!("http://{host}:{}/", addr.port());
        if let Some(t) = &token {
            url += &format!("?token={t}");
        }
        Ok(WebView { shared, url, threads: vec![encoder, server] })
    }

    /// The page's address (with the token when one is required).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Marks the render as ended with `message`, once the encoder has published the last image
    /// it was given (waiting at most `wait`); the page then shows the final state.
    pub fn finish(&self, end: End, message: &str, wait: Duration) {
        let t = Instant::now();
        let mut s = self.shared.lock();
        while (s.pending.is_some() || s.encoding) && t.elapsed() < wait {
            s = self.shared.changed.wait_timeout(s, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
        }
        s.phase = end.name();
        s.message = message.to_string();
        s.want_pause = false;
        s.changed();
        drop(s);
        self.shared.changed.notify_all();
    }
}

impl Drop for WebView {
    fn drop(&mut self) {
        self.shared.update(|s| s.shutdown = true);
        // Wake the accept loop, which then sees the shutdown.
        let _ = TcpStream::connect_timeout(&wake_addr(self.shared.addr), Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Where to connect to reach a listener bound to `addr` (an unspecified address is reachable on
/// loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv6() { std::net::Ipv6Addr::LOCALHOST.into() } else { std::net::Ipv4Addr::LOCALHOST.into() });
    }
    a
}

/// `--serve`'s address: "" (127.0.0.1, a free port), "PORT" (127.0.0.1), "HOST", "HOST:PORT".
fn parse_addr(a: &str) -> Result<SocketAddr> {
    let a = a.trim();
    let spec = if a.is_empty() {
        "127.0.0.1:0".to_string()
    } else if a.chars().all(|c| c.is_ascii_digit()) {
        format!("127.0.0.1:{a}")
    } else if a.parse::<std::net::IpAddr>().is_ok() && a.contains(':') {
        format!("[{a}]:0")
    } else if !a.contains(':') || (a.starts_with('[') && a.ends_with(']')) {
        format!("{a}:0")
    } else {
        a.to_string()
    };
    let bad = |why: String| Error::InvalidArgument(format!("--serve: {a:?} is not an address to listen on ({why})"));
    spec.to_socket_addrs().map_err(|e| bad(e.to_string()))?.next().ok_or_else(|| bad("it resolves to nothing".into()))
}

/// 128 random bits from the operating system, as hex.
fn random_token() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| Error::InvalidArgument(format!("--serve: no random token: {e}")))?;
    Ok(b.iter().map(|v| format!("{v:02x}")).collect())
}

/// An image as an 8-bit RGB PNG in memory (fast compression: it is shown, not kept).
fn encode_png(img: &Planar) -> Vec<u8> {
    let n = img.width as usize * img.height as usize;
    let mut rgb = Vec::with_capacity(3 * n);
    for i in 0..n {
        for c in 0..3 {
            rgb.push((img.data[c * n + i].clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    let mut out = vec![];
    let mut enc = png::Encoder::new(&mut out, img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    // Writing to memory cannot fail for a well-formed image; an empty body is the fallback.
    match enc.write_header().and_then(|mut w| w.write_image_data(&rgb)) {
        Ok(()) => out,
        Err(_) => vec![],
    }
}

/// The encoder thread: takes the latest frame, writes it as a snapshot when asked, encodes it
/// and publishes it.
fn encode_loop(shared: &Shared) {
    loop {
        let mut s = shared.lock();
        while s.pending.is_none() && !s.shutdown {
            s = shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        let Some(p) = s.pending.take() else { return };
        s.encoding = true;
        drop(s);
        let saved = p.snapshot.map(|Snapshot { path, text, opts }| {
            match save_with_text(&path, &p.image, &text, p.step, &opts) {
                Ok(()) => format!("step {}: {}", p.step, path.display()),
                Err(e) => format!("step {}: could not save a snapshot: {e}", p.step),
            }
        });
        let png = Arc::new(encode_png(&p.image));
        shared.update(|s| {
            let version = s.image.as_ref().map_or(0, |i| i.version) + 1;
            s.image = Some(Shown { png, step: p.step, width: p.image.width, height: p.image.height, version });
            s.encoding = false;
            s.snapshots.extend(saved);
        });
    }
}

impl Observer for WebView {
    fn started(&mut self, info: &RenderInfo) {
        let info = json!({
            "adapter": info.adapter, "weights": info.weights, "model": info.model.to_string(),
            "preprocess": format!("{:?}", info.preprocess), "width": info.size.0, "height": info.size.1,
            "scales": info.scales, "frame_steps": info.frame_steps, "frames": info.frames,
            "styles": self.shared.styles.len(),
        });
        self.shared.update(|s| {
            s.info = info;
            s.phase = "running";
        });
    }

    fn stage_started(&mut self, stage: &StageInfo, first: &Losses, elapsed_s: f64) -> Result<()> {
        let point = loss_point(stage, 0, first, elapsed_s);
        self.shared.update(|s| {
            s.stage = Some(stage.clone());
            s.frame_step = stage.step_offset;
            s.stage_step = 0;
            s.last_step_at = None;
            s.losses.push(point);
        });
        Ok(())
    }

    fn control(&mut self) -> Control {
        let mut s = self.shared.lock();
        let c = if s.want_stop {
            Control::Stop
        } else if s.want_pause {
            Control::Pause
        } else {
            Control::Continue
        };
        let phase = match (c, s.paused_at) {
            (Control::Pause, None) => {
                s.paused_at = Some(Instant::now());
                "paused"
            }
            (Control::Pause, Some(_)) => return c,
            (_, Some(t)) => {
                s.paused_since_step += t.elapsed();
                s.paused_at = None;
                "running"
            }
            (_, None) => return c,
        };
        s.phase = phase;
        s.changed();
        drop(s);
        self.shared.changed.notify_all();
        c
    }

    fn step(&mut self, st: &StepInfo) -> Result<()> {
        // The same points as --log-json: printed steps and each stage's last.
        let point = st.losses.filter(|_| st.print || st.step == st.stage.steps);
        let point = point.map(|l| loss_point(st.stage, st.step, l, st.elapsed_s));
        let now = Instant::now();
        self.shared.update(|s| {
            if let Some(t) = s.last_step_at {
                let ms = now.duration_since(t).saturating_sub(s.paused_since_step).as_secs_f64() * 1000.0;
                // A short moving average: steady, yet follows a change of scale.
                s.ms_per_step = Some(s.ms_per_step.map_or(ms, |m| 0.8 * m + 0.2 * ms));
            }
            s.last_step_at = Some(now);
            s.paused_since_step = Duration::ZERO;
            s.frame_step = st.frame_step;
            s.stage_step = st.step;
            s.losses.extend(point);
        });
        Ok(())
    }

    fn wants_image(&mut self, _stage: &StageInfo, frame_step: u32) -> bool {
        let s = self.shared.lock();
        // A read-back only when someone watches and the encoder has taken the last frame.
        s.want_snapshot
            || (s.watched()
                && frame_step.is_multiple_of(self.shared.preview_every)
                && s.pending.is_none()
                && !s.encoding)
    }

    fn image(&mut self, _stage: &StageInfo, frame_step: u32, image: &Planar) -> Result<()> {
        self.shared.update(|s| {
            let snapshot = std::mem::take(&mut s.want_snapshot)
                .then(|| Snapshot {
                    path: snapshot_path(&s.output, frame_step),
                    text: s.settings.clone(),
                    opts: s.save.clone(),
                })
                .filter(|_| !s.output.as_os_str().is_empty());
            // The latest frame wins, unless it would drop a snapshot still to be written.
            if snapshot.is_some() || s.pending.as_ref().is_none_or(|p| p.snapshot.is_none()) {
                s.pending = Some(Pending { image: image.clone(), step: frame_step, snapshot });
            }
        });
        Ok(())
    }

    fn frame_output(&mut self, _frame: usize, output: &Path, text: &[(String, String)], save: &SaveOptions) {
        let (output, text, save) = (output.to_path_buf(), text.to_vec(), save.clone());
        self.shared.update(|s| {
            s.output = output;
            s.settings = text;
            s.save = save;
        });
    }

    fn saved(&mut self, _frame: usize, step: u32, _path: &Path, image: &Planar) {
        // The image written is what the page shows last, whether or not anyone watches now.
        let image = image.clone();
        let mut s = self.shared.lock();
        let t = Instant::now();
        // A snapshot still waiting to be written goes first.
        while s.pending.as_ref().is_some_and(|p| p.snapshot.is_some()) && t.elapsed() < Duration::from_secs(10) {
            s = self.shared.changed.wait_timeout(s, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
        }
        s.pending = Some(Pending { image, step, snapshot: None });
        s.changed();
        drop(s);
        self.shared.changed.notify_all();
    }
}

/// A loss point with the fields of a `--log-json` line, plus `x`: the step over every frame.
fn loss_point(stage: &StageInfo, step: u32, l: &Losses, elapsed: f64) -> Value {
    let mut v = json!({
        "frame": stage.frame, "scale": stage.scale, "width": stage.width, "height": stage.height, "step": step,
        "content": l.content_total(), "style": l.style_total(), "tv": l.tv, "total": l.total(),
        "elapsed_s": (elapsed * 1e4).round() / 1e4,
        "x": stage.frame as u64 * stage.frame_steps as u64 + (stage.step_offset + step) as u64,
    });
    if let Some(t) = l.temporal {
        v["temporal"] = json!(t);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_addresses() {
        let a = |s: &str| parse_addr(s).unwrap().to_string();
        assert_eq!(a(""), "127.0.0.1:0");
        assert_eq!(a("8080"), "127.0.0.1:8080");
        assert_eq!(a("0.0.0.0"), "0.0.0.0:0");
        assert_eq!(a("0.0.0.0:8080"), "0.0.0.0:8080");
        assert_eq!(a("::1"), "[::1]:0");
        assert_eq!(a("[::1]"), "[::1]:0");
        assert_eq!(a("[::1]:9000"), "[::1]:9000");
        assert!(parse_addr("localhost").unwrap().ip().is_loopback());
        for bad in ["1.2.3.4:99999", "host name with spaces", "999999"] {
            let e = parse_addr(bad).unwrap_err().to_string();
            assert!(e.contains("--serve") && e.contains("not an address"), "{e}");
        }
    }

    #[test]
    fn png_in_memory_round_trips() {
        let img = crate::image_io::synthetic_photo(7, 5, 3);
        let back = image::load_from_memory(&encode_png(&img)).unwrap().to_rgb8();
        assert_eq!((back.width(), back.height()), (7, 5));
        let n = 35;
        for (i, p) in back.pixels().enumerate() {
            for c in 0..3 {
                let want = (img.data[c * n + i] * 255.0).round() as i32;
                assert!((p.0[c] as i32 - want).abs() <= 1, "pixel {i} channel {c}");
            }
        }
    }
}
