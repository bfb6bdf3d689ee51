//! The optimiser state of a tiled stage, in host memory beside its image: Adam (the f32
//! arithmetic of shaders/adam.wgsl), L-BFGS ([`crate::reference::Lbfgs`] on f32: the algorithm,
//! safeguards and options of `gpu::lbfgs`) and the iterate average of `--avg-decay` (the f32
//! arithmetic of shaders/ema.wgsl), so a tiled stage optimises as an untiled one does.

use crate::gpu::adam::AdamConfig;
use crate::gpu::lbfgs::LbfgsConfig;
use crate::reference::Lbfgs;

/// Named f32 arrays and integer counters: a checkpoint's share of the optimiser state.
pub type State = (Vec<(String, Vec<f32>)>, Vec<(String, u64)>);

/// Adam's moments and step count.
pub struct HostAdam {
    cfg: AdamConfig,
    m: Vec<f32>,
    v: Vec<f32>,
    t: u32,
}

impl HostAdam {
    /// Adam over `n` parameters.
    pub fn new(n: usize, cfg: AdamConfig) -> HostAdam {
        HostAdam { cfg, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One Adam step on `x` from its gradient `g` (the same f32 arithmetic as
    /// shaders/adam.wgsl), then the clamp.
    pub fn step(&mut self, x: &mut [f32], g: &[f32]) {
        let cfg = &self.cfg;
        self.t += 1;
        let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
        let (ob1, ob2) = ((1.0 - cfg.beta1) as f32, (1.0 - cfg.beta2) as f32);
        let bc1 = (1.0 - cfg.beta1.powi(self.t as i32)) as f32;
        let bc2 = (1.0 - cfg.beta2.powi(self.t as i32)) as f32;
        for i in 0..x.len() {
            let g = g[i];
            self.m[i] = b1 * self.m[i] + ob1 * g;
            self.v[i] = b2 * self.v[i] + ob2 * g * g;
            let mut p = x[i] - cfg.lr * (self.m[i] / bc1) / ((self.v[i] / bc2).sqrt() + cfg.eps);
            if let Some((lo, hi)) = cfg.clamp {
                p = p.clamp(lo, hi);
            }
            x[i] = p;
        }
    }
}

/// The bias-corrected exponential moving average of the iterates.
pub struct HostEma {
    decay: f64,
    /// The d-weighted sum of the iterates (not yet bias-corrected).
    avg: Vec<f32>,
    /// [t, 1 - d^t], as gpu::ema's state buffer.
    state: [f32; 2],
}

impl HostEma {
    /// An empty average (t = 0) of `n` values.
    pub fn new(n: usize, decay: f64) -> HostEma {
        HostEma { decay, avg: vec![0.0; n], state: [0.0; 2] }
    }

    /// avg = d avg + (1 - d) x, and the state advanced by one (shaders/ema.wgsl's arithmetic).
    pub fn update(&mut self, x: &[f32]) {
        let (d, od) = (self.decay as f32, (1.0 - self.decay) as f32);
        self.state = [self.state[0] + 1.0, d * self.state[1] + od];
        self.avg.iter_mut().zip(x).for_each(|(a, &v)| *a = d * *a + od * v);
    }

    /// The bias-corrected average (all zeros before any update), as `gpu::ema::Ema::read`.
    pub fn read(&self) -> Vec<f32> {
        let c = self.state[1];
        if c == 0.0 {
            return self.avg.clone();
        }
        self.avg.iter().map(|v| v / c).collect()
    }
}

/// The update rule of a tiled stage.
pub enum Rule {
    /// Adam (clamped to \[0,1\] by its config).
    Adam(HostAdam),
    /// L-BFGS in f32, projected onto its bounds when they are set.
    Lbfgs(Box<Lbfgs<f32>>),
}

/// A tiled stage's optimiser: the update rule and the optional average of its iterates.
pub struct TiledOptimizer {
    /// The update rule.
    pub rule: Rule,
    /// The average that is written (`--avg-decay`), when on.
    pub ema: Option<HostEma>,
}

impl TiledOptimizer {
    /// Adam over `n` pixels.
    pub fn adam(n: usize, cfg: AdamConfig) -> TiledOptimizer {
        TiledOptimizer { rule: Rule::Adam(HostAdam::new(n, cfg)), ema: None }
    }

    /// L-BFGS with `cfg`'s history, step length and bounds, as `gpu::lbfgs::Lbfgs::new` takes them.
    pub fn lbfgs(cfg: LbfgsConfig) -> TiledOptimizer {
        assert!(cfg.history >= 1);
        let mut l = Lbfgs::new(cfg.history, cfg.lr);
        l.bounds = cfg.bounds;
        TiledOptimizer { rule: Rule::Lbfgs(Box::new(l)), ema: None }
    }

    /// Averages the iterates with decay `decay`, starting from `x0`, the initial image (as
    /// crowsonkb's EMA and the untiled stage: the first value is the initial image itself).
    pub fn average(mut self, decay: f64, x0: &[f32]) -> TiledOptimizer {
        let mut e = HostEma::new(x0.len(), decay);
        e.update(x0);
        self.ema = Some(e);
        self
    }

    /// One update of `x` from its gradient `g`, then the average's.
    pub fn step(&mut self, x: &mut [f32], g: &[f32]) {
        match &mut self.rule {
            Rule::Adam(a) => a.step(x, g),
            Rule::Lbfgs(l) => l.step(x, g),
        }
        if let Some(e) = &mut self.ema {
            e.update(x);
        }
    }

    /// What the stage would output now, from its current iterate `x`: the bias-corrected
    /// average with `--avg-decay`, else `x` (before the clamp and colour post-processing).
    pub fn output(&self, x: &[f32]) -> Vec<f32> {
        match &self.ema {
            Some(e) => e.read(),
            None => x.to_vec(),
        }
    }

    /// The whole state, named as an untiled stage's checkpoint names its buffers where they
    /// mean the same: `adam.m`, `adam.v` and the counter `adam_t`; L-BFGS's arrays and counters
    /// ([`Lbfgs::arrays`]); `ema.avg` and `ema.state` (\[t, 1 - d^t\]).
    pub fn state(&self) -> State {
        let (mut arrays, mut counters) = (vec![], vec![]);
        match &self.rule {
            Rule::Adam(a) => {
                arrays.push(("adam.m".to_string(), a.m.clone()));
                arrays.push(("adam.v".to_string(), a.v.clone()));
                counters.push(("adam_t".to_string(), a.t as u64));
            }
            Rule::Lbfgs(l) => {
                arrays.extend(l.arrays());
                counters.extend(l.counters());
            }
        }
        if let Some(e) = &self.ema {
            arrays.push(("ema.avg".to_string(), e.avg.clone()));
            arrays.push(("ema.state".to_string(), e.state.to_vec()));
        }
        (arrays, counters)
    }

    /// Restores what [`TiledOptimizer::state`] saved, for an image of `n` pixels' values, from
    /// `array(name)` and `counter(name)`; the error names the array missing or of the wrong length.
    pub fn restore(
        &mut self,
        n: usize,
        array: &dyn Fn(&str) -> Option<Vec<f32>>,
        counter: &dyn Fn(&str) -> u64,
    ) -> Result<(), String> {
        let get = |name: &str, len: usize| crate::reference::sized_array(array, name, len);
        match &mut self.rule {
            Rule::Adam(a) => {
                (a.m, a.v) = (get("adam.m", n)?, get("adam.v", n)?);
                a.t = counter("adam_t") as u32;
            }
            Rule::Lbfgs(l) => l.restore(n, array, counter)?,
        }
        if let Some(e) = &mut self.ema {
            let s = get("ema.state", 2)?;
            (e.avg, e.state) = (get("ema.avg", n)?, [s[0], s[1]]);
        }
        Ok(())
    }

    /// f32 values of host memory the state holds per pixel value (with the image and its
    /// gradient, what a tiled stage keeps on the host): Adam's 2 moments, or L-BFGS's 2 per
    /// pair, its previous gradient, last step and direction; 1 more for the average.
    pub fn values_per_pixel(lbfgs_history: Option<usize>, average: bool) -> u64 {
        lbfgs_history.map_or(2, |m| 2 * m as u64 + 3) + average as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift64;

    /// A separable quadratic's gradient, a (x - c), as f32.
    fn grad(x: &[f32], a: &[f32], c: &[f32]) -> Vec<f32> {
        x.iter().zip(a).zip(c).map(|((x, a), c)| a * (x - c)).collect()
    }

    #[test]
    fn restored_state_continues_bit_for_bit() {
        let mut r = XorShift64::new(3);
        let n = 257;
        let (a, c, x0) = (r.vec(n, 0.1, 10.0), r.vec(n, -0.5, 1.5), r.vec(n, 0.0, 1.0));
        let adam = AdamConfig { lr: 0.05, clamp: Some((0.0, 1.0)), ..Default::default() };
        let lbfgs = LbfgsConfig { history: 2, lr: 1.0, bounds: Some((0.0, 1.0)) };
        let makers: [&dyn Fn() -> TiledOptimizer; 2] =
            [&|| TiledOptimizer::adam(n, adam).average(0.7, &x0), &|| TiledOptimizer::lbfgs(lbfgs).average(0.7, &x0)];
        for make in makers {
            // Five steps, a checkpoint, three more; and a fresh optimiser restored there.
            let (mut opt, mut x) = (make(), x0.clone());
            for _ in 0..5 {
                let g = grad(&x, &a, &c);
                opt.step(&mut x, &g);
            }
            let (arrays, counters) = opt.state();
            let array = |name: &str| arrays.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let counter = |name: &str| counters.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v);
            let (mut back, mut y) = (make(), x.clone());
            back.restore(n, &array, &counter).unwrap();
            for _ in 0..3 {
                let g = grad(&x, &a, &c);
                opt.step(&mut x, &g);
                let g = grad(&y, &a, &c);
                back.step(&mut y, &g);
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x), bits(&y), "the iterates");
            assert_eq!(bits(&opt.output(&x)), bits(&back.output(&y)), "the averages");
            assert!(opt.output(&x) != x, "the average is not the iterate");
            // A missing or short array is named.
            let e = make().restore(n, &|k| array(k).filter(|_| k != "ema.avg"), &counter).unwrap_err();
            assert_eq!(e, "array ema.avg missing");
            let short =
                |k: &str| array(k).map(|v| if k.ends_with("s1") || k == "adam.v" { v[1..].to_vec() } else { v });
            let e = make().restore(n, &short, &counter).unwrap_err();
            assert!(e.ends_with(&format!("has {} values, the stage needs {n}", n - 1)), "{e}");
        }
    }

    #[test]
    fn lbfgs_in_f32_descends_and_stays_in_bounds() {
        // The same quadratic, its minimum partly outside [0,1]: projected L-BFGS in f32 keeps
        // every iterate in [0,1] and gets most of the way to the constrained minimum (as the
        // f64 reference does in tests/lbfgs.rs).
        let mut r = XorShift64::new(4);
        let n = 1000;
        let (a, c, mut x) = (r.vec(n, 0.1, 10.0), r.vec(n, -0.5, 1.5), r.vec(n, 0.0, 1.0));
        let f = |x: &[f32]| -> f64 {
            x.iter().zip(&a).zip(&c).map(|((x, a), c)| 0.5 * (a * (x - c) * (x - c)) as f64).sum()
        };
        let best: Vec<f32> = c.iter().map(|c| c.clamp(0.0, 1.0)).collect();
        let (f0, fmin) = (f(&x), f(&best));
        let mut opt = TiledOptimizer::lbfgs(LbfgsConfig { history: 5, lr: 1.0, bounds: Some((0.0, 1.0)) });
        for _ in 0..12 {
            let g = grad(&x, &a, &c);
            opt.step(&mut x, &g);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        assert!(f(&x) - fmin < 0.05 * (f0 - fmin), "f {f0} -> {} (constrained minimum {fmin})", f(&x));
    }
}
