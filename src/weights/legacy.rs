//! The legacy torch.save stream: magic, protocol, sys-info and state-dict pickles, then raw storages.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::catalogue::{Backend, Format, Opened};
use super::error::{io_err, malformed, truncated, Result};
use super::pickle::{Src, Unpickler};
use super::pickle_torch::torch_entries;
use super::pickle_values::{dict_get, Val};
use super::tensor::Dtype;
use super::WeightsError;

pub(super) const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i128 = 1001;

pub(super) fn open_legacy(path: &Path, mut file: BufReader<File>, file_len: u64) -> Result<Opened> {
    let mut vm = Unpickler::new(path);
    let mut src = Src { r: &mut file, pos: 0, end: file_len };
    match vm.run(&mut src)? {
        Val::Int(LEGACY_MAGIC) => {}
        _ => {
            return Err(WeightsError::UnknownFormat {
                path: path.to_path_buf(),
                detail: "a pickle, but not a torch.save stream (magic number missing)".into(),
            })
        }
    }
    match vm.run(&mut src)? {
        Val::Int(LEGACY_PROTOCOL) => {}
        other => return Err(malformed(path, format!("unsupported torch.save protocol {}", other.brief()))),
    }
    let sys_info = vm.run(&mut src)?;
    let big_endian = matches!(dict_get(&sys_info, "little_endian"), Some(Val::Bool(false)));
    let root = vm.run(&mut src)?;
    let key_list = vm.run(&mut src)?;
    let keys = match &key_list {
        Val::List(s) | Val::Tuple(s) => s
            .items
            .iter()
            .map(|v| v.as_key().ok_or_else(|| malformed(path, "storage key list holds a non-string")))
            .collect::<Result<Vec<String>>>()?,
        _ => return Err(malformed(path, "expected the pickled list of storage keys after the state dict")),
    };
    let data_start = src.pos;
    let entries = torch_entries(path, &root)?;
    let storages = std::mem::take(&mut vm.storages);
    Ok((Format::PthLegacy, entries, Backend::Legacy { file, file_len, data_start, keys, storages, big_endian }))
}

/// Walk the storage section (each: u64 element count, raw bytes), checking every declared size
/// against the bytes left in the file before reading; returns the wanted storages' bytes.
pub(super) fn read_legacy_storages(
    path: &Path,
    file: &mut BufReader<File>,
    file_len: u64,
    data_start: u64,
    keys: &[String],
    storages: &HashMap<String, (Dtype, u64)>,
    wanted: &HashSet<String>,
) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    let mut pos = data_start;
    file.seek(SeekFrom::Start(pos)).map_err(io_err(path, "seek in"))?;
    let n = keys.len();
    for (i, key) in keys.iter().enumerate() {
        if file_len - pos < 8 {
            return Err(truncated(path, format!("it ends where storage {} of {n} ({key:?}) should begin", i + 1)));
        }
        let mut cnt = [0u8; 8];
        file.read_exact(&mut cnt).map_err(io_err(path, "read"))?;
        pos += 8;
        let count = u64::from_le_bytes(cnt);
        let &(dtype, numel) = storages
            .get(key)
            .ok_or_else(|| malformed(path, format!("storage list names {key:?}, which no tensor uses")))?;
        if count != numel {
            return Err(malformed(
                path,
                format!("storage {key:?} has {count} elements on disk but the pickle declares {numel}"),
            ));
        }
        let nbytes = count.checked_mul(dtype.size()).filter(|&b| b <= file_len - pos).ok_or_else(|| {
            truncated(
                path,
                format!(
                    "storage {} of {n} ({key:?}) declares {count} {} elements but only {} bytes remain",
                    i + 1,
                    dtype.name(),
                    file_len - pos
                ),
            )
        })?;
        if wanted.contains(key) && !out.contains_key(key) {
            let mut v = vec![0u8; nbytes as usize]; // <= bytes left in the file
            file.read_exact(&mut v).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    truncated(path, format!("storage {key:?} ends early"))
                } else {
                    io_err(path, "read")(e)
                }
            })?;
            out.insert(key.clone(), v);
        } else {
            file.seek_relative(nbytes as i64).map_err(io_err(path, "seek in"))?;
        }
        pos += nbytes;
    }
    Ok(out)
}
