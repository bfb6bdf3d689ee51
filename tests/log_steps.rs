//! What a loss log's step means (issue 18): line k of `--log-json` holds the losses of the image
//! after k updates (line 0: the initial image) and the last line those of the image written.

mod common;
use common::{images, tmpdir};
use std::path::Path;
use std::process::Command;
use stylize::image_io::{self, Planar};
use stylize::render::{self, Optimizer, RenderOptions, WeightsSource};
use stylize::runner::Losses;

fn options(c: &Path, s: &Path, out: &Path, steps: u32, optimizer: Optimizer) -> RenderOptions {
    RenderOptions {
        content: c.to_path_buf(),
        styles: vec![s.to_path_buf()],
        output: out.to_path_buf(),
        size: 24,
        steps,
        print_every: 1,
        weights: WeightsSource::Random(1),
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        optimizer,
        // L-BFGS's unit step overshoots on these random weights: a smaller one keeps it sane.
        lr: (optimizer == Optimizer::Lbfgs).then_some(0.5),
        quiet: true,
        ..Default::default()
    }
}

/// (step, total) of every line.
fn read_log(p: &Path) -> Vec<(u32, f64)> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap() as u32, v["total"].as_f64().unwrap())
        })
        .collect()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    let rel = (got - want).abs() / want.abs().max(1e-30);
    assert!(rel <= tol, "{what}: {got:e} vs {want:e} (relative {rel:.2e} > {tol:e})");
}

/// The losses of `image` (at the options' working size) under the render's own network and
/// targets: one forward pass on a stage built as `stylize evaluate` builds it.
fn losses_of(o: &RenderOptions, image: &Planar) -> Losses {
    let (eng, st) = render::prepare(o).unwrap();
    assert_eq!((st.width, st.height), (image.width as usize, image.height as usize));
    st.graph.x.write(&eng.ctx, &image.data);
    st.graph.evaluate(&eng.ctx).unwrap();
    st.graph.read_losses(&eng.ctx).unwrap()
}

#[test]
fn log_line_k_is_the_image_after_k_updates_and_the_last_line_the_written_image() {
    let d = tmpdir("lines");
    let (c, s) = images(&d);
    let steps = 5;
    for opt in [Optimizer::Adam, Optimizer::Lbfgs] {
        let mut o = options(&c, &s, &d.join("o.png"), steps, opt);
        o.log_json = Some(d.join("log.jsonl"));
        let report = render::render(&o).unwrap();
        let lines = read_log(&d.join("log.jsonl"));
        // One line per step and one for the initial image.
        assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), (0..=steps).collect::<Vec<_>>(), "{opt:?}");
        // Line 0: the initial image (the content), as `stylize evaluate` measures it.
        let (l0, _, _, _) = render::evaluate(&o).unwrap();
        close(&format!("{opt:?} line 0"), lines[0].1, l0.total() as f64, 1e-6);
        assert_ne!(lines[0].1, lines[1].1, "{opt:?}: lines 0 and 1 are different images");
        // Line k: the last line of a render stopped after k steps (the image it writes).
        for k in 1..steps {
            let mut ok = options(&c, &s, &d.join(format!("o{k}.png")), k, opt);
            ok.log_json = Some(d.join(format!("log{k}.jsonl")));
            render::render(&ok).unwrap();
            let lk = read_log(&d.join(format!("log{k}.jsonl")));
            assert_eq!(lk.len(), k as usize + 1);
            // The same kernels on the same image (Adam's and projected L-BFGS's iterates stay in
            // [0,1], so the shorter render's clamp changes nothing): equal up to summation order.
            close(&format!("{opt:?} line {k}"), lines[k as usize].1, lk[k as usize].1, 1e-6);
        }
        // The last line is the summary's final loss.
        close(&format!("{opt:?} last line vs summary"), lines[steps as usize].1, report.last.total() as f64, 1e-7);
        println!("{opt:?}: log {:?}", lines);
    }
}

