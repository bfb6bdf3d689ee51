//! The typed kernel boundary: uniform structs declared in Rust with their WGSL field layout,
//! resources bound by WGSL global name, and the bind group layout of one entry point read from
//! its WGSL with naga (only the globals that entry point uses, so nothing is bound as a
//! placeholder).

use super::{Context, Tensor};
use std::collections::HashMap;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// A Rust field type that appears in a WGSL uniform struct, by its WGSL name.
pub trait WgslScalar {
    /// `u32`, `i32`, `f32`, `vec4<u32>` or `vec4<f32>`.
    const WGSL: &'static str;
}
impl WgslScalar for u32 {
    const WGSL: &'static str = "u32";
}
impl WgslScalar for i32 {
    const WGSL: &'static str = "i32";
}
impl WgslScalar for f32 {
    const WGSL: &'static str = "f32";
}
impl WgslScalar for [u32; 4] {
    const WGSL: &'static str = "vec4<u32>";
}
impl WgslScalar for [f32; 4] {
    const WGSL: &'static str = "vec4<f32>";
}

/// One field of a uniform struct: name, byte offset and WGSL scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniformField {
    /// The field's name, the same in Rust and WGSL.
    pub name: &'static str,
    /// Byte offset in the struct.
    pub offset: usize,
    /// WGSL scalar type (`u32`, `i32`, `f32`).
    pub ty: &'static str,
}

/// The layout of a Rust uniform struct, to compare with its WGSL twin.
#[derive(Clone, Copy, Debug)]
pub struct UniformLayout {
    /// The Rust type's name.
    pub name: &'static str,
    /// `size_of` the Rust type.
    pub size: usize,
    /// Every field, in declaration order.
    pub fields: &'static [UniformField],
}

/// A kernel's uniform block: a `#[repr(C)]` Pod struct with the WGSL struct's fields, declared
/// with `uniform!`.
pub trait Uniform: bytemuck::Pod {
    /// The field layout, checked against the WGSL struct at dispatch and by tests/shaders.rs.
    const LAYOUT: UniformLayout;
}

/// Declares a uniform struct (`#[repr(C)]`, Pod, Default, every field `pub`) and its
/// [`Uniform`] layout. Field names must be those of the WGSL struct.
macro_rules! uniform {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $(
                $(#[$fm])*
                #[doc = concat!("WGSL `", stringify!($field), "`.")]
                pub $field: $ty,
            )*
        }
        impl $crate::gpu::kernel::Uniform for $name {
            const LAYOUT: $crate::gpu::kernel::UniformLayout = $crate::gpu::kernel::UniformLayout {
                name: stringify!($name),
                size: ::core::mem::size_of::<$name>(),
                fields: &[$($crate::gpu::kernel::UniformField {
                    name: stringify!($field),
                    offset: ::core::mem::offset_of!($name, $field),
                    ty: <$ty as $crate::gpu::kernel::WgslScalar>::WGSL,
                }),*],
            };
        }
    };
}
pub(crate) use uniform;

/// The WGSL declaration of `U` as a struct named `name`, on one line (for generated sources, so
/// that their uniform block cannot drift from the Rust struct).
pub fn wgsl_struct<U: Uniform>(name: &str) -> String {
    let fields: Vec<String> = U::LAYOUT.fields.iter().map(|f| format!("{}: {}", f.name, f.ty)).collect();
    format!("struct {name} {{ {} }}", fields.join(", "))
}

/// The uniform struct a WGSL source declares for its `var<uniform>` global, as naga lays it out.
#[derive(Clone, Debug, PartialEq)]
pub struct WgslStruct {
    /// The struct's WGSL name (e.g. `Params`).
    pub name: String,
    /// Its size in bytes.
    pub size: usize,
    /// (name, offset, type) of every member; the type is a scalar name or naga's description.
    pub fields: Vec<(String, usize, String)>,
}

/// Whether a Rust uniform layout matches a WGSL struct: same size, and the same names, offsets and
/// scalar types field by field. `Err` says what differs.
pub fn check_uniform(rust: &UniformLayout, wgsl: &WgslStruct) -> Result<(), String> {
    let mut errs = vec![];
    if rust.size != wgsl.size {
        errs.push(format!("size {} vs {} in WGSL", rust.size, wgsl.size));
    }
    if rust.fields.len() != wgsl.fields.len() {
        errs.push(format!("{} fields vs {} in WGSL", rust.fields.len(), wgsl.fields.len()));
    }
    for (r, (n, o, t)) in rust.fields.iter().zip(&wgsl.fields) {
        if r.name != n || r.offset != *o || r.ty != t {
            errs.push(format!("field {}: {} at {} vs WGSL {n}: {t} at {o}", r.name, r.ty, r.offset));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("{} does not match WGSL struct {}: {}", rust.name, wgsl.name, errs.join("; ")))
    }
}

