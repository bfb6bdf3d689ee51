//! Conv variants chosen by measurement: the table is written, read back by a later context
//! without measuring, kept per adapter, and a corrupt or foreign table is reported and rebuilt.

mod common;
use common::tmpdir;
use std::time::Duration;
use stylize::gpu::conv::{self, Variant};
use stylize::gpu::tune::{adapter_key, table_path, TuneMode, Tuner, CANDIDATES_GENERATION};
use stylize::gpu::{AdapterChoice, Context};

fn context() -> Context {
    Context::new(&AdapterChoice::parse(&std::env::var("STYLIZE_ADAPTER").unwrap_or_default())).expect("an adapter")
}

const SHAPE: (usize, usize, usize, usize) = (16, 32, 12, 12);
const GRAM: (usize, usize) = (24, 100);

/// The tuner's table now holds `chosen` for one shape (any candidate may win: on an H200 a
/// Winograd-on-GEMM tile did, which a fixed list of variants once refused).
fn assert_recorded(ctx: &Context, chosen: Variant) {
    let entries = ctx.tuner().unwrap().entries();
    assert!(entries.iter().any(|(_, v)| Variant::parse(v) == Some(chosen)), "{chosen} not in {entries:?}");
}

#[test]
fn full_mode_measures_saves_and_a_later_run_reuses_the_table() {
    let dir = tmpdir("full");
    let (cin, cout, h, w) = SHAPE;
    let mut ctx = context();
    let path = table_path(&dir, &ctx.info);
    ctx.set_tuner(Tuner::new(&ctx, TuneMode::Full, Some(path.clone()), Duration::from_secs(60)));
    let chosen = conv::select_variant(&ctx, cin, cout, h, w);
    assert_recorded(&ctx, chosen);
    let t = ctx.tuner().unwrap();
    assert_eq!(t.spent().1, 1, "one shape measured");
    assert!(t.warnings().is_empty(), "{:?}", t.warnings());
    // Asking again measures nothing more.
    assert_eq!(conv::select_variant(&ctx, cin, cout, h, w), chosen);
    assert_eq!(t.spent().1, 1);
    // Gram matrices are tuned the same way, under their own key.
    let (gc, gn) = GRAM;
    let gram_chosen = stylize::gpu::gram::select_variant(&ctx, gc, gn);
    assert!([Variant::Tiled, Variant::GEMM, Variant::Tex].contains(&gram_chosen));
    assert_eq!(t.spent().1, 2);
    let text = std::fs::read_to_string(&path).expect("table written");
    assert!(text.contains(&adapter_key(&ctx.info)) && text.contains("conv3x3 16x32 12x12"), "{text}");
    assert!(text.contains("gram 24x100"), "{text}");

    // A later process: cached mode reads the table and measures nothing.
    let mut ctx2 = context();
    ctx2.set_tuner(Tuner::new(&ctx2, TuneMode::Cached, Some(path.clone()), Duration::from_secs(60)));
    assert_eq!(conv::select_variant(&ctx2, cin, cout, h, w), chosen);
    assert_eq!(stylize::gpu::gram::select_variant(&ctx2, gc, gn), gram_chosen);
    let t2 = ctx2.tuner().unwrap();
    assert_eq!(t2.spent(), (Duration::ZERO, 0));
    // Cached mode leaves unknown shapes to the fixed rules.
    let caps = conv::TexCaps::of(&ctx2);
    assert_eq!(conv::select_variant(&ctx2, 8, 8, 5, 7), conv::choose_variant(&caps, None, 8, 8, 5, 7));
    assert_eq!(t2.spent().1, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_spent_budget_falls_back_to_the_fixed_rules() {
    let (cin, cout, h, w) = SHAPE;
    let mut ctx = context();
    ctx.set_tuner(Tuner::new(&ctx, TuneMode::Full, None, Duration::ZERO));
    let caps = conv::TexCaps::of(&ctx);
    assert_eq!(conv::select_variant(&ctx, cin, cout, h, w), conv::choose_variant(&caps, None, cin, cout, h, w));
    assert_eq!(ctx.tuner().unwrap().spent().1, 0);
}

#[test]
fn a_budget_running_out_mid_shape_stops_and_keeps_nothing() {
    // 1 us is gone once the first candidate is timed: no other is started, and a choice among
    // some candidates only is neither used nor saved (the fixed rules apply).
    let (cin, cout, h, w) = SHAPE;
    let dir = tmpdir("cut");
    let mut ctx = context();
    let path = table_path(&dir, &ctx.info);
    let mut tuner = Tuner::new(&ctx, TuneMode::Full, Some(path.clone()), Duration::from_micros(1));
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    tuner.set_progress(move |l| sink.lock().unwrap().push(l.to_string()));
    ctx.set_tuner(tuner);
    let caps = conv::TexCaps::of(&ctx);
    assert_eq!(conv::select_variant(&ctx, cin, cout, h, w), conv::choose_variant(&caps, None, cin, cout, h, w));
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("conv3x3 16x32 12x12: budget spent, "), "{}", lines[0]);
    assert!(lines[0].contains("candidates untimed: not kept, the fixed rules (tiled "), "{}", lines[0]);
    assert!(!lines[0].contains(", gemm"), "one candidate timed: {}", lines[0]);
    assert!(ctx.tuner().unwrap().entries().is_empty() && !path.exists(), "nothing kept");
    // The budget is spent: the next shape gets the fixed rules without measuring.
    assert_eq!(conv::select_variant(&ctx, 8, 8, 5, 7), conv::choose_variant(&caps, None, 8, 8, 5, 7));
    assert_eq!(lines.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_or_foreign_tables_are_reported_and_rebuilt() {
    let dir = tmpdir("bad");
    let (cin, cout, h, w) = SHAPE;
    let probe = context();
    let path = table_path(&dir, &probe.info);
    let foreign = r#"{"adapter":"Vulkan Some Other GPU 1.0 0000:0000","kernels":{"conv3x3 16x32 12x12":"tiled"}}"#;
    let key = adapter_key(&probe.info);
    let g = CANDIDATES_GENERATION;
    for (what, text) in [("corrupt", "{not json"), ("foreign", foreign), ("bad variant", ""), ("older candidates", "")]
    {
        let text = match what {
            "bad variant" => {
                format!(r#"{{"adapter":{key:?},"candidates":{g},"kernels":{{"conv3x3 16x32 12x12":"fastest"}}}}"#)
            }
            // A table of an earlier version (no generation): its choices were among other kernels.
            "older candidates" => format!(r#"{{"adapter":{key:?},"kernels":{{"conv3x3 16x32 12x12":"tiled"}}}}"#),
            _ => text.to_string(),
        };
        std::fs::write(&path, &text).unwrap();
        let mut ctx = context();
        ctx.set_tuner(Tuner::new(&ctx, TuneMode::Full, Some(path.clone()), Duration::from_secs(60)));
        let t = ctx.tuner().unwrap();
        let warnings = t.warnings();
        assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
        assert!(warnings[0].contains("rebuilt"), "{what}: {}", warnings[0]);
        assert!(t.entries().is_empty(), "{what}: nothing trusted");
        // Tuning replaces the file with a good table for this adapter.
        let chosen = conv::select_variant(&ctx, cin, cout, h, w);
        assert_recorded(&ctx, chosen);
        let again = Tuner::new(&ctx, TuneMode::Cached, Some(path.clone()), Duration::ZERO);
        assert!(again.warnings().is_empty(), "{what}: {:?}", again.warnings());
        assert_eq!(again.entries().len(), 1, "{what}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn off_mode_and_overrides_win_over_the_table() {
    let (cin, cout, h, w) = SHAPE;
    let mut ctx = context();
    ctx.set_tuner(Tuner::new(&ctx, TuneMode::Off, None, Duration::from_secs(60)));
    let caps = conv::TexCaps::of(&ctx);
    assert_eq!(conv::select_variant(&ctx, cin, cout, h, w), conv::choose_variant(&caps, None, cin, cout, h, w));
    let mut o = stylize::gpu::KernelOverrides::default();
    o.set("conv", "gemm").unwrap();
    ctx.set_overrides(o);
    ctx.set_tuner(Tuner::new(&ctx, TuneMode::Full, None, Duration::from_secs(60)));
    assert_eq!(conv::select_variant(&ctx, cin, cout, h, w), Variant::GEMM);
    assert_eq!(ctx.tuner().unwrap().spent().1, 0, "a forced variant is not measured");
}
