//! The kernel rows: every kernel wrapper at the VGG19 layer shapes of one square input size,
//! timed by the [`Meter`] and rated against the measured [`Peak`].

use super::meter::{median, min, Meter};
use super::{KernelRow, Peak, Unit};
use crate::error::Result;
use crate::gpu::adam::{Adam, AdamConfig};
use crate::gpu::{conv, gram, image, pool, reduce, relu, Context, Op, Tensor};
use crate::model::{self, Pool, Preprocess};

/// splitmix64 for benchmark data (values only need to be ordinary, not checked).
pub(super) use crate::rng::SplitMix64 as Rng;

pub(super) fn rand_tensor(
    ctx: &Context,
    rng: &mut Rng,
    shape: [usize; 3],
    lo: f32,
    hi: f32,
    label: &str,
) -> Result<Tensor> {
    let n = shape.iter().product();
    Tensor::from_slice(ctx, shape, &rng.vec(n, lo, hi), label)
}

/// Collects measured rows at one input size.
struct Rows<'a, 'b> {
    meter: &'a Meter<'a>,
    peak: &'a Peak,
    size: u32,
    out: &'b mut Vec<KernelRow>,
    progress: &'a dyn Fn(&str),
}

impl Rows<'_, '_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kernel: &str,
        variant: &str,
        layer: &str,
        shape: String,
        unit: Unit,
        work: f64,
        op: Op,
    ) -> Result<()> {
        let (t, ts) = self.meter.measure(&op)?;
        drop(op);
        let med = median(&t);
        let min = min(&t);
        let rate = work / (med * 1e6);
        let peak = match unit {
            Unit::Flop => self.peak.gflops,
            Unit::Byte => self.peak.gbps,
        };
        let row = KernelRow {
            kernel: kernel.into(),
            variant: variant.into(),
            layer: layer.into(),
            size: self.size,
            shape,
            runs: t.len() as u32,
            timer: if ts { "gpu" } else { "wall" },
            median_ms: med,
            min_ms: min,
            work,
            unit,
            rate,
            peak_pct: if peak > 0.0 { 100.0 * rate / peak } else { f64::NAN },
        };
        (self.progress)(&format!(
            "{:<22} {:<10} {:<12} {:<20} {:>10.3} ms {:>9.2} {}",
            row.kernel,
            row.variant,
            row.layer,
            row.shape,
            row.median_ms,
            row.rate,
            unit_name(unit)
        ));
        self.out.push(row);
        Ok(())
    }
}

pub(super) fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Flop => "GFLOP/s",
        Unit::Byte => "GB/s",
    }
}

/// The conv3x3 variant the public wrappers select for a shape (see `gpu::conv`).
fn variant_name(v: conv::Variant) -> String {
    v.name()
}

fn chw(c: usize, h: usize, w: usize) -> String {
    format!("{c}x{h}x{w}")
}

