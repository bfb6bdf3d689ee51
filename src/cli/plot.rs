//! `stylize plot LOG.jsonl -o curve.png`: the loss curves of a `render --log-json` file, drawn
//! into an RGB buffer by hand (lines, a 5x7 bitmap font for the tick labels and legend) and
//! written with image_io (atomic PNG/JPEG): log-scale y with a grid line and label per decade,
//! x = optimisation step, counted on across scales and frames (their boundaries drawn as
//! dotted vertical lines), one colour per loss term.

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use stylize::image_io::{self, Planar};
use stylize::{Error, Result};

/// The terms drawn, with their colours (matplotlib's first four, total in near-black); temporal
/// appears in video logs with --temporal-weight only.
const SERIES: [(&str, [u8; 3]); 5] = [
    ("content", [31, 119, 180]),
    ("style", [255, 127, 14]),
    ("tv", [44, 160, 44]),
    ("temporal", [214, 39, 40]),
    ("total", [40, 40, 40]),
];

/// One log line: numbers by key (null and non-numbers are left out).
type Record = HashMap<String, f64>;

/// Parses one log line, a flat JSON object: its numbers by key (null, strings and booleans are
/// left out; nested values are an error).
fn parse_line(line: &str) -> std::result::Result<Record, String> {
    let map = match serde_json::from_str::<Value>(line).map_err(|e| e.to_string())? {
        Value::Object(map) => map,
        _ => return Err("expected a JSON object".into()),
    };
    let mut out = Record::new();
    for (key, v) in map {
        match v {
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.insert(key, x);
                }
            }
            Value::Array(_) | Value::Object(_) => return Err(format!("\"{key}\": nested values are not expected")),
            Value::Null | Value::Bool(_) | Value::String(_) => {}
        }
    }
    Ok(out)
}

/// (x, value) points of each series, split into segments at scale/frame boundaries, and the
/// boundary positions.
struct Curves {
    series: Vec<Vec<Vec<(f64, f64)>>>,
    boundaries: Vec<f64>,
    x_max: f64,
}

fn curves(records: &[Record]) -> Curves {
    let mut series: Vec<Vec<Vec<(f64, f64)>>> = vec![vec![]; SERIES.len()];
    let mut boundaries = vec![];
    let mut key = None;
    let (mut offset, mut last_step, mut x_max) = (0.0, 0.0, 0.0f64);
    for r in records {
        let step = r.get("step").copied().unwrap_or(0.0);
        let k = (r.get("frame").copied().unwrap_or(0.0) as i64, r.get("scale").copied().unwrap_or(0.0) as i64);
        if key != Some(k) {
            if key.is_some() {
                offset += last_step;
                boundaries.push(offset);
            }
            key = Some(k);
            for s in &mut series {
                s.push(vec![]);
            }
        }
        last_step = step;
        let x = offset + step;
        x_max = x_max.max(x);
        for (si, (name, _)) in SERIES.iter().enumerate() {
            if let Some(&v) = r.get(*name) {
                if let Some(seg) = series[si].last_mut() {
                    seg.push((x, v));
                }
            }
        }
    }
    Curves { series, boundaries, x_max }
}

struct Canvas {
    w: u32,
    h: u32,
    px: Vec<[u8; 3]>,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Canvas {
        Canvas { w, h, px: vec![[255; 3]; w as usize * h as usize] }
    }
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < self.w && (y as u32) < self.h {
            self.px[y as usize * self.w as usize + x as usize] = c;
        }
    }
    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }
    /// Bresenham, `thick` pixels square pen.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3], thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.rect(x - thick / 2, y - thick / 2, thick, thick, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
    fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3], scale: i64) {
        for (k, ch) in s.chars().enumerate() {
            if let Some(rows) = glyph(ch) {
                for (r, row) in rows.iter().enumerate() {
                    for (col, b) in row.bytes().enumerate() {
                        if b == b'#' {
                            self.rect(x + (k as i64 * 6 + col as i64) * scale, y + r as i64 * scale, scale, scale, c);
                        }
                    }
                }
            }
        }
    }
}

fn text_width(s: &str, scale: i64) -> i64 {
    (s.chars().count() as i64 * 6 - 1).max(0) * scale
}