#[test]
fn the_last_logged_loss_is_that_of_the_image_returned() {
    // The in-memory render returns the f32 image it would write: its losses, measured afresh,
    // are the history's last entry (for unconstrained L-BFGS too, whose iterates leave [0,1]:
    // the image is clamped before it is measured, as before it is written).
    let d = tmpdir("returned");
    let (c, s) = images(&d);
    let limits = Default::default();
    let content = image_io::load_image(&c, &limits).unwrap();
    let style = image_io::load_image(&s, &limits).unwrap();
    let weights = stylize::weights::random(1, 4);
    for (opt, clamp) in [(Optimizer::Adam, true), (Optimizer::Lbfgs, true), (Optimizer::Lbfgs, false)] {
        let mut o = options(&c, &s, &d.join("o.png"), 8, opt);
        // L-BFGS with a unit step leaves [0,1] within a few steps here (unless clamped).
        o.lr = None;
        o.lbfgs_clamp = clamp;
        let out = render::stylize(&content, std::slice::from_ref(&style), &weights, &o, &mut ()).unwrap();
        assert_eq!(out.history.len(), 9);
        assert!(out.image.data.iter().all(|v| (0.0..=1.0).contains(v)));
        let fresh = losses_of(&o, &out.image);
        let last = &out.history[8].losses;
        close(
            &format!("{opt:?} (clamp {clamp}) last entry vs the returned image"),
            last.total() as f64,
            fresh.total() as f64,
            1e-6,
        );
        println!("{opt:?} (clamp {clamp}): last logged {:.6e}, returned image {:.6e}", last.total(), fresh.total());
    }
}

#[test]
fn binary_log_last_line_matches_evaluate_of_the_written_file() {
    let d = tmpdir("binary");
    let (c, s) = images(&d);
    let (out, log) = (d.join("o.png"), d.join("log.jsonl"));
    let common = ["--size", "24", "--weights", "random:1", "--content-layers", "relu2_1"];
    let layers = ["--style-layers", "relu1_1,relu2_1"];
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_stylize")).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let (cs, ss, os, ls) = (c.to_str().unwrap(), s.to_str().unwrap(), out.to_str().unwrap(), log.to_str().unwrap());
    let mut args = vec!["render", cs, ss, "-o", os, "--steps", "7", "--print-every", "3", "--log-json", ls, "--quiet"];
    // 16 bits per channel: the file holds the image to within 1/131070.
    args.extend(["--bit-depth", "16"]);
    args.extend(common);
    args.extend(layers);
    run(&args);
    let lines = read_log(&log);
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), vec![0, 3, 6, 7]);
    let mut args = vec!["evaluate", cs, ss, "--init", os];
    args.extend(common);
    args.extend(layers);
    let v: serde_json::Value = serde_json::from_str(run(&args).trim()).unwrap();
    let sum = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).sum::<f64>();
    let total = sum("content") + sum("style") + v["tv"].as_f64().unwrap();
    // The file holds the image rounded to 16 bits: its loss moves by far less than the f32
    // tolerance of a loss summed over the image; line 6 (one step earlier) is ~1e-1 away.
    println!("last line {:.6e}, evaluate of the file {total:.6e}, line 6 {:.6e}", lines[3].1, lines[2].1);
    close("last line vs evaluate --init", lines[3].1, total, 1e-5);
}

#[test]
fn a_tiled_render_logs_the_same_steps_as_an_untiled_one() {
    // The tiled loop reports step k from the pass over the tiles that starts update k + 1, and
    // the last step from one more pass: its log lines match the untiled render's.
    let d = tmpdir("tiled");
    let (c, s) = images(&d);
    let mut plain = options(&c, &s, &d.join("plain.png"), 4, Optimizer::Adam);
    plain.tile = render::TileMode::Off;
    plain.log_json = Some(d.join("plain.jsonl"));
    // A budget below the untiled graph's estimate makes --tile auto tile.
    let tiled = RenderOptions {
        output: d.join("tiled.png"),
        tile: render::TileMode::Auto,
        max_gpu_memory: Some(1),
        log_json: Some(d.join("tiled.jsonl")),
        ..plain.clone()
    };
    let rt = render::render(&tiled).unwrap();
    assert!(rt.stages[0].tiles >= 2, "the budget should force tiling");
    render::render(&plain).unwrap();
    let (lp, lt) = (read_log(&d.join("plain.jsonl")), read_log(&d.join("tiled.jsonl")));
    assert_eq!(lt.iter().map(|l| l.0).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    for (p, t) in lp.iter().zip(&lt) {
        assert_eq!(p.0, t.0);
        // Tiles sum the same terms in another order (tests/tiled.rs: 1e-4 over a render).
        close(&format!("tiled line {}", t.0), t.1, p.1, 1e-4);
    }
}
