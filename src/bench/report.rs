//! The report as a human-readable table or one JSON object, and printing it.

use super::kernels::unit_name;
use super::{BenchReport, KernelRow, Memory, Unit};
use serde_json::{json, Value};
use std::fmt::Write as _;

pub(super) fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// The human-readable report.
pub fn table(r: &BenchReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "stylize bench, {}", r.date);
    let _ = writeln!(o, "adapter: {} ({}, {}), driver {}", r.adapter, r.backend, r.device_type, r.driver);
    if !r.kernels.is_empty() {
        let note = if r.timer_note.is_empty() { String::new() } else { format!(" ({})", r.timer_note) };
        let _ = writeln!(o, "kernel timer: {}{note}", r.timer);
    }
    if !r.designs.is_empty() {
        let _ = writeln!(o, "\nGPU kernel designs, counted from the WGSL (per invocation; loads of workgroup memory and storage buffers):");
        o.push_str(&super::designs_table(&r.designs));
        o.push('\n');
    }
    if !r.kernels.is_empty() {
        let _ = writeln!(
            o,
            "peak: {:.1} GFLOP/s (peak_fma), {:.1} GB/s (peak_copy of {} MiB); submit + wait of an empty dispatch {:.3} ms\n",
            r.peak.gflops,
            r.peak.gbps,
            r.peak.copy_bytes >> 20,
            r.peak.overhead_ms
        );
        let _ = writeln!(
            o,
            "{:>5}  {:<22} {:<26} {:<13} {:<20} {:>4} {:<5} {:>11} {:>10} {:<7} {:>7}",
            "size", "kernel", "notes", "layer", "shape", "runs", "timer", "median ms", "rate", "", "% peak"
        );
        for k in &r.kernels {
            let _ = writeln!(
                o,
                "{:>5}  {:<22} {:<26} {:<13} {:<20} {:>4} {:<5} {:>11.4} {:>10.2} {:<7} {:>6.1}%",
                k.size,
                k.kernel,
                k.variant,
                k.layer,
                k.shape,
                k.runs,
                k.timer,
                k.median_ms,
                k.rate,
                unit_name(k.unit),
                k.peak_pct
            );
        }
        // Conv totals per size: what the convs of one iteration would cost at these rates.
        let mut sizes: Vec<u32> = r.kernels.iter().map(|k| k.size).collect();
        sizes.dedup();
        for s in sizes {
            let conv: Vec<&KernelRow> =
                r.kernels.iter().filter(|k| k.size == s && k.kernel.starts_with("conv3x3")).collect();
            let (fl, ms) = conv.iter().fold((0.0, 0.0), |(f, t), k| (f + k.work, t + k.median_ms));
            if ms > 0.0 {
                let _ =
                    writeln!(o, "{s:>5}  conv3x3 (distinct shapes, fwd + bwd): {:.1} GFLOP/s overall", fl / (ms * 1e6));
            }
        }
    }
    if !r.e2e.is_empty() {
        let _ = writeln!(
            o,
            "\nend to end: Graph::step ({}, default layers, avg pool, edge {}, random weights, Adam), wall clock",
            r.model, r.edge
        );
        let _ = writeln!(
            o,
            "{:>11}  {:>6} {:>12} {:>10} {:>8} {:>9} {:>11} {:>10}",
            "size", "iters", "ms/iter", "graph MiB", "tex MiB", "net MiB", "target MiB", "total MiB"
        );
        for e in &r.e2e {
            let size = format!("{}x{}{}", e.width, e.height, if e.requested == 0 { "*" } else { "" });
            let _ = writeln!(
                o,
                "{size:>11}  {:>6} {:>12.2} {:>10.1} {:>8.1} {:>9.1} {:>11.2} {:>10.1}",
                e.iterations,
                e.ms_per_iter,
                mib(e.memory.graph_bytes),
                mib(e.memory.texture_bytes),
                mib(e.memory.net_bytes),
                mib(e.memory.target_bytes),
                mib(e.memory.total())
            );
        }
        if r.e2e.iter().any(|e| e.requested == 0) {
            let _ = writeln!(o, "  * the largest size that fits this adapter");
        }
    }
    if !r.memory.is_empty() {
        let _ = writeln!(o, "\nGPU buffers held by a render (graph built, nothing run)");
        for m in &r.memory {
            match &m.memory {
                Ok(b) => {
                    let _ = writeln!(
                        o,
                        "{:>11}  {:>10.1} MiB (graph {:.1} [estimated {:.1}], textures {:.1}, net {:.1}, targets {:.2})",
                        format!("{0}x{0}", m.size),
                        mib(b.total()),
                        mib(b.graph_bytes),
                        mib(m.estimated_graph_bytes),
                        mib(b.texture_bytes),
                        mib(b.net_bytes),
                        mib(b.target_bytes)
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        o,
                        "{:>11}  graph estimated at {:.1} MiB; does not fit here: {e}",
                        format!("{0}x{0}", m.size),
                        mib(m.estimated_graph_bytes)
                    );
                }
            }
        }
    }
    for e in &r.errors {
        let _ = writeln!(o, "skipped: {e}");
    }
    o
}

