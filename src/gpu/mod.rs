//! The GPU side: adapter choice, device, buffers, pipelines and one module per kernel family.
//!
//! Every kernel wrapper builds an [`Op`]: pipeline + bind group + workgroup counts, created once
//! and recorded into a compute pass as often as needed (the render loop never creates pipelines
//! or bind groups).

pub mod adam;
pub mod conv;
pub mod conv_gemm;
pub mod conv_gen;
pub mod conv_tex;
pub mod conv_wino_gemm;
pub mod ema;
pub mod flow;
pub mod gram;
pub mod gram_gen;
pub mod image;
pub mod kernel;
pub mod lbfgs;
pub mod mask;
pub mod meancov;
pub mod op;
pub mod overrides;
pub mod peak;
pub mod pool;
pub mod reduce;
pub mod relu;
pub mod temporal;
pub mod tensor;
pub mod tile;
pub mod tune;

pub use kernel::{Bindable, Source, Uniform};
pub use op::Op;
pub use overrides::KernelOverrides;
pub use tensor::Tensor;

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Which implementation of a kernel family an op uses (conv3x3 and Gram have two).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Storage buffers + workgroup memory (real GPUs).
    Tiled,
    /// Textures + subgroup broadcast (CPU drivers such as lavapipe, where every storage-buffer
    /// load becomes a per-lane loop).
    Tex,
    /// conv3x3 only: `Tex` computing Winograd F(2x2, 3x3) (2.25x fewer multiplies); the Gram
    /// treats it as `Tex`.
    Wino,
    /// conv3x3 only: `Tex` computing Winograd F(4x4, 3x3) (4x fewer multiplies).
    Wino4,
    /// Storage buffers, implicit GEMM with register blocks (`shaders/conv3x3_gemm.wgsl` and
    /// the variants [`conv::gemm_source`] generates from it, one per [`conv::GemmTile`]), for
    /// real GPUs, chosen by measurement (`gpu::tune`) or when forced. The Gram has one tile
    /// (`shaders/gram_gemm.wgsl`) and treats every tile as it.
    Gemm(conv::GemmTile),
    /// conv3x3 only: Winograd F(m x m, 3x3), m = 2 or 4, on storage buffers for real GPUs
    /// (`shaders/conv3x3_wino_gemm.wgsl`: input and output transforms), its products a batched
    /// GEMM on the register-blocked core with the given tile. The Gram treats it as `Gemm`.
    GemmWino(u32, conv::GemmTile),
}

impl Variant {
    /// The GEMM variant with its default tile.
    pub const GEMM: Variant = Variant::Gemm(conv::GemmTile::DEFAULT);

    /// `tiled`, `tex`, `wino`, `wino4`, `gemm` (the default tile), a GEMM tile by its name
    /// ([`conv::GemmTile::parse`], e.g. `gemm:r8x8w16x16k8`), `gemm-wino2` or `gemm-wino4`
    /// (the default tile) or with a tile (`gemm-wino4:r8x8w16x16k8`).
    pub fn parse(s: &str) -> Option<Variant> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tiled" => Some(Variant::Tiled),
            "tex" => Some(Variant::Tex),
            "wino" => Some(Variant::Wino),
            "wino4" => Some(Variant::Wino4),
            other => {
                for m in [2, 4] {
                    if let Some(rest) = other.strip_prefix(&format!("gemm-wino{m}")) {
                        let tile = if rest.is_empty() {
                            Some(conv::GemmTile::DEFAULT)
                        } else {
                            conv::GemmTile::parse(&format!("gemm{rest}"))
                        };
                        return tile
                            .filter(|_| rest.is_empty() || rest.starts_with(':'))
                            .map(|t| Variant::GemmWino(m, t));
                    }
                }
                conv::GemmTile::parse(other).map(Variant::Gemm)
            }
        }
    }

    /// The name [`Variant::parse`] reads back.
    pub fn name(&self) -> String {
        match self {
            Variant::Tiled => "tiled".into(),
            Variant::Tex => "tex".into(),
            Variant::Wino => "wino".into(),
            Variant::Wino4 => "wino4".into(),
            Variant::Gemm(t) => t.name(),
            Variant::GemmWino(m, t) => format!("gemm-wino{m}{}", t.name().strip_prefix("gemm").unwrap_or_default()),
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Which adapter the user asked for: a name substring and/or a backend.
/// Parsed from strings like `vulkan`, `llvmpipe`, `vulkan:nvidia`, `metal`, `gl:intel`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdapterChoice {
    /// The backend, if one was named.
    pub backend: Option<wgpu::Backend>,
    /// A substring of the adapter name (any case), if given.
    pub name: Option<String>,
}

fn parse_backend(s: &str) -> Option<wgpu::Backend> {
    match s.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Some(wgpu::Backend::Vulkan),
        "metal" | "mtl" => Some(wgpu::Backend::Metal),
        "dx12" | "d3d12" => Some(wgpu::Backend::Dx12),
        "gl" | "gles" | "opengl" => Some(wgpu::Backend::Gl),
        _ => None,
    }
}

