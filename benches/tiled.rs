//! Tiled vs untiled rendering: ms per Adam step and GPU memory at sizes where both fit, and one
//! step at a size only tiling can do on this adapter.
//!     cargo bench --bench tiled [-- SIZE...]      (default 128 256; STYLIZE_ADAPTER picks the GPU)

use std::time::Instant;
use stylize::gpu::adam::AdamConfig;
use stylize::gpu::{AdapterChoice, Context};
use stylize::model::{LossSettings, Model, Pool, Preprocess, Tap};
use stylize::runner::{compute_targets, Graph, Net, Targets};
use stylize::tiled::optim::HostAdam;
use stylize::tiled::{graph_bytes, style_targets, TiledGraph};

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![128, 256] } else { sizes };
    let ctx =
        Context::new(&AdapterChoice::parse(&std::env::var("STYLIZE_ADAPTER").unwrap_or_default())).expect("adapter");
    let taps = |v: &[&str]| v.iter().map(|n| Tap::parse(Model::Vgg19, n).unwrap()).collect::<Vec<_>>();
    let s = LossSettings {
        model: Model::Vgg19,
        content_layers: taps(&["relu3_2"]),
        style_layers: taps(&["relu1_1", "relu2_1", "relu3_1"]),
        style_layer_weights: vec![1.0; 3],
        content_weight: 1.0,
        style_weight: 1e3,
        style_loss: Default::default(),
        tv_weight: 1.0,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    };
    let w = stylize::weights::random(1, s.convs_needed());
    let net = Net::new(&ctx, &w.layers).expect("net");
    let cfg = AdamConfig { lr: 0.02, clamp: Some((0.0, 1.0)), ..Default::default() };
    println!("adapter: {}; layers content relu3_2, style relu1_1,relu2_1,relu3_1; square images", ctx.describe());
    println!("{:>6} {:>10} {:>6} {:>12} {:>14}", "size", "mode", "tiles", "ms/step", "GPU MiB");
    for &n in &sizes {
        let img = stylize::image_io::synthetic_photo(n as u32, n as u32, 1).data;
        let sty = stylize::image_io::synthetic_painting(n as u32, n as u32, 2).data;
        let (total, largest) = graph_bytes(&s, n, n);
        let fits = largest <= ctx.limits.max_storage_buffer_binding_size;
        if fits {
            let tc = compute_targets(&ctx, &net, &s, &img, n, n, true, false).unwrap();
            let ts = compute_targets(&ctx, &net, &s, &sty, n, n, false, true).unwrap();
            let g =
                Graph::new(&ctx, &net, &s, &Targets { content: tc.content, style: ts.style }, &img, n, n, cfg).unwrap();
            g.step(&ctx, 1).unwrap();
            ctx.wait().unwrap();
            let t = Instant::now();
            g.step(&ctx, 3).unwrap();
            ctx.wait().unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0 / 3.0;
            println!("{n:>6} {:>10} {:>6} {ms:>12.1} {:>14.1}", "untiled", 1, g.gpu_bytes() as f64 / 1048576.0);
        } else {
            println!("{n:>6} {:>10} {:>6} {:>12} {:>14.1}", "untiled", "-", "does not fit", total as f64 / 1048576.0);
        }
        let tile = (n / 2).max(16);
        let st = style_targets(&ctx, &net, &s, &sty, n, n, tile).unwrap();
        let mut tg = TiledGraph::new(&ctx, &net, &s, (&img, n, n), st, &img, tile).unwrap();
        let mut adam = HostAdam::new(tg.image.len(), cfg);
        tg.evaluate(&ctx, &net).unwrap();
        adam.step(&mut tg.image, &tg.grad);
        let t = Instant::now();
        let steps = 2;
        for _ in 0..steps {
            tg.evaluate(&ctx, &net).unwrap();
            adam.step(&mut tg.image, &tg.grad);
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0 / steps as f64;
        let label = format!("tile {tile}");
        println!(
            "{n:>6} {label:>10} {:>6} {ms:>12.1} {:>14.1}",
            tg.tiles.len(),
            tg.gpu_bytes_estimate() as f64 / 1048576.0
        );
    }
}
