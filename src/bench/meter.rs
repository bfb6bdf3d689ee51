//! Timing an [`Op`]: warm-up, then timed runs with GPU timestamps (while they agree with the
//! wall clock) or the wall clock around submit + wait; min and median of the runs.

use crate::error::{Error, Result};
use crate::gpu::{Context, Op};
use std::cell::{Cell, RefCell};
use std::time::Instant;

/// Times an [`Op`]: warm-up, then timed runs with GPU timestamps or the wall clock.
pub(super) struct Meter<'a> {
    ctx: &'a Context,
    /// Whether kernel times come from GPU timestamps; switched off by [`Meter::check_timestamps`]
    /// when they disagree with the wall clock.
    timestamps: Cell<bool>,
    /// Why the timer is what it is, when that is not obvious.
    pub(super) note: RefCell<String>,
    /// Wall-clock milliseconds of submitting and waiting for an empty dispatch.
    pub(super) overhead_ms: Cell<f64>,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    iterations: u32,
    budget_ms: f64,
}

impl<'a> Meter<'a> {
    pub(super) fn new(ctx: &'a Context, iterations: u32, budget_s: f64, wall_clock: bool) -> Meter<'a> {
        let has = ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
        let period_ns = ctx.queue.get_timestamp_period() as f64;
        let timestamps = has && !wall_clock && !cpu;
        let note = if wall_clock {
            "wall clock requested".to_string()
        } else if !has {
            "the adapter has no timestamp queries".to_string()
        } else if cpu {
            // Measured on lavapipe (Mesa 22.3): a 64x64x64 Gram took 0.24 ms by its timestamps
            // and 54 ms by the clock (33.5 MFLOP: the clock is right); a ReLU 0.05 vs 0.6 ms.
            "a CPU driver's timestamps are not ordered with its compute work (lavapipe's \
             understate a Gram 200x), so the wall clock is used"
                .to_string()
        } else {
            String::new()
        };
        Meter {
            ctx,
            timestamps: Cell::new(timestamps && period_ns > 0.0),
            note: RefCell::new(note),
            overhead_ms: Cell::new(0.0),
            period_ns,
            iterations,
            budget_ms: budget_s.max(0.0) * 1e3,
        }
    }

    pub(super) fn timer_name(&self) -> &'static str {
        if self.timestamps.get() {
            "gpu-timestamps"
        } else {
            "wall-clock"
        }
    }

    /// One run in its own command buffer, waited for; wall-clock milliseconds.
    pub(super) fn run_once(&self, op: &Op) -> Result<f64> {
        let t = Instant::now();
        self.ctx.scoped("running a benchmark kernel", || {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                op.record(&mut pass);
            }
            self.ctx.queue.submit([enc.finish()]);
        })?;
        self.ctx.wait()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    /// Milliseconds of each timed run, after two warm-up runs (the first builds the pipeline on
    /// drivers that compile lazily; the second sets how many runs fit the budget).
    ///
    /// Timestamps are used only when they are plausible against the warm-up's wall clock: not
    /// under half of what the clock saw beyond the submission overhead, not over twice the
    /// clock. Otherwise (or with zeros from a driver) the runs are timed by the wall clock. The
    /// flag says which timer the times come from (true: GPU timestamps).
    pub(super) fn measure(&self, op: &Op) -> Result<(Vec<f64>, bool)> {
        let first = self.run_once(op)?;
        let warm = if first > self.budget_ms { first } else { self.run_once(op)? };
        let min_runs = self.iterations.min(3);
        let fit = if warm > 0.0 { (self.budget_ms / warm).floor() } else { f64::from(self.iterations) };
        let runs = (fit.min(f64::from(self.iterations)) as u32).max(min_runs).max(1);
        if self.timestamps.get() {
            let t = self.timestamped(op, runs)?;
            let m = median(&t);
            let beyond_overhead = warm - self.overhead_ms.get();
            let plausible =
                t.iter().all(|&v| v > 0.0 && v.is_finite()) && m >= 0.5 * beyond_overhead && m <= 2.0 * warm;
            if plausible {
                return Ok((t, true));
            }
        }
        Ok(((0..runs).map(|_| self.run_once(op)).collect::<Result<Vec<_>>>()?, false))
    }

    /// `runs` passes in one command buffer, each bracketed by timestamps.
    fn timestamped(&self, op: &Op, runs: u32) -> Result<Vec<f64>> {
        let ctx = self.ctx;
        let n = 2 * runs;
        let size = u64::from(n) * 8;
        let (qs, resolve, read) = ctx.scoped("creating timestamp queries", || {
            let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: n,
            });
            let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench timestamps resolved"),
                size,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench timestamps readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (qs, resolve, read)
        })?;
        ctx.scoped("running a timed benchmark kernel", || {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            for r in 0..runs {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("bench"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &qs,
                        beginning_of_pass_write_index: Some(2 * r),
                        end_of_pass_write_index: Some(2 * r + 1),
                    }),
                });
                op.record(&mut pass);
            }
            enc.resolve_query_set(&qs, 0..n, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, size);
            ctx.queue.submit([enc.finish()]);
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        read.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("reading the timestamps failed: {e}"))),
            Err(_) => return Err(Error::Gpu("reading the timestamps: the map callback never ran".into())),
        }
        let view = read.get_mapped_range(..).map_err(|e| Error::Gpu(format!("mapping the timestamps failed: {e}")))?;
        let ticks: Vec<u64> = bytemuck::cast_slice::<u8, u64>(&view).to_vec();
        drop(view);
        read.unmap();
        Ok(ticks.chunks(2).map(|p| p[1].wrapping_sub(p[0]) as f64 * self.period_ns / 1e6).collect())
    }
}

impl Meter<'_> {
    /// Trusts the GPU timestamps only if they agree with the wall clock on `op`, a kernel long
    /// enough (tens of ms) that submission overhead is noise. lavapipe (Mesa 22.3) fails this:
    /// its timestamps are not ordered with compute dispatches (measured: a 64x64x64 ReLU "took"
    /// 0.05 ms by timestamps and 0.6 ms by the clock; a Gram 0.24 vs 54 ms).
    pub(super) fn check_timestamps(&self, op: &Op, name: &str) -> Result<()> {
        if !self.timestamps.get() {
            return Ok(());
        }
        let wall = median(&(0..3).map(|_| self.run_once(op)).collect::<Result<Vec<_>>>()?);
        let ts = median(&self.timestamped(op, 3)?);
        let ratio = ts / wall;
        if !(0.75..=1.1).contains(&ratio) {
            self.timestamps.set(false);
            *self.note.borrow_mut() = format!(
                "GPU timestamps disagree with the wall clock on {name} ({ts:.2} ms vs {wall:.2} ms), so kernels are \
                 timed by the wall clock around submit + wait"
            );
        } else {
            *self.note.borrow_mut() =
                format!("GPU timestamps agree with the wall clock on {name} ({ts:.2} ms vs {wall:.2} ms)");
        }
        Ok(())
    }
}

pub(super) fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
