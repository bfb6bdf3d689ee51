//! A recorded kernel launch: pipeline + bind group + workgroup counts, built once.

use super::Context;
use wgpu::util::DeviceExt;

/// Uniform parameters of a kernel: 16 32-bit words (64 bytes, a multiple of the 16-byte
/// uniform alignment). Each WGSL file declares the matching `struct Params`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Params(pub [u32; 16]);

impl Params {
    pub fn new() -> Params {
        Params::default()
    }
    pub fn u(mut self, i: usize, v: u32) -> Params {
        self.0[i] = v;
        self
    }
    pub fn f(mut self, i: usize, v: f32) -> Params {
        self.0[i] = v.to_bits();
        self
    }
}

/// One dispatch of one kernel with its bindings. Cheap to record; creating it is not, so ops are
/// built once and recorded every iteration.
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32, u32),
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
}

/// A kernel wrapper's result: one or more dispatches run in order (e.g. a two-stage reduction),
/// plus any scratch buffers they own and the textures they bind (for memory accounting; a
/// scratch texture shared by several ops appears in each).
pub struct Op {
    pub dispatches: Vec<Dispatch>,
    pub scratch: Vec<wgpu::Buffer>,
    pub textures: Vec<wgpu::Texture>,
}

impl Op {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups.0, d.groups.1, d.groups.2);
        }
    }

    pub fn then(mut self, other: Op) -> Op {
        self.dispatches.extend(other.dispatches);
        self.scratch.extend(other.scratch);
        self.textures.extend(other.textures);
        self
    }
}

impl Context {
    /// A dispatch of `shaders/<file>`'s `entry`, binding `params` at 0 and `buffers` at 1.. in
    /// order.
    pub fn dispatch(
        &self,
        file: &'static str,
        entry: &'static str,
        params: Params,
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) -> Dispatch {
        let (pipeline, layout) = self.pipeline(file, entry);
        let res: Vec<wgpu::BindingResource> = buffers.iter().map(|b| b.as_entire_binding()).collect();
        let bind_group = self.bind_group(&layout, entry, params, &res);
        Dispatch { pipeline, bind_group, groups, name: entry }
    }

    /// A bind group with `params` as a uniform buffer at binding 0 and `res` at 1.. in order
    /// (buffers or texture views).
    pub fn bind_group(
        &self,
        layout: &wgpu::BindGroupLayout,
        label: &str,
        params: Params,
        res: &[wgpu::BindingResource],
    ) -> wgpu::BindGroup {
        let ubuf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(&params.0),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: ubuf.as_entire_binding() }];
        for (i, r) in res.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: r.clone() });
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout, entries: &entries })
    }

    pub fn op(&self, d: Dispatch) -> Op {
        Op { dispatches: vec![d], scratch: vec![], textures: vec![] }
    }
}

/// Bytes of the distinct scratch buffers, and of the distinct textures, `ops` hold.
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
