//! Exact tiled rendering: any image size on any GPU, with the same result as an untiled render.
//!
//! The style loss depends on the image only through Gram matrices, and the content and TV losses
//! are sums over positions, so all of them can be accumulated tile by tile:
//! 1. pass 1, per tile: forward on the tile plus a halo as wide as the deepest tap's receptive
//!    radius (so tapped activations in the tile's interior are exact), then accumulate each
//!    style layer's Gram matrix and the content loss over the interior only (activations outside
//!    the interior are masked to zero, and the normalisation is the whole image's);
//! 2. dL/dG from the whole-image Grams, once;
//! 3. pass 2, per tile: forward again, inject the tap gradients of the interior positions only
//!    (content: 2w(F-P)/N, style: (dG + dG^T) F / (C N)), backward to the tile's pixels, and
//!    scatter-ADD the whole region's pixel gradient into the image gradient. The interiors
//!    partition the positions, and every path from an interior position to a pixel stays inside
//!    the region with exact forward values (halo = receptive radius), so the sum is exact.
//!
//! Tile origins and the halo are multiples of 2^pools so every tile pools on the whole image's
//! grid; image borders keep the network's zero padding, tile borders add none that matters.
//! The image, its gradient and the optimiser state ([`optim`]: Adam or L-BFGS, and the
//! iterate average) live in host memory; the TV loss (a cheap stencil) is computed there too.
//!
//! With a reflected margin r (`--edge reflect`, [`crate::runner::Net::edge`]) the tiles are cut
//! from the image padded by reflection on the host (the untiled graph's network input, before
//! the affine map), their interiors partition the image's positions only (the losses' positions),
//! and the padded gradient is folded back onto the pixels (`model::reflect_fold`, the adjoint):
//! the same function as the untiled graph's, so still exact.

use crate::error::{Error, Result};
use crate::gpu::{gram, reduce, tile, Context, Op, Tensor};
use crate::model::{reflect_fold, reflect_pad, LossSettings, Model, Pool, StyleLoss, Tap};
use crate::runner::{backward, Forward, Losses, Net};
use std::collections::HashMap;

pub mod optim;

/// A tile: its interior (the positions it owns) and its region (interior + halo, clipped to the
/// network input), both (y0, x0, y1, x1) in pixels of the network input (the image padded by
/// the margin r on every side: the image's pixel (y, x) is (y + r, x + r)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// The positions the tile owns: (y0, x0, y1, x1).
    pub interior: [usize; 4],
    /// Interior plus halo, clipped to the image: (y0, x0, y1, x1).
    pub region: [usize; 4],
}

/// (halo, alignment) in pixels: the receptive radius of the deepest tap rounded up to the
/// alignment 2^pools.
pub fn halo_and_align(s: &LossSettings) -> (usize, usize) {
    let (mut r, mut stride) = (0usize, 1usize);
    for pooled in s.pools() {
        r += stride; // a 3x3 conv reaches one position further on each side
        if pooled {
            r += stride; // a 2x2 window reaches one position further on one side
            stride *= 2;
        }
    }
    (r.next_multiple_of(stride), stride)
}

/// Tiles of interior side `tile` (rounded up to the alignment) covering an h x w image with a
/// reflected margin of `margin` pixels (a multiple of the alignment; 0: none).
pub fn plan(s: &LossSettings, h: usize, w: usize, margin: usize, tile: usize) -> Vec<Tile> {
    let (halo, align) = halo_and_align(s);
    assert!(margin.is_multiple_of(align), "margin {margin} not aligned to {align}");
    let t = tile.max(1).next_multiple_of(align);
    let (ph, pw) = (h + 2 * margin, w + 2 * margin);
    let mut out = vec![];
    for y0 in (margin..margin + h).step_by(t) {
        for x0 in (margin..margin + w).step_by(t) {
            let (y1, x1) = ((y0 + t).min(margin + h), (x0 + t).min(margin + w));
            let region = [y0.saturating_sub(halo), x0.saturating_sub(halo), (y1 + halo).min(ph), (x1 + halo).min(pw)];
            out.push(Tile { interior: [y0, x0, y1, x1], region });
        }
    }
    out
}

