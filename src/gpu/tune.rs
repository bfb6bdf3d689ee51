//! Choosing conv3x3 and Gram variants by measurement on the user's own adapter (as cuDNN's benchmark mode):
//! the first time a shape is met, every variant that can run it is timed on random data and the
//! fastest kept, within a time budget; the table is stored per adapter and driver in a JSON file
//! (written atomically) that later runs read. A corrupt or foreign file is reported in
//! [`Tuner::warnings`] and rebuilt, never trusted.

use super::conv::{self, Variant};
use super::{Context, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How the conv variants are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// The fixed rules ([`conv::choose_variant`]).
    Off,
    /// A tuned table's choices where it has one, the fixed rules elsewhere; never measures.
    Cached,
    /// As `Cached`, and shapes the table lacks are measured (within the budget) and added.
    Full,
}

impl TuneMode {
    /// `off`, `cached` or `full`.
    pub fn parse(s: &str) -> Option<TuneMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Some(TuneMode::Off),
            "cached" => Some(TuneMode::Cached),
            "full" => Some(TuneMode::Full),
            _ => None,
        }
    }
}

/// Identifies an adapter and its driver: a table measured on one is not used on another.
pub fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{:?} {} {} {} {:04x}:{:04x}",
        info.backend, info.name, info.driver, info.driver_info, info.vendor, info.device
    )
}

/// The table's file for an adapter under `dir`: its key with every character outside
/// [A-Za-z0-9._-] replaced, so any adapter name makes a valid file name.
pub fn table_path(dir: &Path, info: &wgpu::AdapterInfo) -> PathBuf {
    let name: String = adapter_key(info)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' })
        .collect();
    dir.join(format!("{name}.json"))
}

fn shape_key(cin: usize, cout: usize, h: usize, w: usize) -> String {
    format!("conv3x3 {cin}x{cout} {h}x{w}")
}

fn gram_key(c: usize, n: usize) -> String {
    format!("gram {c}x{n}")
}

fn variant_name(v: Variant) -> String {
    v.name()
}

/// The measured choices of one adapter, and the budget left for new measurements.
pub struct Tuner {
    mode: TuneMode,
    /// Where the table is read from and written to (None: kept in memory only).
    path: Option<PathBuf>,
    key: String,
    state: Mutex<State>,
    progress: Option<Progress>,
}

struct State {
    table: BTreeMap<String, Variant>,
    /// Every answer given so far, by shape (None: the fixed rules), for a checkpoint to record.
    used: BTreeMap<String, Option<Variant>>,
    /// Answers forced by [`Tuner::pin`] (a resumed render repeats the interrupted one's).
    pinned: BTreeMap<String, Option<Variant>>,
    budget: Duration,
    spent: Duration,
    measured: usize,
    warnings: Vec<String>,
}

/// Receives one line per shape measured (see [`Tuner::set_progress`]).
type Progress = Box<dyn Fn(&str) + Send + Sync>;

impl Tuner {
    /// A tuner for `ctx`'s adapter in `mode`, reading (and, in `Full` mode, writing) the table at
    /// `path`, measuring for at most `budget` in all.
    pub fn new(ctx: &Context, mode: TuneMode, path: Option<PathBuf>, budget: Duration) -> Tuner {
        Tuner::for_adapter(adapter_key(&ctx.info), mode, path, budget)
    }

