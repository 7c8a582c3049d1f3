//! [`CudaLauncher`]: cudarc 0.19 with dynamic loading, one stream, modules loaded once and cached.
//!
//! Module images, best first: the cubin NVRTC built for this exact major version at build time
//! (sm_80 for 8.x, sm_90 for 9.x), the PTX for the newest compute_XY ≤ the device's, else the
//! embedded source compiled now by the installed NVRTC into a cubin for the device's exact
//! architecture ([`runtime_cubin`]; a cubin needs no driver JIT, so an NVRTC newer than the driver
//! is no problem). Both versions are in [`cuda_info`].

use super::generated::{IMAGES, KERNELS, NVRTC_BUILD_VERSION, SOURCES};
use super::params::Kernel;
use super::{LaunchCfg, Launcher};
use crate::{Error, Result};
use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

/// Ok(description of the driver) or Err(why CUDA cannot be used); computed once.
fn probe() -> &'static std::result::Result<String, String> {
    static PROBE: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PROBE.get_or_init(|| {
        let r = catch_unwind(|| {
            // SAFETY: only tries to dlopen libcuda.
            if !unsafe { sys::is_culib_present() } {
                return Err("libcuda (the NVIDIA driver) cannot be loaded".to_string());
            }
            result::init().map_err(|e| format!("cuInit failed: {e:?}"))?;
            let count = result::device::get_count()
                .map_err(|e| format!("cuDeviceGetCount failed: {e:?}"))?;
            if count < 1 {
                return Err("the NVIDIA driver reports no CUDA device".to_string());
            }
            let mut v = 0;
            // SAFETY: out-pointer to a live int; the library is loaded.
            unsafe { sys::cuDriverGetVersion(&mut v) };
            Ok(format!(
                "driver CUDA {}.{}, {count} device(s)",
                v / 1000,
                (v % 1000) / 10
            ))
        });
        r.unwrap_or_else(|_| Err("probing libcuda panicked".to_string()))
    })
}

fn nvrtc_runtime_version() -> std::result::Result<String, String> {
    catch_unwind(|| {
        // SAFETY: only tries to dlopen libnvrtc.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err("libnvrtc cannot be loaded".to_string());
        }
        let (mut a, mut b) = (0, 0);
        // SAFETY: out-pointers to live ints; the library is loaded.
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut a, &mut b) };
        Ok(format!("{a}.{b}"))
    })
    .unwrap_or_else(|_| Err("probing libnvrtc panicked".to_string()))
}

/// The architectures the installed NVRTC compiles for (e.g. 75 for sm_75), ascending: NVRTC 13
/// dropped those below 7.5 that 12.x still had. Err when libnvrtc cannot be loaded.
pub fn nvrtc_supported_archs() -> Result<Vec<i32>> {
    nvrtc_runtime_version().map_err(|e| Error::device(format!("cuda: {e}")))?;
    catch_unwind(|| -> Result<Vec<i32>> {
        use cudarc::nvrtc::sys as nvsys;
        let mut n = 0;
        // SAFETY: out-pointer to a live int; the library is loaded (probed above).
        let r = unsafe { nvsys::nvrtcGetNumSupportedArchs(&mut n) };
        if r != nvsys::nvrtcResult::NVRTC_SUCCESS || n < 0 {
            return Err(Error::device(format!(
                "cuda: nvrtcGetNumSupportedArchs: {r:?}"
            )));
        }
        let mut archs = vec![0; n as usize];
        // SAFETY: the buffer holds exactly the count NVRTC just reported.
        let r = unsafe { nvsys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) };
        if r != nvsys::nvrtcResult::NVRTC_SUCCESS {
            return Err(Error::device(format!(
                "cuda: nvrtcGetSupportedArchs: {r:?}"
            )));
        }
        archs.sort_unstable();
        Ok(archs)
    })
    .unwrap_or_else(|_| {
        Err(Error::device(
            "cuda: asking NVRTC for its architectures panicked",
        ))
    })
}

