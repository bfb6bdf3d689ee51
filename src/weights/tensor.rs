//! Torch storage and tensor descriptions, and the strided copy of a tensor's elements out of its storage bytes.

use std::rc::Rc;

/// Element types of torch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    C64,
    C128,
    Untyped,
}

impl Dtype {
    /// From a storage or legacy tensor class name without its suffix ("Float", "Long", ...).
    pub(super) fn from_stem(stem: &str) -> Option<Dtype> {
        Some(match stem {
            "Float" => Dtype::F32,
            "Double" => Dtype::F64,
            "Half" => Dtype::F16,
            "BFloat16" => Dtype::BF16,
            "Long" => Dtype::I64,
            "Int" => Dtype::I32,
            "Short" => Dtype::I16,
            "Char" => Dtype::I8,
            "Byte" => Dtype::U8,
            "Bool" => Dtype::Bool,
            "ComplexFloat" => Dtype::C64,
            "ComplexDouble" => Dtype::C128,
            "Untyped" => Dtype::Untyped,
            _ => return None,
        })
    }
    pub(super) fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::C64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool | Dtype::Untyped => 1,
            Dtype::C128 => 16,
        }
    }
    /// Whether the loader converts this type's elements to f32 (exactly, except float64's rounding).
    pub(super) fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16)
    }
    pub(super) fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
            Dtype::C64 => "complex64",
            Dtype::C128 => "complex128",
            Dtype::Untyped => "untyped bytes",
        }
    }
}

/// A storage as named by a persistent id: the root storage's key, plus the view into it (legacy
/// files may reference a slice of a root storage).
#[derive(Debug)]
pub(super) struct StorageRef {
    pub(super) dtype: Dtype,
    pub(super) key: String,
    pub(super) numel: u64,
    pub(super) view_offset: u64,
    pub(super) view_numel: u64,
}

#[derive(Debug)]
pub(super) struct TensorRef {
    pub(super) storage: Rc<StorageRef>,
    pub(super) offset: u64,
    pub(super) size: Vec<u64>,
    pub(super) stride: Vec<u64>,
}

/// IEEE binary16 to f32 (exact: every half is an f32).
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let (exp, man) = ((h >> 10) & 0x1f, (h & 0x3ff) as u32);
    match exp {
        0 => sign * man as f32 * (1.0 / (1u32 << 24) as f32), // zero and subnormals: man * 2^-24
        31 => f32::from_bits(((h as u32 >> 15) << 31) | 0x7f80_0000 | (man << 13)), // inf, NaN
        _ => f32::from_bits(((h as u32 >> 15) << 31) | ((exp as u32 + 112) << 23) | (man << 13)),
    }
}

