//! The catalogue of one file's tensors, whatever its format: opening it by its first bytes and reading entries as f32.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use npyz::zip;

use super::error::{io_err, malformed, Result};
use super::legacy::{open_legacy, read_legacy_storages};
use super::npz::{read_npy_member, NpyMember};
use super::tensor::{gather_f32, Dtype, TensorRef};
use super::zipfile::{open_zip, read_zip_storage};
use super::WeightsError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    PthZip,
    PthLegacy,
    Npz,
}

impl Format {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Format::PthZip => "PyTorch .pth, zip format (torch.save, PyTorch >= 1.6)",
            Format::PthLegacy => "PyTorch .pth, legacy torch.save stream (pickles + raw storages)",
            Format::Npz => "NumPy .npz",
        }
    }
}

pub(super) struct Entry {
    pub(super) key: String,
    pub(super) shape: Vec<u64>,
    /// For messages: "float32", "float16", "<i4", ...
    pub(super) dtype: String,
    /// Whether we can read it as f32 (float32, or float64 in an .npz).
    pub(super) readable: bool,
    pub(super) src: EntrySrc,
}

pub(super) enum EntrySrc {
    Torch(Rc<TensorRef>),
    Npy(NpyMember),
}

pub(super) enum Backend {
    Zip {
        zip: zip::ZipArchive<BufReader<File>>,
        prefix: String,
        big_endian: bool,
        file_len: u64,
    },
    Legacy {
        file: BufReader<File>,
        file_len: u64,
        data_start: u64,
        keys: Vec<String>,
        storages: HashMap<String, (Dtype, u64)>,
        big_endian: bool,
    },
    Npz {
        zip: zip::ZipArchive<BufReader<File>>,
    },
}

pub(super) struct Catalogue {
    pub(super) path: PathBuf,
    pub(super) format: Format,
    pub(super) entries: Vec<Entry>,
    index: HashMap<String, usize>,
    backend: Backend,
}

impl Catalogue {
    pub(super) fn open(path: &Path) -> Result<Catalogue> {
        let mut file = File::open(path).map_err(io_err(path, "open"))?;
        let file_len = file.metadata().map_err(io_err(path, "read metadata of"))?.len();
        let mut head = [0u8; 8];
        let n = read_up_to(&mut file, &mut head).map_err(io_err(path, "read"))?;
        let head = &head[..n];
        file.seek(SeekFrom::Start(0)).map_err(io_err(path, "seek in"))?;
        let reader = BufReader::with_capacity(1 << 16, file);
        let (format, entries, backend) = if head.starts_with(b"PK") {
            open_zip(path, reader, file_len)?
        } else if head.len() >= 2 && head[0] == 0x80 && head[1] <= 5 {
            open_legacy(path, reader, file_len)?
        } else if head.starts_with(b"\x93NUMPY") {
            return Err(WeightsError::UnknownFormat {
                path: path.to_path_buf(),
                detail: "a single .npy array; put the arrays in an .npz with named members".into(),
            });
        } else if n == 0 {
            return Err(WeightsError::UnknownFormat { path: path.to_path_buf(), detail: "the file is empty".into() });
        } else {
            return Err(WeightsError::UnknownFormat {
                path: path.to_path_buf(),
                detail: format!("starts with bytes {:02x?}", head),
            });
        };
        let mut index = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            index.entry(e.key.clone()).or_insert(i);
        }
        Ok(Catalogue { path: path.to_path_buf(), format, entries, index, backend })
    }

    pub(super) fn find_index(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    pub(super) fn find(&self, key: &str) -> Option<&Entry> {
        self.find_index(key).map(|i| &self.entries[i])
    }

    /// Read the given entries as f32, in order. Shapes were validated by `plan_layers`.
    pub(super) fn read(&mut self, wanted: &[usize]) -> Result<Vec<Vec<f32>>> {
        let path = self.path.clone();
        match &mut self.backend {
            Backend::Zip { zip, prefix, big_endian, file_len } => {
                let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
                let mut out = Vec::with_capacity(wanted.len());
                for &i in wanted {
                    let e = &self.entries[i];
                    let EntrySrc::Torch(t) = &e.src else {
                        return Err(malformed(&path, "internal: entry kind"));
                    };
                    if !cache.contains_key(&t.storage.key) {
                        let bytes = read_zip_storage(&path, zip, prefix, &t.storage, *file_len)?;
                        cache.insert(t.storage.key.clone(), bytes);
                    }
                    let bytes = &cache[&t.storage.key];
                    out.push(
                        gather_f32(t, bytes, *big_endian)
                            .map_err(|d| malformed(&path, format!("tensor `{}`: {d}", e.key)))?,
                    );
                }
                Ok(out)
            }
            Backend::Legacy { file, file_len, data_start, keys, storages, big_endian } => {
                let mut want_keys = HashSet::new();
                for &i in wanted {
                    if let EntrySrc::Torch(t) = &self.entries[i].src {
                        want_keys.insert(t.storage.key.clone());
                    }
                }
                let blobs = read_legacy_storages(&path, file, *file_len, *data_start, keys, storages, &want_keys)?;
                let mut out = Vec::with_capacity(wanted.len());
                for &i in wanted {
                    let e = &self.entries[i];
                    let EntrySrc::Torch(t) = &e.src else {
                        return Err(malformed(&path, "internal: entry kind"));
                    };
                    let bytes = blobs.get(&t.storage.key).ok_or_else(|| {
                        malformed(
                            &path,
                            format!(
                                "tensor `{}` uses storage {:?}, which the storage list does not contain",
                                e.key, t.storage.key
                            ),
                        )
                    })?;
                    out.push(
                        gather_f32(t, bytes, *big_endian)
                            .map_err(|d| malformed(&path, format!("tensor `{}`: {d}", e.key)))?,
                    );
                }
                Ok(out)
            }
            Backend::Npz { zip } => {
                let mut out = Vec::with_capacity(wanted.len());
                for &i in wanted {
                    let e = &self.entries[i];
                    let EntrySrc::Npy(m) = &e.src else {
                        return Err(malformed(&path, "internal: entry kind"));
                    };
                    out.push(read_npy_member(&path, zip, m, &e.shape)?);
                }
                Ok(out)
            }
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What a container reader returns: the format, its tensors, and how to read their data.
pub(super) type Opened = (Format, Vec<Entry>, Backend);
