//! Checkpoint and resume (`--checkpoint-every`, `--resume`, issue 18 part 1): a render stopped at
//! step k (or killed after a periodic checkpoint) and resumed writes the same bytes and the same
//! loss log as an uninterrupted one on the same adapter, for Adam and L-BFGS, untiled and tiled,
//! with the iterate average, within multi-scale; and a resume whose settings or inputs changed is
//! refused with a line naming what differs.
//!
//! Tiny renders (24 px, random weights, shallow layers) so it runs on a software Vulkan driver.

mod common;
use common::{images, tmpdir};
use std::path::{Path, PathBuf};
use stylize::gpu::tune::{adapter_key, table_path, TuneMode};
use stylize::gpu::{AdapterChoice, Context};
use stylize::image_io;
use stylize::render::{self, checkpoint_path, Checkpoint, Control, Observer, Optimizer, RenderOptions, StageInfo};
use stylize::render::{Shard, TileMode, WeightsSource};
use stylize::{Error, Result};

/// 24 px, random weights, 9 steps, losses printed every 2 steps (so checkpoints fall both where
/// a step's losses are still to be measured and where they are not), a checkpoint every 3 steps.
fn options(dir: &Path) -> RenderOptions {
    let (c, s) = images(dir);
    RenderOptions {
        content: c,
        styles: vec![s],
        output: dir.join("out.png"),
        size: 24,
        steps: 9,
        print_every: 2,
        weights: WeightsSource::Random(1),
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        log_json: Some(dir.join("log.jsonl")),
        checkpoint_every: Some(3),
        tile: TileMode::Off,
        // The fixed kernel rules: no measured choice can differ between the runs.
        tune: Some(TuneMode::Off),
        quiet: true,
        ..Default::default()
    }
}

/// Stops the render before frame step `stop_at` (the loops ask once before each step); copies
/// the checkpoint written at (scale, stage step) `keep` to `kept`, as a render killed after it
/// would have left it.
struct Stopper {
    stop_at: u32,
    asked: u32,
    keep: Option<(usize, u32)>,
    kept: PathBuf,
    output: PathBuf,
}

impl Observer for Stopper {
    fn control(&mut self) -> Control {
        self.asked += 1;
        if self.asked >= self.stop_at {
            Control::Stop
        } else {
            Control::Continue
        }
    }
    fn checkpoint(&mut self, stage: &StageInfo, ck: &mut Checkpoint) -> Result<()> {
        if self.keep == Some((stage.scale, ck.step)) {
            std::fs::copy(checkpoint_path(&self.output), &self.kept).unwrap();
        }
        Ok(())
    }
}

/// The log's lines without their times.
fn log_lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("elapsed_s");
            v
        })
        .collect()
}

/// Renders `o` uninterrupted, then stopped before frame step `stop_at` and resumed (from
/// the stop's checkpoint, or with `keep` = (scale, stage step) from the periodic checkpoint
/// taken there), and checks that the resumed render wrote the same file bytes and log. Returns
/// the resumed render's report.
fn resumed_equals_uninterrupted(o: &RenderOptions, stop_at: u32, keep: Option<(usize, u32)>) -> render::RenderReport {
    let log = o.log_json.clone().unwrap();
    render::render(o).expect("uninterrupted render");
    let want = std::fs::read(&o.output).unwrap();
    let want_log = log_lines(&log);
    let ckpt = checkpoint_path(&o.output);
    assert!(!ckpt.exists(), "a finished render leaves no checkpoint");
    std::fs::remove_file(&o.output).unwrap();

    let kept = o.output.with_extension("kept.ckpt");
    let mut stop = Stopper { stop_at, asked: 0, keep, kept: kept.clone(), output: o.output.clone() };
    let e = render::render_with(o, &mut stop).expect_err("the render should be stopped");
    assert!(matches!(e, Error::Interrupted { .. }), "{e}");
    assert!(ckpt.exists(), "a stop writes a checkpoint");
    let from = match keep {
        Some(_) => {
            assert!(kept.exists(), "no periodic checkpoint at {keep:?}");
            kept
        }
        None => ckpt.clone(),
    };
    let ck = Checkpoint::read(&from).unwrap();
    println!("resuming from scale {} step {} (pending {})", ck.scale, ck.step, ck.pending);
    let resumed = RenderOptions { resume: Some(from), ..o.clone() };
    let report = render::render(&resumed).expect("resumed render");
    let got = std::fs::read(&o.output).unwrap();
    assert!(got == want, "the resumed render's file differs from the uninterrupted one's");
    assert_eq!(log_lines(&log), want_log, "the resumed render's log differs");
    assert!(!ckpt.exists(), "the finished resumed render removes its checkpoint");
    let resumed = report.stages.iter().find(|s| s.scale == ck.scale).unwrap();
    assert_eq!(resumed.resumed_at, Some(ck.step), "the report names the resumed stage");
    report
}

