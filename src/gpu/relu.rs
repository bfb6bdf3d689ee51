//! ReLU wrappers (`shaders/relu.wgsl`); CPU twins in `reference::relu_*`.

use super::kernel::uniform;
use super::{Context, Op, Tensor};

const FILE: &str = "relu.wgsl";

uniform! {
    /// `shaders/relu.wgsl`'s `Params`.
    pub struct ReluParams { n: u32, gx: u32, _p0: u32, _p1: u32 }
}

/// (workgroups along x, y) for n elements in 256-wide workgroups.
pub(crate) fn grid(ctx: &Context, n: usize) -> (u32, u32) {
    ctx.grid((n as u32).div_ceil(256))
}

/// y = max(x, 0). x, y: any shape, same length.
pub fn relu_forward(ctx: &Context, x: &Tensor, y: &Tensor) -> Op {
    assert_eq!(x.len(), y.len());
    let (gx, gy) = grid(ctx, x.len());
    let p = ReluParams { n: x.len() as u32, gx, ..Default::default() };
    ctx.op(ctx.dispatch(FILE, "relu_forward", &p, &[("A", x), ("Out", y)], (gx, gy, 1)))
}

/// dx = dy * (y > 0), y the forward output.
pub fn relu_backward(ctx: &Context, y: &Tensor, dy: &Tensor, dx: &Tensor) -> Op {
    assert_eq!(y.len(), dy.len());
    assert_eq!(y.len(), dx.len());
    let (gx, gy) = grid(ctx, y.len());
    let p = ReluParams { n: y.len() as u32, gx, ..Default::default() };
    ctx.op(ctx.dispatch(FILE, "relu_backward", &p, &[("A", y), ("G", dy), ("Out", dx)], (gx, gy, 1)))
}

/// A ReLU-backward mask at one bit per element (bit k of word j: element 32 j + k was > 0),
/// written by [`relu_mask_pack`] and read by `conv::conv3x3_backward_input`. The runner keeps
/// these instead of the f32 activations: 32x less memory between the forward and the backward.
#[derive(Clone, Debug)]
pub struct Mask {
    /// ceil(len / 32) u32 words (a Tensor of that many 4-byte elements).
    pub words: Tensor,
    /// Elements covered: (c, h, w) of the activation.
    pub shape: [usize; 3],
}

impl Mask {
    /// A zeroed mask for an activation of `shape`.
    pub fn new(ctx: &Context, shape: [usize; 3], label: &str) -> crate::error::Result<Mask> {
        let n: usize = shape.iter().product();
        Ok(Mask { words: Tensor::new(ctx, [n.div_ceil(32).max(1), 1, 1], label)?, shape })
    }
    /// A mask holding `words` (as [`crate::reference::relu_mask_pack`] lays them out).
    pub fn from_words(ctx: &Context, shape: [usize; 3], words: &[u32], label: &str) -> crate::error::Result<Mask> {
        let n: usize = shape.iter().product();
        assert_eq!(words.len(), n.div_ceil(32), "mask words vs shape for {label}");
        let f: Vec<f32> = words.iter().map(|&w| f32::from_bits(w)).collect();
        let words = if f.is_empty() {
            Tensor::new(ctx, [1, 1, 1], label)?
        } else {
            Tensor::from_slice(ctx, [f.len(), 1, 1], &f, label)?
        };
        Ok(Mask { words, shape })
    }
    /// Elements covered.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether it covers no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The words, read back (waits for the GPU).
    pub fn read(&self, ctx: &Context) -> crate::error::Result<Vec<u32>> {
        Ok(self.words.read(ctx)?.iter().map(|v| v.to_bits()).collect())
    }
}

/// mask = (y > 0) as bits. y: any shape with mask's element count.
pub fn relu_mask_pack(ctx: &Context, y: &Tensor, mask: &Mask) -> Op {
    assert_eq!(y.len(), mask.len());
    // One invocation per 32-element word.
    let (gx, gy) = ctx.grid((y.len() as u32).div_ceil(32 * 256));
    let p = ReluParams { n: y.len() as u32, gx, ..Default::default() };
    ctx.op(ctx.dispatch(FILE, "relu_mask_pack", &p, &[("A", y), ("A4", y), ("Out", &mask.words)], (gx, gy, 1)))
}