/// 5x7 glyphs of the characters the plot writes.
fn glyph(c: char) -> Option<[&'static str; 7]> {
    Some(match c {
        '0' => [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
        '1' => ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
        '2' => [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
        '3' => ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."],
        '4' => ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
        '5' => ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
        '6' => ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
        '7' => ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
        '8' => [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
        '9' => [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],
        '.' => [".....", ".....", ".....", ".....", ".....", ".##..", ".##.."],
        '-' => [".....", ".....", ".....", ".###.", ".....", ".....", "....."],
        '+' => [".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."],
        '(' => ["...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."],
        ')' => [".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."],
        'a' => [".....", ".....", ".###.", "....#", ".####", "#...#", ".####"],
        'c' => [".....", ".....", ".###.", "#....", "#....", "#...#", ".###."],
        'e' => [".....", ".....", ".###.", "#...#", "#####", "#....", ".###."],
        'g' => [".....", ".####", "#...#", "#...#", ".####", "....#", ".###."],
        'l' => [".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."],
        'n' => [".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"],
        'o' => [".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."],
        'p' => [".....", ".....", "####.", "#...#", "####.", "#....", "#...."],
        's' => [".....", ".....", ".####", "#....", ".###.", "....#", "####."],
        't' => [".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."],
        'v' => [".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."],
        'y' => [".....", ".....", "#...#", "#...#", ".####", "....#", ".###."],
        _ => return None,
    })
}

/// A "nice" tick spacing (1, 2 or 5 times a power of ten) giving about `n` ticks over `range`.
fn nice_step(range: f64, n: f64) -> f64 {
    let raw = (range / n).max(1e-300);
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// Draws the curves of `records` into a `w` x `h` canvas.
fn draw(records: &[Record], w: u32, h: u32) -> Result<Canvas> {
    let cv = curves(records);
    let positive: Vec<f64> =
        cv.series.iter().flatten().flatten().map(|p| p.1).filter(|v| v.is_finite() && *v > 0.0).collect();
    if positive.is_empty() {
        return Err(Error::InvalidArgument("the log holds no positive loss values to plot".into()));
    }
    let lo = positive.iter().fold(f64::INFINITY, |m, &v| m.min(v)).log10().floor();
    let mut hi = positive.iter().fold(0.0f64, |m, &v| m.max(v)).log10().ceil();
    if hi <= lo {
        hi = lo + 1.0;
    }
    let fs: i64 = if w >= 1200 && h >= 700 { 2 } else { 1 };
    let mut c = Canvas::new(w, h);
    let legend_w = text_width("content", fs) + 24 * fs;
    let (left, right, top, bottom) =
        (10 + text_width("1e-10", fs) + 8, legend_w + 16, 10 + 9 * fs + 6, 10 + 2 * 9 * fs + 10);
    let (pw, ph) = (w as i64 - left - right, h as i64 - top - bottom);
    if pw < 40 || ph < 40 {
        return Err(Error::InvalidArgument(format!("{w}x{h} is too small for a plot (at least about 240x150)")));
    }
    let x_max = cv.x_max.max(1.0);
    let px = |x: f64| left + ((x / x_max) * (pw - 1) as f64).round() as i64;
    let py = |v: f64| top + (((hi - v.log10()) / (hi - lo)) * (ph - 1) as f64).round() as i64;
    let (grid, axis, label) = ([228, 228, 228], [0, 0, 0], [60, 60, 60]);

    // Decade grid lines and labels (every k-th decade when there are many).
    let decades = (hi - lo) as i64;
    let every = (decades / 8 + 1).max(1);
    let mut d = lo as i64;
    while d <= hi as i64 {
        let y = py(10f64.powi(d as i32));
        c.line((left, y), (left + pw - 1, y), grid, 1);
        if (d - lo as i64) % every == 0 {
            let s = format!("1e{d}");
            c.text(left - 6 - text_width(&s, fs), y - 3 * fs, &s, label, fs);
            c.line((left - 4, y), (left, y), axis, 1);
        }
        d += 1;
    }
    // Step ticks.
    let step = nice_step(x_max, 5.0);
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let xp = px(x);
        c.line((xp, top + ph - 1), (xp, top + ph + 3), axis, 1);
        let s = format!("{}", x.round() as i64);
        c.text(xp - text_width(&s, fs) / 2, top + ph + 6, &s, label, fs);
        x += step;
    }
    // Scale / frame boundaries, dotted.
    for &b in &cv.boundaries {
        let xp = px(b);
        for y in (top..top + ph).step_by(4) {
            c.set(xp, y, [170, 170, 170]);
        }
    }
    // Axes.
    c.line((left, top), (left, top + ph - 1), axis, 1);
    c.line((left, top + ph - 1), (left + pw - 1, top + ph - 1), axis, 1);
    c.text(left, 4, "loss (log)", label, fs);
    c.text(left + pw - text_width("step", fs), top + ph + 6 + 9 * fs, "step", label, fs);
    // Curves (points <= 0 cannot be drawn on a log axis: they break the line).
    for (si, (_, col)) in SERIES.iter().enumerate() {
        for seg in &cv.series[si] {
            let mut prev: Option<(i64, i64)> = None;
            for &(x, v) in seg {
                if !(v.is_finite() && v > 0.0) {
                    prev = None;
                    continue;
                }
                let p = (px(x), py(v));
                match prev {
                    Some(q) => c.line(q, p, *col, 2),
                    None => c.rect(p.0 - 1, p.1 - 1, 3, 3, *col),
                }
                prev = Some(p);
            }
        }
    }
    // Legend.
    let lx = left + pw + 12;
    // Only the terms the log has (no "temporal" entry for a still image).
    let present = SERIES.iter().enumerate().filter(|(si, _)| cv.series[*si].iter().any(|seg| !seg.is_empty()));
    for (k, (_, (name, col))) in present.enumerate() {
        let y = top + 4 + k as i64 * 12 * fs;
        c.rect(lx, y + fs, 10 * fs, 5 * fs, *col);
        c.text(lx + 14 * fs, y, name, label, fs);
    }
    Ok(c)
}

/// Reads `log`, draws its curves at `w` x `h` and writes `out` atomically.
pub fn plot_file(log: &Path, out: &Path, w: u32, h: u32) -> Result<()> {
    if !(100..=16384).contains(&w) || !(100..=16384).contains(&h) {
        return Err(Error::InvalidArgument(format!(
            "the plot size must be between 100 and 16384 pixels a side, got {w}x{h}"
        )));
    }
    image_io::check_output_path(out)?;
    let text = std::fs::read_to_string(log).map_err(|e| Error::Io { path: log.display().to_string(), source: e })?;
    let mut records = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r = parse_line(line).map_err(|e| Error::InvalidArgument(format!("{}:{}: {e}", log.display(), i + 1)))?;
        records.push(r);
    }
    if records.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: no loss lines (write one with stylize render --log-json)",
            log.display()
        )));
    }
    let c = draw(&records, w, h)?;
    let n = c.px.len();
    let mut data = vec![0.0f32; 3 * n];
    for (i, p) in c.px.iter().enumerate() {
        for ch in 0..3 {
            data[ch * n + i] = p[ch] as f32 / 255.0;
        }
    }
    image_io::save_image(out, &Planar { width: w, height: h, data }, &[("Software", "stylize plot")])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_line_keeps_the_numbers_of_a_log_line() {
        // The layout render's --log-json writes (numbers in exponent form, null where not finite).
        let r = parse_line(
            r#"{"frame":0,"scale":1,"width":24,"height":18,"step":7,"content":1.5e2,"style":null,"tv":3e-1,"total":1.503e2,"elapsed_s":0.1234}"#,
        )
        .unwrap();
        assert_eq!((r["step"], r["content"], r["tv"], r["elapsed_s"]), (7.0, 150.0, 0.3, 0.1234));
        assert!(!r.contains_key("style"));
        assert_eq!(parse_line(r#"{"step": 1, "note": "a \"b\"", "ok": true}"#).unwrap().len(), 1);
        assert!(parse_line("{}").unwrap().is_empty());
        assert!(parse_line(r#"{"step": [1]}"#).unwrap_err().contains("nested"));
        assert!(parse_line("[1]").unwrap_err().contains("object"));
        assert!(parse_line(r#"{"step": oops}"#).is_err());
    }
}