#[test]
fn adam_resumes_bit_identically_from_a_stop_and_from_a_periodic_checkpoint() {
    let d = tmpdir("adam");
    let o = options(&d);
    // Stopped after 4 steps (step 4's losses still to be measured: a print step), after 5 (its
    // losses reported), and before the first step.
    resumed_equals_uninterrupted(&o, 5, None);
    resumed_equals_uninterrupted(&o, 6, None);
    resumed_equals_uninterrupted(&o, 1, None);
    // Killed after the periodic checkpoint of step 3, and of step 6 (a print step).
    resumed_equals_uninterrupted(&o, 6, Some((0, 3)));
    resumed_equals_uninterrupted(&o, 8, Some((0, 6)));
}

#[test]
fn lbfgs_resumes_bit_identically_with_its_history_ring_wrapped() {
    let d = tmpdir("lbfgs");
    // A history of 2 pairs: by step 5 the ring has wrapped, so the restored slots and count matter.
    let o = RenderOptions { optimizer: Optimizer::Lbfgs, lbfgs_history: 2, ..options(&d) };
    resumed_equals_uninterrupted(&o, 5, None);
    resumed_equals_uninterrupted(&o, 8, Some((0, 6)));
}

#[test]
fn the_iterate_average_resumes_bit_identically() {
    let d = tmpdir("ema");
    let o = RenderOptions { avg_decay: 0.8, ..options(&d) };
    resumed_equals_uninterrupted(&o, 5, Some((0, 3)));
}

#[test]
fn multi_scale_resumes_in_the_right_scale() {
    let d = tmpdir("scales");
    // Scales 16 and 24 px, 5 steps each: frame steps 1-5 then 6-10; checkpoints every 3 frame steps.
    let o = RenderOptions { scales: 2, initial_size: 16, steps: 5, ..options(&d) };
    // Stopped in the second scale, and resumed from the periodic checkpoint of frame step 6
    // (stage step 1 of scale 1): the report lists the first scale as skipped.
    let r = resumed_equals_uninterrupted(&o, 9, Some((1, 1)));
    assert_eq!(r.stages.len(), 2);
    let (s0, s1) = (&r.stages[0], &r.stages[1]);
    assert_eq!((s0.scale, s0.resumed_at, s0.steps_run(), s0.tiles), (0, Some(5), 0, 0));
    assert_eq!((s1.scale, s1.resumed_at, s1.steps_run()), (1, Some(1), 4));
    assert!(r.first == s1.first && r.first.total() > 0.0, "the report's first losses are the resumed stage's");
    // Stopped in the first scale, and at the second's first step.
    resumed_equals_uninterrupted(&o, 3, None);
    resumed_equals_uninterrupted(&o, 6, None);
}

#[test]
fn a_tiled_stage_resumes_bit_identically() {
    let d = tmpdir("tiled");
    // A budget below the untiled graph's estimate makes --tile auto tile.
    let o = RenderOptions { tile: TileMode::Auto, max_gpu_memory: Some(1), ..options(&d) };
    resumed_equals_uninterrupted(&o, 5, None);
    // Before the first step: the resumed stage measures its initial gradient again.
    resumed_equals_uninterrupted(&o, 1, None);
    resumed_equals_uninterrupted(&o, 8, Some((0, 6)));
}

#[test]
fn a_tiled_lbfgs_stage_with_the_average_resumes_bit_identically() {
    let d = tmpdir("tiled-lbfgs");
    // The host-side L-BFGS (history 2: wrapped by step 5, so the pairs' order and counts matter)
    // and the iterate average, both restored from the file.
    let o = RenderOptions {
        optimizer: Optimizer::Lbfgs,
        lbfgs_history: 2,
        avg_decay: 0.8,
        tile: TileMode::Auto,
        max_gpu_memory: Some(1),
        ..options(&d)
    };
    let r = resumed_equals_uninterrupted(&o, 6, None);
    assert!(r.stages[0].tiles >= 2, "the budget should force tiling");
    resumed_equals_uninterrupted(&o, 8, Some((0, 6)));
}

