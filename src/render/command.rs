//! The settings each PNG records: the command line that reproduces its render (every option that
//! changes the result, the inputs and the weights used) and the weights' description.

use super::{Init, Optimizer, RenderOptions, WeightsSource, DEFAULT_EDGE_MARGIN};
use crate::model::{Edge, LossSettings, Model, Pool, Preprocess, StyleLoss, Tap};
use std::path::{Path, PathBuf};

/// The settings a PNG records so a result can be reproduced.
pub(super) fn settings_text(
    o: &RenderOptions,
    s: &LossSettings,
    source: &str,
    frame: Option<&PathBuf>,
) -> Vec<(String, String)> {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let names = |t: &[Tap]| t.iter().map(|t| t.name(s.model)).collect::<Vec<_>>().join(",");
    let list = |v: &[f32]| v.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
    let mut inputs = vec![];
    if o.content_list.is_empty() {
        inputs.push(q(&o.content));
    }
    inputs.extend(o.styles.iter().map(|p| q(p)));
    let mut cmd = format!(
        "stylize render {} -o {} --size {} --steps {} --lr {} --content-weight {} --style-weight {} \
         --tv-weight {} --content-layers {} --style-layers {} --style-layer-weights {} --pool {} --init {} \
         --seed {} --preprocess {}",
        inputs.join(" "),
        q(&o.output),
        o.size,
        o.steps,
        o.learning_rate(),
        s.content_weight,
        s.style_weight,
        s.tv_weight,
        names(&s.content_layers),
        names(&s.style_layers),
        list(&s.style_layer_weights),
        if s.pool == Pool::Avg { "avg" } else { "max" },
        match &o.init {
            Init::Content => "content".to_string(),
            Init::Noise => "noise".to_string(),
            Init::Image(p) => q(p),
        },
        o.seed,
        if s.preprocess == Preprocess::Torch { "torch" } else { "caffe" },
    );
    // The weights used: a file's path, the cache path of the downloaded default, or the seed.
    cmd += &match &o.weights {
        WeightsSource::Random(seed) => format!(" --weights random:{seed}"),
        WeightsSource::File(p) => format!(" --weights {}", q(p)),
        WeightsSource::Default => format!(" --weights {:?}", source),
    };
    match o.edge {
        Edge::Zero => cmd += " --edge zero",
        Edge::Reflect(r) if r != DEFAULT_EDGE_MARGIN => cmd += &format!(" --edge-margin {r}"),
        Edge::Reflect(_) => {}
    }
    if s.model != Model::Vgg19 {
        cmd += &format!(" --model {}", s.model.name());
    }
    if !o.content_list.is_empty() {
        cmd += &format!(" --content-list {}", o.content_list.iter().map(|p| q(p)).collect::<Vec<_>>().join(","));
    }
    if let Some(b) = &o.style_blend_weights {
        cmd += &format!(" --style-blend-weights {}", list(b));
    }
    for m in &o.style_masks {
        cmd += &format!(" --style-mask {}", q(m));
    }
    if let Some(m) = &o.content_mask {
        cmd += &format!(" --content-mask {}", q(m));
    }
    if o.style_scale != 1.0 {
        cmd += &format!(" --style-scale {}", o.style_scale);
    }
    if o.scales > 1 {
        cmd += &format!(" --scales {} --initial-size {}", o.scales, o.initial_size);
    }
    if let Some(st) = &o.scale_steps {
        cmd += &format!(" --scale-steps {}", st.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","));
    }
    if o.optimizer == Optimizer::Lbfgs {
        cmd += &format!(" --optimizer lbfgs --lbfgs-history {}", o.lbfgs_history);
        if !o.lbfgs_clamp {
            cmd += " --lbfgs-clamp off";
        }
    }
    if o.avg_decay > 0.0 {
        cmd += &format!(" --avg-decay {}", o.avg_decay);
    }
    if o.normalize_gradients {
        cmd += " --normalize-gradients";
    }
    if s.style_loss != StyleLoss::Gram {
        cmd += &format!(" --style-loss {}", s.style_loss.name());
    }
    if o.original_colors {
        cmd += " --original-colors";
    }
    if o.color_match {
        cmd += " --color-match";
    }
    if o.temporal_init {
        cmd += " --temporal-init";
    }
    if o.temporal_weight > 0.0 {
        let f = &o.flow;
        cmd += &format!(
            " --temporal-weight {} --flow-smoothness {} --flow-warps {} --flow-iterations {}",
            o.temporal_weight, f.alpha, f.warps, f.iterations
        );
    }
    if o.bit_depth == 16 {
        cmd += " --bit-depth 16";
    }
    let mut v = vec![
        ("Software".into(), format!("stylize {}", env!("CARGO_PKG_VERSION"))),
        ("stylize:command".into(), cmd),
        ("stylize:weights".into(), source.to_string()),
    ];
    if let Some(f) = frame {
        v.push(("stylize:frame".into(), f.display().to_string()));
    }
    v
}
