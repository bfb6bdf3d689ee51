//! Batch renders across machines and runs (issue 17, part 3): `--shard` (explicit, Kubernetes,
//! Slurm), resumable batches (complete outputs skipped, incomplete or changed ones re-rendered,
//! JPEG sidecars), and where a `--temporal-init` shard starts.
//!
//! Tiny renders (24 px, random weights, shallow layers, 3 steps) so they run on lavapipe.

mod common;
use common::{fast_with_progress, tmpdir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;
use stylize::image_io::{self, Planar};
use stylize::render::{self, Control, Init, Observer, RenderOptions, Shard, StepInfo, WeightsSource};
use stylize::Error;

/// Scheduler variables the tests set or must not inherit (a test run inside a Slurm job...).
const SCHEDULER_VARS: &[&str] = &[
    "JOB_COMPLETION_INDEX",
    "STYLIZE_SHARD_COUNT",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
];

/// `n` different 40x30 frames `f000.EXT`.. in `dir/frames`, and a style image; returns both paths.
fn frames(dir: &Path, n: usize, ext: &str) -> (PathBuf, PathBuf) {
    let f = dir.join("frames");
    std::fs::create_dir_all(&f).unwrap();
    for i in 0..n {
        image_io::save_image(&f.join(format!("f{i:03}.{ext}")), &image_io::synthetic_photo(40, 30, 10 + i as u64), &[])
            .unwrap();
    }
    let s = dir.join("style.png");
    image_io::save_image(&s, &image_io::synthetic_painting(36, 36, 2), &[]).unwrap();
    (f, s)
}

fn stylize_env<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stylize"));
    c.current_dir(dir).args(args);
    for v in SCHEDULER_VARS {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    c.output().expect("run stylize")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn ok(o: &Output) -> String {
    let e = stderr(o);
    assert!(o.status.success(), "stylize failed: {e}");
    e
}

/// name -> (bytes, mtime) of every file in `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return BTreeMap::new() };
    rd.map(|e| {
        let e = e.unwrap();
        let p = e.path();
        (
            e.file_name().to_string_lossy().to_string(),
            (std::fs::read(&p).unwrap(), e.metadata().unwrap().modified().unwrap()),
        )
    })
    .collect()
}

fn names(m: &BTreeMap<String, (Vec<u8>, SystemTime)>) -> Vec<String> {
    m.keys().cloned().collect()
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// (flags, environment, expected notice, the files the run adds).
type ShardRun<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a [&'a str]);

#[test]
fn shards_write_every_output_once_and_the_same_files_as_one_run_and_a_rerun_renders_only_deleted_ones() {
    let d = tmpdir("shards");
    let (f, s) = frames(&d, 5, "png");
    let (f, s) = (f.to_str().unwrap(), s.to_str().unwrap());
    // Same relative -o in two folders, so the recorded command lines are identical too.
    let (one, sharded) = (d.join("one"), d.join("sharded"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&sharded).unwrap();
    let base: Vec<&str> =
        ["render", f, s, "-o", "out"].into_iter().chain(fast_with_progress().iter().copied()).collect();
    let with = |extra: &[&str]| base.iter().chain(extra).map(|a| a.to_string()).collect::<Vec<String>>();
    ok(&stylize_env(&one, &base, &[]));
    let all = snapshot(&one.join("out"));
    assert_eq!(names(&all), ["f000.png", "f001.png", "f002.png", "f003.png", "f004.png"]);

    // Three shards of 5 frames: 2, 2 and 1 frames, given three ways (flag, Kubernetes, Slurm
    // array 10-12). Each adds exactly its own range and touches nothing else.
    let runs: [ShardRun; 3] = [
        (&["--shard", "0/3"], &[], "shard 0/3: frames 0..1 of 5 (f000.png .. f001.png)", &["f000.png", "f001.png"]),
        (
            &["--shard", "k8s"],
            &[("JOB_COMPLETION_INDEX", "1"), ("STYLIZE_SHARD_COUNT", "3")],
            "shard 1/3: frames 2..3 of 5",
            &["f002.png", "f003.png"],
        ),
        (
            &["--shard", "auto"],
            &[("SLURM_ARRAY_TASK_ID", "12"), ("SLURM_ARRAY_TASK_MIN", "10"), ("SLURM_ARRAY_TASK_COUNT", "3")],
            "shard 2/3: frames 4..4 of 5",
            &["f004.png"],
        ),
    ];
    let mut expected: Vec<String> = vec![];
    for (flags, env, notice, new) in runs {
        let before = snapshot(&sharded.join("out"));
        let err = ok(&stylize_env(&sharded, &with(flags), env));
        assert!(err.contains(notice), "expected {notice:?} in:\n{err}");
        assert!(lines_with(&err, "skipped").is_empty(), "{err}");
        let after = snapshot(&sharded.join("out"));
        expected.extend(new.iter().map(|n| n.to_string()));
        assert_eq!(names(&after), expected, "{flags:?} wrote other files");
        for (n, v) in &before {
            assert!(after[n] == *v, "{flags:?} rewrote {n}, another shard's output");
        }
    }
    for (n, (bytes, _)) in &all {
        assert!(snapshot(&sharded.join("out"))[n].0 == *bytes, "{n}: the sharded file differs from the unsharded one");
    }

    // Rerun the unsharded batch after deleting two outputs: only those two are rendered (the
    // others keep their bytes and mtimes), to the same bytes as before.
    std::fs::remove_file(one.join("out/f001.png")).unwrap();
    std::fs::remove_file(one.join("out/f003.png")).unwrap();
    let err = ok(&stylize_env(&one, &base, &[]));
    println!("{err}");
    let skipped = lines_with(&err, "skipped out/");
    assert_eq!(skipped.len(), 3, "{err}");
    for n in ["f000", "f002", "f004"] {
        assert!(skipped.iter().any(|l| l.contains(&format!("out/{n}.png: complete"))), "{n} not skipped:\n{err}");
    }
    assert!(err.contains("wrote 2 images to out (3 complete ones skipped)"), "{err}");
    // Progress lines exist for frames 2 and 4 (1-based) only.
    let rendered: Vec<&str> = ["[frame 1/5]", "[frame 2/5]", "[frame 3/5]", "[frame 4/5]", "[frame 5/5]"]
        .into_iter()
        .filter(|l| err.contains(l))
        .collect();
    assert_eq!(rendered, ["[frame 2/5]", "[frame 4/5]"], "{err}");
    let again = snapshot(&one.join("out"));
    assert_eq!(names(&again), names(&all));
    for (n, v) in &all {
        if n == "f001.png" || n == "f003.png" {
            assert!(again[n].0 == v.0, "{n}: the re-rendered file differs");
        } else {
            assert!(again[n] == *v, "{n} was rewritten although complete");
        }
    }
    // --overwrite renders all five again.
    let err = ok(&stylize_env(&one, &with(&["--overwrite"]), &[]));
    assert!(err.contains("wrote 5 images to out (last") && !err.contains("skipped"), "{err}");
}

#[test]
fn scheduler_environments_pick_the_shard_and_bad_shards_fail_in_one_line() {
    let d = tmpdir("env");
    let (f, s) = frames(&d, 2, "png");
    let (f, s) = (f.to_str().unwrap(), s.to_str().unwrap());
    let base: Vec<&str> =
        ["render", f, s, "-o", "out"].into_iter().chain(fast_with_progress().iter().copied()).collect();
    let with = |extra: &[&str]| base.iter().chain(extra).map(|a| a.to_string()).collect::<Vec<String>>();
    // More shards than frames: these shards have nothing to do and succeed without a GPU, which
    // shows the index and count read from each scheduler's variables.
    let k8s = [("JOB_COMPLETION_INDEX", "3"), ("STYLIZE_SHARD_COUNT", "5")];
    let err = ok(&stylize_env(&d, &with(&["--shard", "auto"]), &k8s));
    assert!(err.contains("shard 3/5: no frames (the batch has 2 for 5 shards)"), "{err}");
    assert!(err.contains("nothing to render"), "{err}");
    let slurm = [("SLURM_ARRAY_TASK_ID", "7"), ("SLURM_ARRAY_TASK_MIN", "4"), ("SLURM_ARRAY_TASK_COUNT", "6")];
    let err = ok(&stylize_env(&d, &with(&["--shard", "slurm"]), &slurm));
    assert!(err.contains("shard 3/6: no frames"), "{err}");
    assert!(!d.join("out").exists() || snapshot(&d.join("out")).is_empty());

    let fails = |extra: &[&str], env: &[(&str, &str)], needle: &str, single: bool| {
        let args = if single {
            let c = d.join("frames/f000.png");
            let v: Vec<String> = ["render", c.to_str().unwrap(), s, "-o", "one.png"]
                .into_iter()
                .chain(fast_with_progress().iter().copied())
                .chain(extra.iter().copied())
                .map(String::from)
                .collect();
            v
        } else {
            with(extra)
        };
        let out = stylize_env(&d, &args, env);
        let err = stderr(&out);
        assert!(!out.status.success(), "expected failure for {extra:?}; stderr: {err}");
        assert!(!err.contains("panicked") && err.trim().lines().count() == 1, "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: expected {needle:?} in: {err}");
        println!("{extra:?} {env:?}\n  -> {}", err.trim());
    };
    fails(&["--shard", "2/2"], &[], "--shard 2/2: the index I must be below N (0-based: 0/2 .. 1/2)", false);
    fails(&["--shard", "0/0"], &[], "the shard count N must be at least 1", false);
    fails(&["--shard", "half"], &[], "expected I/N (e.g. 0/4), auto, k8s or slurm", false);
    fails(&["--shard", "auto"], &[], "neither SLURM_ARRAY_TASK_ID", false);
    fails(&["--shard", "k8s"], &[("JOB_COMPLETION_INDEX", "0")], "STYLIZE_SHARD_COUNT is not set", false);
    fails(&["--shard", "slurm"], &[("SLURM_ARRAY_TASK_ID", "0")], "SLURM_ARRAY_TASK_COUNT is not set", false);
    fails(&["--shard", "0/2"], &[], "--shard splits a batch", true);
    assert!(!d.join("one.png").exists());

    let help = Command::new(env!("CARGO_BIN_EXE_stylize")).args(["render", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for word in
        ["--shard", "--overwrite", "JOB_COMPLETION_INDEX", "STYLIZE_SHARD_COUNT", "SLURM_ARRAY_TASK_ID", "sidecar"]
    {
        assert!(help.contains(word), "render --help does not mention {word}");
    }
}

/// Small library options (as tests/features.rs `fast`).
fn fast(content: &Path, style: &Path, out: &Path) -> RenderOptions {
    RenderOptions {
        content: content.to_path_buf(),
        styles: vec![style.to_path_buf()],
        output: out.to_path_buf(),
        size: 24,
        steps: 3,
        weights: WeightsSource::Random(1),
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        quiet: true,
        ..Default::default()
    }
}

/// Records the notices; stops the render before frame `stop.0`'s step `stop.1` when given.
#[derive(Default)]
struct Recorder {
    notices: Vec<String>,
    stop: Option<(usize, u32)>,
    stopping: bool,
}

impl Observer for Recorder {
    fn notice(&mut self, line: &str) {
        self.notices.push(line.to_string());
    }
    fn control(&mut self) -> Control {
        if self.stopping {
            Control::Stop
        } else {
            Control::Continue
        }
    }
    fn step(&mut self, s: &StepInfo) -> stylize::Result<()> {
        self.stopping |= self.stop.is_some_and(|(f, st)| s.stage.frame == f && s.frame_step + 1 == st);
        Ok(())
    }
}

fn render(o: &RenderOptions) -> (stylize::Result<render::RenderReport>, Vec<String>) {
    let mut r = Recorder::default();
    let rep = render::render_with(o, &mut r);
    (rep, r.notices)
}

fn step_of(p: &Path) -> String {
    let kv = if p.extension().is_some_and(|e| e == "jpg") {
        let text = std::fs::read_to_string(render::sidecar_path(p)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        return v["stylize:step"].as_str().unwrap().to_string();
    } else {
        image_io::read_png_text(p).unwrap()
    };
    kv.into_iter().find(|(k, _)| k == "stylize:step").unwrap().1
}

#[test]
fn interrupted_or_changed_outputs_are_rendered_again_and_jpegs_resume_through_their_sidecar() {
    for ext in ["png", "jpg"] {
        let d = tmpdir(&format!("resume-{ext}"));
        let (f, s) = frames(&d, 3, ext);
        let out = d.join("out");
        let o = fast(&f, &s, &out);
        let outs: Vec<PathBuf> = (0..3).map(|i| out.join(format!("f{i:03}.{ext}"))).collect();
        // Interrupted during frame 1 (as Ctrl-C does): frame 1 is saved at step 2 of 3.
        let mut stopper = Recorder { stop: Some((1, 3)), ..Default::default() };
        match render::render_with(&o, &mut stopper) {
            Err(Error::Interrupted { step: 2, .. }) => {}
            other => panic!("expected an interruption at step 2, got {other:?}"),
        }
        assert_eq!((step_of(&outs[0]), step_of(&outs[1])), ("3".into(), "2".into()));
        assert!(!outs[2].exists());
        if ext == "jpg" {
            assert!(render::sidecar_path(&outs[0]).exists());
        }
        // Resumed: frame 0 skipped, frame 1 (incomplete) and frame 2 (missing) rendered.
        let (rep, notes) = render(&o);
        let rep = rep.unwrap();
        println!("{ext}: {notes:#?}");
        assert_eq!(rep.skipped, [outs[0].clone()]);
        assert_eq!(rep.outputs, [outs[1].clone(), outs[2].clone()]);
        assert!(notes.iter().any(|n| n.ends_with(&format!("f001.{ext}: it stopped at step 2 of 3"))), "{notes:?}");
        assert_eq!(step_of(&outs[1]), "3");
        // Everything complete: nothing rendered, every output named as skipped.
        let (rep, notes) = render(&o);
        let rep = rep.unwrap();
        assert!(rep.outputs.is_empty() && rep.skipped == outs && rep.stages.is_empty(), "{rep:?}");
        assert_eq!(notes.iter().filter(|n| n.starts_with("skipped ")).count(), 3);
        // Other settings: every output is rendered again, with the differing record named.
        let changed = RenderOptions { style_weight: Some(1e5), ..o.clone() };
        let (rep, notes) = render(&changed);
        assert_eq!(rep.unwrap().outputs, outs);
        assert!(notes.iter().all(|n| n.contains("other settings (stylize:command differs)")), "{notes:?}");
        // --overwrite renders complete outputs too.
        let (rep, notes) = render(&RenderOptions { overwrite: true, ..changed.clone() });
        assert_eq!(rep.unwrap().outputs, outs);
        assert!(notes.is_empty(), "{notes:?}");
        if ext == "jpg" {
            // A JPEG whose sidecar is gone has no record: rendered again.
            std::fs::remove_file(render::sidecar_path(&outs[2])).unwrap();
            let (rep, notes) = render(&changed);
            assert_eq!(rep.unwrap().outputs, [outs[2].clone()]);
            assert!(notes.iter().any(|n| n.contains("a JPEG records no settings and its sidecar")), "{notes:?}");
        }
    }
}

fn log_start(p: &Path, frame: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["frame"] == frame && v["step"] == 0)
        .unwrap_or_else(|| panic!("no step 0 of frame {frame} in {text}"))
}

fn load(p: &Path) -> Planar {
    image_io::load_image(p, &Default::default()).unwrap()
}

#[test]
fn a_temporal_shard_starts_from_the_previous_shards_last_frame_when_complete() {
    let d = tmpdir("temporal");
    let (f, s) = frames(&d, 4, "png");
    let out = d.join("out");
    let o = RenderOptions { temporal_init: true, ..fast(&f, &s, &out) };
    let shard = |i, log: &str, overwrite| RenderOptions {
        shard: Some(Shard::new(i, 2).unwrap()),
        log_json: Some(d.join(log)),
        overwrite,
        ..o.clone()
    };
    // Shard 1 first: frame 1 (the previous shard's last) does not exist, so frame 2 starts from
    // --init, the content (content loss 0 at step 0).
    let (rep, notes) = render(&shard(1, "alone.jsonl", false));
    assert_eq!(rep.unwrap().outputs, [out.join("f002.png"), out.join("f003.png")]);
    assert!(
        notes.iter().any(|n| n.contains("f002.png starts from --init") && n.contains("not complete yet")),
        "{notes:?}"
    );
    let alone = log_start(&d.join("alone.jsonl"), 2);
    assert_eq!(alone["content"], 0.0, "{alone}");
    // Shard 0, then shard 1 again: frame 2 now starts from frame 1's output.
    let (rep, _) = render(&shard(0, "zero.jsonl", false));
    assert_eq!(rep.unwrap().outputs, [out.join("f000.png"), out.join("f001.png")]);
    let (rep, notes) = render(&shard(1, "chained.jsonl", true));
    assert_eq!(rep.unwrap().outputs, [out.join("f002.png"), out.join("f003.png")]);
    let from = format!("f002.png starts from {}", out.join("f001.png").display());
    assert!(notes.iter().any(|n| n.ends_with(&from)), "{notes:?}");
    let chained = log_start(&d.join("chained.jsonl"), 2);
    assert!(chained["content"].as_f64().unwrap() > 0.0, "{chained}");
    // Exactly as a render of frame 2 started from that file.
    let single = RenderOptions {
        content: f.join("f002.png"),
        output: d.join("single.png"),
        init: Init::Image(out.join("f001.png")),
        temporal_init: false,
        ..o.clone()
    };
    render::render(&single).unwrap();
    assert_eq!(load(&out.join("f002.png")).data, load(&d.join("single.png")).data);
}
