//! NumPy .npz members: checked .npy headers and reading float32/float64 arrays as f32.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use npyz::zip;

use super::catalogue::{Backend, Entry, EntrySrc, Format, Opened};
use super::error::{malformed, truncated, Result};
use super::tensor::{f16_to_f32, gather_f32, Dtype, StorageRef, TensorRef};
use super::zipfile::{member_read_error, zip_error};

/// Largest .npy header we accept (numpy itself caps it at 64 KiB for version 1).
const MAX_NPY_HEADER: u64 = 1 << 20;

pub(super) struct NpyMember {
    member: String,
    data_offset: u64,
    elem: Option<(u8, bool)>, // (bytes per element 2|4|8, big endian)
    fortran: bool,
}

pub(super) fn open_npz(path: &Path, mut zip: zip::ZipArchive<BufReader<File>>, names: &[String]) -> Result<Opened> {
    let mut entries = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".npy")) {
        let key = name.trim_end_matches(".npy").to_string();
        let mut f = zip.by_name(name).map_err(|e| zip_error(path, e))?;
        let size = f.size();
        let (header, data_offset) = read_npy_header(&mut f, size).map_err(|d| match d {
            NpyErr::Eof => truncated(path, format!("npz member {name} ends inside its header")),
            NpyErr::Bad(d) => malformed(path, format!("npz member {name}: {d}")),
        })?;
        let (dtype, elem) = match header.dtype() {
            npyz::DType::Plain(ts) => {
                let descr = ts.to_string();
                let is_float = ts.type_char() == npyz::TypeChar::Float;
                let big = ts.endianness() == npyz::Endianness::Big;
                let elem = match (is_float, ts.size_field()) {
                    (true, 2) => Some((2u8, big)),
                    (true, 4) => Some((4u8, big)),
                    (true, 8) => Some((8u8, big)),
                    _ => None,
                };
                let name = match elem {
                    Some((2, _)) => "float16".to_string(),
                    Some((4, _)) => "float32".to_string(),
                    Some(_) => "float64".to_string(),
                    None => format!("numpy {descr}"),
                };
                (name, elem)
            }
            other => (format!("numpy {}", other.descr()), None),
        };
        entries.push(Entry {
            key,
            shape: header.shape().to_vec(),
            dtype,
            readable: elem.is_some(),
            src: EntrySrc::Npy(NpyMember {
                member: name.clone(),
                data_offset,
                elem,
                fortran: header.order() == npyz::Order::Fortran,
            }),
        });
    }
    Ok((Format::Npz, entries, Backend::Npz { zip }))
}

enum NpyErr {
    Eof,
    Bad(String),
}

/// Parse an .npy header. The pre-header is checked here (npyz would allocate whatever length it
/// declares); the dict literal is parsed by npyz, guarded because it can overflow on absurd shapes.
fn read_npy_header(r: &mut impl Read, member_size: u64) -> std::result::Result<(npyz::NpyHeader, u64), NpyErr> {
    let io_fail = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            NpyErr::Eof
        } else {
            NpyErr::Bad(e.to_string())
        }
    };
    let mut pre = vec![0u8; 8];
    r.read_exact(&mut pre).map_err(io_fail)?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(NpyErr::Bad("not an .npy array (bad magic)".into()));
    }
    let len_bytes = match pre[6] {
        1 => 2,
        2 | 3 => 4,
        v => return Err(NpyErr::Bad(format!("unknown .npy version {v}"))),
    };
    let mut lb = [0u8; 4];
    r.read_exact(&mut lb[..len_bytes]).map_err(io_fail)?;
    pre.extend_from_slice(&lb[..len_bytes]);
    let header_len = u32::from_le_bytes(lb) as u64;
    let data_offset = pre.len() as u64 + header_len;
    if header_len > MAX_NPY_HEADER || data_offset > member_size {
        return Err(NpyErr::Bad(format!("header length {header_len} is implausible")));
    }
    let mut text = vec![0u8; header_len as usize];
    r.read_exact(&mut text).map_err(io_fail)?;
    pre.extend_from_slice(&text);
    let parsed = std::panic::catch_unwind(|| npyz::NpyHeader::from_reader(&pre[..]));
    match parsed {
        Ok(Ok(h)) => Ok((h, data_offset)),
        Ok(Err(e)) => Err(NpyErr::Bad(e.to_string())),
        Err(_) => Err(NpyErr::Bad("header describes an impossible array".into())),
    }
}

pub(super) fn read_npy_member(
    path: &Path,
    zip: &mut zip::ZipArchive<BufReader<File>>,
    m: &NpyMember,
    shape: &[u64],
) -> Result<Vec<f32>> {
    let Some((esize, big)) = m.elem else {
        return Err(malformed(path, "internal: unreadable dtype"));
    };
    let numel: u64 = shape.iter().product(); // validated against VGG shapes: small
    let nbytes = numel * esize as u64;
    let mut f = zip.by_name(&m.member).map_err(|e| zip_error(path, e))?;
    io::copy(&mut (&mut f).take(m.data_offset), &mut io::sink()).map_err(|e| member_read_error(path, &m.member, e))?;
    let mut raw = Vec::new();
    (&mut f).take(nbytes).read_to_end(&mut raw).map_err(|e| member_read_error(path, &m.member, e))?;
    if (raw.len() as u64) < nbytes {
        return Err(truncated(path, format!("npz member {} holds {} of its {nbytes} data bytes", m.member, raw.len())));
    }
    let vals: Vec<f32> = if esize == 2 {
        raw.chunks_exact(2)
            .map(|c| f16_to_f32(if big { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) }))
            .collect()
    } else if esize == 4 {
        raw.chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect()
    } else {
        raw.chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                (if big { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) }) as f32
            })
            .collect()
    };
    if !m.fortran || shape.len() < 2 {
        return Ok(vals);
    }
    // Fortran order: first axis fastest. Reorder to row-major.
    let mut stride = vec![1u64; shape.len()];
    for d in 1..shape.len() {
        stride[d] = stride[d - 1] * shape[d - 1];
    }
    let t = TensorRef {
        storage: Rc::new(StorageRef {
            dtype: Dtype::F32,
            key: String::new(),
            numel,
            view_offset: 0,
            view_numel: numel,
        }),
        offset: 0,
        size: shape.to_vec(),
        stride,
    };
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    gather_f32(&t, &bytes, false).map_err(|d| malformed(path, d))
}