/// Downsampling level of a tap in `m` (how many pools precede it).
fn level(m: Model, t: Tap) -> usize {
    t.level(m)
}

/// The interior of `tile` in region coordinates at downsampling level `l`. The region's origin
/// is aligned, so this is exact where the interior ends inside the image, and floor pooling
/// gives the last whole position where it ends at the image's edge (the region's own edge
/// without a margin; with one, the untiled graph's crop ends there too).
fn level_rect(tile: &Tile, l: usize) -> [usize; 4] {
    let [ry0, rx0, _, _] = tile.region;
    let [y0, x0, y1, x1] = tile.interior;
    [(y0 - ry0) >> l, (x0 - rx0) >> l, (y1 - ry0) >> l, (x1 - rx0) >> l]
}

/// Ops and buffers for every tile of one region shape.
struct RegionGraph {
    x: Tensor,
    grad: Tensor,
    rects: wgpu::Buffer,
    /// Masked content targets (zero outside the interior), one per content tap.
    content_t: Vec<Tensor>,
    masks: Vec<Op>,
    pass1: Vec<Op>,
    pass2: Vec<Op>,
    _keep: Vec<Tensor>,
    fwd: Forward,
}

impl RegionGraph {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ctx: &Context,
        net: &Net,
        s: &LossSettings,
        rh: usize,
        rw: usize,
        full: (usize, usize),
        g_acc: &[Tensor],
        dgrams: &[Tensor],
        losses: &Tensor,
        with_backward: bool,
    ) -> Result<RegionGraph> {
        let (h, w) = full;
        let x = Tensor::new(ctx, [3, rh, rw], "tile image")?;
        let grad = Tensor::new(ctx, [3, rh, rw], "tile gradient")?;
        let rects = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tile rects"),
            size: 4 * 4 * 6,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let fwd = Forward::new(ctx, net, s, &x, 0, s.convs_needed(), with_backward)?;
        let nc = s.content_layers.len();
        let cw = s.content_weight / nc.max(1) as f32;
        // Masked copies of every tapped activation.
        let mut masked: HashMap<Tap, Tensor> = HashMap::new();
        let mut mask_ops = vec![];
        for &t in s.content_layers.iter().chain(&s.style_layers) {
            if let std::collections::hash_map::Entry::Vacant(e) = masked.entry(t) {
                let a = fwd.tap(t);
                let m = Tensor::new(ctx, a.shape, "masked tap")?;
                mask_ops.push(tile::mask_rect(ctx, &rects, level(s.model, t), a, &m));
                e.insert(m);
            }
        }
        let n_at = |t: Tap| (h >> level(s.model, t)) * (w >> level(s.model, t));
        let mut content_t = vec![];
        let mut pass1 = vec![];
        for (k, &t) in s.content_layers.iter().enumerate() {
            let m = &masked[&t];
            let target = Tensor::new(ctx, m.shape, "tile content target")?;
            let scale = cw / (m.shape[0] * n_at(t)) as f32;
            pass1.push(reduce::mse_sum_forward(ctx, m, &target, losses, k, scale, true));
            content_t.push(target);
        }
        for (k, &t) in s.style_layers.iter().enumerate() {
            let m = &masked[&t];
            let scale = 1.0 / (m.shape[0] * n_at(t)) as f32;
            pass1.push(gram::gram_forward_scaled(ctx, m, &g_acc[k], scale, true));
        }
        let mut pass2 = vec![];
        let keep: Vec<Tensor> = masked.values().cloned().collect();
        if with_backward {
            let mut content = |ops: &mut Vec<Op>, k: usize, g: &Tensor, have: bool, _free: &Tensor| {
                let t = s.content_layers[k];
                let m = &masked[&t];
                // mse_backward scales by 2 weight / len: make that 2 cw / (C N_image).
                let weight = cw * m.len() as f32 / (m.shape[0] * n_at(t)) as f32;
                ops.push(reduce::mse_backward(ctx, m, &content_t[k], g, weight, have));
            };
            let mut style = |ops: &mut Vec<Op>, k: usize, g: &Tensor, have: bool, _free: &Tensor| {
                let t = s.style_layers[k];
                let m = &masked[&t];
                let scale = 1.0 / (m.shape[0] * n_at(t)) as f32;
                ops.push(gram::gram_backward_scaled(ctx, m, &dgrams[k], g, scale, have));
            };
            backward(ctx, net, s, &fwd, &grad, &mut pass2, &mut content, &mut style)?;
        }
        Ok(RegionGraph { x, grad, rects, content_t, masks: mask_ops, pass1, pass2, _keep: keep, fwd })
    }

    /// Forward and masks (shared by both passes), then the pass's own ops.
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, second: bool) {
        for op in self.fwd.ops.iter().chain(&self.masks) {
            op.record(pass);
        }
        for op in if second { &self.pass2 } else { &self.pass1 } {
            op.record(pass);
        }
    }
}