/// kernels/`module`.cu compiled now by the installed NVRTC into a cubin for exactly compute
/// capability `cc` (`--gpu-architecture=sm_XY`, e.g. sm_72 for 7.2): what the launcher loads when
/// no image embedded at build time fits the device. An error names the module, the architecture
/// and NVRTC's log; never a panic.
pub fn runtime_cubin(module: &str, cc: (i32, i32)) -> Result<Vec<u8>> {
    let src = SOURCES
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, s)| *s)
        .ok_or_else(|| Error::device(format!("cuda: no kernel module {module}")))?;
    let arch = format!("sm_{}{}", cc.0, cc.1);
    let version = nvrtc_runtime_version().map_err(|e| {
        Error::device(format!(
            "cuda: kernels/{module}.cu has no embedded image for {arch} and cannot be compiled now: {e}"
        ))
    })?;
    let archs = nvrtc_supported_archs()?;
    if !archs.contains(&(cc.0 * 10 + cc.1)) {
        return Err(Error::device(format!(
            "cuda: kernels/{module}.cu has no embedded image for {arch}, and the installed NVRTC \
             {version} cannot compile for {arch} (it supports sm_{}…sm_{}): install an NVRTC that \
             does and point ERAENGINE_NVRTC_LIB at it",
            archs.first().copied().unwrap_or(0),
            archs.last().copied().unwrap_or(0),
        )));
    }
    let fail = |what: &str, log: String| {
        Error::device(format!(
            "cuda: NVRTC {what} kernels/{module}.cu for {arch}{}",
            if log.is_empty() {
                String::new()
            } else {
                format!(": {}", log.chars().take(2000).collect::<String>())
            }
        ))
    };
    let csrc = std::ffi::CString::new(src).map_err(|_| fail("cannot take", String::new()))?;
    let name = std::ffi::CString::new(format!("{module}.cu"))
        .map_err(|_| fail("cannot name", String::new()))?;
    catch_unwind(AssertUnwindSafe(|| -> Result<Vec<u8>> {
        use cudarc::nvrtc::{result as nv, sys as nvsys};
        let prog = nv::create_program(&csrc, Some(&name))
            .map_err(|e| fail("cannot create a program from", format!("{e:?}")))?;
        let opts = [
            format!("--gpu-architecture={arch}"),
            "--std=c++17".to_string(),
        ];
        // SAFETY: `prog` was just created and is destroyed below, once, on every path; the
        // out-pointers are live and the cubin buffer has the size NVRTC reported.
        let out = unsafe {
            match nv::compile_program(prog, &opts) {
                Err(e) => {
                    let log = nv::get_program_log(prog)
                        .map(|l| {
                            std::ffi::CStr::from_ptr(l.as_ptr())
                                .to_string_lossy()
                                .into_owned()
                        })
                        .unwrap_or_default();
                    Err(fail("failed compiling", format!("{e:?}: {log}")))
                }
                Ok(()) => {
                    let mut size = 0usize;
                    nvsys::nvrtcGetCUBINSize(prog, &mut size)
                        .result()
                        .map_err(|e| fail("gave no cubin size for", format!("{e:?}")))?;
                    let mut bin = vec![0u8; size];
                    nvsys::nvrtcGetCUBIN(prog, bin.as_mut_ptr() as *mut std::ffi::c_char)
                        .result()
                        .map_err(|e| fail("gave no cubin for", format!("{e:?}")))?;
                    Ok(bin)
                }
            }
        };
        // SAFETY: created above, not destroyed before.
        let _ = unsafe { nv::destroy_program(prog) };
        out
    }))
    .map_err(|_| Error::device("cuda: NVRTC panicked"))?
}

/// Whether a CUDA driver and at least one device are present. Never panics.
pub fn cuda_available() -> bool {
    probe().is_ok()
}

/// One line: driver and NVRTC versions (build time and run time), or why CUDA is unavailable.
pub fn cuda_info() -> String {
    let built = match NVRTC_BUILD_VERSION {
        Some(v) => format!("kernels embedded as PTX/cubin by NVRTC {v}"),
        None => "no embedded PTX (kernels compile from source at start-up)".to_string(),
    };
    let rt = match nvrtc_runtime_version() {
        Ok(v) => format!("runtime NVRTC {v}"),
        Err(e) => format!("no runtime NVRTC ({e})"),
    };
    match probe() {
        Ok(d) => format!("cuda: {d}; {built}; {rt}"),
        Err(e) => format!("cuda unavailable: {e}; {built}; {rt}"),
    }
}