/// A resource that can be bound to a WGSL global: a buffer, a tensor or a texture view.
pub trait Bindable {
    /// The binding resource.
    fn resource(&self) -> wgpu::BindingResource<'_>;
}
impl Bindable for wgpu::Buffer {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        self.as_entire_binding()
    }
}
impl Bindable for Tensor {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        self.buf.as_entire_binding()
    }
}
impl Bindable for wgpu::TextureView {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::TextureView(self)
    }
}

/// Resources by WGSL global name, e.g. `&[("X", &x.buf), ("Y", y)]`.
pub type Bindings<'a> = [(&'a str, &'a dyn Bindable)];

/// What one entry point of a WGSL source binds (group 0): its uniform global, if it uses one,
/// and every other global it uses, by name.
#[derive(Clone, Debug)]
pub struct EntryLayout {
    /// (global name, binding, struct) of the uniform the entry point uses.
    pub uniform: Option<(String, u32, WgslStruct)>,
    /// (global name, layout entry) of every other resource the entry point uses, by binding.
    pub resources: Vec<(String, wgpu::BindGroupLayoutEntry)>,
}

fn binding_type(module: &naga::Module, var: &naga::GlobalVariable) -> Option<wgpu::BindingType> {
    let view =
        |arrayed: bool| if arrayed { wgpu::TextureViewDimension::D2Array } else { wgpu::TextureViewDimension::D2 };
    Some(match var.space {
        naga::AddressSpace::Uniform => wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        naga::AddressSpace::Storage { access } => wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only: !access.contains(naga::StorageAccess::STORE) },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        naga::AddressSpace::Handle => match module.types[var.ty].inner {
            naga::TypeInner::Image {
                dim: naga::ImageDimension::D2,
                arrayed,
                class: naga::ImageClass::Storage { format, access },
            } => wgpu::BindingType::StorageTexture {
                access: if access.contains(naga::StorageAccess::LOAD) {
                    wgpu::StorageTextureAccess::ReadWrite
                } else {
                    wgpu::StorageTextureAccess::WriteOnly
                },
                format: match format {
                    naga::StorageFormat::Rgba32Float => wgpu::TextureFormat::Rgba32Float,
                    f => panic!("unsupported storage texture format {f:?} in a shader"),
                },
                view_dimension: view(arrayed),
            },
            naga::TypeInner::Image { dim: naga::ImageDimension::D2, arrayed, .. } => wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: view(arrayed),
                multisampled: false,
            },
            _ => panic!("unsupported handle binding in a shader"),
        },
        _ => return None,
    })
}

fn scalar_name(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
    let name = |s: naga::Scalar| match s {
        naga::Scalar { kind: naga::ScalarKind::Uint, width: 4 } => Some("u32"),
        naga::Scalar { kind: naga::ScalarKind::Sint, width: 4 } => Some("i32"),
        naga::Scalar { kind: naga::ScalarKind::Float, width: 4 } => Some("f32"),
        _ => None,
    };
    match module.types[ty].inner {
        naga::TypeInner::Scalar(s) if name(s).is_some() => name(s).unwrap_or_default().into(),
        naga::TypeInner::Vector { size: naga::VectorSize::Quad, scalar } if name(scalar).is_some() => {
            format!("vec4<{}>", name(scalar).unwrap_or_default())
        }
        ref other => format!("{other:?}"),
    }
}

fn naga_struct(module: &naga::Module, ty: naga::Handle<naga::Type>) -> WgslStruct {
    let t = &module.types[ty];
    match t.inner {
        naga::TypeInner::Struct { ref members, span } => WgslStruct {
            name: t.name.clone().unwrap_or_default(),
            size: span as usize,
            fields: members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize, scalar_name(module, m.ty)))
                .collect(),
        },
        ref other => panic!("a uniform that is not a struct: {other:?}"),
    }
}

