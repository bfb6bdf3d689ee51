//! L-BFGS on the host, generic over the element type: in f64 the tests' oracle of `gpu::lbfgs`,
//! in f32 the optimiser of tiled stages (whose image lives in host memory, `tiled::optim`).
//!
//! torch.optim.LBFGS's update without line search (jcjohnson/neural-style's optimizer) with the
//! GPU's safeguards and their one difference from torch: a pair with y.s <= 1e-10 is skipped but
//! still takes a slot (rho 0); a non-descent direction (g.d >= 0, or NaN) falls back to -H g.
//! Dot products and norms accumulate in f64 whatever the element type; vectors and the scalars
//! that scale them (t, H, rho, alpha, beta) are kept in the element type, as the GPU keeps f32.

use std::collections::VecDeque;
use std::ops::{Add, Mul, Neg, Sub};

/// An element type of [`Lbfgs`]: f64 (the oracle) or f32 (the tiled stages' host state).
pub trait Real:
    Copy + Default + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Neg<Output = Self>
{
    /// The value rounded to this type.
    fn from_f64(v: f64) -> Self;
    /// The value widened to f64.
    fn to_f64(self) -> f64;
    /// The value clamped to \[lo, hi\].
    fn clamp_to(self, lo: Self, hi: Self) -> Self;
}

impl Real for f64 {
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn clamp_to(self, lo: f64, hi: f64) -> f64 {
        self.clamp(lo, hi)
    }
}

impl Real for f32 {
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn clamp_to(self, lo: f32, hi: f32) -> f32 {
        self.clamp(lo, hi)
    }
}

fn dot<T: Real>(a: &[T], b: &[T]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.to_f64() * y.to_f64()).sum()
}

/// L-BFGS as torch.optim.LBFGS without line search, with the safeguards of `gpu::lbfgs` (see the
/// module's comment). Call [`Lbfgs::step`] once per iteration with the gradient at x.
pub struct Lbfgs<T: Real = f64> {
    /// Curvature pairs kept.
    pub history: usize,
    /// Step length.
    pub lr: T,
    /// Pairs skipped for too little curvature so far.
    pub skipped: u32,
    /// Steepest-descent fallbacks taken so far.
    pub fallbacks: u32,
    /// Projected L-BFGS: iterates clamped to \[lo, hi\], pairs from the steps taken.
    pub bounds: Option<(T, T)>,
    last_step: Vec<T>,
    s: VecDeque<Vec<T>>,
    y: VecDeque<Vec<T>>,
    ro: VecDeque<T>,
    /// The direction of the step being taken (scratch: rebuilt every step, kept to reuse its
    /// memory).
    d: Vec<T>,
    prev_g: Vec<T>,
    t: T,
    h: T,
    k: u64,
}

impl<T: Real> Lbfgs<T> {
    /// An optimiser keeping `history` pairs, step length `lr`.
    pub fn new(history: usize, lr: T) -> Lbfgs<T> {
        Lbfgs {
            history,
            lr,
            skipped: 0,
            fallbacks: 0,
            bounds: None,
            last_step: vec![],
            s: Default::default(),
            y: Default::default(),
            ro: Default::default(),
            d: vec![],
            prev_g: vec![],
            t: T::default(),
            h: T::from_f64(1.0),
            k: 0,
        }
    }

    /// Sets rho of the pair `age` iterations old (0: the newest) to `rho`: a test hook to plant
    /// a pair of negative curvature (see `gpu::lbfgs::Lbfgs::set_rho`).
    pub fn set_rho(&mut self, age: usize, rho: T) {
        let n = self.ro.len();
        self.ro[n - 1 - age] = rho;
    }

    /// Iterations taken so far.
    pub fn iterations(&self) -> u64 {
        self.k
    }