/// Copies the rectangle `rect` (y0, x0, y1, x1) of every plane of a (c, h, w) map into a
/// (c, y1-y0, x1-x0) one.
fn crop(src: &[f32], c: usize, h: usize, w: usize, rect: [usize; 4]) -> Vec<f32> {
    let [y0, x0, y1, x1] = rect;
    let mut out = Vec::with_capacity(c * (y1 - y0) * (x1 - x0));
    for k in 0..c {
        for y in y0..y1 {
            out.extend_from_slice(&src[(k * h + y) * w + x0..(k * h + y) * w + x1]);
        }
    }
    out
}

/// The interior rectangle of `tile` at every level, clipped to the region's size there.
fn rects_bytes(tile: &Tile, rh: usize, rw: usize) -> Vec<u8> {
    let mut v = vec![];
    for l in 0..6 {
        let [a, b, c, d] = level_rect(tile, l);
        for x in [a, b, c.min(rh >> l), d.min(rw >> l)] {
            v.extend_from_slice(&(x as u32).to_le_bytes());
        }
    }
    v
}

/// The TV loss (same definition as reduce.wgsl's) on the host, its gradient added into `g`.
fn tv_host(x: &[f32], h: usize, w: usize, weight: f32, g: &mut [f32]) -> f32 {
    let scale = weight as f64 / x.len() as f64;
    let mut sum = 0.0f64;
    for k in 0..3 {
        for y in 0..h {
            for xx in 0..w {
                let i = (k * h + y) * w + xx;
                for (ok, j) in [(xx + 1 < w, i + 1), (y + 1 < h, i + w)] {
                    if ok {
                        let d = (x[j] - x[i]) as f64;
                        sum += d * d;
                        g[j] += (2.0 * scale * d) as f32;
                        g[i] -= (2.0 * scale * d) as f32;
                    }
                }
            }
        }
    }
    (sum * scale) as f32
}

/// Everything for exact tiled optimisation of an h x w image.
pub struct TiledGraph {
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// The reflected margin (0: the convs' zero padding only), from the net's edge.
    pub margin: usize,
    /// The tiles covering the image.
    pub tiles: Vec<Tile>,
    s: LossSettings,
    graphs: HashMap<(usize, usize), RegionGraph>,
    /// Whole-image Gram accumulators and their gradients, one per style tap.
    g_acc: Vec<Tensor>,
    dgrams: Vec<Tensor>,
    _style_targets: Vec<Tensor>,
    losses: Tensor,
    between: Vec<Op>,
    /// Per tile, per content tap: the masked content target of the tile's region.
    content_tiles: Vec<Vec<Vec<f32>>>,
    /// The image (3, h, w) RGB, in \[0,1\] but for unprojected L-BFGS's iterates
    /// (`--lbfgs-clamp off`); the one [`TiledGraph::evaluate`] measures.
    pub image: Vec<f32>,
    /// dLoss/dImage after [`TiledGraph::evaluate`], (3, h, w).
    pub grad: Vec<f32>,
    tv: f32,
}