/// The uniform struct `src` declares (its `var<uniform>` global), if any. Panics on WGSL that
/// does not parse (the embedded shaders are validated by tests/shaders.rs).
pub fn uniform_struct(src: &str) -> Option<WgslStruct> {
    let module = naga::front::wgsl::parse_str(src).expect("embedded shaders are validated by tests/shaders.rs");
    let var = module.global_variables.iter().map(|(_, v)| v).find(|v| v.space == naga::AddressSpace::Uniform)?;
    Some(naga_struct(&module, var.ty))
}

/// The bindings entry point `entry` of `src` uses (naga's per-entry-point global use), for the
/// kernel named `label` in panic messages.
pub fn entry_layout(src: &str, label: &str, entry: &str) -> EntryLayout {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string_with_path(src, label)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string_with_path(src, label)));
    let index = module
        .entry_points
        .iter()
        .position(|ep| ep.name == entry)
        .unwrap_or_else(|| panic!("{label}: no entry point {entry}"));
    let used = info.get_entry_point(index);
    let mut uniform = None;
    let mut resources = vec![];
    for (h, var) in module.global_variables.iter() {
        let Some(b) = var.binding.as_ref() else { continue };
        if used[h].is_empty() {
            continue;
        }
        assert_eq!(b.group, 0, "{label}: binding group {} (only group 0 is supported)", b.group);
        let Some(ty) = binding_type(&module, var) else { continue };
        let name = var.name.clone().unwrap_or_default();
        if var.space == naga::AddressSpace::Uniform {
            assert!(uniform.is_none(), "{label}: {entry} uses two uniforms");
            uniform = Some((name, b.binding, naga_struct(&module, var.ty)));
        } else {
            let e = wgpu::BindGroupLayoutEntry {
                binding: b.binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty,
                count: None,
            };
            resources.push((name, e));
        }
    }
    resources.sort_by_key(|(_, e)| e.binding);
    EntryLayout { uniform, resources }
}

impl EntryLayout {
    /// The layout entries: the uniform (if used) and the resources, by binding.
    fn entries(&self) -> Vec<wgpu::BindGroupLayoutEntry> {
        let mut v: Vec<_> = self.resources.iter().map(|(_, e)| *e).collect();
        if let Some((_, b, _)) = &self.uniform {
            v.push(wgpu::BindGroupLayoutEntry {
                binding: *b,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        v.sort_by_key(|e| e.binding);
        v
    }

    /// The binding of each name in `names`, in the order of [`EntryLayout::resources`]: index
    /// into `names` per resource. Panics (naming `label`) on a name given twice, a name the
    /// entry point does not use (or that does not exist), or a resource left unbound.
    pub fn resolve(&self, label: &str, names: &[&str]) -> Vec<usize> {
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                panic!("{label}: binding {n:?} given twice");
            }
            if !self.resources.iter().any(|(r, _)| r == n) {
                let known: Vec<&str> = self.resources.iter().map(|(r, _)| r.as_str()).collect();
                panic!("{label}: binds {n:?}, which this entry point does not use (it uses {known:?})");
            }
        }
        self.resources
            .iter()
            .map(|(r, _)| {
                names.iter().position(|n| n == r).unwrap_or_else(|| panic!("{label}: no resource given for {r:?}"))
            })
            .collect()
    }
}

/// Where a kernel's WGSL comes from: a file of `shaders/` or a source generated at run time
/// under a key that identifies it (family and specialisation).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// `shaders/<file>`.
    File(&'static str),
    /// A generated source: key, and the generator (only called on a cache miss).
    Generated(&'a str, &'a dyn Fn() -> String),
}

impl Source<'_> {
    fn id(&self) -> &str {
        match self {
            Source::File(f) => f,
            Source::Generated(k, _) => k,
        }
    }
}

/// One entry point's pipeline and bind group layout, built once per context.
pub struct Kernel {
    /// `source:entry`, for labels and messages.
    pub label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group_layout: wgpu::BindGroupLayout,
    layout: EntryLayout,
}

/// The pipeline cache: one map for shader files and generated sources, keyed by (source
/// identity, entry point).
#[derive(Default)]
pub(crate) struct Kernels(HashMap<(String, String), Arc<Kernel>>);