/// Byte counts of one size as a JSON object.
fn json_memory(m: &Memory) -> Value {
    json!({
        "graph_bytes": m.graph_bytes,
        "texture_bytes": m.texture_bytes,
        "net_bytes": m.net_bytes,
        "target_bytes": m.target_bytes,
        "total_bytes": m.total(),
    })
}

/// The report as one JSON object (for scripts: tools/compare_bench.py). Non-finite numbers
/// (e.g. a percentage of an unmeasured peak) have no JSON form and are written as null.
pub fn to_json(r: &BenchReport) -> String {
    let kernels: Vec<Value> = r
        .kernels
        .iter()
        .map(|k| {
            // The work and rate keys name their unit.
            let (work, rate) = if k.unit == Unit::Flop { ("flops", "gflops") } else { ("bytes", "gbps") };
            json!({
                "size": k.size,
                "kernel": k.kernel,
                "variant": k.variant,
                "layer": k.layer,
                "shape": k.shape,
                "runs": k.runs,
                "timer": k.timer,
                "median_ms": k.median_ms,
                "min_ms": k.min_ms,
                work: k.work,
                rate: k.rate,
                "peak_pct": k.peak_pct,
            })
        })
        .collect();
    let designs: Vec<Value> = r
        .designs
        .iter()
        .map(|d| {
            json!({
                "kernel": d.kernel,
                "workgroup": d.workgroup,
                "per_invocation": d.outputs,
                "per_workgroup": d.tile,
                "fmas_per_wg_load": d.fmas_per_wg_load,
                "wg_load": d.wg_load,
                "fmas_per_global_load": d.fmas_per_global_load,
                "wg_bytes": d.wg_bytes,
                "accumulators": d.accumulators,
                "registers_estimate": d.registers,
                "conv_fmas_per_fma": d.conv_fmas_per_fma,
                "source": d.source,
            })
        })
        .collect();
    let e2e: Vec<Value> = r
        .e2e
        .iter()
        .map(|e| {
            json!({
                "size": e.width.max(e.height),
                "requested": e.requested,
                "width": e.width,
                "height": e.height,
                "iterations": e.iterations,
                "ms_per_iter": e.ms_per_iter,
                "memory": json_memory(&e.memory),
            })
        })
        .collect();
    let memory: Vec<Value> = r
        .memory
        .iter()
        .map(|m| {
            let body = match &m.memory {
                Ok(b) => json_memory(b),
                Err(e) => json!({ "error": e }),
            };
            json!({ "size": m.size, "estimated_graph_bytes": m.estimated_graph_bytes, "memory": body })
        })
        .collect();
    let report = json!({
        "adapter": r.adapter,
        "backend": r.backend,
        "device_type": r.device_type,
        "driver": r.driver,
        "timer": r.timer,
        "timer_note": r.timer_note,
        "date": r.date,
        "model": r.model,
        "edge": r.edge,
        "peak": {
            "gflops": r.peak.gflops,
            "gbps": r.peak.gbps,
            "copy_bytes": r.peak.copy_bytes,
            "overhead_ms": r.peak.overhead_ms,
        },
        "designs": designs,
        "kernels": kernels,
        "e2e": e2e,
        "memory": memory,
        "errors": r.errors,
    });
    let mut o = serde_json::to_string_pretty(&report).expect("a JSON value always serialises");
    o.push('\n');
    o
}