impl TiledGraph {
    /// Builds the graphs for `tile`-sized interiors. The `content` image (pixels, height, width)
    /// gives the content targets, computed tile by tile; `style_targets` are the Gram targets
    /// (e.g. from [`style_targets`]).
    pub fn new(
        ctx: &Context,
        net: &Net,
        s: &LossSettings,
        content: (&[f32], usize, usize),
        style_targets: Vec<Tensor>,
        init: &[f32],
        tile: usize,
    ) -> Result<TiledGraph> {
        s.validate()?;
        let (cpx, h, w) = content;
        if init.len() != 3 * h * w {
            return Err(Error::InvalidArgument("the initial image's size differs from the content's".into()));
        }
        let (nc, ns) = (s.content_layers.len(), s.style_layers.len());
        let losses = Tensor::new(ctx, [nc + ns + 1, 1, 1], "losses")?;
        let mut g_acc = vec![];
        let mut dgrams = vec![];
        for t in &s.style_layers {
            let c = t.channels(s.model);
            g_acc.push(Tensor::new(ctx, [c, c, 1], "gram accumulator")?);
            dgrams.push(Tensor::new(ctx, [c, c, 1], "gram gradient")?);
        }
        // Content targets: the content image's tapped activations, read back per tile interior
        // into maps of the padded input's positions (only the image's are ever written or read).
        let margin = net.edge.margin(s);
        let (ph, pw) = (h + 2 * margin, w + 2 * margin);
        let cpad = reflect_pad(cpx, 3, h, w, margin);
        let tiles = plan(s, h, w, margin, tile);
        let mut graphs: HashMap<(usize, usize), RegionGraph> = HashMap::new();
        let mut maps: Vec<(Vec<f32>, [usize; 3])> = s
            .content_layers
            .iter()
            .map(|&t| {
                let shape = [t.channels(s.model), ph >> level(s.model, t), pw >> level(s.model, t)];
                (vec![0.0; shape.iter().product()], shape)
            })
            .collect();
        for t in &tiles {
            let padded = (&cpad[..], ph, pw);
            let g = run_tile(ctx, net, s, &mut graphs, t, (h, w), padded, &g_acc, &dgrams, &losses, None, false, true)?;
            for (k, &tap) in s.content_layers.iter().enumerate() {
                let l = level(s.model, tap);
                let a = g.fwd.tap(tap);
                let v = a.read(ctx)?;
                let [c, ah, aw] = a.shape;
                let [y0, x0, y1, x1] = level_rect(t, l);
                let (y1, x1) = (y1.min(ah), x1.min(aw));
                let (ry, rx) = (t.region[0] >> l, t.region[1] >> l);
                let (map, [_, mh, mw]) = &mut maps[k];
                for ch in 0..c {
                    for y in y0..y1 {
                        let src = (ch * ah + y) * aw;
                        let dst = (ch * *mh + ry + y) * *mw + rx;
                        map[dst + x0..dst + x1].copy_from_slice(&v[src + x0..src + x1]);
                    }
                }
            }
        }
        // Per tile: the region's crop of each map, zero outside the interior (the masked
        // activations are zero there too, so only interior positions count).
        let mut content_tiles = vec![];
        for t in &tiles {
            let mut per = vec![];
            for (k, &tap) in s.content_layers.iter().enumerate() {
                let l = level(s.model, tap);
                let (map, [c, mh, mw]) = &maps[k];
                let (ry0, rx0) = (t.region[0] >> l, t.region[1] >> l);
                let (rh, rw) = ((t.region[2] - t.region[0]) >> l, (t.region[3] - t.region[1]) >> l);
                let (rh, rw) = (rh.min(mh - ry0), rw.min(mw - rx0));
                let region = crop(map, *c, *mh, *mw, [ry0, rx0, ry0 + rh, rx0 + rw]);
                let [y0, x0, y1, x1] = level_rect(t, l);
                let masked: Vec<f32> = region
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let (y, x) = ((i / rw) % rh, i % rw);
                        if y >= y0 && x >= x0 && y < y1 && x < x1 {
                            v
                        } else {
                            0.0
                        }
                    })
                    .collect();
                per.push(masked);
            }
            content_tiles.push(per);
        }
        let mut between = vec![];
        for (k, _) in s.style_layers.iter().enumerate() {
            let sw = s.style_weight * s.style_layer_weights[k];
            between.push(reduce::mse_forward(ctx, &g_acc[k], &style_targets[k], &losses, nc + k, sw));
            between.push(reduce::mse_backward(ctx, &g_acc[k], &style_targets[k], &dgrams[k], sw, false));
        }
        Ok(TiledGraph {
            h,
            w,
            margin,
            tiles,
            s: s.clone(),
            graphs,
            g_acc,
            dgrams,
            _style_targets: style_targets,
            losses,
            between,
            content_tiles,
            image: init.to_vec(),
            grad: vec![0.0; 3 * h * w],
            tv: 0.0,
        })
    }

    /// Pass 1 (`second` false) or 2 of tile `i`, its region graph built on first use.
    /// `padded`: the image padded by the margin.
    fn tile_pass(&mut self, ctx: &Context, net: &Net, padded: &[f32], i: usize, second: bool) -> Result<&RegionGraph> {
        let t = self.tiles[i];
        let content = Some(&self.content_tiles[i]);
        let full = (self.h, self.w);
        let r = self.margin;
        let padded = (padded, self.h + 2 * r, self.w + 2 * r);
        let (g_acc, dgrams, losses) = (&self.g_acc, &self.dgrams, &self.losses);
        run_tile(ctx, net, &self.s, &mut self.graphs, &t, full, padded, g_acc, dgrams, losses, content, second, true)
    }

    /// Losses and the image gradient at the current image (two passes over the tiles).
    pub fn evaluate(&mut self, ctx: &Context, net: &Net) -> Result<()> {
        let (h, w, r) = (self.h, self.w, self.margin);
        let (ph, pw) = (h + 2 * r, w + 2 * r);
        let padded = reflect_pad(&self.image, 3, h, w, r);
        for g in &self.g_acc {
            g.fill(ctx, 0.0);
        }
        self.losses.fill(ctx, 0.0);
        for i in 0..self.tiles.len() {
            self.tile_pass(ctx, net, &padded, i, false)?;
        }
        ctx.run(&self.between.iter().collect::<Vec<_>>())?;
        // The gradient of the padded input, then folded onto the image (r = 0: the same).
        let mut grad = vec![0.0f32; 3 * ph * pw];
        for i in 0..self.tiles.len() {
            let rg = self.tile_pass(ctx, net, &padded, i, true)?.grad.read(ctx)?;
            let [y0, x0, y1, x1] = self.tiles[i].region;
            let (rh, rw) = (y1 - y0, x1 - x0);
            for k in 0..3 {
                for y in 0..rh {
                    let dst = (k * ph + y0 + y) * pw + x0;
                    let src = (k * rh + y) * rw;
                    for x in 0..rw {
                        grad[dst + x] += rg[src + x];
                    }
                }
            }
        }
        self.grad = if r == 0 { grad } else { reflect_fold(&grad, 3, h, w, r) };
        self.tv = tv_host(&self.image, h, w, self.s.tv_weight, &mut self.grad);
        Ok(())
    }

    /// The loss terms of the last [`TiledGraph::evaluate`].
    pub fn read_losses(&self, ctx: &Context) -> Result<Losses> {
        let v = self.losses.read(ctx)?;
        let (nc, ns) = (self.s.content_layers.len(), self.s.style_layers.len());
        Ok(Losses { content: v[..nc].to_vec(), style: v[nc..nc + ns].to_vec(), tv: self.tv, temporal: None })
    }

    /// The distinct region shapes (each has one set of GPU buffers).
    pub fn region_shapes(&self) -> Vec<(usize, usize)> {
        self.graphs.keys().copied().collect()
    }
}

