//! Deterministic synthetic images (a photo-like landscape, a painting-like swirl), so demos and
//! tests need no files.
//!
//! Pure functions of (x, y, seed) built from hashed value noise, so the same seed gives the same
//! pixels on every run, and the scene scales with the size (coordinates are in units of height).

use super::Planar;
use crate::rng::{mix64, unit_f32, SplitMix64, GOLDEN};

/// Uniform in [0,1) from a seed and two lattice coordinates.
fn hash01(seed: u64, ix: i64, iy: i64) -> f32 {
    let h = mix64(seed ^ mix64((ix as u64).wrapping_mul(GOLDEN) ^ (iy as u64).rotate_left(32)));
    unit_f32(h)
}

/// Smoothly interpolated value noise in [0,1].
fn value_noise(seed: u64, x: f32, y: f32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i64, fy as i64);
    let (tx, ty) = (x - fx, y - fy);
    let s = |t: f32| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (s(tx), s(ty));
    let a = hash01(seed, ix, iy);
    let b = hash01(seed, ix + 1, iy);
    let c = hash01(seed, ix, iy + 1);
    let d = hash01(seed, ix + 1, iy + 1);
    let top = a + (b - a) * sx;
    let bottom = c + (d - c) * sx;
    top + (bottom - top) * sy
}

/// Fractal (multi-octave) value noise in [0,1].
fn fbm(seed: u64, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut freq) = (0.0, 0.5, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * value_noise(seed.wrapping_add(u64::from(o) * 0x51_7CC1), x * freq, y * freq);
        norm += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / norm
}

/// Parameters drawn from the seed (uniform in [lo, hi)).
type SeedRng = SplitMix64;

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Fill a planar image from a per-pixel function of (x, y) in height units (x in [0, aspect]).
fn render(width: u32, height: u32, f: impl Fn(f32, f32) -> [f32; 3]) -> Planar {
    let (w, h) = (width.max(1), height.max(1));
    let n = w as usize * h as usize;
    let mut data = vec![0.0f32; 3 * n];
    let scale = 1.0 / h as f32;
    for y in 0..h {
        for x in 0..w {
            let rgb = f((x as f32 + 0.5) * scale, (y as f32 + 0.5) * scale);
            let i = y as usize * w as usize + x as usize;
            for c in 0..3 {
                data[c * n + i] = rgb[c].clamp(0.0, 1.0);
            }
        }
    }
    Planar { width: w, height: h, data }
}

/// A photo-like landscape: sky gradient with clouds, a sun disc with glow, two ranges of hills,
/// a house-like block, and fine grain. Deterministic per `seed`.
pub fn synthetic_photo(width: u32, height: u32, seed: u64) -> Planar {
    let aspect = width.max(1) as f32 / height.max(1) as f32;
    let mut rng = SeedRng::new(seed);
    let sun = (rng.uniform(0.55, 0.85) * aspect, rng.uniform(0.12, 0.28));
    let sun_r = rng.uniform(0.045, 0.07);
    let far_phase = rng.uniform(0.0, std::f32::consts::TAU);
    let near_phase = rng.uniform(0.0, std::f32::consts::TAU);
    let house_x = rng.uniform(0.12, 0.45) * aspect;
    let (house_w, wall_top, ground) = (0.22, 0.70, 0.86);
    let roof_top = wall_top - 0.10;
    let noise_seed = mix64(seed ^ 0xA5A5_5A5A);

    render(width, height, |x, y| {
        // Sky: deep blue overhead to pale haze at the horizon, warmed around the sun.
        let mut c = lerp3([0.18, 0.38, 0.78], [0.78, 0.86, 0.94], y / 0.6);
        let d_sun = ((x - sun.0).powi(2) + (y - sun.1).powi(2)).sqrt();
        let glow = (-(d_sun - sun_r).max(0.0) / 0.12).exp() * 0.45;
        c = [c[0] + glow, c[1] + glow * 0.85, c[2] + glow * 0.5];
        let cloud = smoothstep(0.55, 0.75, fbm(noise_seed, x * 5.0, y * 12.0, 5)) * (1.0 - y / 0.55).max(0.0);
        c = lerp3(c, [0.97, 0.97, 0.98], cloud * 0.8);
        let disc = 1.0 - smoothstep(sun_r - 0.004, sun_r + 0.004, d_sun);
        c = lerp3(c, [1.0, 0.96, 0.78], disc);

        // Far hills: hazy blue-green.
        let far = 0.56 + 0.05 * (x * 5.0 + far_phase).sin() + 0.05 * (fbm(noise_seed ^ 1, x * 3.0, 0.5, 4) - 0.5);
        if y > far {
            let depth = ((y - far) / 0.2).min(1.0);
            c = lerp3([0.45, 0.58, 0.62], [0.32, 0.46, 0.45], depth);
        }
        // Near hills: saturated green with grassy texture, darker lower down.
        let near = 0.68 + 0.07 * (x * 3.1 + near_phase).sin() + 0.06 * (fbm(noise_seed ^ 2, x * 4.0, 1.5, 4) - 0.5);
        if y > near {
            let t = fbm(noise_seed ^ 3, x * 30.0, y * 60.0, 4);
            let shade = 1.0 - 0.35 * ((y - near) / 0.3).min(1.0);
            c = [(0.22 + 0.15 * t) * shade, (0.50 + 0.2 * t) * shade, (0.16 + 0.08 * t) * shade];
        }

        // House: walls, a pitched roof, a door and a window.
        let hx = x - house_x;
        if (0.0..house_w).contains(&hx) && y > wall_top && y < ground {
            c = [0.86, 0.76, 0.60];
            let door = hx > 0.13 && hx < 0.18 && y > ground - 0.09;
            let window = hx > 0.03 && hx < 0.09 && y > wall_top + 0.03 && y < wall_top + 0.08;
            if door {
                c = [0.38, 0.23, 0.14];
            } else if window {
                c = [0.30, 0.45, 0.62];
            }
        }
        let roof_half = (house_w * 0.5 + 0.02) * (y - roof_top) / (wall_top - roof_top);
        if y >= roof_top && y <= wall_top && (hx - house_w * 0.5).abs() < roof_half {
            c = [0.60, 0.20, 0.15];
        }

        // Grain, as a camera sensor would add.
        let grain = (fbm(noise_seed ^ 4, x * 200.0, y * 200.0, 2) - 0.5) * 0.05;
        [c[0] + grain, c[1] + grain, c[2] + grain]
    })
}