/// A module that does not load; PTX newer than the driver gets its own explanation.
fn module_error(module: &str, e: impl std::fmt::Debug) -> Error {
    let raw = format!("{e:?}");
    if raw.contains("UNSUPPORTED_PTX_VERSION") || raw.contains("INVALID_PTX") {
        let driver = match probe() {
            Ok(d) => d.clone(),
            Err(e) => e.clone(),
        };
        Error::device(format!(
            "cuda: module {module}: the embedded PTX was made by NVRTC {} and is newer than this driver ({driver}); update the NVIDIA driver, or rebuild eraengine with ERAENGINE_NVRTC_LIB pointing at an NVRTC no newer than the driver ({raw})",
            NVRTC_BUILD_VERSION.unwrap_or("(run time)")
        ))
    } else {
        derr(&format!("loading module {module}"), e)
    }
}

fn derr(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::device(format!("cuda: {what}: {e:?}"))
}

/// Kernels launched on the first CUDA device through one stream.
pub struct CudaLauncher {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    cc: (i32, i32),
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Loaded functions by kernel id (`Kernel as usize`), for the backend's launches.
    by_id: Mutex<Vec<Option<CudaFunction>>>,
    /// stream-ordered allocation from the device's memory pool; false: `cuMemAlloc`/`cuMemFree`
    /// (devices without memory pools, some virtualised GPUs)
    pooled: bool,
    /// `ERAENGINE_CUDA_SYNC=1`: wait after every launch, so a fault names its kernel
    sync_each: bool,
    /// pinned host memory that uploads go through, reused after each synchronisation
    staging: Mutex<Staging>,
    /// `ERAENGINE_CUDA_PROFILE=1`: CUDA events around every launch by kernel id; their device
    /// times go to the per-kernel counters (`stats::KernelCount::measured_s`) at the next sync
    profile: Option<Mutex<Profile>>,
}

/// Event pairs recorded around launches and not yet read (`pending`), and read ones for reuse.
#[derive(Default)]
struct Profile {
    pending: Vec<(Kernel, sys::CUevent, sys::CUevent)>,
    free: Vec<sys::CUevent>,
}

// SAFETY: the events are driver handles owned by the launcher; every access goes through the
// Mutex around Profile.
unsafe impl Send for Profile {}

impl Profile {
    fn lock(p: &Mutex<Profile>) -> Result<std::sync::MutexGuard<'_, Profile>> {
        p.lock()
            .map_err(|_| Error::device("cuda: the profile lock is poisoned"))
    }

    fn event(&mut self) -> Result<sys::CUevent> {
        match self.free.pop() {
            Some(e) => Ok(e),
            None => result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
                .map_err(|e| derr("creating a profiling event", e)),
        }
    }
}

/// Pinned upload buffers: `cur` is filled from `used`; copies queued from it (and from the
/// `retired` ones) are complete after the next stream synchronisation, which resets it.
struct Staging {
    cur: *mut u8,
    cap: usize,
    used: usize,
    retired: Vec<*mut u8>,
}

// SAFETY: the pinned pointers are plain host memory owned by the launcher; every access goes
// through the Mutex around Staging.
unsafe impl Send for Staging {}

/// The largest pinned staging buffer; an upload that does not fit waits for the stream first.
const MAX_STAGING: usize = 256 << 20;