/// The style image's Gram matrices (pixels (3, h, w)), accumulated tile by tile: for style
/// images too large for one graph.
pub fn style_targets(
    ctx: &Context,
    net: &Net,
    s: &LossSettings,
    px: &[f32],
    h: usize,
    w: usize,
    tile: usize,
) -> Result<Vec<Tensor>> {
    let (nc, ns) = (s.content_layers.len(), s.style_layers.len());
    let acc: Vec<Tensor> = s
        .style_layers
        .iter()
        .map(|t| Tensor::new(ctx, [t.channels(s.model), t.channels(s.model), 1], "style target"))
        .collect::<Result<_>>()?;
    let dgrams: Vec<Tensor> = s
        .style_layers
        .iter()
        .map(|t| Tensor::new(ctx, [t.channels(s.model), t.channels(s.model), 1], "unused"))
        .collect::<Result<_>>()?;
    let scratch = Tensor::new(ctx, [nc + ns + 1, 1, 1], "scratch losses")?;
    for a in &acc {
        a.fill(ctx, 0.0);
    }
    let mut graphs = HashMap::new();
    let r = net.edge.margin(s);
    let padded = reflect_pad(px, 3, h, w, r);
    for t in plan(s, h, w, r, tile) {
        let p = (&padded[..], h + 2 * r, w + 2 * r);
        run_tile(ctx, net, s, &mut graphs, &t, (h, w), p, &acc, &dgrams, &scratch, None, false, false)?;
    }
    Ok(acc)
}