/// Every kernel at the layer shapes of an `s` x `s` input.
pub(super) fn kernel_rows(
    ctx: &Context,
    meter: &Meter,
    s: u32,
    peak: &Peak,
    out: &mut Vec<KernelRow>,
    progress: &dyn Fn(&str),
) -> Result<()> {
    let mut rng = Rng::new(0x5EED ^ u64::from(s));
    let mut rows = Rows { meter, peak, size: s, out, progress };
    let s = s as usize;
    let f4 = |n: usize| 4.0 * n as f64;

    // conv3x3: each distinct (cin, cout, side) of the 16 layers, forward (bias + fused ReLU) and
    // backward-data (ReLU mask fused), as the renderer records them.
    let mut shapes: Vec<(usize, usize, usize, Vec<&str>)> = vec![];
    let vgg19 = model::Model::Vgg19;
    for (i, &(name, cin, cout)) in vgg19.convs().iter().enumerate() {
        let side = s >> vgg19.block_of(i).0;
        if side == 0 {
            continue;
        }
        match shapes.iter_mut().find(|(a, b, c, _)| (*a, *b, *c) == (cin, cout, side)) {
            Some(e) => e.3.push(name),
            None => shapes.push((cin, cout, side, vec![name])),
        }
    }
    for (cin, cout, h, names) in &shapes {
        let (cin, cout, h) = (*cin, *cout, *h);
        let layer = if names.len() > 1 { format!("{} x{}", names[0], names.len()) } else { names[0].to_string() };
        let shape = format!("{cin}->{cout} @ {h}x{h}");
        let flops = 2.0 * (cin * cout * 9 * h * h) as f64;
        let std = (2.0 / (9.0 * cin as f32)).sqrt();
        {
            let x = rand_tensor(ctx, &mut rng, [cin, h, h], -1.0, 1.0, "bench x")?;
            let w = rand_tensor(ctx, &mut rng, [cout, cin, 9], -std, std, "bench w")?;
            let b = rand_tensor(ctx, &mut rng, [cout, 1, 1], -0.01, 0.01, "bench b")?;
            let y = Tensor::new(ctx, [cout, h, h], "bench y")?;
            let op = conv::conv3x3_forward(ctx, &x, &w, &b, &y, true);
            let v = format!("relu {}", variant_name(conv::select_variant(ctx, cin, cout, h, h)));
            rows.add("conv3x3_forward", &v, &layer, shape.clone(), Unit::Flop, flops, op)?;
        }
        {
            let dy = rand_tensor(ctx, &mut rng, [cout, h, h], -1.0, 1.0, "bench dy")?;
            let signs: Vec<f64> = rng.vec(cout * h * h, -1.0, 1.0).iter().map(|&v| v as f64).collect();
            let mask =
                relu::Mask::from_words(ctx, [cout, h, h], &crate::reference::relu_mask_pack(&signs), "bench mask")?;
            let wt = rand_tensor(ctx, &mut rng, [cin, cout, 9], -std, std, "bench wt")?;
            let dx = Tensor::new(ctx, [cin, h, h], "bench dx")?;
            let op = conv::conv3x3_backward_input(ctx, &dy, Some(&mask), &wt, &dx);
            let v = format!("mask {}", variant_name(conv::select_variant(ctx, cout, cin, h, h)));
            rows.add("conv3x3_backward_input", &v, &layer, shape, Unit::Flop, flops, op)?;
        }
    }

    // Per block: the activation after its first ReLU (a style tap by default) and the pool that
    // ends it.
    let style_taps = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];
    let pools = ["pool1", "pool2", "pool3", "pool4"];
    for b in 0..5 {
        let c = [64, 128, 256, 512, 512][b]; // first conv of block b, either model
        let h = s >> b;
        if h == 0 {
            continue;
        }
        let n = c * h * h;
        let shape = chw(c, h, h);
        let x = rand_tensor(ctx, &mut rng, [c, h, h], -1.0, 1.0, "bench act")?;
        let g = rand_tensor(ctx, &mut rng, [c, h, h], -1.0, 1.0, "bench grad")?;
        let y = Tensor::new(ctx, [c, h, h], "bench out")?;
        let layer = style_taps[b];
        rows.add("relu_forward", "", layer, shape.clone(), Unit::Byte, f4(2 * n), relu::relu_forward(ctx, &x, &y))?;
        rows.add(
            "relu_backward",
            "",
            layer,
            shape.clone(),
            Unit::Byte,
            f4(3 * n),
            relu::relu_backward(ctx, &x, &g, &y),
        )?;
        let m = relu::Mask::new(ctx, [c, h, h], "bench mask")?;
        rows.add(
            "relu_mask_pack",
            "",
            layer,
            shape.clone(),
            Unit::Byte,
            f4(n) + n.div_ceil(8) as f64,
            relu::relu_mask_pack(ctx, &x, &m),
        )?;

        // Gram at the style tap: G = F F^T / (C H W), and its backward (not accumulating).
        let gm = Tensor::new(ctx, [c, c, 1], "bench gram")?;
        let flops = 2.0 * (c * c * h * h) as f64;
        rows.add("gram_forward", "", layer, shape.clone(), Unit::Flop, flops, gram::gram_forward(ctx, &x, &gm))?;
        let dg = rand_tensor(ctx, &mut rng, [c, c, 1], -1.0, 1.0, "bench dgram")?;
        rows.add(
            "gram_backward",
            "",
            layer,
            shape.clone(),
            Unit::Flop,
            flops,
            gram::gram_backward(ctx, &x, &dg, &y, false),
        )?;

        if b < pools.len() && h >= 2 {
            let p = Tensor::new(ctx, [c, h / 2, h / 2], "bench pooled")?;
            let dp = rand_tensor(ctx, &mut rng, [c, h / 2, h / 2], -1.0, 1.0, "bench dpool")?;
            let np = p.len();
            let layer = pools[b];
            for (kind, name) in [(Pool::Avg, "avgpool2x2"), (Pool::Max, "maxpool2x2")] {
                let fwd = format!("{name}_forward");
                let bwd = format!("{name}_backward");
                rows.add(
                    &fwd,
                    "",
                    layer,
                    shape.clone(),
                    Unit::Byte,
                    f4(n + np),
                    pool::pool_forward(ctx, kind, &x, &p),
                )?;
                // avg backward reads dy only; max backward also reads the forward input.
                let read = if kind == Pool::Max { n + np } else { np };
                rows.add(
                    &bwd,
                    "",
                    layer,
                    shape.clone(),
                    Unit::Byte,
                    f4(read + n),
                    pool::pool_backward(ctx, kind, &x, &dp, &y),
                )?;
            }
        }
    }

    // MSE at the content tap (relu4_2) and on the largest style Gram (relu4_1, 512 x 512).
    let losses = Tensor::new(ctx, [4, 1, 1], "bench losses")?;
    let h4 = s >> 3;
    let mse_shapes: Vec<(&str, [usize; 3])> =
        [("relu4_2", [512, h4, h4]), ("gram relu4_1", [512, 512, 1])].into_iter().filter(|(_, sh)| sh[1] > 0).collect();
    for (layer, sh) in mse_shapes {
        let n = sh.iter().product::<usize>();
        let x = rand_tensor(ctx, &mut rng, sh, -1.0, 1.0, "bench mse x")?;
        let t = rand_tensor(ctx, &mut rng, sh, -1.0, 1.0, "bench mse t")?;
        let dx = Tensor::new(ctx, sh, "bench mse dx")?;
        let shape = chw(sh[0], sh[1], sh[2]);
        rows.add(
            "mse_forward",
            "",
            layer,
            shape.clone(),
            Unit::Byte,
            f4(2 * n),
            reduce::mse_forward(ctx, &x, &t, &losses, 0, 1.0),
        )?;
        rows.add(
            "mse_backward",
            "",
            layer,
            shape.clone(),
            Unit::Byte,
            f4(3 * n),
            reduce::mse_backward(ctx, &x, &t, &dx, 1.0, false),
        )?;
        // What the renderer runs: loss and gradient in one pass.
        let op = reduce::mse_forward_backward(ctx, &x, &t, &losses, 0, 1.0, &dx, false);
        rows.add("mse_forward_backward", "", layer, shape, Unit::Byte, f4(3 * n), op)?;
    }

    // The image: TV, preprocess, Adam.
    let n = 3 * s * s;
    let shape = chw(3, s, s);
    let x = rand_tensor(ctx, &mut rng, [3, s, s], 0.0, 1.0, "bench image")?;
    let g = rand_tensor(ctx, &mut rng, [3, s, s], -1.0, 1.0, "bench image grad")?;
    let y = Tensor::new(ctx, [3, s, s], "bench image out")?;
    rows.add(
        "tv_forward",
        "",
        "image",
        shape.clone(),
        Unit::Byte,
        f4(n),
        reduce::tv_forward(ctx, &x, &losses, 1, 1.0),
    )?;
    rows.add(
        "tv_backward",
        "",
        "image",
        shape.clone(),
        Unit::Byte,
        f4(2 * n),
        reduce::tv_backward(ctx, &x, &y, 1.0, false),
    )?;
    let affine = Preprocess::Torch.affine();
    rows.add(
        "preprocess_forward",
        "",
        "image",
        shape.clone(),
        Unit::Byte,
        f4(2 * n),
        image::preprocess_forward(ctx, &affine, &x, &y),
    )?;
    rows.add(
        "preprocess_backward",
        "",
        "image",
        shape.clone(),
        Unit::Byte,
        f4(2 * n),
        image::preprocess_backward(ctx, &affine, &g, &y),
    )?;
    let adam = Adam::new(ctx, &x, &g, AdamConfig { clamp: Some((0.0, 1.0)), ..Default::default() })?;
    // Reads g, x, m, v; writes x, m, v.
    rows.add("adam_step", "clamp", "image", shape, Unit::Byte, f4(7 * n), adam.op)?;
    Ok(())
}