impl CudaLauncher {
    /// Opens device 0. Err (never a panic) when there is no driver or device.
    pub fn new() -> Result<Self> {
        if let Err(why) = probe() {
            return Err(Error::device(format!(
                "--device cuda: no usable GPU: {why}"
            )));
        }
        let opened = catch_unwind(|| -> Result<Self> {
            let ctx = CudaContext::new(0).map_err(|e| derr("opening device 0", e))?;
            let stream = ctx.new_stream().map_err(|e| derr("creating a stream", e))?;
            let cc = ctx
                .compute_capability()
                .map_err(|e| derr("reading the compute capability", e))?;
            let pooled = ctx
                .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED)
                .is_ok_and(|v| v != 0);
            if pooled {
                // Keep freed pool memory instead of returning it to the OS at every sync: the
                // release threshold, set once (the backend's cache makes frees rare anyway).
                // SAFETY: the device comes from the context; the value is a u64 as the
                // attribute requires.
                unsafe {
                    let pool = result::device::get_default_mem_pool(ctx.cu_device())
                        .map_err(|e| derr("reading the memory pool", e))?;
                    let mut keep = u64::MAX;
                    result::mem_pool::set_attribute(
                        pool,
                        sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                        &mut keep as *mut u64 as *mut c_void,
                    )
                    .map_err(|e| derr("setting the pool's release threshold", e))?;
                }
            }
            let sync_each = std::env::var("ERAENGINE_CUDA_SYNC").is_ok_and(|v| v == "1");
            let profile = std::env::var("ERAENGINE_CUDA_PROFILE")
                .is_ok_and(|v| v == "1")
                .then(|| Mutex::new(Profile::default()));
            Ok(CudaLauncher {
                ctx,
                stream,
                cc,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                by_id: Mutex::new(vec![None; Kernel::ALL.len()]),
                pooled,
                sync_each,
                staging: Mutex::new(Staging {
                    cur: std::ptr::null_mut(),
                    cap: 0,
                    used: 0,
                    retired: Vec::new(),
                }),
                profile,
            })
        });
        opened.unwrap_or_else(|_| Err(Error::device("cuda: opening device 0 panicked")))
    }

    fn image(&self, module: &'static str) -> Result<Ptx> {
        let (major, _) = self.cc;
        let cubin = match major {
            8 => Some("sm_80"),
            9 => Some("sm_90"),
            _ => None,
        };
        let find = |arch: &str| {
            IMAGES
                .iter()
                .find(|(m, a, _)| *m == module && *a == arch)
                .map(|(_, _, b)| *b)
        };
        if let Some(bin) = cubin.and_then(find) {
            return Ok(Ptx::from_binary(bin.to_vec()));
        }
        let ptx_arch = if major >= 9 {
            Some("compute_90")
        } else if major == 8 {
            Some("compute_80")
        } else {
            None
        };
        if let Some(text) = ptx_arch.and_then(find) {
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            let s = std::str::from_utf8(&text[..end])
                .map_err(|e| derr("embedded PTX is not UTF-8", e))?;
            return Ok(Ptx::from_src(s));
        }
        // no embedded image fits: compile a cubin for exactly this device with the installed
        // NVRTC (a cubin needs no driver JIT, so an NVRTC newer than the driver still works)
        Ok(Ptx::from_binary(runtime_cubin(module, self.cc)?))
    }

    fn function(&self, kernel: &str) -> Result<CudaFunction> {
        let mut fns = self
            .functions
            .lock()
            .map_err(|_| Error::device("cuda: function cache poisoned"))?;
        if let Some(f) = fns.get(kernel) {
            return Ok(f.clone());
        }
        let module: &'static str = KERNELS
            .iter()
            .find(|(k, _)| *k == kernel)
            .map(|(_, m)| *m)
            .ok_or_else(|| Error::device(format!("cuda: no kernel named {kernel}")))?;
        let f = self.load(module, kernel)?;
        fns.insert(kernel.to_string(), f.clone());
        Ok(f)
    }

    /// The function of kernel `k`, loaded once and cached by its id.
    fn function_by_id(&self, k: Kernel) -> Result<CudaFunction> {
        let mut fns = self
            .by_id
            .lock()
            .map_err(|_| Error::device("cuda: function cache poisoned"))?;
        let slot = fns
            .get_mut(k as usize)
            .ok_or_else(|| Error::device(format!("cuda: kernel id {k:?} out of range")))?;
        if let Some(f) = slot {
            return Ok(f.clone());
        }
        let f = self.load(k.module(), k.name())?;
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Loads `kernel` from `module` (the module loaded once and cached).
    fn load(&self, module: &'static str, kernel: &str) -> Result<CudaFunction> {
        let m = {
            let mut mods = self
                .modules
                .lock()
                .map_err(|_| Error::device("cuda: module cache poisoned"))?;
            match mods.get(module) {
                Some(m) => m.clone(),
                None => {
                    let m = self
                        .ctx
                        .load_module(self.image(module)?)
                        .map_err(|e| module_error(module, e))?;
                    mods.insert(module, m.clone());
                    m
                }
            }
        };
        m.load_function(kernel)
            .map_err(|e| derr(&format!("loading {kernel}"), e))
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| derr("binding the context", e))
    }
}

