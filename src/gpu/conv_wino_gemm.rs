//! conv3x3 as Winograd F(m x m, 3x3) on storage buffers ([`super::Variant::GemmWino`]), for
//! real GPUs: `shaders/conv3x3_wino_gemm.wgsl` transforms the weights (once, when the op is
//! built), the input and the output; the products are one batched GEMM per op on the
//! register-blocked core (`conv3x3_gemm_batched` of `shaders/conv3x3_gemm.wgsl`, with any
//! [`GemmTile`]). CPU twins: `reference::conv3x3_forward` / `conv3x3_backward_input`.

use super::conv::{dispatch_gemm, gemm_params, gemm_tile_for, GemmTile};
use super::kernel::{uniform, Bindings};
use super::{relu::Mask, Context, Op, Tensor};

const FILE: &str = "conv3x3_wino_gemm.wgsl";

uniform! {
    /// `shaders/conv3x3_wino_gemm.wgsl`'s `Params`.
    pub struct WinoGemmParams { cin: u32, cout: u32, h: u32, w: u32, tx: u32, tiles: u32, relu: u32, gx: u32 }
}

/// (tiles across, tiles in all) of F(m x m) output tiles over h x w.
fn tiles(m: usize, h: usize, w: usize) -> (usize, usize) {
    let tx = w.div_ceil(m);
    (tx, tx * h.div_ceil(m))
}

/// Why F(m x m) on buffers cannot run a `cin -> cout` conv at h x w here (its transformed input
/// or output, (m + 2)^2 values per channel and tile, would not fit one storage buffer binding),
/// or None.
pub fn wino_gemm_unsupported(
    limits: &wgpu::Limits,
    m: u32,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
) -> Option<String> {
    if m != 2 && m != 4 {
        return Some(format!("Winograd F({m}x{m}) is not implemented"));
    }
    let pts = ((m + 2) * (m + 2)) as u64;
    let (_, t) = tiles(m as usize, h, w);
    let bytes = 4 * pts * cin.max(cout) as u64 * t as u64;
    let max = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    (bytes > max).then(|| {
        format!(
            "Winograd F({m}x{m}) on buffers needs {} MiB of scratch in one binding (the adapter allows {})",
            bytes >> 20,
            max >> 20
        )
    })
}

/// y = conv3x3(x * mask, w) (+ b), ReLU fused when `relu`, as Winograd F(m x m) with the
/// products on the GEMM core with tile `tile`. x: (cin, h, w); w: (cout, cin, 9); y: (cout, h, w).
/// The backward-data pass is this with the transposed-flipped weights, the ReLU mask and no bias.
pub(crate) fn conv3x3_wino_gemm(
    ctx: &Context,
    m: u32,
    tile: GemmTile,
    x: &Tensor,
    mask: Option<&Mask>,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
    relu: bool,
) -> Op {
    let [cin, h, wd] = x.shape;
    let cout = y.shape[0];
    let t = (m + 2) as usize;
    let pts = t * t;
    let (tx, ntiles) = tiles(m as usize, h, wd);
    let tile = gemm_tile_for(ctx, tile);
    let two = m == 2;
    let params = |count: usize| {
        let (gx, gy) = ctx.grid(count.div_ceil(64) as u32);
        let p = WinoGemmParams {
            cin: cin as u32,
            cout: cout as u32,
            h: h as u32,
            w: wd as u32,
            tx: tx as u32,
            tiles: ntiles as u32,
            relu: relu as u32,
            gx,
        };
        (p, (gx, gy, 1))
    };

    // U = G g G^T, transformed now (the queue runs this before any later submission).
    let u = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("conv3x3 Winograd weights"),
        size: (4 * pts * cout * cin) as u64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    {
        let (p, g) = params(cout * cin);
        let entry = if two { "conv3x3_wino2_gemm_weights" } else { "conv3x3_wino4_gemm_weights" };
        let d = ctx.dispatch(FILE, entry, &p, &[("Wt", w), ("U", &u)], g);
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            d.record(&mut pass);
        }
        ctx.queue.submit([enc.finish()]);
    }

    // V and M live from this op's input transform to its output transform: shared by shape.
    let v = ctx.scratch_buffer(&format!("conv3x3 Winograd V {pts}x{cin}x{ntiles}"), (4 * pts * cin * ntiles) as u64);
    let mt = ctx.scratch_buffer(&format!("conv3x3 Winograd M {pts}x{cout}x{ntiles}"), (4 * pts * cout * ntiles) as u64);

    let input = {
        let (p, g) = params(cin * ntiles);
        match (mask, two) {
            (None, true) => ctx.dispatch(FILE, "conv3x3_wino2_gemm_input", &p, &[("X", x), ("V", &v)], g),
            (None, false) => ctx.dispatch(FILE, "conv3x3_wino4_gemm_input", &p, &[("X", x), ("V", &v)], g),
            (Some(mk), _) => {
                let entry = if two { "conv3x3_wino2_gemm_input_masked" } else { "conv3x3_wino4_gemm_input_masked" };
                ctx.dispatch(FILE, entry, &p, &[("X", x), ("M", &mk.words), ("V", &v)], g)
            }
        }
    };
    let gemm = {
        let (p, (gx, gy, gz)) = gemm_params(ctx, tile, cin, cout, 1, ntiles, false);
        let binds: &Bindings<'_> = &[("X", &v), ("Wt", &u), ("Y", &mt)];
        dispatch_gemm(ctx, tile, "conv3x3_gemm_batched", &p, binds, (gx, gy, gz * pts as u32))
    };
    let output = {
        let (p, g) = params(cout * ntiles);
        match b {
            None => {
                let entry = if two { "conv3x3_wino2_gemm_output" } else { "conv3x3_wino4_gemm_output" };
                ctx.dispatch(FILE, entry, &p, &[("Mt", &mt), ("Y", y)], g)
            }
            Some(b) => {
                let entry = if two { "conv3x3_wino2_gemm_output_bias" } else { "conv3x3_wino4_gemm_output_bias" };
                ctx.dispatch(FILE, entry, &p, &[("Mt", &mt), ("B", b), ("Y", y)], g)
            }
        }
    };
    Op { dispatches: vec![input, gemm, output], scratch: vec![u, v, mt], textures: vec![] }
}