/// Uploads one tile (pixels, interior rectangles, content targets) and runs one pass on it,
/// building the graph of the tile's region shape on first use. `full`: the image's size (the
/// losses' normalisation); `padded`: the network input's pixels (the image padded by the
/// margin) and its size, which the tile's region is cut from.
#[allow(clippy::too_many_arguments)]
fn run_tile<'a>(
    ctx: &Context,
    net: &Net,
    s: &LossSettings,
    graphs: &'a mut HashMap<(usize, usize), RegionGraph>,
    t: &Tile,
    full: (usize, usize),
    padded: (&[f32], usize, usize),
    g_acc: &[Tensor],
    dgrams: &[Tensor],
    losses: &Tensor,
    content: Option<&Vec<Vec<f32>>>,
    second: bool,
    with_backward: bool,
) -> Result<&'a RegionGraph> {
    let (image, h, w) = padded;
    let [y0, x0, y1, x1] = t.region;
    let (rh, rw) = (y1 - y0, x1 - x0);
    if let std::collections::hash_map::Entry::Vacant(e) = graphs.entry((rh, rw)) {
        e.insert(RegionGraph::new(ctx, net, s, rh, rw, full, g_acc, dgrams, losses, with_backward)?);
    }
    let g = &graphs[&(rh, rw)];
    g.x.write(ctx, &crop(image, 3, h, w, t.region));
    ctx.queue.write_buffer(&g.rects, 0, &rects_bytes(t, rh, rw));
    match content {
        Some(c) => c.iter().zip(&g.content_t).for_each(|(v, ct)| ct.write(ctx, v)),
        None => g.content_t.iter().for_each(|ct| ct.fill(ctx, 0.0)),
    }
    ctx.scoped("running a tile", || {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            g.record(&mut pass, second);
        }
        ctx.queue.submit([enc.finish()]);
    })?;
    ctx.wait()?;
    Ok(g)
}

/// Bytes of GPU buffers an untiled graph of an h x w image holds (as `runner::Forward` and
/// `Graph` allocate them: image-sized state, tapped activations, ReLU masks at 1 bit per element,
/// max-pool inputs, the two activation/gradient buffers, Gram matrices and the split-K partials
/// of [`gram_partials_bytes`]; with `--style-loss mean-cov` its targets and scratch), and the
/// largest single buffer, without allocating: what `--tile auto` compares with the adapter's
/// limits and the memory budget.
pub fn graph_bytes(s: &LossSettings, h: usize, w: usize) -> (u64, u64) {
    let n = s.convs_needed();
    let taps: Vec<Tap> = s.content_layers.iter().chain(&s.style_layers).copied().collect();
    let pooled = s.pools();
    let mut total = 0u64;
    let mut largest = 0u64;
    let (mut hh, mut ww) = (h, w);
    let mut add = |bytes: u64, total: &mut u64| {
        *total += bytes;
        largest = largest.max(bytes);
    };
    let f4 = |elems: usize| elems as u64 * 4;
    for _ in 0..7 {
        add(f4(3 * h * w), &mut total); // image, input, gradient, Adam m and v, EMA, candidate
    }
    let mut max_act = 3 * h * w;
    for i in 0..n {
        let c = s.model.convs()[i].2;
        let len = c * hh * ww;
        max_act = max_act.max(len);
        if taps.contains(&Tap::Conv(i)) {
            add(f4(len), &mut total); // the pre-ReLU output
        } else {
            add(f4(len.div_ceil(32)), &mut total); // the ReLU mask bits
        }
        if taps.contains(&Tap::Relu(i)) || (pooled[i] && s.pool == Pool::Max) {
            add(f4(len), &mut total); // the ReLU output
        }
        if pooled[i] {
            hh /= 2;
            ww /= 2;
            if taps.contains(&Tap::Pool(s.model.block_of(i).0)) {
                add(f4(c * hh * ww), &mut total);
            }
        }
    }
    add(f4(max_act), &mut total); // the two activation / gradient buffers
    add(f4(max_act), &mut total);
    for t in &s.style_layers {
        let c = t.channels(s.model);
        if s.style_loss == StyleLoss::MeanCov {
            add(f4(c * c + c), &mut total); // the target's moments [S; mu]
            add(f4(c * c), &mut total); // R = C_t^{1/2}
            add(f4(c), &mut total); // mu_t
        } else {
            add(f4(3 * c * c), &mut total); // Gram, target, gradient
        }
    }
    if s.style_loss == StyleLoss::MeanCov {
        // gpu::meancov::MeanCovScratch, shared by the taps: six c x c matrices at the widest tap.
        let c = s.style_layers.iter().map(|t| t.channels(s.model)).max().unwrap_or(0);
        for _ in 0..6 {
            add(f4(c * c), &mut total);
        }
        add(f4(2 * c + 4), &mut total);
    }
    total += gram_partials_bytes(s, h, w);
    (total, largest)
}