impl Context {
    /// The kernel for `entry` of `src`, built on first use.
    pub fn kernel(&self, src: Source<'_>, entry: &str) -> Arc<Kernel> {
        let checks = self.overrides().shader_checks;
        let key = (format!("{}{}", if checks { "checked " } else { "" }, src.id()), entry.to_string());
        if let Some(k) = self.kernels.lock().unwrap_or_else(|e| e.into_inner()).0.get(&key) {
            return k.clone();
        }
        let label = format!("{}:{entry}", src.id());
        let text: std::borrow::Cow<'_, str> = match src {
            Source::File(f) => crate::shaders::source(f).into(),
            Source::Generated(_, gen) => gen().into(),
        };
        let layout = entry_layout(&text, &label, entry);
        let desc = wgpu::ShaderModuleDescriptor { label: Some(&label), source: wgpu::ShaderSource::Wgsl(text) };
        let module = if checks {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: without wgpu's runtime checks an out-of-bounds index into a workgroup or
            // function-local array, an unbounded loop or an integer division by zero would be
            // undefined behaviour. Every kernel in shaders/ and every generated source bounds its
            // indices itself (storage reads and writes are guarded by the shapes in its
            // uniform, array indices by the tile constants), ends its loops on uniform bounds
            // and divides only by shape values that the wrappers keep positive; tests/kernels.rs
            // and tests/shaders.rs run each against its reference with poisoned outputs.
            // `KernelOverrides::shader_checks` ($STYLIZE_SHADER_CHECKS=1) turns the checks back on.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        let bind_group_layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &layout.entries(),
        });
        let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        let k = Arc::new(Kernel { label, pipeline, bind_group_layout, layout });
        self.kernels.lock().unwrap_or_else(|e| e.into_inner()).0.entry(key).or_insert(k).clone()
    }

    /// A bind group for `kernel`: `params` in its uniform (checked against the WGSL struct) and
    /// `binds` by WGSL global name (see [`EntryLayout::resolve`]).
    pub fn bind_group<U: Uniform>(&self, kernel: &Kernel, params: &U, binds: &Bindings<'_>) -> wgpu::BindGroup {
        let names: Vec<&str> = binds.iter().map(|(n, _)| *n).collect();
        let order = kernel.layout.resolve(&kernel.label, &names);
        let mut entries: Vec<wgpu::BindGroupEntry> = kernel
            .layout
            .resources
            .iter()
            .zip(&order)
            .map(|((_, e), &i)| wgpu::BindGroupEntry { binding: e.binding, resource: binds[i].1.resource() })
            .collect();
        let ubuf;
        if let Some((_, binding, s)) = &kernel.layout.uniform {
            if let Err(e) = check_uniform(&U::LAYOUT, s) {
                panic!("{}: {e}", kernel.label);
            }
            // Padded to 16 bytes, the uniform buffer granularity some backends want.
            let mut bytes = bytemuck::bytes_of(params).to_vec();
            bytes.resize(bytes.len().next_multiple_of(16).max(16), 0);
            ubuf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(&kernel.label),
                contents: &bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            });
            entries.push(wgpu::BindGroupEntry { binding: *binding, resource: ubuf.as_entire_binding() });
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.label),
            layout: &kernel.bind_group_layout,
            entries: &entries,
        })
    }

    /// A dispatch of `shaders/<file>`'s `entry` with `params` and `binds` (by WGSL name).
    pub fn dispatch<U: Uniform>(
        &self,
        file: &'static str,
        entry: &'static str,
        params: &U,
        binds: &Bindings<'_>,
        groups: (u32, u32, u32),
    ) -> super::op::Dispatch {
        self.dispatch_source(Source::File(file), entry, params, binds, groups)
    }

    /// [`Context::dispatch`] for any [`Source`].
    pub fn dispatch_source<U: Uniform>(
        &self,
        src: Source<'_>,
        entry: &'static str,
        params: &U,
        binds: &Bindings<'_>,
        groups: (u32, u32, u32),
    ) -> super::op::Dispatch {
        let k = self.kernel(src, entry);
        // wgpu would only fail at submit, naming no kernel; a grid over the limit is a wrapper's
        // bug (it must fold its workgroups, see `Context::grid`), so say which one here.
        let max = self.limits.max_compute_workgroups_per_dimension;
        assert!(
            groups.0 <= max && groups.1 <= max && groups.2 <= max,
            "{}: a grid of {groups:?} workgroups passes the adapter's {max} per dimension",
            k.label
        );
        let bind_group = self.bind_group(&k, params, binds);
        super::op::Dispatch::new(k.pipeline.clone(), bind_group, groups, entry)
    }
}