#[test]
fn a_resume_with_other_settings_or_inputs_is_refused_naming_the_difference() {
    let d = tmpdir("refuse");
    let o = options(&d);
    let mut stop = Stopper { stop_at: 4, asked: 0, keep: None, kept: PathBuf::new(), output: o.output.clone() };
    render::render_with(&o, &mut stop).expect_err("stopped");
    let ckpt = checkpoint_path(&o.output);
    let lr = RenderOptions { lr: Some(0.5), resume: Some(ckpt.clone()), ..o.clone() };
    let e = render::render(&lr).unwrap_err().to_string();
    assert!(e.contains("--lr differs") && e.contains("now: 0.5"), "{e}");
    // The style file's bytes change, its name does not.
    image_io::save_image(&o.styles[0], &image_io::synthetic_painting(36, 36, 3), &[]).unwrap();
    let e = render::render(&RenderOptions { resume: Some(ckpt.clone()), ..o.clone() }).unwrap_err().to_string();
    assert!(e.contains("style") && e.contains("SHA-256) differs"), "{e}");
    // A damaged file is refused as such.
    let mut b = std::fs::read(&ckpt).unwrap();
    b[40] ^= 0x55;
    std::fs::write(&ckpt, &b).unwrap();
    let e = render::render(&RenderOptions { resume: Some(ckpt.clone()), ..o.clone() }).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");
    // The in-memory library call has no files to checkpoint or resume: refused, not ignored.
    let (c, s) = (image_io::synthetic_photo(40, 30, 1), image_io::synthetic_painting(36, 36, 2));
    let w = stylize::weights::random(1, 4);
    for opts in [RenderOptions { resume: Some(ckpt), ..o.clone() }, o] {
        let e = render::stylize(&c, std::slice::from_ref(&s), &w, &opts, &mut ()).unwrap_err().to_string();
        assert!(e.contains("neither writes nor resumes checkpoints"), "{e}");
    }
}