impl Launcher for CudaLauncher {
    fn name(&self) -> String {
        format!("cuda (compute {}.{})", self.cc.0, self.cc.1)
    }
    fn alloc(&self, bytes: usize) -> Result<u64> {
        self.bind()?;
        let bytes = bytes.max(1);
        // SAFETY: allocation on our stream (or synchronous), zeroed before any use.
        unsafe {
            let p = if self.pooled {
                result::malloc_async(self.stream.cu_stream(), bytes)
            } else {
                result::malloc_sync(bytes)
            }
            .map_err(|e| derr(&format!("allocating {bytes} bytes"), e))?;
            result::memset_d8_async(p, 0, bytes, self.stream.cu_stream())
                .map_err(|e| derr("zeroing", e))?;
            Ok(p)
        }
    }
    unsafe fn free(&self, ptr: u64) {
        if self.bind().is_ok() {
            if self.pooled {
                let _ = result::free_async(ptr, self.stream.cu_stream());
            } else {
                // cuMemFree waits for work on the memory to finish
                let _ = result::free_sync(ptr);
            }
        }
    }
    unsafe fn htod(&self, dst: u64, src: &[u8]) -> Result<()> {
        self.bind()?;
        let len = src.len();
        if len == 0 {
            return Ok(());
        }
        let mut st = self
            .staging
            .lock()
            .map_err(|_| Error::device("cuda: staging poisoned"))?;
        if st.used + len > st.cap {
            if st.cap >= MAX_STAGING || len > MAX_STAGING {
                // wait for the queued copies, then reuse the buffer from its start
                drop(st);
                self.synchronize()?;
                st = self
                    .staging
                    .lock()
                    .map_err(|_| Error::device("cuda: staging poisoned"))?;
            }
            if st.used + len > st.cap {
                let cap = (2 * st.cap).max(len).max(1 << 20).min(MAX_STAGING.max(len));
                let p = result::malloc_host(cap, 0)
                    .map_err(|e| derr(&format!("pinning {cap} bytes"), e))?
                    as *mut u8;
                let old = std::mem::replace(&mut st.cur, p);
                if !old.is_null() {
                    st.retired.push(old);
                }
                st.cap = cap;
                st.used = 0;
            }
        }
        let at = st.used;
        // SAFETY: cur holds cap ≥ at + len bytes, not read by any queued copy past `used`.
        let staged = std::slice::from_raw_parts_mut(st.cur.add(at), len);
        staged.copy_from_slice(src);
        st.used = (at + len).div_ceil(256) * 256;
        result::memcpy_htod_async(dst, staged, self.stream.cu_stream())
            .map_err(|e| derr("copy to device", e))
    }
    unsafe fn dtoh(&self, dst: &mut [u8], src: u64) -> Result<()> {
        self.bind()?;
        // pageable destination: the driver completes this copy before it returns; the backend
        // synchronises once after all of a read-back's copies
        result::memcpy_dtoh_async(dst, src, self.stream.cu_stream())
            .map_err(|e| derr("copy to host", e))
    }
    unsafe fn memset_zero(&self, ptr: u64, bytes: usize) -> Result<()> {
        self.bind()?;
        result::memset_d8_async(ptr, 0, bytes, self.stream.cu_stream())
            .map_err(|e| derr("memset", e))
    }
    unsafe fn dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        self.bind()?;
        result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream())
            .map_err(|e| derr("copy on device", e))
    }
    unsafe fn launch(&self, kernel: &str, cfg: LaunchCfg, params: &[u8]) -> Result<()> {
        super::stats::validate(
            kernel,
            super::stats::MAX_BLOCK_THREADS,
            None,
            cfg,
            params.len(),
        )?;
        let f = self.function(kernel)?;
        self.launch_function(&f, kernel, cfg, params)
    }
    unsafe fn launch_kernel(&self, kernel: Kernel, cfg: LaunchCfg, params: &[u8]) -> Result<()> {
        let f = self.function_by_id(kernel)?;
        let Some(profile) = &self.profile else {
            return self.launch_function(&f, kernel.name(), cfg, params);
        };
        let (start, end) = {
            let mut p = Profile::lock(profile)?;
            (p.event()?, p.event()?)
        };
        // SAFETY: both events were created by this launcher and are in neither list (taken from
        // `free` above); the stream is the launcher's own.
        unsafe { result::event::record(start, self.stream.cu_stream()) }
            .map_err(|e| derr("recording a profiling event", e))?;
        // not under the lock: with ERAENGINE_CUDA_SYNC=1 the launch synchronizes, which reads
        // the pending events
        let launched = self.launch_function(&f, kernel.name(), cfg, params);
        // SAFETY: as above.
        unsafe { result::event::record(end, self.stream.cu_stream()) }
            .map_err(|e| derr("recording a profiling event", e))?;
        Profile::lock(profile)?.pending.push((kernel, start, end));
        launched
    }
    fn synchronize(&self) -> Result<()> {
        super::stats::count_sync();
        self.stream
            .synchronize()
            .map_err(|e| derr("synchronize", e))?;
        // every recorded event has completed: read the launches' device times
        if let Some(profile) = &self.profile {
            let mut p = Profile::lock(profile)?;
            let pending = std::mem::take(&mut p.pending);
            for (kernel, start, end) in pending {
                // SAFETY: both events were recorded on this stream, which has just finished.
                let ms = unsafe { result::event::elapsed(start, end) }
                    .map_err(|e| derr("reading a profiling event", e))?;
                super::stats::count_measured(kernel, f64::from(ms) * 1e-3);
                p.free.extend([start, end]);
            }
        }
        // every queued upload has landed: the staging buffers are free again
        if let Ok(mut st) = self.staging.lock() {
            st.used = 0;
            for p in std::mem::take(&mut st.retired) {
                // SAFETY: p came from malloc_host and no queued copy reads it any more.
                unsafe {
                    let _ = result::free_host(p as *mut c_void);
                }
            }
        }
        Ok(())
    }
}

