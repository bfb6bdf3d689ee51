//! GPU tensors: f32, batch 1, CHW, one storage buffer each.

use super::Context;
use crate::error::{Error, Result};
use wgpu::util::DeviceExt;

/// A GPU tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// The storage buffer (rounded up to 16 bytes).
    pub buf: wgpu::Buffer,
    /// (channels, height, width); a flat vector is (n, 1, 1).
    pub shape: [usize; 3],
}

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether it has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes of the elements (4 each).
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }

    fn check_fits(ctx: &Context, shape: [usize; 3], label: &str) -> Result<u64> {
        // Rounded up to 16 bytes, so that any buffer can also be bound as an array of vec4
        // (kernels read the last partial vec4 with scalar loads).
        let bytes = ((shape.iter().product::<usize>().max(1) as u64) * 4).next_multiple_of(16);
        let max = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
        if bytes > max {
            return Err(Error::TooLarge(format!(
                "tensor {label} {:?} needs {} MiB in one GPU buffer but {} allows {} MiB",
                shape,
                bytes >> 20,
                describe_short(ctx),
                max >> 20
            )));
        }
        Ok(bytes)
    }

    /// Uninitialised (zeroed by wgpu) tensor.
    pub fn new(ctx: &Context, shape: [usize; 3], label: &str) -> Result<Tensor> {
        let size = Self::check_fits(ctx, shape, label)?;
        let buf = ctx.scoped(&format!("allocating {label}"), || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: USAGE,
                mapped_at_creation: false,
            })
        })?;
        Ok(Tensor { buf, shape })
    }

    /// A tensor holding `data` (its length must match `shape`).
    pub fn from_slice(ctx: &Context, shape: [usize; 3], data: &[f32], label: &str) -> Result<Tensor> {
        assert_eq!(data.len(), shape.iter().product::<usize>(), "data length vs shape for {label}");
        let size = Self::check_fits(ctx, shape, label)?;
        let mut padded;
        let mut contents: &[u8] = bytemuck::cast_slice(data);
        if contents.len() as u64 != size {
            padded = contents.to_vec();
            padded.resize(size as usize, 0);
            contents = &padded;
        }
        let buf = ctx.scoped(&format!("allocating {label}"), || {
            ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: USAGE,
            })
        })?;
        Ok(Tensor { buf, shape })
    }

    /// Overwrites the whole tensor (queued; takes effect before the next submission).
    pub fn write(&self, ctx: &Context, data: &[f32]) {
        assert_eq!(data.len(), self.len());
        ctx.queue.write_buffer(&self.buf, 0, bytemuck::cast_slice(data));
    }

    /// Fills with one value, e.g. NaN to poison an output before a kernel under test runs.
    pub fn fill(&self, ctx: &Context, v: f32) {
        self.write(ctx, &vec![v; self.len()]);
    }

    /// Copies the tensor back to the host (waits for the GPU).
    pub fn read(&self, ctx: &Context) -> Result<Vec<f32>> {
        read_buffer(ctx, &self.buf, self.len())
    }
}

/// Reads the first `n` f32 of `buf` back to the host.
pub fn read_buffer(ctx: &Context, buf: &wgpu::Buffer, n: usize) -> Result<Vec<f32>> {
    if n == 0 {
        return Ok(vec![]);
    }
    let size = n as u64 * 4;
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buf, 0, &staging, 0, size);
    ctx.queue.submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    ctx.wait()?;
    match rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::Gpu(format!("reading back a buffer failed: {e}"))),
        Err(_) => return Err(Error::Gpu("reading back a buffer: the map callback never ran".into())),
    }
    let view =
        staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("mapping a readback buffer failed: {e}")))?;
    let out = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
    drop(view);
    staging.unmap();
    Ok(out)
}

fn describe_short(ctx: &Context) -> String {
    ctx.info.name.clone()
}