/// The binary: SIGTERM once the first periodic checkpoint is written, then `--resume` (refused
/// with another `--lr`, accepted with the same command) writes the uninterrupted render's bytes.
#[cfg(unix)]
#[test]
fn the_binary_checkpoints_on_sigterm_and_resumes_bit_identically() {
    use std::process::{Command, Stdio};
    let d = tmpdir("cli");
    let (c, s) = images(&d);
    let out = d.join("out.png");
    let ckpt = checkpoint_path(&out);
    let mut args: Vec<String> = ["render", c.to_str().unwrap(), s.to_str().unwrap(), "-o", out.to_str().unwrap()]
        .iter()
        .map(|a| a.to_string())
        .collect();
    for a in "--size 24 --steps 300 --weights random:1 --content-layers relu2_1 --style-layers relu1_1,relu2_1 \
              --tune off --tile off --quiet --checkpoint-every 5"
        .split_whitespace()
    {
        args.push(a.into());
    }
    let bin = env!("CARGO_BIN_EXE_stylize");
    let run = |extra: &[&str]| Command::new(bin).args(&args).args(extra).output().expect("run stylize");
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = std::fs::read(&out).unwrap();
    assert!(!ckpt.exists());
    std::fs::remove_file(&out).unwrap();

    let child = Command::new(bin).args(&args).stderr(Stdio::piped()).spawn().unwrap();
    let t = std::time::Instant::now();
    while !ckpt.exists() && t.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "the render finished before the signal: {err}");
    assert!(err.contains("interrupted") && err.contains("--resume"), "{err}");
    let step = Checkpoint::read(&ckpt).unwrap().step;
    println!("stopped at step {step}: {}", err.trim());
    assert!(step < 300);

    let o = run(&["--resume", ckpt.to_str().unwrap(), "--lr", "0.5"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && err.contains("--lr differs"), "{err}");
    let o = run(&["--resume", ckpt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == want, "the resumed render's file differs");
    assert!(!ckpt.exists());
}

#[test]
fn a_batch_with_temporal_init_resumes_in_its_second_frame() {
    let d = tmpdir("batch");
    let base = options(&d);
    let c2 = d.join("content2.png");
    image_io::save_image(&c2, &image_io::synthetic_photo(40, 30, 5), &[]).unwrap();
    let o = RenderOptions {
        content_list: vec![base.content.clone(), c2],
        output: d.join("frames"),
        temporal_init: true,
        ..base
    };
    let outs = [d.join("frames/content.png"), d.join("frames/content2.png")];
    render::render(&o).expect("uninterrupted batch");
    let want: Vec<Vec<u8>> = outs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let want_log = log_lines(o.log_json.as_ref().unwrap());
    std::fs::remove_dir_all(d.join("frames")).unwrap();
    // 9 steps per frame: stopped before the second frame's step 4.
    let mut stop = Stopper { stop_at: 13, asked: 0, keep: None, kept: PathBuf::new(), output: PathBuf::new() };
    render::render_with(&o, &mut stop).expect_err("stopped");
    let ckpt = checkpoint_path(&outs[1]);
    let ck = Checkpoint::read(&ckpt).unwrap();
    assert_eq!((ck.frame, ck.step), (1, 3));
    // A shard without the checkpoint's frame refuses it rather than redo or skip frames.
    let shard = RenderOptions { resume: Some(ckpt.clone()), shard: Some(Shard { index: 0, count: 2 }), ..o.clone() };
    let e = render::render(&shard).unwrap_err().to_string();
    assert!(e.contains("its frame 1") && e.contains("shard 0/2 renders frames 0..0"), "{e}");
    render::render(&RenderOptions { resume: Some(ckpt.clone()), ..o.clone() }).expect("resumed batch");
    for (p, w) in outs.iter().zip(&want) {
        assert!(&std::fs::read(p).unwrap() == w, "{} differs", p.display());
    }
    assert_eq!(log_lines(o.log_json.as_ref().unwrap()), want_log);
    assert!(!ckpt.exists());
}

/// A resumed render computes with the interrupted one's kernel choices even when the tuning
/// table changed in between (here: none at first, so the fixed rules; then a table, e.g. from
/// `stylize tune`, with other variants for every shape the render uses). The new table alone
/// changes the losses, so the recorded choices are what keeps the resume bit-identical.
#[test]
fn a_resume_repeats_the_interrupted_renders_kernel_choices() {
    let d = tmpdir("tune");
    let dir = d.join("tune");
    let o = RenderOptions { tune: Some(TuneMode::Cached), tune_dir: Some(dir.clone()), ..options(&d) };
    let log = o.log_json.clone().unwrap();
    render::render(&o).expect("uninterrupted render");
    let (want, want_log) = (std::fs::read(&o.output).unwrap(), log_lines(&log));
    let mut stop = Stopper { stop_at: 5, asked: 0, keep: None, kept: PathBuf::new(), output: o.output.clone() };
    render::render_with(&o, &mut stop).expect_err("stopped");
    let ckpt = checkpoint_path(&o.output);
    let ck = Checkpoint::read(&ckpt).unwrap();
    assert!(ck.kernels.iter().any(|(k, _)| k.starts_with("conv3x3")), "{:?}", ck.kernels);
    assert!(ck.kernels.iter().all(|(_, v)| v == "rules"), "no table yet: {:?}", ck.kernels);
    // A table for this adapter appears: the storage-buffer kernels for every shape used.
    let ctx = Context::new(&AdapterChoice::parse(&o.adapter)).unwrap();
    let kernels: serde_json::Map<String, serde_json::Value> =
        ck.kernels.iter().map(|(k, _)| (k.clone(), "tiled".into())).collect();
    std::fs::create_dir_all(&dir).unwrap();
    let g = stylize::gpu::tune::CANDIDATES_GENERATION;
    let table = serde_json::json!({ "adapter": adapter_key(&ctx.info), "candidates": g, "kernels": kernels });
    std::fs::write(table_path(&dir, &ctx.info), table.to_string()).unwrap();
    drop(ctx);
    render::render(&RenderOptions { resume: Some(ckpt), ..o.clone() }).expect("resumed render");
    assert!(std::fs::read(&o.output).unwrap() == want, "the resumed render's file differs");
    assert_eq!(log_lines(&log), want_log, "the resumed render's log differs");
    // The losses show the other kernels' rounding (the 8-bit PNG of 9 steps may not).
    render::render(&RenderOptions { checkpoint_every: None, ..o.clone() }).expect("a render with the table");
    assert_ne!(log_lines(&log), want_log, "the table's kernels should change the losses");
}
