//! `stylize render --serve`: the render watched and steered from a browser page, beside the
//! terminal's progress (the library's [`WebView`] and the command line's observer as one).

use super::progress::CliProgress;
use clap::Args;
use std::time::{Duration, Instant};
use stylize::render::{render_with, Both, Control, Observer, RenderOptions, RenderReport};
use stylize::web::{End, WebView};
use stylize::{Error, Result};

/// The options of the web view.
#[derive(Args)]
pub struct ServeArgs {
    /// Show the render live in a browser page (image, loss curves, progress, settings) with
    /// stop-and-save, snapshot and pause buttons. ADDR: 127.0.0.1 and a free port when left
    /// out; PORT, HOST or HOST:PORT otherwise (note the `=`: --serve=0.0.0.0:8080). The page's
    /// URL is printed. Beyond loopback every request needs the random token printed in it.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub serve: Option<String>,
    /// With --serve: seconds the page stays up after the render ends (Ctrl-C ends it sooner).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub serve_linger: f64,
}

/// Refuses an address given after `--serve` without `=` (it would be read as an image).
pub fn check_images<'a>(images: impl IntoIterator<Item = &'a std::path::PathBuf>) -> Result<()> {
    for p in images {
        let s = p.to_string_lossy();
        let address =
            s.parse::<std::net::SocketAddr>().is_ok() || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
        if address && !p.exists() {
            return Err(Error::InvalidArgument(format!(
                "{s:?} looks like an address, not an image: give it to --serve with `=` (--serve={s})"
            )));
        }
    }
    Ok(())
}

/// Runs the render with the web view at `addr` beside `progress`, then keeps the page up for
/// `linger` seconds showing how it ended.
pub fn render_served(o: &RenderOptions, progress: &mut CliProgress, addr: &str, linger: f64) -> Result<RenderReport> {
    if !linger.is_finite() || linger < 0.0 {
        return Err(Error::InvalidArgument(format!("--serve-linger must be seconds >= 0, got {linger}")));
    }
    let web = WebView::start(addr, o)?;
    // Printed even with --quiet: it is the only way to the page (and its token).
    eprintln!("stylize: watch and steer this render at {}", web.url());
    if web.addr().ip().is_unspecified() {
        eprintln!("stylize: (open it with this machine's address in place of {})", web.addr().ip());
    }
    let mut both = Both::new(&mut *progress, web);
    let result = render_with(o, &mut both);
    let web = both.b;
    let (end, message) = match &result {
        Ok(r) => (End::Finished, format!("done: {} steps, {:.1} ms/step on {}", r.steps, r.ms_per_iter, r.adapter)),
        Err(e @ Error::Interrupted { .. }) => (End::Stopped, e.to_string()),
        Err(e) => (End::Failed, e.to_string()),
    };
    web.finish(end, &message, Duration::from_secs(10));
    if linger > 0.0 {
        if !o.quiet {
            eprintln!("stylize: the page stays up for {linger} s (Ctrl-C to quit)");
        }
        let t = Instant::now();
        while t.elapsed().as_secs_f64() < linger && both.a.control() != Control::Stop {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    result
}