impl AdapterChoice {
    /// `""` or `"auto"`: best available. `BACKEND`, `NAME`, or `BACKEND:NAME`.
    pub fn parse(s: &str) -> AdapterChoice {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("auto") {
            return AdapterChoice::default();
        }
        if let Some((b, n)) = s.split_once(':') {
            if let Some(backend) = parse_backend(b) {
                let name = (!n.is_empty()).then(|| n.to_string());
                return AdapterChoice { backend: Some(backend), name };
            }
        }
        match parse_backend(s) {
            Some(backend) => AdapterChoice { backend: Some(backend), name: None },
            None => AdapterChoice { backend: None, name: Some(s.to_string()) },
        }
    }

    fn matches(&self, info: &wgpu::AdapterInfo) -> bool {
        self.backend.is_none_or(|b| b == info.backend)
            && self.name.as_ref().is_none_or(|n| info.name.to_lowercase().contains(&n.to_lowercase()))
    }
}

/// Preference order: discrete GPU, integrated, virtual, CPU (lavapipe), other; native APIs
/// before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let t = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let b = if info.backend == wgpu::Backend::Gl { 1 } else { 0 };
    (t, b)
}

/// `name (backend, type)` of an adapter.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

/// Mesa's Vulkan device-select layer (an implicit layer, on by default) asks a Wayland
/// compositor for the default GPU, and libwayland prints `error: XDG_RUNTIME_DIR is invalid or
/// not set in the environment.` (twice) where there is no session, as on a headless server. With
/// no runtime directory there is no compositor to ask, and we choose the adapter ourselves
/// ([`rank`]), so the layer is switched off there, as its manifest provides
/// (`NODEVICE_SELECT=1`), unless the user set that variable. Done once, before the first
/// instance, while the process has no other threads reading the environment.
fn quiet_device_select() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
        if !runtime_dir && std::env::var_os("NODEVICE_SELECT").is_none() {
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    });
}

/// An instance on `backends`, or on those `WGPU_BACKEND` names (and the other `WGPU_*`
/// settings), as wgpu's `from_env` reads them.
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    quiet_device_select();
    let mut d = wgpu::InstanceDescriptor::new_without_display_handle();
    d.backends = backends;
    wgpu::Instance::new(d.with_env())
}

fn adapters_on(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance(backends).enumerate_adapters(wgpu::Backends::all()))
}

/// The adapters wgpu can see, best first: those of the native APIs (Vulkan, Metal, DX12), or
/// the GL ones only when there are none, when `backend` is GL, or when `WGPU_BACKEND` says so.
/// GL is not probed otherwise: it is the slowest backend for compute, and its EGL probe may
/// print warnings of its own where there is no display.
pub fn enumerate_for(backend: Option<wgpu::Backend>) -> Vec<wgpu::Adapter> {
    let mut v = if std::env::var_os("WGPU_BACKEND").is_some() {
        adapters_on(wgpu::Backends::all())
    } else if backend == Some(wgpu::Backend::Gl) {
        adapters_on(wgpu::Backends::GL)
    } else {
        let primary = adapters_on(wgpu::Backends::PRIMARY);
        if primary.is_empty() {
            adapters_on(wgpu::Backends::GL)
        } else {
            primary
        }
    };
    v.sort_by_key(|a| rank(&a.get_info()));
    v
}

/// The adapters a default choice sees, best first (see [`enumerate_for`]).
pub fn enumerate() -> Vec<wgpu::Adapter> {
    enumerate_for(None)
}

fn no_adapter_hint() -> String {
    if cfg!(target_os = "linux") {
        "install a GPU driver with Vulkan support, or the software Vulkan driver (Debian/Ubuntu: \
         `apt-get install mesa-vulkan-drivers libvulkan1`)"
            .into()
    } else if cfg!(target_os = "windows") {
        "install or update your GPU driver (DirectX 12 or Vulkan)".into()
    } else {
        "this machine exposes no Metal, Vulkan or GL device to wgpu".into()
    }
}

/// Adapter, device and queue, with the adapter's real limits, plus a pipeline cache.
pub struct Context {
    /// The adapter.
    pub adapter: wgpu::Adapter,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter's description.
    pub info: wgpu::AdapterInfo,
    /// The adapter's limits (all requested).
    pub limits: wgpu::Limits,
    /// The features enabled (those used that the adapter has).
    pub features: wgpu::Features,
    /// Every kernel built so far, files and generated sources alike (see [`Context::kernel`]).
    kernels: Mutex<kernel::Kernels>,
    /// Kernel choices forced from outside (see [`Context::set_overrides`]).
    overrides: KernelOverrides,
    /// Conv variants chosen by measurement (see [`Context::set_tuner`]).
    tuner: Option<Arc<tune::Tuner>>,
    /// Scratch textures shared by key (see [`Context::scratch_texture`]).
    scratch_textures: Mutex<HashMap<String, wgpu::Texture>>,
    /// Scratch buffers shared by key (see [`Context::scratch_buffer`]).
    scratch_buffers: Mutex<HashMap<String, wgpu::Buffer>>,
    /// Set by the device-lost callback; checked after each submission.
    lost: Arc<Mutex<Option<String>>>,
}