/// A painting-like image: bold swirling colour bands (sums of sinusoids in polar coordinates
/// around a seed-chosen centre, through a vivid cosine palette) with brush-stroke texture that
/// runs along the bands. Deterministic per `seed`.
pub fn synthetic_painting(width: u32, height: u32, seed: u64) -> Planar {
    let aspect = width.max(1) as f32 / height.max(1) as f32;
    let mut rng = SeedRng::new(seed ^ 0x5EED_CAFE);
    let centre = (rng.uniform(0.3, 0.7) * aspect, rng.uniform(0.3, 0.7));
    let twist = rng.uniform(2.5, 5.0);
    let phases = [
        rng.uniform(0.0, std::f32::consts::TAU),
        rng.uniform(0.0, std::f32::consts::TAU),
        rng.uniform(0.0, std::f32::consts::TAU),
    ];
    let hue = rng.uniform(0.0, 1.0);
    let noise_seed = mix64(seed ^ 0x0BAD_F00D);
    let tau = std::f32::consts::TAU;

    render(width, height, |x, y| {
        let (dx, dy) = (x - centre.0, y - centre.1);
        let r = (dx * dx + dy * dy).sqrt();
        // Swirl: the angle turns with the radius, wobbling with low-frequency noise.
        let theta = dy.atan2(dx) + twist * r + 1.5 * (fbm(noise_seed, x * 2.0, y * 2.0, 3) - 0.5);
        let t_raw = 0.5
            + 0.22 * (3.0 * theta + 7.0 * r + phases[0]).sin()
            + 0.14 * (5.0 * theta - 11.0 * r + phases[1]).sin()
            + 0.09 * (13.0 * r + phases[2]).sin();
        // Bold bands: pull t towards a few flat levels, keeping soft edges between them.
        let levels = 6.0;
        let k = t_raw * levels;
        let band = (k.floor() + smoothstep(0.35, 0.65, k.fract())) / levels;
        let t = 0.3 * t_raw + 0.7 * band;
        // Vivid cosine palette (Inigo Quilez): a + b cos(2 pi (c t + d)).
        let pal = |d: f32| 0.5 + 0.5 * (tau * (t + hue + d)).cos();
        let mut c = [pal(0.0), pal(0.33), pal(0.67)];
        // Brush strokes: fine ridges parallel to the bands (iso-lines of the raw field, so they
        // follow the swirl and have no seam at atan2's branch cut), wobbling and fading in and
        // out with Cartesian noise like bristle marks.
        let wobble = fbm(noise_seed ^ 7, x * 6.0, y * 6.0, 3) + 0.5 * value_noise(noise_seed ^ 9, x * 40.0, y * 40.0);
        let strength = fbm(noise_seed ^ 8, x * 14.0, y * 14.0, 2);
        let bristle = 0.5 + 0.5 * (tau * 45.0 * t_raw + 6.0 * wobble).sin();
        let stroke = 1.0 - 0.3 * strength * bristle;
        // A soft darker seam where bands meet, like paint ridges.
        let to_edge = 0.5 - (k.fract() - 0.5).abs();
        let seam = 1.0 - 0.15 * (1.0 - smoothstep(0.0, 0.15, to_edge));
        for v in c.iter_mut() {
            *v *= stroke * seam;
        }
        c
    })
}
