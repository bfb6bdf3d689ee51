//! The values the restricted unpickler builds, and the allow-list of globals a pickle may name.

use std::rc::Rc;

use super::tensor::{Dtype, StorageRef, TensorRef};

/// The only callables a pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Global {
    OrderedDict,
    RebuildTensor,   // torch._utils._rebuild_tensor (torch <= 0.3)
    RebuildTensorV2, // torch._utils._rebuild_tensor_v2
    RebuildParameter,
    RebuildParameterWithState,
    TorchSize,
    Storage(Dtype),
    TensorClass(Dtype), // torch.FloatTensor etc. (oldest files: class() then BUILD with state)
}

pub(super) fn resolve_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch._utils", "_rebuild_parameter_with_state") => Some(Global::RebuildParameterWithState),
        ("torch", "Size") => Some(Global::TorchSize),
        ("torch" | "torch.cuda", n) => {
            if let Some(stem) = n.strip_suffix("Storage") {
                Dtype::from_stem(stem).map(Global::Storage)
            } else if let Some(stem) = n.strip_suffix("Tensor") {
                Dtype::from_stem(stem).filter(|&d| d != Dtype::Untyped).map(Global::TensorClass)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A sequence with its nesting depth cached, so depth checks never recurse.
#[derive(Clone, Debug, Default)]
pub(super) struct Seq {
    pub(super) items: Vec<Val>,
    pub(super) depth: u32,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Map {
    pub(super) items: Vec<(Val, Val)>,
    pub(super) depth: u32,
}

/// Pickle values. Containers are reference-counted and copy-on-write: cheap to share through
/// the memo, and a value never changes once inside another, so cached depths stay true.
#[derive(Clone, Debug)]
pub(super) enum Val {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    /// Contents are never needed.
    Bytes,
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// `torch.FloatTensor()` awaiting its BUILD state.
    EmptyTensor(Dtype),
}

impl Val {
    pub(super) fn depth(&self) -> u32 {
        match self {
            Val::Tuple(s) | Val::List(s) => s.depth,
            Val::Dict(m) => m.depth,
            Val::Storage(_) | Val::Tensor(_) => 1,
            _ => 0,
        }
    }
    pub(super) fn brief(&self) -> String {
        match self {
            Val::None => "None".into(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(x) => x.to_string(),
            Val::Str(s) => format!("{:?}", s.chars().take(40).collect::<String>()),
            Val::Bytes => "bytes".into(),
            Val::Tuple(_) => "tuple".into(),
            Val::List(_) => "list".into(),
            Val::Dict(_) => "dict".into(),
            Val::Global(g) => format!("{g:?}"),
            Val::Storage(_) => "storage".into(),
            Val::Tensor(_) => "tensor".into(),
            Val::EmptyTensor(_) => "tensor class".into(),
        }
    }
    pub(super) fn as_key(&self) -> Option<String> {
        match self {
            Val::Str(s) => Some(s.to_string()),
            Val::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
    pub(super) fn as_u64(&self) -> Option<u64> {
        match self {
            Val::Int(i) => u64::try_from(*i).ok(),
            Val::Bool(b) => Some(*b as u64),
            _ => None,
        }
    }
    pub(super) fn as_seq(&self) -> Option<&[Val]> {
        match self {
            Val::Tuple(s) | Val::List(s) => Some(&s.items),
            _ => None,
        }
    }
}

pub(super) fn dict_get<'a>(v: &'a Val, key: &str) -> Option<&'a Val> {
    match v {
        Val::Dict(m) => m.items.iter().rev().find(|(k, _)| matches!(k, Val::Str(s) if &**s == key)).map(|(_, v)| v),
        _ => None,
    }
}