/// Bytes of the split-K partial Grams of the style taps at h x w ([`gram::partials_bytes`]) and
/// of the GEMM Gram backward's S per distinct channel count ([`gram::backward_scratch_bytes`]):
/// counted by [`graph_bytes`] always, held only where the Gram runs on storage buffers (GPUs;
/// CPU drivers' texture variant keeps them in a texture).
pub fn gram_partials_bytes(s: &LossSettings, h: usize, w: usize) -> u64 {
    let pooled = s.pools();
    let (mut hh, mut ww) = (h, w);
    let mut widths: Vec<usize> = s.style_layers.iter().map(|t| t.channels(s.model)).collect();
    widths.sort_unstable();
    widths.dedup();
    let mut bytes: u64 = widths.iter().map(|&c| gram::backward_scratch_bytes(c)).sum();
    for i in 0..s.convs_needed() {
        let c = s.model.convs()[i].2;
        let at = |t: &Tap| *t == Tap::Conv(i) || *t == Tap::Relu(i);
        bytes += s.style_layers.iter().filter(|t| at(t)).count() as u64 * gram::partials_bytes(c, hh * ww);
        if pooled[i] {
            hh /= 2;
            ww /= 2;
            let pool = Tap::Pool(s.model.block_of(i).0);
            bytes += s.style_layers.iter().filter(|&&t| t == pool).count() as u64 * gram::partials_bytes(c, hh * ww);
        }
    }
    bytes
}

/// The tile interior side for `--tile auto`: None when the untiled graph fits `budget` bytes and
/// the adapter's largest buffer binding `max_binding`, else the largest aligned interior whose
/// tile graph fits (an error when not even the smallest does).
pub fn choose_tile(s: &LossSettings, h: usize, w: usize, budget: u64, max_binding: u64) -> Result<Option<usize>> {
    let fits = |hh: usize, ww: usize| {
        let (total, largest) = graph_bytes(s, hh, ww);
        total <= budget && largest <= max_binding
    };
    if fits(h, w) {
        return Ok(None);
    }
    let (halo, align) = halo_and_align(s);
    let mut t = h.max(w).next_multiple_of(align);
    while t >= align {
        let side = |full: usize| (t + 2 * halo).min(full);
        if fits(side(h), side(w)) {
            return Ok(Some(t));
        }
        t -= align;
    }
    Err(Error::TooLarge(format!(
        "even the smallest tile ({align} px plus a {halo} px halo) needs more than the {} MiB \
         budget; raise --max-gpu-memory or choose shallower layers",
        budget >> 20
    )))
}

impl TiledGraph {
    /// Estimated GPU bytes of the tile graphs (one per region shape; see [`graph_bytes`]).
    pub fn gpu_bytes_estimate(&self) -> u64 {
        self.graphs.keys().map(|&(h, w)| graph_bytes(&self.s, h, w).0).sum()
    }
}