    /// One iteration: updates `x` in place from its gradient `g`.
    pub fn step(&mut self, x: &mut [T], g: &[T]) {
        self.k += 1;
        let mut d = std::mem::take(&mut self.d);
        d.clear();
        d.extend(g.iter().map(|&v| -v));
        if self.k == 1 {
            self.h = T::from_f64(1.0);
            let l1: f64 = g.iter().map(|v| v.to_f64().abs()).sum();
            self.t = T::from_f64((1.0f64).min(1.0 / l1)) * self.lr;
        } else {
            // The oldest pair's buffers hold the new y and, later, the next step (no allocation
            // once the ring is full: the image can be GBs).
            let (mut y, spare) = if self.s.len() == self.history {
                self.ro.pop_front();
                (self.y.pop_front().unwrap_or_default(), self.s.pop_front().unwrap_or_default())
            } else {
                (vec![], vec![])
            };
            y.clear();
            y.extend(g.iter().zip(&self.prev_g).map(|(&a, &b)| a - b));
            let s = std::mem::replace(&mut self.last_step, spare);
            let ys = dot(&y, &s);
            // Too little curvature: the pair contributes nothing (rho 0) and H stays.
            let ro = if ys > 1e-10 {
                self.h = T::from_f64(ys / dot(&y, &y));
                T::from_f64(1.0 / ys)
            } else {
                self.skipped += 1;
                T::default()
            };
            self.s.push_back(s);
            self.y.push_back(y);
            self.ro.push_back(ro);
            // Two-loop recursion on d (q, then r), newest pair first.
            let mut al = vec![T::default(); self.s.len()];
            for i in (0..self.s.len()).rev() {
                al[i] = T::from_f64(dot(&self.s[i], &d)) * self.ro[i];
                d.iter_mut().zip(&self.y[i]).for_each(|(a, &b)| *a = *a - al[i] * b);
            }
            d.iter_mut().for_each(|v| *v = *v * self.h);
            for i in 0..self.s.len() {
                let be = T::from_f64(dot(&self.y[i], &d)) * self.ro[i];
                d.iter_mut().zip(&self.s[i]).for_each(|(a, &b)| *a = *a + (al[i] - be) * b);
            }
            // Not a descent direction (only rounding or a planted pair can do that): -H g.
            let gd = dot(g, &d);
            // `!(gd < 0)` rather than `gd >= 0`: a NaN g.d falls back too.
            if gd.is_nan() || gd >= 0.0 {
                self.fallbacks += 1;
                d.iter_mut().zip(g).for_each(|(a, &v)| *a = -v * self.h);
            }
            self.t = self.lr;
        }
        self.prev_g.clear();
        self.prev_g.extend_from_slice(g);
        let t = self.t;
        self.last_step.clear();
        match self.bounds {
            None => {
                for (a, &dv) in x.iter_mut().zip(&d) {
                    *a = *a + t * dv;
                    self.last_step.push(dv * t);
                }
            }
            Some((lo, hi)) => {
                for (a, &dv) in x.iter_mut().zip(&d) {
                    let new = (*a + t * dv).clamp_to(lo, hi);
                    self.last_step.push(new - *a);
                    *a = new;
                }
            }
        }
        self.d = d;
    }

    /// Everything that decides the later iterations, as named arrays (for checkpoints): the step
    /// length and H (`lbfgs.t_h`), rho per pair, the previous gradient, the last step and the
    /// pairs oldest first (`lbfgs.s0`, `lbfgs.y0`, ...); with [`Lbfgs::counters`].
    pub fn arrays(&self) -> Vec<(String, Vec<T>)> {
        let mut v = vec![
            ("lbfgs.t_h".to_string(), vec![self.t, self.h]),
            ("lbfgs.ro".to_string(), self.ro.iter().copied().collect()),
            ("lbfgs.prev_grad".to_string(), self.prev_g.clone()),
            ("lbfgs.last_step".to_string(), self.last_step.clone()),
        ];
        for (k, (s, y)) in self.s.iter().zip(&self.y).enumerate() {
            v.push((format!("lbfgs.s{k}"), s.clone()));
            v.push((format!("lbfgs.y{k}"), y.clone()));
        }
        v
    }

    /// The counters [`Lbfgs::arrays`] leaves out: iterations, pairs held, pairs skipped,
    /// fallbacks taken.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let c = [("iterations", self.k), ("pairs", self.s.len() as u64)];
        let c2 = [("skipped", self.skipped as u64), ("fallbacks", self.fallbacks as u64)];
        c.into_iter().chain(c2).map(|(k, v)| (format!("lbfgs_{k}"), v)).collect()
    }

    /// Restores the state [`Lbfgs::arrays`] and [`Lbfgs::counters`] saved, for an image of `n`
    /// elements, from `array(name)` and `counter(name)`; the error says which array is missing
    /// or of the wrong length.
    pub fn restore(
        &mut self,
        n: usize,
        array: &dyn Fn(&str) -> Option<Vec<T>>,
        counter: &dyn Fn(&str) -> u64,
    ) -> Result<(), String> {
        let get = |name: &str, len: usize| sized_array(array, name, len);
        let k = counter("lbfgs_iterations");
        let pairs = counter("lbfgs_pairs") as usize;
        if pairs > self.history || pairs as u64 > k.saturating_sub(1) {
            return Err(format!("{pairs} L-BFGS pairs after {k} iterations with a history of {}", self.history));
        }
        let th = get("lbfgs.t_h", 2)?;
        let ro = get("lbfgs.ro", pairs)?;
        // Before the first iteration there is no previous gradient or step.
        let len = if k == 0 { 0 } else { n };
        let (prev_g, last_step) = (get("lbfgs.prev_grad", len)?, get("lbfgs.last_step", len)?);
        let (mut s, mut y) = (VecDeque::new(), VecDeque::new());
        for i in 0..pairs {
            s.push_back(get(&format!("lbfgs.s{i}"), n)?);
            y.push_back(get(&format!("lbfgs.y{i}"), n)?);
        }
        (self.t, self.h, self.k) = (th[0], th[1], k);
        (self.ro, self.s, self.y) = (ro.into(), s, y);
        (self.prev_g, self.last_step) = (prev_g, last_step);
        self.skipped = counter("lbfgs_skipped") as u32;
        self.fallbacks = counter("lbfgs_fallbacks") as u32;
        Ok(())
    }
}

/// The saved array `name` of `array`, which must hold `len` values; the error names it (shared
/// by every optimiser state a checkpoint restores).
pub(crate) fn sized_array<T>(array: &dyn Fn(&str) -> Option<Vec<T>>, name: &str, len: usize) -> Result<Vec<T>, String> {
    let v = array(name).ok_or_else(|| format!("array {name} missing"))?;
    match v.len() == len {
        true => Ok(v),
        false => Err(format!("array {name} has {} values, the stage needs {len}", v.len())),
    }
}
