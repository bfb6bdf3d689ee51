//! The adapter's measured ceilings: `shaders/peak.wgsl`'s register-only FMA loop (GFLOP/s) and
//! vec4 copy (GB/s), best run, plus the submission overhead of an empty dispatch.

use super::meter::{median, min, Meter};
use super::Peak;
use crate::error::Result;
use crate::gpu::peak::PeakParams;
use crate::gpu::{Context, Tensor};

const PEAK_FILE: &str = "peak.wgsl";

pub(super) fn measure_peak(ctx: &Context, meter: &Meter, cpu: bool, check_timer: bool) -> Result<Peak> {
    // FMA: enough invocations to fill the device, rounds grown until one run takes ~target_ms.
    let groups: u32 = if cpu { 256 } else { 16384 };
    let n = groups * 64;
    let out = Tensor::new(ctx, [n as usize * 4, 1, 1], "peak out")?;
    let (gx, gy) = ctx.grid(groups);
    let fma = |iters: u32| {
        let p = PeakParams { n, gx, iters, ..Default::default() };
        ctx.op(ctx.dispatch(PEAK_FILE, "peak_fma", &p, &[("Out", &out.buf)], (gx, gy, 1)))
    };
    // Submission overhead: one workgroup doing nothing.
    let empty = ctx.op(ctx.dispatch(
        PEAK_FILE,
        "peak_fma",
        &PeakParams { n: 64, gx: 1, iters: 0, ..Default::default() },
        &[("Out", &out.buf)],
        (1, 1, 1),
    ));
    meter.run_once(&empty)?;
    meter.overhead_ms.set(median(&(0..5).map(|_| meter.run_once(&empty)).collect::<Result<Vec<_>>>()?));
    let target_ms = if cpu { 50.0 } else { 10.0 };
    let mut iters = 64u32;
    meter.run_once(&fma(iters))?; // builds the pipeline
    loop {
        let t = meter.run_once(&fma(iters))?;
        if t >= target_ms || iters >= 1 << 22 {
            break;
        }
        let grow = (target_ms / t.max(1e-3)).clamp(2.0, 64.0);
        iters = ((f64::from(iters) * grow) as u32).min(1 << 22);
    }
    let op = fma(iters);
    if check_timer {
        meter.check_timestamps(&op, "peak_fma")?;
    }
    // A ceiling is the best run, not the typical one.
    let t = min(&meter.measure(&op)?.0);
    let gflops = 64.0 * f64::from(iters) * f64::from(n) / (t * 1e6);

    // Copy: a buffer well past the caches (within the binding limit).
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    let want: u64 = if cpu { 64 << 20 } else { 512 << 20 };
    let bytes = want.min(limit) / 16 * 16;
    let nv = (bytes / 16) as u32;
    let a = Tensor::new(ctx, [bytes as usize / 4, 1, 1], "peak copy in")?;
    let b = Tensor::new(ctx, [bytes as usize / 4, 1, 1], "peak copy out")?;
    let (gx, gy) = ctx.grid(nv.div_ceil(256));
    let p = PeakParams { n: nv, gx, ..Default::default() };
    let copy = ctx.op(ctx.dispatch(PEAK_FILE, "peak_copy", &p, &[("In", &a.buf), ("Out", &b.buf)], (gx, gy, 1)));
    let t = min(&meter.measure(&copy)?.0);
    let gbps = 2.0 * bytes as f64 / (t * 1e6);
    Ok(Peak { gflops, gbps, copy_bytes: bytes, overhead_ms: meter.overhead_ms.get() })
}
