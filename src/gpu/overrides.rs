//! Kernel choices forced from outside the library (the CLI and the benches read them from the
//! environment): a conv or Gram variant, and the Winograd kernels' tuning.

use super::Variant;

/// Kernel choices a [`super::Context`] honours instead of its own selection; none by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOverrides {
    /// The conv3x3 variant (it still falls back where it cannot run).
    pub conv: Option<Variant>,
    /// The Gram variant (it still falls back where it cannot run).
    pub gram: Option<Variant>,
    /// (channels, tiles) per invocation of the Winograd F(2x2) kernel.
    pub wino_tune: Option<(u32, u32)>,
    /// (channels, tiles) per invocation of the Winograd F(4x4) kernel.
    pub wino4_tune: Option<(u32, u32)>,
    /// Build kernels with wgpu's runtime checks (index clamping of workgroup and local arrays,
    /// loop bounding, integer-division guards), off by default: every kernel bounds its own
    /// accesses and is tested against its reference, and the checks cost issue slots in the
    /// inner loops (reported at 1.5x on matmuls elsewhere). For chasing a suspected kernel bug.
    pub shader_checks: bool,
}

/// `tiled`, `tex`, `wino` or `wino4`; empty: none.
fn parse_variant(s: &str) -> Result<Option<Variant>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    Variant::parse(s).map(Some).ok_or_else(|| {
        format!(
            "{s:?} is none of `tiled`, `tex`, `wino`, `wino4`, `gemm`, `gemm-wino2`, `gemm-wino4`, or one of \
             the last three with a tile `:rMxNwXxYkK` (M x N outputs per invocation, 4 or 8; X x Y \
             invocations; K-chunk K)"
        )
    })
}

/// `CO,TILES`, both positive; empty: none.
fn parse_tune(s: &str) -> Result<Option<(u32, u32)>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    let t = s.split_once(',').and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)));
    match t {
        Some((co, tiles)) if co > 0 && tiles > 0 => Ok(Some((co, tiles))),
        _ => Err(format!("{s:?} is not CHANNELS,TILES (two positive integers)")),
    }
}

impl KernelOverrides {
    /// Sets one override from its string form: `key` is `conv` or `gram` (`tiled`, `tex`, `wino`,
    /// `wino4`) or `wino_tune` or `wino4_tune` (`CHANNELS,TILES`) or `shader_checks` (`1` or
    /// `0`); an empty value clears it. On an invalid value nothing changes and the error says why.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "conv" => self.conv = parse_variant(value)?,
            "gram" => self.gram = parse_variant(value)?,
            "wino_tune" => self.wino_tune = parse_tune(value)?,
            "wino4_tune" => self.wino4_tune = parse_tune(value)?,
            "shader_checks" => {
                self.shader_checks = match value.trim() {
                    "1" => true,
                    "0" | "" => false,
                    v => return Err(format!("{v:?} is neither 1 nor 0")),
                }
            }
            _ => return Err(format!("unknown kernel override {key:?}")),
        }
        Ok(())
    }

    /// Overrides from `(key, value)` pairs as for [`KernelOverrides::set`]; the first invalid
    /// one is an error.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<KernelOverrides, String> {
        let mut o = KernelOverrides::default();
        for (k, v) in pairs {
            o.set(k, v).map_err(|e| format!("{k}: {e}"))?;
        }
        Ok(o)
    }
}
