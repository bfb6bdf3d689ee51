//! `stylize check`: every kernel and one whole iteration on the chosen adapter against the f64
//! CPU reference, printed as a table, so a user can validate the numerics of their own GPU
//! (the same comparisons as tests/kernels.rs and tests/step.rs, at fixed small shapes).

use crate::error::Result;
use crate::gpu::adam::AdamConfig;
use crate::gpu::relu::{self, Mask};
use crate::gpu::{conv, gram, pool, reduce, AdapterChoice, Context, KernelOverrides, Op, Tensor};
use crate::model::{ConvLayer, Edge, LossSettings, Model, Pool, Preprocess, Tap};
use crate::reference as r;
use crate::runner::{compute_targets, Graph, Net, Targets};

/// One row: what was compared, the normwise relative error, and the tolerance.
pub struct Row {
    /// What was compared.
    pub what: String,
    /// Normwise relative error against the f64 reference.
    pub err: f64,
    /// The tolerance it must stay within.
    pub tol: f64,
}

use crate::rng::XorShift64 as Rng;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn err(gpu: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    gpu.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| if g.is_finite() { m.max((*g as f64 - w).abs()) } else { f64::INFINITY })
        / scale
}

/// Runs `op` on a NaN-poisoned `out` and returns it.
fn run(ctx: &Context, op: &Op, out: &Tensor) -> Result<Vec<f32>> {
    ctx.run(&[op])?;
    out.read(ctx)
}

fn poisoned(ctx: &Context, shape: [usize; 3]) -> Result<Tensor> {
    let t = Tensor::new(ctx, shape, "check output")?;
    t.fill(ctx, f32::NAN);
    Ok(t)
}

/// Runs every kernel and one whole VGG19 iteration on `adapter` (empty: the best one) against
/// the f64 reference: the adapter's description and one row per comparison.
pub fn run_checks(adapter: &str, kernels: KernelOverrides) -> Result<(String, Vec<Row>)> {
    run_checks_for(adapter, kernels, Model::Vgg19)
}

