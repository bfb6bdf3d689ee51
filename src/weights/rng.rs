//! The deterministic normal random numbers behind `random()`.

use crate::rng::SplitMix64;

/// splitmix64 + Box-Muller, using only +, -, *, / and sqrt (all correctly rounded in IEEE 754),
/// so every platform produces the same bits.
pub(super) struct Normal {
    bits: SplitMix64,
    spare: Option<f64>,
}

impl Normal {
    pub(super) fn new(seed: u64) -> Self {
        Normal { bits: SplitMix64::new(seed), spare: None }
    }
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.bits.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
    pub(super) fn next(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let r = (-2.0 * ln(self.uniform())).sqrt();
        let (s, c) = sin_cos_2pi(self.uniform());
        self.spare = Some(r * s);
        r * c
    }
}

/// Natural log for x in (0, 1], from the exponent bits and an atanh series on the mantissa.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1023; // x is normal: x >= 2^-53
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000); // [1, 2)
                                                                                    // ln(m) = 2 atanh(s), s = (m-1)/(m+1) in [0, 1/3): 20 terms reach f64 precision.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..20 {
        sum += term / (2 * k + 1) as f64;
        term *= s2;
    }
    exp as f64 * std::f64::consts::LN_2 + 2.0 * sum
}

/// (sin, cos) of 2*pi*u for u in (0, 1], by Taylor series after reducing to [-pi/4, pi/4].
fn sin_cos_2pi(u: f64) -> (f64, f64) {
    // Octant reduction in turns (exact in binary), then radians.
    let q = (u * 4.0 + 0.5).floor(); // nearest quarter turn
    let r = (u - q * 0.25) * (2.0 * std::f64::consts::PI); // [-pi/4, pi/4]
    let r2 = r * r;
    let (mut s, mut c) = (0.0, 0.0);
    let (mut ts, mut tc) = (r, 1.0);
    for k in 0..12 {
        s += ts;
        c += tc;
        ts *= -r2 / ((2 * k + 2) * (2 * k + 3)) as f64;
        tc *= -r2 / ((2 * k + 1) * (2 * k + 2)) as f64;
    }
    match (q as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_and_trig_match_std_closely() {
        for &x in &[1e-300, 1e-10, 0.001, 0.1, 0.25, 0.5, 0.7, 0.999_999, 1.0] {
            assert!((ln(x) - x.ln()).abs() <= 1e-13 * x.ln().abs().max(1.0), "ln({x})");
        }
        for i in 1..=1000 {
            let u = i as f64 / 1000.0;
            let (s, c) = sin_cos_2pi(u);
            let a = 2.0 * std::f64::consts::PI * u;
            assert!((s - a.sin()).abs() < 1e-12 && (c - a.cos()).abs() < 1e-12, "u={u}");
        }
    }
}