/// Prints the report to stdout: JSON when `json`, else the table.
pub fn print(r: &BenchReport, json: bool) {
    if json {
        print!("{}", to_json(r));
    } else {
        print!("{}", table(r));
    }
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
pub(super) fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bench::{E2eRow, MemoryRow, Peak};

    #[test]
    fn json_names_every_field_and_writes_non_finite_as_null() {
        let memory = Memory { graph_bytes: 1, texture_bytes: 2, net_bytes: 3, target_bytes: 4 };
        let r = BenchReport {
            adapter: "a\"b\\c\n".into(),
            backend: "Vulkan".into(),
            device_type: "Cpu".into(),
            driver: String::new(),
            timer: "wall-clock".into(),
            timer_note: String::new(),
            date: utc_now(),
            model: "vgg16".into(),
            edge: "zero".into(),
            peak: Peak { gflops: 10.0, gbps: f64::INFINITY, copy_bytes: 64, overhead_ms: 0.5 },
            designs: crate::bench::designs(),
            kernels: vec![KernelRow {
                kernel: "relu_forward".into(),
                variant: String::new(),
                layer: "relu1_1".into(),
                size: 32,
                shape: "64x32x32".into(),
                runs: 3,
                timer: "wall",
                median_ms: 0.25,
                min_ms: 0.125,
                work: 1e6,
                unit: Unit::Byte,
                rate: 4.0,
                peak_pct: f64::NAN,
            }],
            e2e: vec![E2eRow {
                requested: 0,
                width: 48,
                height: 32,
                iterations: 2,
                ms_per_iter: 7.5,
                memory: memory.clone(),
            }],
            memory: vec![MemoryRow { size: 64, memory: Err("too large".into()), estimated_graph_bytes: 99 }],
            errors: vec!["e2e size 9: x".into()],
        };
        let text = to_json(&r);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["adapter"], "a\"b\\c\n");
        assert_eq!(v["peak"]["gflops"], 10.0);
        assert!(v["peak"]["gbps"].is_null());
        let k = &v["kernels"][0];
        assert_eq!(
            (k["bytes"].as_f64(), k["gbps"].as_f64(), k["min_ms"].as_f64()),
            (Some(1e6), Some(4.0), Some(0.125))
        );
        assert!(k.get("flops").is_none() && k["peak_pct"].is_null());
        assert_eq!(v["e2e"][0]["size"], 48);
        assert_eq!(v["e2e"][0]["memory"]["total_bytes"], 10);
        assert_eq!(v["memory"][0]["memory"]["error"], "too large");
        assert_eq!(v["errors"][0], "e2e size 9: x");
        let gemm = v["designs"].as_array().unwrap().iter().find(|d| d["kernel"] == "conv3x3 gemm").unwrap();
        assert_eq!((gemm["fmas_per_wg_load"].as_f64(), gemm["wg_bytes"].as_u64()), (Some(8.0), Some(8192)));
        assert!(v["designs"].as_array().unwrap().iter().any(|d| d["wg_bytes"].is_null()), "unpublished is null");
        assert!(table(&r).contains("FMA/wg load"));
        // Keys in the order written, as before serde_json.
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys[..4], ["adapter", "backend", "device_type", "driver"]);
        assert_eq!(utc_now().len(), 20);
    }
}