/// Strided copy of a tensor out of its root storage's bytes, in row-major order, converted to
/// f32 (float32, float64, float16 and bfloat16 storages; half-precision checkpoints are common).
pub(super) fn gather_f32(t: &TensorRef, bytes: &[u8], big_endian: bool) -> std::result::Result<Vec<f32>, String> {
    let s = &t.storage;
    if !s.dtype.is_float() {
        return Err(format!("storage holds {}, not a floating-point type", s.dtype.name()));
    }
    let esize = s.dtype.size() as usize;
    let root_elems = (bytes.len() / esize) as u64;
    match s.view_offset.checked_add(s.view_numel) {
        Some(end) if end <= root_elems => {}
        _ => {
            return Err(format!(
                "storage view [{}, +{}) lies outside its {root_elems}-element storage",
                s.view_offset, s.view_numel
            ))
        }
    }
    if t.size.len() != t.stride.len() {
        return Err(format!("{} sizes but {} strides", t.size.len(), t.stride.len()));
    }
    // A dimension of size 1 never moves, whatever its stride says (it may be anything).
    let stride: Vec<u64> = t.size.iter().zip(&t.stride).map(|(&sz, &st)| if sz > 1 { st } else { 0 }).collect();
    let mut numel: u64 = 1;
    let mut last = t.offset; // largest element index touched, relative to the view
    for (&sz, &st) in t.size.iter().zip(&stride) {
        numel = numel.checked_mul(sz).ok_or("element count overflows")?;
        if sz > 0 {
            last = (sz - 1).checked_mul(st).and_then(|x| x.checked_add(last)).ok_or("strides overflow")?;
        }
    }
    if numel == 0 {
        return Ok(Vec::new());
    }
    if last >= s.view_numel {
        return Err(format!(
            "offset {} with sizes {:?} and strides {:?} reaches element {last} of a {}-element storage",
            t.offset, t.size, t.stride, s.view_numel
        ));
    }
    let base = s.view_offset + t.offset; // fits: both bounded by root_elems
    let dtype = s.dtype;
    let read = |i: u64| -> f32 {
        let at = i as usize * esize;
        let mut b = [0u8; 8];
        b[..esize].copy_from_slice(&bytes[at..at + esize]);
        if big_endian {
            b[..esize].reverse();
        }
        match dtype {
            Dtype::F64 => f64::from_le_bytes(b) as f32,
            Dtype::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Dtype::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            _ => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    };
    let mut out = Vec::with_capacity(numel as usize);
    let row_major = {
        let mut expect = 1u64;
        t.size.iter().zip(&stride).rev().all(|(&sz, &st)| {
            let ok = sz <= 1 || st == expect;
            expect = expect.saturating_mul(sz);
            ok
        })
    };
    if row_major {
        out.extend((base..base + numel).map(read));
        return Ok(out);
    }
    // Odometer over the multi-index; `pos` is the storage index of the current element. The
    // bound check above keeps every intermediate `pos` below 2 * view_numel: no overflow.
    let nd = t.size.len();
    let mut idx = vec![0u64; nd];
    let mut pos = base;
    for _ in 0..numel {
        out.push(read(pos));
        for d in (0..nd).rev() {
            idx[d] += 1;
            pos += stride[d];
            if idx[d] < t.size[d] {
                break;
            }
            pos -= stride[d] * t.size[d];
            idx[d] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_and_bfloat16_convert_exactly() {
        // binary16: 1, -2, the largest normal, the smallest normal and subnormal, -0, inf.
        for (h, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0400, 2f32.powi(-14)),
            (0x0001, 2f32.powi(-24)),
            (0x03ff, 1023.0 * 2f32.powi(-24)),
            (0x8000, -0.0),
            (0x7c00, f32::INFINITY),
        ] {
            assert_eq!(f16_to_f32(h).to_bits(), want.to_bits(), "{h:#06x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        // Storages of each type, little and big endian, through the strided copy.
        let vals = [1.5f32, -0.375, 3.0e-3, 7.0];
        let t = |dtype| TensorRef {
            storage: Rc::new(StorageRef { dtype, key: "0".into(), numel: 4, view_offset: 0, view_numel: 4 }),
            offset: 1,
            size: vec![3],
            stride: vec![1],
        };
        let f16 = [0x3e00u16, 0xb600, 0x1a25, 0x4700];
        let le: Vec<u8> = f16.iter().flat_map(|h| h.to_le_bytes()).collect();
        let be: Vec<u8> = f16.iter().flat_map(|h| h.to_be_bytes()).collect();
        let want: Vec<f32> = f16[1..].iter().map(|&h| f16_to_f32(h)).collect();
        assert_eq!(gather_f32(&t(Dtype::F16), &le, false).unwrap(), want);
        assert_eq!(gather_f32(&t(Dtype::F16), &be, true).unwrap(), want);
        assert!((want[1] - 3.0e-3).abs() < 1e-6);
        let bf: Vec<u8> = vals.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
        let got = gather_f32(&t(Dtype::BF16), &bf, false).unwrap();
        assert_eq!(got, [-0.375, f32::from_bits(3.0e-3f32.to_bits() & 0xffff_0000), 7.0]);
        let f64s: Vec<u8> = vals.iter().flat_map(|&v| (v as f64).to_be_bytes()).collect();
        assert_eq!(gather_f32(&t(Dtype::F64), &f64s, true).unwrap(), vals[1..]);
        let ints = vec![0u8; 32];
        assert!(gather_f32(&t(Dtype::I64), &ints, false).unwrap_err().contains("int64"));
    }

    #[test]
    fn gather_handles_strides_and_rejects_out_of_range() {
        let storage = |numel| {
            Rc::new(StorageRef { dtype: Dtype::F32, key: "0".into(), numel, view_offset: 0, view_numel: numel })
        };
        let bytes: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
        // 3x4 row-major storage read as its 4x3 transpose.
        let t = TensorRef { storage: storage(12), offset: 0, size: vec![4, 3], stride: vec![1, 4] };
        assert_eq!(gather_f32(&t, &bytes, false).unwrap(), [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        // Size-1 dimensions may carry any stride.
        let t = TensorRef { storage: storage(12), offset: 5, size: vec![1, 2], stride: vec![u64::MAX, 1] };
        assert_eq!(gather_f32(&t, &bytes, false).unwrap(), [5., 6.]);
        // Past the end of the storage, or overflowing strides: errors.
        for (offset, size, stride) in
            [(11, vec![2], vec![1]), (0, vec![2, 2], vec![u64::MAX / 2, 1]), (0, vec![13], vec![1])]
        {
            let t = TensorRef { storage: storage(12), offset, size, stride };
            assert!(gather_f32(&t, &bytes, false).is_err());
        }
        // A storage claiming more elements than the bytes hold.
        let t = TensorRef { storage: storage(100), offset: 0, size: vec![2], stride: vec![1] };
        assert!(gather_f32(&t, &bytes, false).is_err());
    }
}