    /// [`Tuner::new`] for the adapter whose [`adapter_key`] is `key`.
    fn for_adapter(key: String, mode: TuneMode, path: Option<PathBuf>, budget: Duration) -> Tuner {
        let mut st = State {
            table: BTreeMap::new(),
            used: BTreeMap::new(),
            pinned: BTreeMap::new(),
            budget,
            spent: Duration::ZERO,
            measured: 0,
            warnings: vec![],
        };
        if let (Some(p), true) = (&path, mode != TuneMode::Off) {
            match std::fs::read_to_string(p) {
                Ok(text) => match parse_table(&text, &key) {
                    Ok(t) => st.table = t,
                    Err(why) => st.warnings.push(format!("{}: {why}; the tuning table will be rebuilt", p.display())),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => st.warnings.push(format!("{}: {e}; tuning without it", p.display())),
            }
        }
        Tuner { mode, path, key, state: Mutex::new(st), progress: None }
    }

    /// Calls `f` with one line per shape measured (its candidates' times and the choice), so a
    /// long tuning run shows where its time goes. The library prints nothing itself.
    pub fn set_progress(&mut self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// The mode.
    pub fn mode(&self) -> TuneMode {
        self.mode
    }

    /// Time spent measuring so far, and how many shapes were measured.
    pub fn spent(&self) -> (Duration, usize) {
        let st = self.lock();
        (st.spent, st.measured)
    }

    /// The problems met (unreadable, corrupt or foreign table, failed write), one line each.
    pub fn warnings(&self) -> Vec<String> {
        self.lock().warnings.clone()
    }

    /// The table: (shape, variant name), sorted.
    pub fn entries(&self) -> Vec<(String, String)> {
        self.lock().table.iter().map(|(k, v)| (k.clone(), variant_name(*v))).collect()
    }

    /// Every choice made so far: (shape, variant name, or `rules` where the fixed rules
    /// decided), sorted. A checkpoint records them; [`Tuner::pin`] makes a resumed render repeat them.
    pub fn choices(&self) -> Vec<(String, String)> {
        let name = |v: &Option<Variant>| v.map_or_else(|| "rules".to_string(), variant_name);
        self.lock().used.iter().map(|(k, v)| (k.clone(), name(v))).collect()
    }

    /// Forces the choices `pins` ([`Tuner::choices`]' form) for their shapes, over the table,
    /// a measurement or the budget: a render resumed from a checkpoint computes with the kernels
    /// the interrupted one used even when the table changed or the budget ran out differently.
    /// Kept in memory only (the table file is not changed). Errors on an unknown variant name.
    pub fn pin(&self, pins: &[(String, String)]) -> Result<(), String> {
        let mut st = self.lock();
        for (k, v) in pins {
            let v = match v.as_str() {
                "rules" => None,
                name => Some(Variant::parse(name).ok_or_else(|| format!("unknown kernel variant {name} for {k}"))?),
            };
            st.pinned.insert(k.clone(), v);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The variant for a `cin -> cout` conv at h x w: the table's, else (in `Full` mode, budget
    /// left) the fastest of the candidates measured now, else None (the fixed rules apply).
    pub(crate) fn choose(&self, ctx: &Context, cin: usize, cout: usize, h: usize, w: usize) -> Option<Variant> {
        self.choose_by(shape_key(cin, cout, h, w), |until| time_conv(ctx, cin, cout, h, w, until))
    }

    /// The same for the Gram matrix (forward and backward) of a `c` x `n` feature map.
    pub(crate) fn choose_gram(&self, ctx: &Context, c: usize, n: usize) -> Option<Variant> {
        self.choose_by(gram_key(c, n), |until| time_gram(ctx, c, n, until))
    }

    /// The table's variant for `key`, else (in `Full` mode, budget left) the fastest of the
    /// timings `measure` returns, recorded and saved; else None. `measure` is given the instant
    /// the budget runs out, after which it starts no further candidate (so one shape overruns
    /// the budget by at most one candidate's compile and runs); a measurement cut short that way
    /// is neither used nor saved (the fixed rules apply), so a table never holds a choice made
    /// among some of the candidates only. Pins ([`Tuner::pin`]) come first; every answer is
    /// recorded ([`Tuner::choices`]).
    fn choose_by(
        &self,
        key: String,
        measure: impl FnOnce(Instant) -> crate::error::Result<Timings>,
    ) -> Option<Variant> {
        let v = self.decide(&key, measure);
        self.lock().used.insert(key, v);
        v
    }

    /// [`Tuner::choose_by`]'s answer, not yet recorded as used.
    fn decide(&self, key: &str, measure: impl FnOnce(Instant) -> crate::error::Result<Timings>) -> Option<Variant> {
        let left = {
            let st = self.lock();
            if let Some(v) = st.pinned.get(key) {
                return *v;
            }
            if self.mode == TuneMode::Off {
                return None;
            }
            if let Some(v) = st.table.get(key) {
                return Some(*v);
            }
            if self.mode != TuneMode::Full || st.spent >= st.budget {
                return None;
            }
            st.budget - st.spent
        };
        let t0 = Instant::now();
        let timings = measure(t0 + left);
        let took = t0.elapsed();
        self.lock().spent += took;
        let timings = timings.ok()?;
        let best = fastest(&timings.times).filter(|_| timings.untimed == 0);
        if let Some(report) = &self.progress {
            let times: Vec<String> =
                timings.times.iter().map(|(v, s)| format!("{} {:.3}", variant_name(*v), s * 1e3)).collect();
            let verdict = match best {
                Some(v) => variant_name(v),
                None if timings.untimed > 0 => {
                    format!("budget spent, {} candidates untimed: not kept, the fixed rules", timings.untimed)
                }
                None => "nothing timed: the fixed rules".into(),
            };
            // Outside the state's lock: the callback may ask the tuner anything.
            report(&format!("{key}: {verdict} ({} ms; measured in {:.1} s)", times.join(", "), took.as_secs_f64()));
        }
        let best = best?;
        let mut st = self.lock();
        st.measured += 1;
        st.table.insert(key.to_string(), best);
        if let Some(p) = &self.path {
            if let Err(e) = write_table(p, &self.key, &st.table) {
                let w = format!("{}: could not save the tuning table: {e}", p.display());
                // Once, not once per shape measured.
                if !st.warnings.contains(&w) {
                    st.warnings.push(w);
                }
            }
        }
        Some(best)
    }
}

/// The candidates timed, (variant, seconds) each, and how many were left untimed when the budget
/// ran out.
#[derive(Default)]
struct Timings {
    times: Vec<(Variant, f64)>,
    untimed: usize,
}

impl From<Vec<(Variant, f64)>> for Timings {
    fn from(times: Vec<(Variant, f64)>) -> Timings {
        Timings { times, untimed: 0 }
    }
}

/// The fastest variant of `t` (the first of equals); None when nothing was timed.
fn fastest(t: &[(Variant, f64)]) -> Option<Variant> {
    t.iter().filter(|(_, s)| s.is_finite()).min_by(|a, b| a.1.total_cmp(&b.1)).map(|(v, _)| *v)
}

/// The best of 3 runs of `ops` after a warm-up, in seconds.
fn time_ops(ctx: &Context, ops: &[&super::Op]) -> crate::error::Result<f64> {
    ctx.run(ops)?;
    ctx.wait()?;
    let mut t = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        ctx.run(ops)?;
        ctx.wait()?;
        t = t.min(t0.elapsed().as_secs_f64());
    }
    Ok(t)
}

/// Every conv variant that runs the shape (those that would fall back are skipped), timed on
/// random data, until `until` (the first candidate always). The texture variants (`tex`,
/// `wino`, `wino4`) are designs for CPU adapters and are timed only there: on an NVIDIA H200
/// every test that ran them stalled for over a minute (benches/README.md, GPU proof).
fn time_conv(
    ctx: &Context,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    until: Instant,
) -> crate::error::Result<Timings> {
    let mut rng = crate::rng::SplitMix64::new(0x7E57);
    let x = Tensor::from_slice(ctx, [cin, h, w], &rng.vec(cin * h * w, -1.0, 1.0), "tune x")?;
    let wt = Tensor::from_slice(ctx, [cout, cin, 9], &rng.vec(cout * cin * 9, -0.1, 0.1), "tune w")?;
    let b = Tensor::from_slice(ctx, [cout, 1, 1], &rng.vec(cout, -0.1, 0.1), "tune b")?;
    let y = Tensor::new(ctx, [cout, h, w], "tune y")?;
    let caps = conv::TexCaps::of(ctx);
    let narrow = (cout < 16).then_some(conv::GemmTile::NARROW);
    let tiles: Vec<conv::GemmTile> =
        conv::GemmTile::CANDIDATES.into_iter().chain(narrow).filter(|t| t.unsupported(&ctx.limits).is_none()).collect();
    let mut candidates = vec![Variant::Tiled];
    candidates.extend(tiles.iter().map(|&t| Variant::Gemm(t)));
    // Winograd on two tiles only: on an H200 the best of the four tried was one of these two at
    // every VGG19 layer (benches/README.md), and fewer candidates leave a render's few seconds
    // of tuning for more shapes.
    let wino_tiles = [conv::GemmTile::DEFAULT_UNROLLED, conv::GemmTile::new(8, 8, 16, 16, 8, true)];
    for m in [2, 4] {
        if conv::wino_gemm_unsupported(&ctx.limits, m, cin, cout, h, w).is_none() {
            let supported = wino_tiles.iter().filter(|t| tiles.contains(t));
            candidates.extend(supported.map(|&t| Variant::GemmWino(m, t)));
        }
    }
    if caps.device_type == wgpu::DeviceType::Cpu {
        candidates.extend([Variant::Tex, Variant::Wino, Variant::Wino4]);
    }
    // Skip what would fall back to another variant (it is timed under its own name).
    candidates.retain(|&v| conv::choose_variant(&caps, Some(v), cin, cout, h, w) == v);
    let mut out = Timings::default();
    for (i, &v) in candidates.iter().enumerate() {
        if i > 0 && Instant::now() >= until {
            out.untimed = candidates.len() - i;
            break;
        }
        let op = conv::conv3x3_forward_with(ctx, v, &x, &wt, &b, &y, true);
        out.times.push((v, time_ops(ctx, &[&op])?));
    }
    Ok(out)
}

/// Every Gram variant that runs a `c` x `n` feature map, timed on one forward and one backward,
/// until `until` (the first always).
fn time_gram(ctx: &Context, c: usize, n: usize, until: Instant) -> crate::error::Result<Timings> {
    use super::gram;
    let mut rng = crate::rng::SplitMix64::new(0x7E58);
    let f = Tensor::from_slice(ctx, [c, n, 1], &rng.vec(c * n, -1.0, 1.0), "tune f")?;
    let dg = Tensor::from_slice(ctx, [c, c, 1], &rng.vec(c * c, -1.0, 1.0), "tune dg")?;
    let (g, df) = (Tensor::new(ctx, [c, c, 1], "tune g")?, Tensor::new(ctx, [c, n, 1], "tune df")?);
    let caps = conv::TexCaps::of(ctx);
    let mut candidates = vec![Variant::Tiled, Variant::GEMM, Variant::Tex];
    candidates.retain(|&v| gram::choose_variant(&caps, Some(v), c, n) == v);
    let mut out = Timings::default();
    for (i, &v) in candidates.iter().enumerate() {
        if i > 0 && Instant::now() >= until {
            out.untimed = candidates.len() - i;
            break;
        }
        let fwd = gram::gram_forward_scaled_with(ctx, v, &f, &g, 1.0, false);
        let bwd = gram::gram_backward_scaled_with(ctx, v, &f, &dg, &df, 1.0, false);
        out.times.push((v, time_ops(ctx, &[&fwd, &bwd])?));
    }
    Ok(out)
}

/// The generation of the candidate set a table was measured among (its `candidates` field): a
/// table of another generation is rebuilt, so a change of candidates (2: the unrolled GEMM tiles)
/// reaches every user's GPU rather than leaving the older choices in place.
pub const CANDIDATES_GENERATION: u64 = 2;

/// The table in `text` if it is well-formed, was measured on the adapter `key` and among this
/// version's candidates ([`CANDIDATES_GENERATION`]).
fn parse_table(text: &str, key: &str) -> Result<BTreeMap<String, Variant>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not a tuning table ({e})"))?;
    let adapter = v.get("adapter").and_then(|a| a.as_str()).ok_or("not a tuning table (no adapter)")?;
    if adapter != key {
        return Err(format!("measured on another adapter or driver ({adapter})"));
    }
    let generation = v.get("candidates").and_then(|g| g.as_u64()).unwrap_or(1);
    if generation != CANDIDATES_GENERATION {
        return Err(format!("measured among another version's kernels (generation {generation})"));
    }
    let entries = v.get("kernels").and_then(|e| e.as_object()).ok_or("not a tuning table (no kernel entries)")?;
    let mut table = BTreeMap::new();
    for (shape, name) in entries {
        let variant = name.as_str().and_then(Variant::parse).ok_or(format!("unknown variant for {shape}"))?;
        table.insert(shape.clone(), variant);
    }
    Ok(table)
}

/// Writes the table atomically ([`crate::atomic`]), so two processes tuning at once each leave
/// a whole table.
fn write_table(path: &Path, key: &str, table: &BTreeMap<String, Variant>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let entries: serde_json::Map<String, serde_json::Value> =
        table.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(variant_name(*v)))).collect();
    let text =
        serde_json::json!({ "adapter": key, "candidates": CANDIDATES_GENERATION, "kernels": entries }).to_string();
    crate::atomic::write_atomic(path, text.as_bytes())
}