/// As [`run_checks`], the whole iteration through `model`'s layers (default taps, random weights).
pub fn run_checks_for(adapter: &str, kernels: KernelOverrides, model: Model) -> Result<(String, Vec<Row>)> {
    let mut ctx = Context::new(&AdapterChoice::parse(adapter))?;
    ctx.set_overrides(kernels);
    let mut rows = vec![];
    let mut rng = Rng::new(0x5eed);
    let up = |ctx: &Context, shape: [usize; 3], v: &[f32]| Tensor::from_slice(ctx, shape, v, "check input");
    for &(cin, cout, h, w) in &[(3usize, 64usize, 13usize, 17usize), (64, 128, 16, 16), (128, 5, 7, 9)] {
        let x = rng.vec(cin * h * w, -1.0, 1.0);
        let wt = rng.vec(cout * cin * 9, -0.5, 0.5);
        let b = rng.vec(cout, -0.5, 0.5);
        let dy = rng.vec(cout * h * w, -1.0, 1.0);
        let (tx, tw, tb) = (up(&ctx, [cin, h, w], &x)?, up(&ctx, [cout, cin, 9], &wt)?, up(&ctx, [cout, 1, 1], &b)?);
        let y = poisoned(&ctx, [cout, h, w])?;
        let got = run(&ctx, &conv::conv3x3_forward(&ctx, &tx, &tw, &tb, &y, true), &y)?;
        let want = r::conv3x3_forward(&f64s(&x), cin, h, w, &f64s(&wt), &f64s(&b), cout, true);
        rows.push(Row {
            what: format!("conv3x3_forward+relu {cin}->{cout} {h}x{w}"),
            err: err(&got, &want),
            tol: 2e-5,
        });
        let tflip = up(&ctx, [cin, cout, 9], &conv::transpose_flip(&wt, cout, cin))?;
        // The mask bits of the GPU's own forward output must match exactly.
        let packed = Mask::new(&ctx, [cout, h, w], "check mask")?;
        packed.words.fill(&ctx, f32::from_bits(0xdead_beef));
        let bits = run(&ctx, &relu::relu_mask_pack(&ctx, &y, &packed), &packed.words)?;
        let want_bits = r::relu_mask_pack(&f64s(&got));
        let wrong = bits.iter().zip(&want_bits).filter(|(g, w)| g.to_bits() != **w).count();
        rows.push(Row { what: format!("relu_mask_pack {cout}x{h}x{w} (wrong words)"), err: wrong as f64, tol: 0.0 });
        let ymask = Mask::from_words(&ctx, [cout, h, w], &r::relu_mask_pack(&want), "check mask")?;
        let dx = poisoned(&ctx, [cin, h, w])?;
        let op = conv::conv3x3_backward_input(&ctx, &up(&ctx, [cout, h, w], &dy)?, Some(&ymask), &tflip, &dx);
        let got = run(&ctx, &op, &dx)?;
        let want = r::conv3x3_backward_input(&r::relu_backward(&want, &f64s(&dy)), cout, h, w, &f64s(&wt), cin);
        rows.push(Row {
            what: format!("conv3x3_backward_input+mask {cout}->{cin} {h}x{w}"),
            err: err(&got, &want),
            tol: 2e-5,
        });
    }
    let (c, h, w) = (64, 15, 22);
    let f = rng.vec(c * h * w, -1.0, 1.0);
    let tf = up(&ctx, [c, h, w], &f)?;
    let g = poisoned(&ctx, [c, c, 1])?;
    let got = run(&ctx, &gram::gram_forward(&ctx, &tf, &g), &g)?;
    rows.push(Row {
        what: format!("gram_forward {c}x{h}x{w}"),
        err: err(&got, &r::gram_forward(&f64s(&f), c, h * w)),
        tol: 2e-5,
    });
    let dg = rng.vec(c * c, -1.0, 1.0);
    let df = poisoned(&ctx, [c, h, w])?;
    let got = run(&ctx, &gram::gram_backward(&ctx, &tf, &up(&ctx, [c, c, 1], &dg)?, &df, false), &df)?;
    rows.push(Row {
        what: format!("gram_backward {c}x{h}x{w}"),
        err: err(&got, &r::gram_backward(&f64s(&f), &f64s(&dg), c, h * w)),
        tol: 2e-5,
    });
    for kind in [Pool::Avg, Pool::Max] {
        let y = poisoned(&ctx, [c, h / 2, w / 2])?;
        let got = run(&ctx, &pool::pool_forward(&ctx, kind, &tf, &y), &y)?;
        let want = match kind {
            Pool::Avg => r::avgpool2x2_forward(&f64s(&f), c, h, w),
            Pool::Max => r::maxpool2x2_forward(&f64s(&f), c, h, w),
        };
        rows.push(Row { what: format!("{kind:?}pool2x2_forward {c}x{h}x{w}"), err: err(&got, &want), tol: 1e-6 });
    }
    let t = rng.vec(c * h * w, -1.0, 1.0);
    let losses = Tensor::new(&ctx, [2, 1, 1], "check losses")?;
    let got = run(&ctx, &reduce::mse_forward(&ctx, &tf, &up(&ctx, [c, h, w], &t)?, &losses, 0, 1.0), &losses)?;
    rows.push(Row {
        what: format!("mse_forward n={}", c * h * w),
        err: err(&got[..1], &[r::mse_forward(&f64s(&f), &f64s(&t))]),
        tol: 1e-5,
    });
    let img = rng.vec(3 * h * w, 0.0, 1.0);
    let got = run(&ctx, &reduce::tv_forward(&ctx, &up(&ctx, [3, h, w], &img)?, &losses, 1, 1.0), &losses)?;
    rows.push(Row {
        what: format!("tv_forward 3x{h}x{w}"),
        err: err(&got[1..2], &[r::tv_forward(&f64s(&img), 3, h, w)]),
        tol: 1e-5,
    });

    // One whole iteration, default layers, random weights, against the f64 pipeline.
    let m = model;
    let s = LossSettings {
        model: m,
        content_layers: vec![Tap::parse(m, "relu4_2")?],
        style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
            .iter()
            .map(|n| Tap::parse(m, n))
            .collect::<Result<_>>()?,
        style_layer_weights: vec![1.0; 5],
        content_weight: 1.0,
        style_weight: 1e3,
        style_loss: Default::default(),
        tv_weight: 1.0,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    };
    let (h, w) = (40, 32);
    let convs: Vec<ConvLayer> = m.convs()[..s.convs_needed()]
        .iter()
        .enumerate()
        .map(|(i, &(_, cin, cout))| {
            let a = (6.0 / (cin * 9) as f32).sqrt();
            ConvLayer::new(m, i, rng.vec(cout * cin * 9, -a, a), rng.vec(cout, -0.05, 0.05))
        })
        .collect();
    let mut net = Net::new(&ctx, &convs)?;
    let (content, style, x0) =
        (rng.vec(3 * h * w, 0.0, 1.0), rng.vec(3 * h * w, 0.0, 1.0), rng.vec(3 * h * w, 0.0, 1.0));
    // Both borders: the convs' zero padding, and the renderer's default reflected margin.
    for edge in [Edge::Zero, Edge::Reflect(crate::render::DEFAULT_EDGE_MARGIN)] {
        net.edge = edge;
        let margin = edge.margin(&s);
        let tc = compute_targets(&ctx, &net, &s, &content, h, w, true, false)?;
        let ts = compute_targets(&ctx, &net, &s, &style, h, w, false, true)?;
        let graph = Graph::new(
            &ctx,
            &net,
            &s,
            &Targets { content: tc.content, style: ts.style },
            &x0,
            h,
            w,
            AdamConfig::default(),
        )?;
        graph.evaluate(&ctx)?;
        let l = graph.read_losses(&ctx)?;
        let gpu_grad = graph.grad.read(&ctx)?;
        let (rc, _) = r::step::targets(&convs, &s, &f64s(&content), h, w, margin);
        let (_, rs) = r::step::targets(&convs, &s, &f64s(&style), h, w, margin);
        let (lc, ls, tv, dx) = r::step::evaluate(&convs, &s, &rc, &rs, &f64s(&x0), h, w, margin);
        let gl: Vec<f32> = l.content.iter().chain(&l.style).chain([&l.tv]).copied().collect();
        let rl: Vec<f64> = lc.iter().chain(&ls).chain([&tv]).copied().collect();
        let worst = gl.iter().zip(&rl).map(|(g, r)| err(&[*g], &[*r])).fold(0.0, f64::max);
        let border = if margin == 0 { "zero edge".to_string() } else { format!("reflected {margin} px") };
        let what = |t: &str| format!("whole {} iteration {w}x{h}, {border}: {t}", m.name());
        rows.push(Row { what: what("every loss term"), err: worst, tol: 5e-5 });
        rows.push(Row { what: what("image gradient"), err: err(&gpu_grad, &dx), tol: 5e-5 });
    }
    Ok((ctx.describe(), rows))
}

/// Runs every check on `adapter` (the whole iteration through `model`) and returns the table as
/// text and the number of failed rows.
pub fn check(adapter: &str, kernels: KernelOverrides, model: Model) -> Result<(String, usize)> {
    use std::fmt::Write as _;
    let (name, rows) = run_checks_for(adapter, kernels, model)?;
    let mut out = format!("numerical check on {name} (normwise relative error against the f64 reference)\n");
    let mut failed = 0;
    for r in &rows {
        let ok = r.err <= r.tol;
        failed += !ok as usize;
        let _ =
            writeln!(out, "{:<52} {:>9.2e}  tol {:>6.0e}  {}", r.what, r.err, r.tol, if ok { "ok" } else { "FAIL" });
    }
    if failed > 0 {
        let _ = writeln!(out, "{failed} of {} checks failed on {name}", rows.len());
    } else {
        let _ = writeln!(out, "{} checks passed", rows.len());
    }
    Ok((out, failed))
}
