//! What the allowed torch globals build (tensors, storages, state dicts), and the tensor entries of an unpickled state dict.

use std::path::Path;
use std::rc::Rc;

use super::catalogue::{Entry, EntrySrc};
use super::error::Result;
use super::pickle::Unpickler;
use super::pickle_values::{dict_get, Global, Map, Val};
use super::tensor::{StorageRef, TensorRef};
use super::WeightsError;

impl Unpickler<'_> {
    pub(super) fn call(&mut self, g: Global, args: &[Val]) -> Result<Val> {
        match g {
            Global::OrderedDict => match args {
                [] => Ok(Val::Dict(Rc::new(Map::default()))),
                // Python 2's OrderedDict pickles as OrderedDict([[k, v], ...]).
                [Val::List(pairs)] => {
                    let mut items = Vec::with_capacity(pairs.items.len());
                    for p in &pairs.items {
                        match p.as_seq() {
                            Some([k, v]) => items.push((k.clone(), v.clone())),
                            _ => return Err(self.bad("OrderedDict item is not a pair")),
                        }
                    }
                    self.charge(items.len() as u64)?;
                    Ok(Val::Dict(self.map(items)?))
                }
                _ => Err(self.bad("unexpected OrderedDict arguments")),
            },
            Global::TorchSize => match args {
                [v @ Val::Tuple(_)] => Ok(v.clone()),
                [Val::List(s)] => Ok(Val::Tuple(s.clone())),
                _ => Err(self.bad("unexpected torch.Size arguments")),
            },
            Global::RebuildTensor | Global::RebuildTensorV2 => {
                // (storage, storage_offset, size, stride, [requires_grad, backward_hooks, metadata])
                if args.len() < 4 {
                    return Err(self.bad("_rebuild_tensor needs 4 arguments"));
                }
                self.make_tensor(&args[0], &args[1], &args[2], &args[3])
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
                Some(t @ Val::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.bad("_rebuild_parameter of something that is not a tensor")),
            },
            Global::TensorClass(d) if args.is_empty() => Ok(Val::EmptyTensor(d)),
            other => Err(self.bad(format!("unexpected call of {other:?}"))),
        }
    }

    pub(super) fn build(&mut self, obj: Val, state: Val) -> Result<Val> {
        match (&obj, &state) {
            // A state dict's `_metadata` attribute, a Parameter's hooks: irrelevant here.
            (Val::Dict(_), _) | (Val::Tensor(_), _) => Ok(obj),
            // Oldest torch: torch.FloatTensor() then __setstate__((storage, offset, size, stride)).
            (Val::EmptyTensor(class), Val::Tuple(s)) if s.items.len() == 4 => {
                let a = &s.items;
                match &a[0] {
                    Val::Storage(st) if st.dtype != *class => {
                        return Err(self.bad(format!("a {} tensor over a {} storage", class.name(), st.dtype.name())))
                    }
                    _ => {}
                }
                self.make_tensor(&a[0], &a[1], &a[2], &a[3])
            }
            _ => Err(self.bad(format!("BUILD of {} with {}", obj.brief(), state.brief()))),
        }
    }

    fn make_tensor(&self, storage: &Val, offset: &Val, size: &Val, stride: &Val) -> Result<Val> {
        let Val::Storage(storage) = storage else {
            return Err(self.bad("tensor without a storage"));
        };
        let offset = offset.as_u64().ok_or_else(|| self.bad("tensor offset is not a non-negative integer"))?;
        let dims = |v: &Val, what: &str| -> Result<Vec<u64>> {
            let s = v.as_seq().ok_or_else(|| self.bad(format!("tensor {what} is not a tuple")))?;
            if s.len() > 16 {
                return Err(self.bad(format!("tensor with {} dimensions", s.len())));
            }
            s.iter().map(|d| d.as_u64().ok_or_else(|| self.bad(format!("tensor {what} holds {}", d.brief())))).collect()
        };
        Ok(Val::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            offset,
            size: dims(size, "size")?,
            stride: dims(stride, "stride")?,
        })))
    }

    /// ('storage', storage_type, key, location, numel[, view_metadata]).
    pub(super) fn persistent_load(&mut self, pid: &Val) -> Result<Val> {
        let Some(items) = pid.as_seq() else {
            return Err(self.bad("persistent id is not a tuple"));
        };
        match items.first() {
            Some(Val::Str(s)) if &**s == "storage" => {}
            Some(Val::Str(s)) if &**s == "module" => {
                return Err(self.bad("the file pickles a whole nn.Module; save model.state_dict() instead"))
            }
            _ => return Err(self.bad("unknown persistent id")),
        }
        if items.len() != 5 && items.len() != 6 {
            return Err(self.bad("storage persistent id of unexpected length"));
        }
        let Val::Global(Global::Storage(dtype)) = items[1] else {
            return Err(self.bad("storage persistent id without a storage type"));
        };
        let key = items[2].as_key().ok_or_else(|| self.bad("storage key is not a string"))?;
        let numel = items[4].as_u64().ok_or_else(|| self.bad("storage size is not a non-negative integer"))?;
        match self.storages.get(&key) {
            Some(&(d, n)) if d != dtype || n != numel => {
                return Err(self.bad(format!("storage {key:?} declared twice with different types or sizes")))
            }
            _ => {
                self.storages.insert(key.clone(), (dtype, numel));
            }
        }
        let (view_offset, view_numel) = match items.get(5) {
            None | Some(Val::None) => (0, numel),
            Some(v) => match v.as_seq() {
                Some([_view_key, off, size]) => {
                    let off = off.as_u64().ok_or_else(|| self.bad("storage view offset"))?;
                    let size = size.as_u64().ok_or_else(|| self.bad("storage view size"))?;
                    if off.checked_add(size).is_none_or(|e| e > numel) {
                        return Err(
                            self.bad(format!("view [{off}, +{size}) outside storage {key:?} of {numel} elements"))
                        );
                    }
                    (off, size)
                }
                _ => return Err(self.bad("malformed storage view metadata")),
            },
        };
        Ok(Val::Storage(Rc::new(StorageRef { dtype, key, numel, view_offset, view_numel })))
    }
}

/// Tensors of an unpickled state dict (or of `{"state_dict": ...}` / `{"model": ...}` wrappers).
pub(super) fn torch_entries(path: &Path, root: &Val) -> Result<Vec<Entry>> {
    let tensors_of = |v: &Val| -> Vec<Entry> {
        let Val::Dict(m) = v else { return Vec::new() };
        m.items
            .iter()
            .filter_map(|(k, v)| match (k.as_key(), v) {
                (Some(key), Val::Tensor(t)) => Some(Entry {
                    key,
                    shape: t.size.clone(),
                    dtype: t.storage.dtype.name().to_string(),
                    readable: t.storage.dtype.is_float(),
                    src: EntrySrc::Torch(t.clone()),
                }),
                _ => None,
            })
            .collect()
    };
    if !matches!(root, Val::Dict(_)) {
        return Err(WeightsError::NotVgg {
            path: path.to_path_buf(),
            sample_keys: vec![format!("a pickled {}, not a state dict", root.brief())],
        });
    }
    let direct = tensors_of(root);
    if !direct.is_empty() {
        return Ok(direct);
    }
    for wrapper in ["state_dict", "model"] {
        if let Some(inner) = dict_get(root, wrapper) {
            let found = tensors_of(inner);
            if !found.is_empty() {
                return Ok(found);
            }
        }
    }
    Ok(Vec::new())
}
