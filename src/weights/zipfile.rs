//! Zip containers: telling a torch zip .pth from an .npz, and reading the torch zip format's pickle and storages.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use npyz::zip;

use super::catalogue::{Backend, Format, Opened};
use super::error::{malformed, truncated, Result};
use super::npz::open_npz;
use super::pickle::{Src, Unpickler};
use super::pickle_torch::torch_entries;
use super::tensor::StorageRef;
use super::WeightsError;

/// Largest data.pkl we accept; a VGG19 state dict's is about 3 KB.
const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// Most members we look at in one archive.
const MAX_MEMBERS: usize = 100_000;

pub(super) fn zip_error(path: &Path, e: zip::result::ZipError) -> WeightsError {
    match e {
        zip::result::ZipError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            truncated(path, format!("zip archive ends early ({e})"))
        }
        other => malformed(path, format!("broken zip archive ({other}); the file may be truncated or corrupt")),
    }
}

pub(super) fn open_zip(path: &Path, reader: BufReader<File>, file_len: u64) -> Result<Opened> {
    let zip = zip::ZipArchive::new(reader).map_err(|e| zip_error(path, e))?;
    if zip.len() > MAX_MEMBERS {
        return Err(malformed(path, format!("zip archive lists {} members", zip.len())));
    }
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    // torch writes `<prefix>/data.pkl`; the prefix is the archive's stem and varies.
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min_by_key(|n| n.len())
        .cloned();
    if let Some(pkl) = pkl {
        let prefix = pkl.trim_end_matches("/data.pkl").to_string();
        return open_zip_pth(path, zip, prefix, file_len);
    }
    if names.iter().any(|n| n.ends_with(".npy")) {
        return open_npz(path, zip, &names);
    }
    Err(WeightsError::UnknownFormat {
        path: path.to_path_buf(),
        detail: "a zip archive with neither <name>/data.pkl (torch) nor .npy members (npz)".into(),
    })
}

fn read_zip_member_limited(
    path: &Path,
    zip: &mut zip::ZipArchive<BufReader<File>>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut f = zip.by_name(name).map_err(|e| zip_error(path, e))?;
    if f.size() > limit {
        return Err(malformed(path, format!("member {name} is {} bytes, more than the {limit} accepted", f.size())));
    }
    let mut v = Vec::new();
    (&mut f).take(limit).read_to_end(&mut v).map_err(|e| member_read_error(path, name, e))?;
    Ok(v)
}

pub(super) fn member_read_error(path: &Path, name: &str, e: io::Error) -> WeightsError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        truncated(path, format!("zip member {name} ends early"))
    } else {
        malformed(path, format!("cannot read zip member {name}: {e}"))
    }
}

fn open_zip_pth(
    path: &Path,
    mut zip: zip::ZipArchive<BufReader<File>>,
    prefix: String,
    file_len: u64,
) -> Result<Opened> {
    let pkl = read_zip_member_limited(path, &mut zip, &format!("{prefix}/data.pkl"), MAX_PICKLE_BYTES)?;
    let big_endian = match zip.by_name(&format!("{prefix}/byteorder")) {
        Ok(mut f) => {
            let mut s = String::new();
            let _ = (&mut f).take(16).read_to_string(&mut s);
            s.trim() == "big"
        }
        Err(_) => false, // files from before the byteorder member existed are little-endian
    };
    let mut vm = Unpickler::new(path);
    let mut src = Src { r: &mut &pkl[..], pos: 0, end: pkl.len() as u64 };
    let root = vm.run(&mut src)?;
    let entries = torch_entries(path, &root)?;
    Ok((Format::PthZip, entries, Backend::Zip { zip, prefix, big_endian, file_len }))
}

pub(super) fn read_zip_storage(
    path: &Path,
    zip: &mut zip::ZipArchive<BufReader<File>>,
    prefix: &str,
    s: &StorageRef,
    file_len: u64,
) -> Result<Vec<u8>> {
    let name = format!("{prefix}/data/{}", s.key);
    let mut f = match zip.by_name(&name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(malformed(path, format!("storage {:?} is referenced but member {name} is absent", s.key)))
        }
        Err(e) => return Err(zip_error(path, e)),
    };
    let need = s
        .numel
        .checked_mul(s.dtype.size())
        .ok_or_else(|| malformed(path, format!("storage {:?} size overflows", s.key)))?;
    // torch stores members uncompressed; refusing compression also rules out zip bombs.
    if f.compression() != zip::CompressionMethod::Stored {
        return Err(malformed(
            path,
            format!("member {name} is compressed ({:?}); torch writes storages uncompressed", f.compression()),
        ));
    }
    if f.size() < need {
        return Err(malformed(path, format!("member {name} holds {} bytes but the pickle declares {need}", f.size())));
    }
    if f.size() > file_len {
        return Err(truncated(path, format!("member {name} claims {} bytes, more than the whole file", f.size())));
    }
    let mut v = Vec::new();
    // Reading to the member's end also makes the zip reader check its CRC-32.
    f.read_to_end(&mut v).map_err(|e| member_read_error(path, &name, e))?;
    if (v.len() as u64) < need {
        return Err(truncated(path, format!("member {name} ends after {} of {need} bytes", v.len())));
    }
    v.truncate(need as usize);
    Ok(v)
}
