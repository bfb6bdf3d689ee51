//! The WGSL sources, embedded in the binary so it runs from anywhere.

/// (file name, source) of every shader in `shaders/`.
pub const ALL: &[(&str, &str)] = &[
    ("adam.wgsl", include_str!("../shaders/adam.wgsl")),
    ("conv3x3.wgsl", include_str!("../shaders/conv3x3.wgsl")),
    ("conv3x3_tex_pack.wgsl", include_str!("../shaders/conv3x3_tex_pack.wgsl")),
    ("conv3x3_tex_pack4.wgsl", include_str!("../shaders/conv3x3_tex_pack4.wgsl")),
    ("conv3x3_tex_weights.wgsl", include_str!("../shaders/conv3x3_tex_weights.wgsl")),
    ("ema.wgsl", include_str!("../shaders/ema.wgsl")),
    ("gram.wgsl", include_str!("../shaders/gram.wgsl")),
    ("gram_tex_finish.wgsl", include_str!("../shaders/gram_tex_finish.wgsl")),
    ("gram_tex_pack.wgsl", include_str!("../shaders/gram_tex_pack.wgsl")),
    ("gram_tex_pack4.wgsl", include_str!("../shaders/gram_tex_pack4.wgsl")),
    ("image.wgsl", include_str!("../shaders/image.wgsl")),
    ("lbfgs.wgsl", include_str!("../shaders/lbfgs.wgsl")),
    ("peak.wgsl", include_str!("../shaders/peak.wgsl")),
    ("pool.wgsl", include_str!("../shaders/pool.wgsl")),
    ("reduce.wgsl", include_str!("../shaders/reduce.wgsl")),
    ("relu.wgsl", include_str!("../shaders/relu.wgsl")),
    ("tile.wgsl", include_str!("../shaders/tile.wgsl")),
];

/// The WGSL source of `shaders/<file>` (embedded in the binary).
pub fn source(file: &str) -> &'static str {
    ALL.iter()
        .find(|(f, _)| *f == file)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("no shader named {file} is embedded (add it to shaders::ALL)"))
}

/// The bind group layout a shader file declares (group 0), read from the WGSL with naga, so that
/// every entry point of a file shares one layout and a wrapper binds every declared buffer
/// (wgpu's automatic layouts would keep only the bindings each entry point uses).
pub fn layout_entries(src: &str) -> Vec<wgpu::BindGroupLayoutEntry> {
    let module = naga::front::wgsl::parse_str(src).expect("embedded shaders are validated by tests/shaders.rs");
    let mut out: Vec<wgpu::BindGroupLayoutEntry> = module
        .global_variables
        .iter()
        .filter_map(|(_, var)| {
            let b = var.binding.as_ref()?;
            let ty = match var.space {
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
                        view_dimension: if arrayed {
                            wgpu::TextureViewDimension::D2Array
                        } else {
                            wgpu::TextureViewDimension::D2
                        },
                    },
                    naga::TypeInner::Image { dim: naga::ImageDimension::D2, arrayed, .. } => {
                        wgpu::BindingType::Texture {
                            sample_type: wgpu::TextureSampleType::Float { filterable: false },
                            view_dimension: if arrayed {
                                wgpu::TextureViewDimension::D2Array
                            } else {
                                wgpu::TextureViewDimension::D2
                            },
                            multisampled: false,
                        }
                    }
                    _ => panic!("unsupported handle binding in a shader"),
                },
                _ => return None,
            };
            Some(wgpu::BindGroupLayoutEntry {
                binding: b.binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty,
                count: None,
            })
        })
        .collect();
    out.sort_by_key(|e| e.binding);
    out
}