impl Context {
    /// A context on the best adapter matching `choice`.
    pub fn new(choice: &AdapterChoice) -> Result<Context> {
        let all = enumerate_for(choice.backend);
        if all.is_empty() {
            return Err(Error::NoAdapter(no_adapter_hint()));
        }
        let adapter =
            all.iter().find(|a| choice.matches(&a.get_info())).cloned().ok_or_else(|| Error::AdapterNotFound {
                wanted: format!(
                    "{}{}",
                    choice.backend.map(|b| format!("{b:?}:")).unwrap_or_default(),
                    choice.name.clone().unwrap_or_default()
                ),
                available: all.iter().map(|a| describe(&a.get_info())).collect(),
            })?;
        Self::from_adapter(adapter)
    }

    /// A context on `adapter`.
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Context> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Only what we use and the adapter has: timestamps for benchmarks, subgroups for the
        // CPU-driver kernels.
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("stylize"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device(format!("{}: {e}", describe(&info))))?;
        let lost = Arc::new(Mutex::new(None));
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut g) = l2.lock() {
                *g = Some(format!("{reason:?}: {msg}"));
            }
        });
        Ok(Context {
            adapter,
            device,
            queue,
            info,
            limits,
            features,
            kernels: Mutex::new(kernel::Kernels::default()),
            overrides: KernelOverrides::default(),
            tuner: None,
            scratch_textures: Mutex::new(HashMap::new()),
            scratch_buffers: Mutex::new(HashMap::new()),
            lost,
        })
    }

    /// The adapter, as [`describe`] writes it.
    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    /// The kernel choices forced on this context (none unless set).
    pub fn overrides(&self) -> &KernelOverrides {
        &self.overrides
    }

    /// Forces kernel choices for the ops built from now on (ops already built keep theirs).
    pub fn set_overrides(&mut self, o: KernelOverrides) {
        self.overrides = o;
    }

    /// Chooses conv variants with `t` (by measurement or its table) for the ops built from now
    /// on, where no override forces one.
    pub fn set_tuner(&mut self, t: tune::Tuner) {
        self.tuner = Some(Arc::new(t));
    }

    /// The tuner, if one is set.
    pub fn tuner(&self) -> Option<&tune::Tuner> {
        self.tuner.as_deref()
    }

    /// The texture for `key`, created from `desc` on first use and shared by every later caller
    /// with the same key (which must determine `desc`). Scratch space for ops that write it and
    /// read it back within their own consecutive dispatches, such as the packed input of the
    /// texture conv3x3, so ops of one shape hold one texture between them.
    pub fn scratch_texture(&self, key: &str, desc: &wgpu::TextureDescriptor) -> wgpu::Texture {
        let mut m = self.scratch_textures.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key.to_string()).or_insert_with(|| self.device.create_texture(desc)).clone()
    }

    /// The storage buffer of `bytes` shared under `key`, created on first use: scratch that lives
    /// only from one dispatch of an op to a later one of the same op (ops run one after another),
    /// so every op of one shape can share it.
    pub fn scratch_buffer(&self, key: &str, bytes: u64) -> wgpu::Buffer {
        let mut m = self.scratch_buffers.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key.to_string())
            .or_insert_with(|| {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(key),
                    size: bytes.next_multiple_of(16).max(16),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .clone()
    }

    /// Blocks until the GPU is idle; reports device loss as an error.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        self.check_lost()
    }

    /// Blocks until submission `idx` (and every one before it) has finished, not later ones:
    /// a loop that waits for its previous step keeps one step queued behind the running one.
    pub fn wait_for(&self, idx: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(idx), timeout: None })
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        self.check_lost()
    }

    /// A marker for everything submitted so far, for [`Context::wait_for`].
    pub fn submitted(&self) -> wgpu::SubmissionIndex {
        self.queue.submit([])
    }

    /// An error if the device was lost.
    pub fn check_lost(&self) -> Result<()> {
        match self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(m) => {
                Err(Error::Gpu(format!("the GPU device was lost ({m}); the work may be too large for this adapter")))
            }
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns a caught GPU error
    /// into an [`Error::Gpu`] instead of wgpu's default panic.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = o {
            return Err(Error::Gpu(format!(
                "out of GPU memory while {what} ({e}); the work is too large for this adapter"
            )));
        }
        if let Some(e) = v {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        Ok(out)
    }

    /// Records `ops` into one compute pass, submits and waits.
    pub fn run(&self, ops: &[&Op]) -> Result<()> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for op in ops {
                op.record(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
        self.wait()
    }

    /// Workgroups along x and y for `groups` 1-D workgroups, within the per-dimension limit.
    pub fn grid(&self, groups: u32) -> (u32, u32) {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        let gx = groups.clamp(1, max);
        (gx, groups.div_ceil(gx).max(1))
    }
}