/// Tunes ahead: every conv3x3 shape (forward and backward-input) and every Gram shape of VGG19's
/// layers at each of `sizes` (square inputs, longest side), through `ctx`'s tuner (which must be
/// in `Full` mode). Returns how many shapes were visited.
pub fn tune_vgg19(ctx: &Context, sizes: &[u32]) -> usize {
    let mut n = 0;
    for &s in sizes {
        // VGG16's shapes are a subset of VGG19's.
        let vgg19 = crate::model::Model::Vgg19;
        for (i, &(_, cin, cout)) in vgg19.convs().iter().enumerate() {
            let (h, w) = vgg19.conv_size(i, s as usize, s as usize);
            if h == 0 || w == 0 {
                continue;
            }
            conv::select_variant(ctx, cin, cout, h, w);
            conv::select_variant(ctx, cout, cin, h, w);
            super::gram::select_variant(ctx, cout, h * w);
            n += 3;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn tuner(mode: TuneMode, path: Option<PathBuf>, budget_s: u64) -> Tuner {
        Tuner::for_adapter("Test GPU 1.0".into(), mode, path, Duration::from_secs(budget_s))
    }

    #[test]
    fn the_fastest_timing_wins_and_is_remembered() {
        let t = tuner(TuneMode::Full, None, 60);
        let calls = Cell::new(0);
        let timings = |_| {
            calls.set(calls.get() + 1);
            Ok(vec![(Variant::Tiled, 3e-3), (Variant::GEMM, 1e-3), (Variant::Tex, 2e-3), (Variant::Wino, f64::NAN)]
                .into())
        };
        assert_eq!(t.choose_by("k".into(), timings), Some(Variant::GEMM));
        assert_eq!(t.choose_by("k".into(), timings), Some(Variant::GEMM));
        assert_eq!(calls.get(), 1, "measured once");
        assert_eq!(t.spent().1, 1);
        assert_eq!(t.choose_by("none".into(), |_| Ok(Timings::default())), None, "nothing timed: the fixed rules");
        assert_eq!(t.choose_by("failed".into(), |_| Err(crate::Error::Gpu("lost".into()))), None);
    }

    #[test]
    fn a_measurement_is_given_the_budget_left_and_reported() {
        let mut t = tuner(TuneMode::Full, None, 60);
        let lines = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        t.set_progress(move |l| sink.lock().unwrap().push(l.to_string()));
        let start = Instant::now();
        let first = |until: Instant| {
            let left = until.duration_since(start).as_secs_f64();
            assert!((59.0..60.5).contains(&left), "the whole budget is left: {left} s");
            std::thread::sleep(Duration::from_millis(1100));
            Ok(vec![(Variant::Tiled, 3e-3), (Variant::GEMM, 1.5e-3)].into())
        };
        assert_eq!(t.choose_by("conv3x3 1x2 3x4".into(), first), Some(Variant::GEMM));
        let second = |until: Instant| {
            let left = until.duration_since(Instant::now()).as_secs_f64();
            assert!(left < 59.0 && left > 50.0, "the first measurement's time is spent: {left} s left");
            Ok(Timings { times: vec![(Variant::Tiled, 1e-3)], untimed: 2 })
        };
        // Cut short by the budget: neither used nor kept.
        assert_eq!(t.choose_by("gram 8x9".into(), second), None);
        assert_eq!(t.entries(), vec![("conv3x3 1x2 3x4".to_string(), "gemm".to_string())]);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("conv3x3 1x2 3x4: gemm (tiled 3.000, gemm 1.500 ms; measured in 1."),
            "{}",
            lines[0]
        );
        let cut = "gram 8x9: budget spent, 2 candidates untimed: not kept, the fixed rules (tiled 1.000 ms;";
        assert!(lines[1].starts_with(cut), "{}", lines[1]);
    }

    #[test]
    fn cached_off_and_spent_budget_never_measure() {
        let never = |_| -> crate::error::Result<Timings> { panic!("measured") };
        assert_eq!(tuner(TuneMode::Cached, None, 60).choose_by("k".into(), never), None);
        assert_eq!(tuner(TuneMode::Off, None, 60).choose_by("k".into(), never), None);
        assert_eq!(tuner(TuneMode::Full, None, 0).choose_by("k".into(), never), None);
    }

    #[test]
    fn pins_override_the_table_and_the_budget_and_choices_are_recorded() {
        let dir = std::env::temp_dir().join(format!("stylize-tune-pin-{}", std::process::id()));
        let path = dir.join("t.json");
        let first = tuner(TuneMode::Full, Some(path.clone()), 60);
        assert_eq!(
            first.choose_by("a".into(), |_| Ok(vec![(Variant::Tex, 1.0), (Variant::Wino, 2.0)].into())),
            Some(Variant::Tex)
        );
        let spent = tuner(TuneMode::Full, None, 0);
        assert_eq!(spent.choose_by("b".into(), |_| Ok(Timings::default())), None);
        let mut used = first.choices();
        used.extend(spent.choices());
        assert_eq!(used, vec![("a".to_string(), "tex".to_string()), ("b".to_string(), "rules".to_string())]);
        // Later the table says wino for a and the budget would measure b: the pins win.
        let later = tuner(TuneMode::Full, Some(path), 60);
        later.lock().table.insert("a".into(), Variant::Wino);
        later.pin(&used).unwrap();
        let never = |_| -> crate::error::Result<Timings> { panic!("measured a pinned shape") };
        assert_eq!(later.choose_by("a".into(), never), Some(Variant::Tex));
        assert_eq!(later.choose_by("b".into(), never), None);
        assert_eq!(later.choices(), used);
        assert!(later.pin(&[("c".into(), "nonsense".into())]).unwrap_err().contains("nonsense"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_saved_table_is_read_back_for_the_same_adapter_only() {
        let dir = std::env::temp_dir().join(format!("stylize-tune-unit-{}", std::process::id()));
        let path = dir.join("t.json");
        let t = tuner(TuneMode::Full, Some(path.clone()), 60);
        let timings = |_| Ok(vec![(Variant::Tiled, 2.0), (Variant::Tex, 1.0)].into());
        assert_eq!(t.choose_by("conv3x3 1x2 3x4".into(), timings), Some(Variant::Tex));
        let back = tuner(TuneMode::Cached, Some(path.clone()), 60);
        assert!(back.warnings().is_empty());
        assert_eq!(back.entries(), vec![("conv3x3 1x2 3x4".to_string(), "tex".to_string())]);
        let other = Tuner::for_adapter("Other GPU".into(), TuneMode::Cached, Some(path), Duration::ZERO);
        assert!(other.entries().is_empty() && other.warnings()[0].contains("another adapter"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
