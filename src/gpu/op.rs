//! A recorded kernel launch: pipeline + bind group + workgroup counts, built once.

use super::Context;

/// One dispatch of one kernel with its bindings. Cheap to record; creating it is not, so ops are
/// built once and recorded every iteration.
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32, u32),
    /// The entry point, for timings and messages.
    pub name: &'static str,
}

impl Dispatch {
    /// A dispatch with a bind group the caller built (e.g. one binding textures).
    pub fn new(
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        groups: (u32, u32, u32),
        name: &'static str,
    ) -> Dispatch {
        Dispatch { pipeline, bind_group, groups, name }
    }

    /// Records the dispatch into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups.0, self.groups.1, self.groups.2);
    }
}

/// A kernel wrapper's result: one or more dispatches run in order (e.g. a two-stage reduction),
/// plus any scratch buffers they own and the textures they bind (for memory accounting; a
/// scratch texture shared by several ops appears in each).
pub struct Op {
    /// The dispatches, in order.
    pub dispatches: Vec<Dispatch>,
    /// Scratch buffers the op owns.
    pub scratch: Vec<wgpu::Buffer>,
    /// Textures the op binds.
    pub textures: Vec<wgpu::Texture>,
}

impl Op {
    /// Records every dispatch into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            d.record(pass);
        }
    }

    /// This op followed by `other`.
    pub fn then(mut self, other: Op) -> Op {
        self.dispatches.extend(other.dispatches);
        self.scratch.extend(other.scratch);
        self.textures.extend(other.textures);
        self
    }
}

impl Context {
    /// An op of one dispatch.
    pub fn op(&self, d: Dispatch) -> Op {
        Op { dispatches: vec![d], scratch: vec![], textures: vec![] }
    }
}

/// Bytes of the distinct scratch buffers, and of the distinct textures, `ops` hold.
// wgpu handles hash and compare by identity, which their interior state does not change.
#[allow(clippy::mutable_key_type)]
pub fn ops_bytes<'a>(ops: impl IntoIterator<Item = &'a Op>) -> (u64, u64) {
    let mut bufs = std::collections::HashSet::new();
    let mut texs = std::collections::HashSet::new();
    for o in ops {
        bufs.extend(o.scratch.iter().cloned());
        texs.extend(o.textures.iter().cloned());
    }
    (bufs.iter().map(|b| b.size()).sum(), texs.iter().map(texture_bytes).sum())
}

/// Bytes of a texture (one mip level, one sample).
fn texture_bytes(t: &wgpu::Texture) -> u64 {
    let e = t.size();
    let texel = t.format().block_copy_size(None).unwrap_or(16) as u64;
    e.width as u64 * e.height as u64 * e.depth_or_array_layers as u64 * texel
}
