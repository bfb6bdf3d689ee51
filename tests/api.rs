//! The library entry point `render::stylize`: images and weights in memory, the image and the
//! loss history back, progress, snapshots and cancellation through an `Observer`.

use stylize::image_io::{synthetic_painting, synthetic_photo, Planar};
use stylize::render::{stylize, Control, Ended, Observer, RenderOptions, StageInfo, StepInfo};
use stylize::Result;

fn options(steps: u32) -> RenderOptions {
    RenderOptions {
        size: 24,
        steps,
        print_every: 1,
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        ..Default::default()
    }
}

/// Stops after `stop_after` steps and asks for the image every `every` steps.
struct Watcher {
    stop_after: Option<u32>,
    every: u32,
    steps: Vec<u32>,
    images: Vec<(u32, u32, u32)>,
}

impl Observer for Watcher {
    fn control(&mut self) -> Control {
        match self.stop_after {
            Some(n) if self.steps.len() as u32 >= n => Control::Stop,
            _ => Control::Continue,
        }
    }
    fn step(&mut self, s: &StepInfo) -> Result<()> {
        self.steps.push(s.frame_step);
        Ok(())
    }
    fn wants_image(&mut self, _stage: &StageInfo, frame_step: u32) -> bool {
        frame_step.is_multiple_of(self.every)
    }
    fn image(&mut self, _stage: &StageInfo, frame_step: u32, image: &Planar) -> Result<()> {
        assert!(image.data.iter().all(|v| v.is_finite()));
        self.images.push((frame_step, image.width, image.height));
        Ok(())
    }
}

#[test]
fn renders_in_memory_and_returns_the_loss_history() {
    let content = synthetic_photo(40, 30, 1);
    let style = synthetic_painting(32, 32, 2);
    let weights = stylize::weights::random(1, 4);
    let mut w = Watcher { stop_after: None, every: 4, steps: vec![], images: vec![] };
    let out = stylize(&content, &[style], &weights, &options(12), &mut w).expect("render");
    assert_eq!(out.ended, Ended::Finished);
    assert_eq!((out.image.width, out.image.height), (24, 18));
    assert!(out.image.data.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(w.steps, (1..=12).collect::<Vec<_>>());
    assert_eq!(w.images, vec![(4, 24, 18), (8, 24, 18), (12, 24, 18)]);
    // Step 0 (the initial image) then every printed step; the loss falls.
    let steps: Vec<u32> = out.history.iter().map(|r| r.step).collect();
    assert_eq!(steps, (0..=12).collect::<Vec<_>>());
    let (first, last) = (out.history[0].losses.total(), out.history[12].losses.total());
    assert!(first.is_finite() && last < 0.9 * first, "loss {first} -> {last}");
    assert_eq!(out.stages.len(), 1);
}

#[test]
fn an_observer_can_stop_the_render() {
    let content = synthetic_photo(40, 30, 1);
    let style = synthetic_painting(32, 32, 2);
    let weights = stylize::weights::random(1, 4);
    let mut w = Watcher { stop_after: Some(3), every: 1000, steps: vec![], images: vec![] };
    let out = stylize(&content, &[style], &weights, &options(50), &mut w).expect("render");
    // With every step's losses wanted, step k is reported from step k + 1's forward pass, so a
    // stop asked on seeing step 3 ends after step 4, which is reported too.
    assert_eq!(out.ended, Ended::Stopped { step: 4 });
    assert_eq!(w.steps, vec![1, 2, 3, 4]);
    assert_eq!((out.image.width, out.image.height), (24, 18));
    assert!(out.stages.is_empty(), "the stopped stage did not finish");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let tiny = Planar::filled(4, 4, [0.5; 3]);
    let style = synthetic_painting(32, 32, 2);
    let weights = stylize::weights::random(1, 4);
    let e = stylize(&tiny, std::slice::from_ref(&style), &weights, &options(1), &mut ()).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
    let e = stylize(&synthetic_photo(40, 30, 1), &[], &weights, &options(1), &mut ()).unwrap_err();
    assert!(e.to_string().contains("STYLE"), "{e}");
    // relu2_1 needs three conv layers.
    let short = stylize::weights::random(1, 2);
    let e = stylize(&synthetic_photo(40, 30, 1), &[style], &short, &options(1), &mut ()).unwrap_err();
    assert!(e.to_string().contains("weights hold only 2"), "{e}");
}