impl CudaLauncher {
    /// # Safety
    /// As [`Launcher::launch`].
    unsafe fn launch_function(
        &self,
        f: &CudaFunction,
        kernel: &str,
        cfg: LaunchCfg,
        params: &[u8],
    ) -> Result<()> {
        self.bind()?;
        // cuLaunchKernel copies the parameter bytes before it returns.
        let mut args = [params.as_ptr() as *mut c_void];
        result::launch_kernel(
            f.cu_function(),
            (cfg.grid[0], cfg.grid[1], cfg.grid[2]),
            (cfg.block[0], cfg.block[1], cfg.block[2]),
            cfg.shmem,
            self.stream.cu_stream(),
            &mut args,
        )
        .map_err(|e| derr(&format!("launching {kernel} {cfg:?}"), e))?;
        if self.sync_each {
            self.synchronize()
                .map_err(|e| Error::device(format!("cuda: {kernel} {cfg:?} faulted: {e}")))?;
        }
        Ok(())
    }
}

impl Drop for CudaLauncher {
    fn drop(&mut self) {
        if self.synchronize().is_ok() {
            if let Ok(st) = self.staging.get_mut() {
                if !st.cur.is_null() {
                    // SAFETY: from malloc_host; the stream is idle.
                    unsafe {
                        let _ = result::free_host(st.cur as *mut c_void);
                    }
                    st.cur = std::ptr::null_mut();
                }
            }
            if let Some(Ok(p)) = self.profile.as_mut().map(|p| p.get_mut()) {
                for e in p.free.drain(..) {
                    // SAFETY: created by this launcher; the stream is idle and no pending
                    // record refers to it (synchronize emptied `pending` into `free`).
                    unsafe {
                        let _ = result::event::destroy(e);
                    }
                }
            }
        }
    }
}
