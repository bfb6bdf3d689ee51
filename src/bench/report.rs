//! The report as a human-readable table or one JSON object, and printing it.

use super::kernels::unit_name;
use super::{BenchReport, KernelRow, Memory, Unit};
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
            "{:>5}  {:<22} {:<10} {:<13} {:<20} {:>4} {:<5} {:>11} {:>10} {:<7} {:>7}",
            "size", "kernel", "notes", "layer", "shape", "runs", "timer", "median ms", "rate", "", "% peak"
        );
        for k in &r.kernels {
            let _ = writeln!(
                o,
                "{:>5}  {:<22} {:<10} {:<13} {:<20} {:>4} {:<5} {:>11.4} {:>10.2} {:<7} {:>6.1}%",
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
        let _ = writeln!(o, "\nend to end: Graph::step (default layers, avg pool, random weights, Adam), wall clock");
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

fn js(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn jn(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_memory(m: &Memory) -> String {
    format!(
        "{{\"graph_bytes\": {}, \"texture_bytes\": {}, \"net_bytes\": {}, \"target_bytes\": {}, \"total_bytes\": {}}}",
        m.graph_bytes,
        m.texture_bytes,
        m.net_bytes,
        m.target_bytes,
        m.total()
    )
}

/// The report as one JSON object (for scripts: tools/compare_bench.py).
pub fn to_json(r: &BenchReport) -> String {
    let mut o = String::from("{\n");
    let _ = writeln!(
        o,
        "  \"adapter\": {}, \"backend\": {}, \"device_type\": {}, \"driver\": {},",
        js(&r.adapter),
        js(&r.backend),
        js(&r.device_type),
        js(&r.driver)
    );
    let _ =
        writeln!(o, "  \"timer\": {}, \"timer_note\": {}, \"date\": {},", js(&r.timer), js(&r.timer_note), js(&r.date));
    let _ = writeln!(
        o,
        "  \"peak\": {{\"gflops\": {}, \"gbps\": {}, \"copy_bytes\": {}, \"overhead_ms\": {}}},",
        jn(r.peak.gflops),
        jn(r.peak.gbps),
        r.peak.copy_bytes,
        jn(r.peak.overhead_ms)
    );
    o.push_str("  \"kernels\": [");
    for (i, k) in r.kernels.iter().enumerate() {
        let _ = write!(
            o,
            "{}\n    {{\"size\": {}, \"kernel\": {}, \"variant\": {}, \"layer\": {}, \"shape\": {}, \"runs\": {}, \"timer\": {}, \"median_ms\": {}, \"min_ms\": {}, \"{}\": {}, \"{}\": {}, \"peak_pct\": {}}}",
            if i > 0 { "," } else { "" },
            k.size,
            js(&k.kernel),
            js(&k.variant),
            js(&k.layer),
            js(&k.shape),
            k.runs,
            js(k.timer),
            jn(k.median_ms),
            jn(k.min_ms),
            if k.unit == Unit::Flop { "flops" } else { "bytes" },
            jn(k.work),
            if k.unit == Unit::Flop { "gflops" } else { "gbps" },
            jn(k.rate),
            jn(k.peak_pct)
        );
    }
    o.push_str("\n  ],\n  \"e2e\": [");
    for (i, e) in r.e2e.iter().enumerate() {
        let _ = write!(
            o,
            "{}\n    {{\"size\": {}, \"requested\": {}, \"width\": {}, \"height\": {}, \"iterations\": {}, \"ms_per_iter\": {}, \"memory\": {}}}",
            if i > 0 { "," } else { "" },
            e.width.max(e.height),
            e.requested,
            e.width,
            e.height,
            e.iterations,
            jn(e.ms_per_iter),
            json_memory(&e.memory)
        );
    }
    o.push_str("\n  ],\n  \"memory\": [");
    for (i, m) in r.memory.iter().enumerate() {
        let body = match &m.memory {
            Ok(b) => json_memory(b),
            Err(e) => format!("{{\"error\": {}}}", js(e)),
        };
        let _ = write!(
            o,
            "{}\n    {{\"size\": {}, \"estimated_graph_bytes\": {}, \"memory\": {body}}}",
            if i > 0 { "," } else { "" },
            m.size,
            m.estimated_graph_bytes
        );
    }
    o.push_str("\n  ],\n  \"errors\": [");
    o.push_str(&r.errors.iter().map(|e| js(e)).collect::<Vec<_>>().join(", "));
    o.push_str("]\n}\n");
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

    #[test]
    fn json_strings_and_date() {
        assert_eq!(js("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(jn(f64::NAN), "null");
        assert_eq!(utc_now().len(), 20);
    }
}
