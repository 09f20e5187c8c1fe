//! Dense-layer products with weights packed once at load time.
//!
//! `out[n, m] = a[n, k] · Wᵀ` where `W` is the layer's `[m, k]` (out, in) matrix. The
//! weights are packed into panels of [`NR`] output columns, each panel `[k, NR]`
//! contiguous, so the inner loop streams one panel while broadcasting activations. The
//! layout is the same for every kernel (the weight cache stores it), so the kernel is
//! chosen at run time, per process, by [`kernels`]: the best family the CPU has
//! ([`Kernel::Amx`] > [`Kernel::Avx512`] > [`Kernel::Avx2`] > [`Kernel::Portable`]), unless
//! `LUXICAL_KERNEL` / `LUXICAL_NO_SIMD` ask for a lower one.
//!
//! - float32 (the exact path): micro-tiles of rows × 16 columns summed with FMA in the
//!   same order on AVX2 (6 rows × 2 ymm) and AVX-512F (up to 14 rows × 2 panels of 1
//!   zmm, edge columns by mask, activations packed in tile order), so the two give
//!   bit-identical results; the portable kernel (the
//!   compiler vectorises it for the target: SSE2, NEON, ...) rounds the product before
//!   adding, so it differs in the last bits. Only the summation order differs from a
//!   plain dot product.
//! - int8 (the opt-in reduced-precision path): weights quantised per output column to
//!   `[-127, 127]`, activations (non-negative: they follow a ReLU) per row to `[0, 127]`,
//!   products summed exactly in i32 (AVX2: `vpmaddubsw` + `vpmaddwd`, the operands are
//!   bounded so the 16-bit pair sums never saturate; AVX-512 VNNI: `vpdpbusd`, 4 products
//!   straight into i32; AMX: `tdpbusd` on 16 × 64-byte tiles, 16 × 16 × 64 products per
//!   instruction), then scaled back to float32. Every kernel computes the same integers,
//!   so all give bit-identical results. The packed int8 panel (per group of 4 inputs, 4
//!   bytes per output column) is the VNNI layout AMX's `B` tiles expect, so 16 groups of
//!   a panel are one tile, loaded with a 64-byte stride; the depth is padded with zeros to
//!   a multiple of 64 (one tile) for every kernel.
//!
//! AMX needs the Linux kernel's permission to use the tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), asked once per process when
//! the CPU is first inspected; where it is refused (an older kernel, a signal stack too
//! small for the tile state), the AVX-512 VNNI kernel runs instead.

use crate::weights::SharedF32;
use std::sync::OnceLock;

/// Output columns per packed panel.
pub const NR: usize = 16;
/// Rows per float32 micro-tile (portable and AVX2).
const MR: usize = 6;
/// Most rows per float32 micro-tile of the AVX-512 kernel (2 panels wide: 28 of the 32
/// vector registers accumulate).
const MR_512: usize = 14;
/// Rows per int8 micro-tile (portable and AVX2).
const MR_I8: usize = 4;
/// Rows per int8 micro-tile of the AVX-512 VNNI kernel; the most of any int8 kernel
/// called through [`i8_tile`].
const MR_I8_MAX: usize = 8;
/// Depth of one AMX tile in bytes (64 int8 inputs); the int8 depth is padded to it.
const KT: usize = 64;
/// Rows of one AMX tile.
const TR: usize = 16;
/// Depth of one pass over the panels (keeps a panel slice in L1).
const KC: usize = 256;

fn n_panels(m: usize) -> usize {
    m.div_ceil(NR)
}

/// A family of dense-layer kernels, in increasing order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kernel {
    /// Plain Rust the compiler vectorises for the build target (any CPU).
    Portable,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// x86-64 AVX-512F (float32); the int8 kernel also needs AVX-512 BW + VNNI.
    Avx512,
    /// Intel AMX tiles (AMX-TILE + AMX-INT8, with the OS's permission) for int8, on top of
    /// AVX-512 (its float32 kernel is the AVX-512F one).
    Amx,
}

impl Kernel {
    /// Every family, in increasing order of preference.
    pub const ALL: [Kernel; 4] = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512, Kernel::Amx];
    /// The values `LUXICAL_KERNEL` accepts, in the order of [`Kernel::ALL`].
    pub const NAMES: [&'static str; 4] = ["portable", "avx2", "avx512", "amx"];

    /// The family's name (a `LUXICAL_KERNEL` value) and its float32 kernel's name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The name of this family's bfloat16 kernel (AVX2 has none: it runs the portable one).
    pub fn bf16_name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512-bf16",
            Kernel::Amx => "amx-bf16",
            _ => "portable",
        }
    }

    /// The name of this family's int8 kernel.
    pub fn int8_name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512-vnni",
            Kernel::Amx => "amx-int8",
            other => other.name(),
        }
    }
}

/// The CPU features the kernels use, detected at run time (all false off x86-64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vnni: bool,
    pub avx512bf16: bool,
    /// CPUID's AMX-TILE, AMX-INT8 and AMX-BF16 bits.
    pub amx_tile: bool,
    pub amx_int8: bool,
    pub amx_bf16: bool,
    /// Whether the OS lets this process use the AMX tile state (Linux: granted by
    /// `arch_prctl(ARCH_REQ_XCOMP_PERM)`; always false elsewhere).
    pub amx_os: bool,
}

impl CpuFeatures {
    /// This CPU's features (cached: detection runs once per process).
    pub fn detect() -> Self {
        static CPU: OnceLock<CpuFeatures> = OnceLock::new();
        *CPU.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                let (amx_tile, amx_int8, amx_bf16) = x86::amx_cpuid();
                CpuFeatures {
                    avx2: is_x86_feature_detected!("avx2"),
                    fma: is_x86_feature_detected!("fma"),
                    avx512f: is_x86_feature_detected!("avx512f"),
                    avx512bw: is_x86_feature_detected!("avx512bw"),
                    avx512vnni: is_x86_feature_detected!("avx512vnni"),
                    avx512bf16: is_x86_feature_detected!("avx512bf16"),
                    amx_tile,
                    amx_int8,
                    amx_bf16,
                    amx_os: amx_tile && x86::request_amx_permission(),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                CpuFeatures::default()
            }
        })
    }

    /// `(name, present)` for each feature, as Rust (AVX) and `/proc/cpuinfo` (AMX) spell
    /// them; `amx_os`: the OS granted this process the AMX tile state.
    pub fn list(&self) -> [(&'static str, bool); 10] {
        [
            ("avx2", self.avx2),
            ("fma", self.fma),
            ("avx512f", self.avx512f),
            ("avx512bw", self.avx512bw),
            ("avx512vnni", self.avx512vnni),
            ("avx512bf16", self.avx512bf16),
            ("amx_tile", self.amx_tile),
            ("amx_int8", self.amx_int8),
            ("amx_bf16", self.amx_bf16),
            ("amx_os", self.amx_os),
        ]
    }

    /// Whether this CPU runs anything of `kernel`'s family (for AMX: its int8 kernel).
    pub fn has_family(&self, kernel: Kernel) -> bool {
        match kernel {
            Kernel::Amx => self.has_int8(kernel),
            other => self.has_f32(other),
        }
    }

    /// Whether this CPU runs `kernel`'s float32 kernel.
    pub fn has_f32(&self, kernel: Kernel) -> bool {
        match kernel {
            Kernel::Portable => true,
            // AVX-512F implies AVX2 + FMA on every CPU made, but the kernels' helpers
            // (tests, fallbacks) may use either, so both are required.
            Kernel::Avx2 => self.avx2 && self.fma,
            Kernel::Avx512 => self.avx2 && self.fma && self.avx512f,
            // AMX has no float32 tiles: that family's float32 kernel is AVX-512F's.
            Kernel::Amx => false,
        }
    }

    /// Whether this CPU runs `kernel`'s int8 kernel.
    pub fn has_int8(&self, kernel: Kernel) -> bool {
        match kernel {
            Kernel::Avx512 => self.has_f32(kernel) && self.avx512bw && self.avx512vnni,
            Kernel::Amx => {
                self.has_int8(Kernel::Avx512) && self.amx_tile && self.amx_int8 && self.amx_os
            }
            other => self.has_f32(other),
        }
    }

    /// Whether this CPU runs `kernel`'s bfloat16 kernel (`Avx2`: none, the portable one
    /// runs).
    pub fn has_bf16(&self, kernel: Kernel) -> bool {
        match kernel {
            Kernel::Portable => true,
            Kernel::Avx2 => false,
            Kernel::Avx512 => self.has_f32(kernel) && self.avx512bf16,
            Kernel::Amx => {
                self.has_f32(Kernel::Avx512) && self.amx_tile && self.amx_bf16 && self.amx_os
            }
        }
    }

    /// The best bfloat16 kernel family this CPU runs, at most `limit`.
    fn best_bf16(&self, limit: Kernel) -> Kernel {
        Kernel::ALL
            .into_iter()
            .filter(|&k| k <= limit && self.has_bf16(k))
            .max()
            .unwrap_or(Kernel::Portable)
    }

    /// The best float32 kernel family this CPU runs, at most `limit`.
    fn best_f32(&self, limit: Kernel) -> Kernel {
        Kernel::ALL
            .into_iter()
            .filter(|&k| k <= limit && self.has_f32(k))
            .max()
            .unwrap_or(Kernel::Portable)
    }

    /// The best int8 kernel family this CPU runs, at most `limit`.
    fn best_int8(&self, limit: Kernel) -> Kernel {
        Kernel::ALL
            .into_iter()
            .filter(|&k| k <= limit && self.has_int8(k))
            .max()
            .unwrap_or(Kernel::Portable)
    }
}

/// The kernels the dense layers use in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    pub float32: Kernel,
    pub int8: Kernel,
    pub bf16: Kernel,
}

/// Chooses the kernels for `cpu` given the settings: `requested` is the `LUXICAL_KERNEL`
/// family (`None`: unset or unrecognised), `no_simd` the `LUXICAL_NO_SIMD` flag.
///
/// Unset: the best the CPU has. `LUXICAL_NO_SIMD` true: portable (it wins over
/// `LUXICAL_KERNEL`). A requested family the CPU lacks: the best the CPU has below it,
/// with a warning. The int8 kernel is the requested (or best) family's when the CPU has
/// it (AVX-512 also needs BW + VNNI; AMX the tiles and the OS's permission), else the best
/// below, silently: int8 is opt-in and `cpu_info()` names it. The float32 kernel of the AMX
/// family is AVX-512F's. Returns the warnings to queue.
pub fn choose_kernels(
    requested: Option<Kernel>,
    no_simd: bool,
    cpu: CpuFeatures,
) -> (Kernels, Vec<String>) {
    let mut warnings = Vec::new();
    let limit = match (no_simd, requested) {
        (true, Some(k)) if k != Kernel::Portable => {
            warnings.push(format!(
                "{}=1 and {}={}: LUXICAL_NO_SIMD wins, using the portable kernels",
                crate::settings::NO_SIMD,
                crate::settings::KERNEL,
                k.name()
            ));
            Kernel::Portable
        }
        (true, _) => Kernel::Portable,
        (false, Some(k)) => {
            if !cpu.has_family(k) {
                // AMX only changes the int8 kernel: name the one that runs instead.
                let instead = match k {
                    Kernel::Amx => format!("{} int8", cpu.best_int8(k).int8_name()),
                    _ => cpu.best_f32(k).name().to_string(),
                };
                warnings.push(format!(
                    "{}={}: this CPU lacks the instructions that kernel needs ({}); using the {} kernel",
                    crate::settings::KERNEL,
                    k.name(),
                    missing_features(k, &cpu),
                    instead
                ));
            }
            k
        }
        (false, None) => Kernel::Amx,
    };
    let kernels = Kernels {
        float32: cpu.best_f32(limit),
        int8: cpu.best_int8(limit),
        bf16: cpu.best_bf16(limit),
    };
    (kernels, warnings)
}

fn missing_features(kernel: Kernel, cpu: &CpuFeatures) -> String {
    let needed: &[&str] = match kernel {
        Kernel::Portable => &[],
        Kernel::Avx2 => &["avx2", "fma"],
        Kernel::Avx512 => &["avx2", "fma", "avx512f"],
        Kernel::Amx => &[
            "avx2",
            "fma",
            "avx512f",
            "avx512bw",
            "avx512vnni",
            "amx_tile",
            "amx_int8",
            "amx_os",
        ],
    };
    let present = cpu.list();
    needed
        .iter()
        .filter(|n| !present.iter().any(|(p, has)| p == *n && *has))
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kernels of this process: chosen on first use from the CPU and the settings
/// (`LUXICAL_KERNEL`, `LUXICAL_NO_SIMD`; read once), warnings queued in `settings`.
pub fn kernels() -> Kernels {
    static CHOSEN: OnceLock<Kernels> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let requested = crate::settings::env_choice(crate::settings::KERNEL, &Kernel::NAMES)
            .map(|i| Kernel::ALL[i]);
        let no_simd = crate::settings::env_flag(crate::settings::NO_SIMD);
        let (kernels, warnings) = choose_kernels(requested, no_simd, CpuFeatures::detect());
        warnings.into_iter().for_each(crate::settings::warn);
        kernels
    })
}

/// Whether a vectorised float32 kernel runs (anything but the portable one).
pub fn simd_kernels() -> bool {
    kernels().float32 != Kernel::Portable
}

/// What `luxical.cpu_info()` reports.
#[derive(Debug, Clone)]
pub struct CpuInfo {
    /// `std::env::consts::ARCH` of the build.
    pub arch: &'static str,
    pub features: [(&'static str, bool); 10],
    /// The float32 kernel families this CPU runs, in increasing order of preference.
    pub float32_kernels: Vec<&'static str>,
    /// The int8 kernels this CPU runs, likewise.
    pub int8_kernels: Vec<&'static str>,
    /// The kernels in use (chosen on first call, see [`kernels`]).
    pub float32_kernel: &'static str,
    pub int8_kernel: &'static str,
    /// The bfloat16 kernels this CPU runs and the one in use, likewise.
    pub bf16_kernels: Vec<&'static str>,
    pub bf16_kernel: &'static str,
}

/// The CPU's features and the kernels this process uses.
pub fn cpu_info() -> CpuInfo {
    let cpu = CpuFeatures::detect();
    let chosen = kernels();
    CpuInfo {
        arch: std::env::consts::ARCH,
        features: cpu.list(),
        float32_kernels: Kernel::ALL
            .into_iter()
            .filter(|&k| cpu.has_f32(k))
            .map(Kernel::name)
            .collect(),
        int8_kernels: Kernel::ALL
            .into_iter()
            .filter(|&k| cpu.has_int8(k))
            .map(Kernel::int8_name)
            .collect(),
        float32_kernel: chosen.float32.name(),
        int8_kernel: chosen.int8.int8_name(),
        bf16_kernels: Kernel::ALL
            .into_iter()
            .filter(|&k| cpu.has_bf16(k))
            .map(Kernel::bf16_name)
            .collect(),
        bf16_kernel: chosen.bf16.bf16_name(),
    }
}

/// A float32 layer packed for [`PackedF32::matmul`].
#[derive(Debug, Clone)]
pub struct PackedF32 {
    pub in_dim: usize,
    pub out_dim: usize,
    /// `[n_panels, in_dim, NR]`, zero past `out_dim`.
    data: SharedF32,
}

impl PackedF32 {
    /// Packs `w` stored `[out_dim, in_dim]` row-major.
    pub fn pack(w: &[f32], out_dim: usize, in_dim: usize) -> Self {
        assert_eq!(w.len(), out_dim * in_dim);
        let mut data = vec![0.0f32; n_panels(out_dim) * in_dim * NR];
        for (p, panel) in data.chunks_exact_mut(in_dim * NR).enumerate() {
            for c in 0..NR.min(out_dim - p * NR) {
                let row = &w[(p * NR + c) * in_dim..(p * NR + c + 1) * in_dim];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + c] = v;
                }
            }
        }
        Self {
            in_dim,
            out_dim,
            data: SharedF32::owned(data),
        }
    }

    /// Floats a packed `[out_dim, in_dim]` layer holds.
    pub fn packed_len(out_dim: usize, in_dim: usize) -> usize {
        n_panels(out_dim) * in_dim * NR
    }

    /// Wraps weights already in packed order (e.g. from a weight-cache file).
    pub fn from_packed(out_dim: usize, in_dim: usize, data: SharedF32) -> Option<Self> {
        (data.len() == Self::packed_len(out_dim, in_dim)).then_some(Self {
            in_dim,
            out_dim,
            data,
        })
    }

    /// The packed weights.
    pub fn packed(&self) -> &SharedF32 {
        &self.data
    }

    /// The weights back in `[out_dim, in_dim]` order.
    pub fn unpack(&self) -> Vec<f32> {
        let (k, m) = (self.in_dim, self.out_dim);
        let mut w = vec![0.0f32; m * k];
        for (p, panel) in self.data.chunks_exact(k * NR).enumerate() {
            for c in 0..NR.min(m - p * NR) {
                for kk in 0..k {
                    w[(p * NR + c) * k + kk] = panel[kk * NR + c];
                }
            }
        }
        w
    }

    /// `out[n_rows, out_dim] = a[n_rows, in_dim] · Wᵀ`, with this process's kernel.
    pub fn matmul(&self, a: &[f32], n_rows: usize, out: &mut [f32]) {
        self.matmul_with(kernels().float32, a, n_rows, out);
    }

    /// [`PackedF32::matmul`] with the given kernel family.
    ///
    /// # Panics
    /// If this CPU lacks `kernel` (see [`CpuFeatures::has_f32`]) or the sizes disagree.
    pub fn matmul_with(&self, kernel: Kernel, a: &[f32], n_rows: usize, out: &mut [f32]) {
        let (k, m) = (self.in_dim, self.out_dim);
        assert_eq!(a.len(), n_rows * k);
        assert_eq!(out.len(), n_rows * m);
        assert!(
            CpuFeatures::detect().has_f32(kernel),
            "this CPU lacks the {} kernel",
            kernel.name()
        );
        out.fill(0.0);
        if k == 0 || n_rows == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Avx512 {
            // SAFETY: AVX-512F was detected just above; the sizes were checked.
            unsafe { x86::f32_matmul_avx512(&self.data, k, m, a, n_rows, out) };
            return;
        }
        let simd = kernel == Kernel::Avx2;
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for (p, panel) in self.data.chunks_exact(k * NR).enumerate() {
                let b = &panel[k0 * NR..(k0 + kc) * NR];
                let cols = NR.min(m - p * NR);
                for i0 in (0..n_rows).step_by(MR) {
                    let rows = MR.min(n_rows - i0);
                    let a_tile = &a[i0 * k + k0..];
                    let mut tile = [[0.0f32; NR]; MR];
                    f32_tile(simd, rows, a_tile, k, b, kc, &mut tile);
                    for (r, t) in tile[..rows].iter().enumerate() {
                        let o = &mut out[(i0 + r) * m + p * NR..][..cols];
                        o.iter_mut().zip(t).for_each(|(o, t)| *o += t);
                    }
                }
            }
        }
    }
}

/// Dispatches one float32 micro-tile: `tile[r] = sum_p a[r*lda + p] * b[p*NR..]`.
/// `simd` (the AVX2 kernel) only where the CPU has AVX2 + FMA.
fn f32_tile(
    simd: bool,
    rows: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    kc: usize,
    tile: &mut [[f32; NR]; MR],
) {
    // Every row read is inside `a`: row r reads a[r*lda .. r*lda + kc].
    assert!((1..=MR).contains(&rows) && a.len() >= (rows - 1) * lda + kc && b.len() >= kc * NR);
    #[cfg(target_arch = "x86_64")]
    if simd {
        assert!(CpuFeatures::detect().has_f32(Kernel::Avx2));
        // SAFETY: AVX2 + FMA were detected; the bounds were checked above.
        unsafe {
            match rows {
                6 => x86::f32_kernel::<6>(a.as_ptr(), lda, b.as_ptr(), kc, tile),
                5 => x86::f32_kernel::<5>(a.as_ptr(), lda, b.as_ptr(), kc, tile),
                4 => x86::f32_kernel::<4>(a.as_ptr(), lda, b.as_ptr(), kc, tile),
                3 => x86::f32_kernel::<3>(a.as_ptr(), lda, b.as_ptr(), kc, tile),
                2 => x86::f32_kernel::<2>(a.as_ptr(), lda, b.as_ptr(), kc, tile),
                _ => x86::f32_kernel::<1>(a.as_ptr(), lda, b.as_ptr(), kc, tile),
            }
        }
        return;
    }
    let _ = simd;
    match rows {
        6 => f32_kernel_portable::<6>(a, lda, b, kc, tile),
        5 => f32_kernel_portable::<5>(a, lda, b, kc, tile),
        4 => f32_kernel_portable::<4>(a, lda, b, kc, tile),
        3 => f32_kernel_portable::<3>(a, lda, b, kc, tile),
        2 => f32_kernel_portable::<2>(a, lda, b, kc, tile),
        _ => f32_kernel_portable::<1>(a, lda, b, kc, tile),
    }
}

fn f32_kernel_portable<const R: usize>(
    a: &[f32],
    lda: usize,
    b: &[f32],
    kc: usize,
    tile: &mut [[f32; NR]; MR],
) {
    let mut acc = [[0.0f32; NR]; R];
    for (p, bp) in b.chunks_exact(NR).take(kc).enumerate() {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = a[r * lda + p];
            for (x, &w) in acc_r.iter_mut().zip(bp) {
                *x += av * w;
            }
        }
    }
    tile[..R].copy_from_slice(&acc);
}

/// An int8 layer packed for [`PackedI8::matmul`].
#[derive(Debug, Clone)]
pub struct PackedI8 {
    pub in_dim: usize,
    pub out_dim: usize,
    /// `in_dim` rounded up to a multiple of [`KT`] (one AMX tile's depth; a multiple of
    /// the 4 inputs of one `vpmaddubsw` pair or `vpdpbusd`). The padding is zero in the
    /// weights and in the quantised activations, so it adds nothing to any sum.
    k4: usize,
    /// `[n_panels, k4 / 4, NR, 4]`: for each group of 4 inputs, 4 consecutive bytes per
    /// output column (one zmm per group and panel); zero in the padding.
    data: Vec<i8>,
    /// Per output column: the float weight of one int8 step.
    scales: Vec<f32>,
}

impl PackedI8 {
    /// Quantises `w` stored `[out_dim, in_dim]` row-major, one scale per output column
    /// (symmetric, `max |w| / 127`).
    pub fn quantize(w: &[f32], out_dim: usize, in_dim: usize) -> Self {
        assert_eq!(w.len(), out_dim * in_dim);
        let k4 = in_dim.div_ceil(KT).max(1) * KT;
        let mut data = vec![0i8; n_panels(out_dim) * k4 * NR];
        let mut scales = vec![0.0f32; out_dim];
        for (o, row) in w.chunks_exact(in_dim.max(1)).take(out_dim).enumerate() {
            let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales[o] = scale;
            let (p, c) = (o / NR, o % NR);
            let panel = &mut data[p * k4 * NR..(p + 1) * k4 * NR];
            for (kk, &v) in row.iter().enumerate() {
                let q = (v / scale).round().clamp(-127.0, 127.0) as i8;
                panel[(kk / 4) * NR * 4 + c * 4 + kk % 4] = q;
            }
        }
        Self {
            in_dim,
            out_dim,
            k4,
            data,
            scales,
        }
    }

    /// `out[n_rows, out_dim] ≈ a[n_rows, in_dim] · Wᵀ` for non-negative `a` (negative
    /// inputs are taken as 0, as after a ReLU), with this process's int8 kernel. `qa` is
    /// scratch for the quantised rows.
    pub fn matmul(&self, a: &[f32], n_rows: usize, out: &mut [f32], qa: &mut Vec<u8>) {
        self.matmul_with(kernels().int8, a, n_rows, out, qa);
    }

    /// [`PackedI8::matmul`] with the given kernel family.
    ///
    /// # Panics
    /// If this CPU lacks `kernel`'s int8 kernel (see [`CpuFeatures::has_int8`]) or the
    /// sizes disagree.
    pub fn matmul_with(
        &self,
        kernel: Kernel,
        a: &[f32],
        n_rows: usize,
        out: &mut [f32],
        qa: &mut Vec<u8>,
    ) {
        let (k, k4, m) = (self.in_dim, self.k4, self.out_dim);
        assert_eq!(a.len(), n_rows * k);
        assert_eq!(out.len(), n_rows * m);
        assert!(
            CpuFeatures::detect().has_int8(kernel),
            "this CPU lacks the {} kernel",
            kernel.int8_name()
        );
        qa.clear();
        // Whole AMX tiles of rows: the tail tile reads zero rows past `n_rows`.
        qa.resize(n_rows.div_ceil(TR) * TR * k4, 0);
        let mut row_scale = vec![0.0f32; n_rows];
        for ((row, q), s) in a
            .chunks_exact(k.max(1))
            .zip(qa.chunks_exact_mut(k4.max(1)))
            .zip(row_scale.iter_mut())
        {
            let max = row.iter().fold(0.0f32, |m, &v| m.max(v));
            if max > 0.0 {
                let inv = 127.0 / max;
                *s = max / 127.0;
                for (q, &v) in q.iter_mut().zip(row) {
                    *q = (v.max(0.0) * inv).round().min(127.0) as u8;
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Amx {
            self.matmul_amx(qa, &row_scale, n_rows, out);
            return;
        }
        let mr = if kernel == Kernel::Avx512 {
            MR_I8_MAX
        } else {
            MR_I8
        };
        let mut acc = [[0i32; NR]; MR_I8_MAX];
        for (p, panel) in self.data.chunks_exact(k4 * NR).enumerate() {
            let cols = NR.min(m - p * NR);
            let scales = &self.scales[p * NR..p * NR + cols];
            for i0 in (0..n_rows).step_by(mr) {
                let rows = mr.min(n_rows - i0);
                i8_tile(kernel, rows, &qa[i0 * k4..], k4, panel, &mut acc);
                for (r, acc_r) in acc[..rows].iter().enumerate() {
                    let sa = row_scale[i0 + r];
                    let o = &mut out[(i0 + r) * m + p * NR..][..cols];
                    for ((o, &x), &sw) in o.iter_mut().zip(acc_r).zip(scales) {
                        *o = x as f32 * (sa * sw);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl PackedI8 {
    /// The AMX int8 product ([`amx_product`]), scaled back to float32. `qa` holds whole
    /// 16-row tiles (zero past `n_rows`).
    fn matmul_amx(&self, qa: &[u8], row_scale: &[f32], n_rows: usize, out: &mut [f32]) {
        let (k4, m) = (self.k4, self.out_dim);
        assert!(CpuFeatures::detect().has_int8(Kernel::Amx));
        // SAFETY: an i8 slice viewed as bytes.
        let data =
            unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<u8>(), self.data.len()) };
        amx_product(false, qa, k4, data, n_rows, m, |i0, r, col0, c_r| {
            let sa = row_scale[i0 + r];
            let o = &mut out[(i0 + r) * m + col0..][..c_r.len()];
            for ((o, &x), &sw) in o.iter_mut().zip(c_r).zip(&self.scales[col0..]) {
                *o = x as i32 as f32 * (sa * sw);
            }
        });
    }
}

/// The AMX product shared by the int8 (`tdpbusd`, exact i32 sums) and bfloat16
/// (`tdpbf16ps`, float32 sums) paths, which use the same tile shapes: activations `qa`
/// (whole 16-row tiles of `lda` bytes, zero past `n_rows`) times `n_panels(m)` packed
/// panels of `lda * NR` bytes each (16 rows of 64 bytes per tile depth, the VNNI layout).
/// Blocks of up to 32 rows × 32 columns (2 × 2 accumulator tiles), each panel pair's
/// weights reused by every row block while they are in cache. `emit(i0, r, col0, acc)`
/// receives row `i0 + r`'s sums for columns `col0..col0 + acc.len()` as raw 32-bit words
/// (i32 or f32 bits).
#[cfg(target_arch = "x86_64")]
fn amx_product(
    bf16: bool,
    qa: &[u8],
    lda: usize,
    data: &[u8],
    n_rows: usize,
    m: usize,
    mut emit: impl FnMut(usize, usize, usize, &[u32]),
) {
    let panels = n_panels(m);
    assert!(
        lda % KT == 0
            && qa.len() >= n_rows.div_ceil(TR) * TR * lda
            && data.len() == panels * lda * NR
    );
    let mut c = [[0u32; 2 * NR]; 2 * TR];
    // SAFETY: the caller checked that the CPU has the instructions and the OS granted the
    // tile state; the tiles read `qa` rows [i0, i0 + 16·row_tiles) (inside `qa`, checked
    // above) and whole panels (inside `data`); the configuration is released before
    // returning.
    unsafe {
        x86::amx_config();
        for p in (0..panels).step_by(2) {
            let col_tiles = (panels - p).min(2);
            let b = data.as_ptr().add(p * lda * NR);
            for i0 in (0..n_rows).step_by(2 * TR) {
                let rows = (n_rows - i0).min(2 * TR);
                let a = qa.as_ptr().add(i0 * lda);
                match (bf16, rows > TR, col_tiles == 2) {
                    (false, true, true) => x86::amx_block::<2, 2, false>(a, lda, b, &mut c),
                    (false, true, false) => x86::amx_block::<2, 1, false>(a, lda, b, &mut c),
                    (false, false, true) => x86::amx_block::<1, 2, false>(a, lda, b, &mut c),
                    (false, false, false) => x86::amx_block::<1, 1, false>(a, lda, b, &mut c),
                    (true, true, true) => x86::amx_block::<2, 2, true>(a, lda, b, &mut c),
                    (true, true, false) => x86::amx_block::<2, 1, true>(a, lda, b, &mut c),
                    (true, false, true) => x86::amx_block::<1, 2, true>(a, lda, b, &mut c),
                    (true, false, false) => x86::amx_block::<1, 1, true>(a, lda, b, &mut c),
                }
                let cols = (m - p * NR).min(col_tiles * NR);
                for (r, c_r) in c[..rows].iter().enumerate() {
                    emit(i0, r, p * NR, &c_r[..cols]);
                }
            }
        }
        x86::amx_release();
    }
}

/// Dispatches one int8 micro-tile over the whole depth `k4`: `acc[r][c]` for `r < rows`
/// (at most [`MR_I8`] rows, [`MR_I8_MAX`] for AVX-512).
fn i8_tile(
    kernel: Kernel,
    rows: usize,
    qa: &[u8],
    k4: usize,
    panel: &[i8],
    acc: &mut [[i32; NR]; MR_I8_MAX],
) {
    let mr = if kernel == Kernel::Avx512 {
        MR_I8_MAX
    } else {
        MR_I8
    };
    assert!((1..=mr).contains(&rows) && qa.len() >= rows * k4 && panel.len() >= k4 * NR);
    assert!(CpuFeatures::detect().has_int8(kernel));
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512 {
        // SAFETY: AVX-512F/BW/VNNI were detected; the bounds were checked above.
        unsafe {
            let (qa, panel) = (qa.as_ptr(), panel.as_ptr());
            match rows {
                8 => x86::i8_kernel_vnni::<8>(qa, k4, panel, acc),
                7 => x86::i8_kernel_vnni::<7>(qa, k4, panel, acc),
                6 => x86::i8_kernel_vnni::<6>(qa, k4, panel, acc),
                5 => x86::i8_kernel_vnni::<5>(qa, k4, panel, acc),
                4 => x86::i8_kernel_vnni::<4>(qa, k4, panel, acc),
                3 => x86::i8_kernel_vnni::<3>(qa, k4, panel, acc),
                2 => x86::i8_kernel_vnni::<2>(qa, k4, panel, acc),
                _ => x86::i8_kernel_vnni::<1>(qa, k4, panel, acc),
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx2 {
        // SAFETY: AVX2 was detected; the bounds were checked above.
        unsafe {
            match rows {
                4 => x86::i8_kernel::<4>(qa.as_ptr(), k4, panel.as_ptr(), acc),
                3 => x86::i8_kernel::<3>(qa.as_ptr(), k4, panel.as_ptr(), acc),
                2 => x86::i8_kernel::<2>(qa.as_ptr(), k4, panel.as_ptr(), acc),
                _ => x86::i8_kernel::<1>(qa.as_ptr(), k4, panel.as_ptr(), acc),
            }
        }
        return;
    }
    i8_kernel_portable(rows, qa, k4, panel, acc);
}

fn i8_kernel_portable(
    rows: usize,
    qa: &[u8],
    k4: usize,
    panel: &[i8],
    acc: &mut [[i32; NR]; MR_I8_MAX],
) {
    for (r, acc_r) in acc[..rows].iter_mut().enumerate() {
        *acc_r = [0; NR];
        let a = &qa[r * k4..(r + 1) * k4];
        for (g, block) in panel.chunks_exact(NR * 4).take(k4 / 4).enumerate() {
            let ag = &a[g * 4..g * 4 + 4];
            for (c, x) in acc_r.iter_mut().enumerate() {
                let w = &block[c * 4..c * 4 + 4];
                *x += ag
                    .iter()
                    .zip(w)
                    .map(|(&a, &w)| i32::from(a) * i32::from(w))
                    .sum::<i32>();
            }
        }
    }
}

/// Rounds a float32 to bfloat16 (round to nearest, ties to even; NaN stays NaN).
#[inline]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// A bfloat16 value widened to float32 (exact).
#[inline]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Depth of one AMX bfloat16 tile (32 values of 2 bytes in 64-byte rows).
const KT_BF16: usize = 32;

/// A layer with bfloat16 weights for [`PackedBf16::matmul`]: `out = a · Wᵀ` with `a`
/// rounded to bfloat16 per value, products of bfloat16 pairs (exact in float32) summed
/// in float32 in input order.
///
/// Every kernel computes `acc += a[2p]·w[2p]; acc += a[2p+1]·w[2p+1]` over the pairs `p`
/// in order (the order of AMX's `tdpbf16ps`); AVX-512 BF16's `vdpbf16ps` adds each
/// pair's second product first, and the hardware kernels flush denormals, so results agree
/// to float rounding, not bit for bit.
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    pub in_dim: usize,
    pub out_dim: usize,
    /// `in_dim` rounded up to a multiple of [`KT_BF16`] (zero padding in weights and
    /// activations).
    kp: usize,
    /// `[n_panels, kp / 2, NR, 2]`: for each pair of inputs, 2 consecutive values per output
    /// column (one 64-byte row of an AMX `B` tile, one zmm of `vdpbf16ps`).
    data: Vec<u16>,
}

impl PackedBf16 {
    /// Rounds `w` stored `[out_dim, in_dim]` row-major to bfloat16 and packs it.
    pub fn pack(w: &[f32], out_dim: usize, in_dim: usize) -> Self {
        assert_eq!(w.len(), out_dim * in_dim);
        let kp = in_dim.div_ceil(KT_BF16).max(1) * KT_BF16;
        let mut data = vec![0u16; n_panels(out_dim) * kp * NR];
        for (o, row) in w.chunks_exact(in_dim.max(1)).take(out_dim).enumerate() {
            let (p, c) = (o / NR, o % NR);
            let panel = &mut data[p * kp * NR..(p + 1) * kp * NR];
            for (kk, &v) in row.iter().enumerate() {
                panel[(kk / 2) * NR * 2 + c * 2 + kk % 2] = bf16_bits(v);
            }
        }
        Self {
            in_dim,
            out_dim,
            kp,
            data,
        }
    }

    /// `out[n_rows, out_dim] ≈ a[n_rows, in_dim] · Wᵀ` with this process's bfloat16
    /// kernel; `qa` is scratch for the rounded rows.
    pub fn matmul(&self, a: &[f32], n_rows: usize, out: &mut [f32], qa: &mut Vec<u16>) {
        self.matmul_with(kernels().bf16, a, n_rows, out, qa);
    }

    /// [`PackedBf16::matmul`] with the given kernel family.
    ///
    /// # Panics
    /// If this CPU lacks `kernel`'s bfloat16 kernel (see [`CpuFeatures::has_bf16`]) or the
    /// sizes disagree.
    pub fn matmul_with(
        &self,
        kernel: Kernel,
        a: &[f32],
        n_rows: usize,
        out: &mut [f32],
        qa: &mut Vec<u16>,
    ) {
        let (k, kp, m) = (self.in_dim, self.kp, self.out_dim);
        assert_eq!(a.len(), n_rows * k);
        assert_eq!(out.len(), n_rows * m);
        assert!(
            CpuFeatures::detect().has_bf16(kernel),
            "this CPU lacks the {} kernel",
            kernel.bf16_name()
        );
        qa.clear();
        qa.resize(n_rows.div_ceil(TR) * TR * kp, 0);
        for (row, q) in a.chunks_exact(k.max(1)).zip(qa.chunks_exact_mut(kp)) {
            for (q, &v) in q.iter_mut().zip(row) {
                *q = bf16_bits(v);
            }
        }
        #[cfg(target_arch = "x86_64")]
        match kernel {
            Kernel::Amx => return self.matmul_amx(qa, n_rows, out),
            Kernel::Avx512 => {
                // Two panels per pass: each broadcast activation pair feeds two products.
                let mut acc = [[0.0f32; 2 * NR]; MR_I8_MAX];
                let panels = n_panels(m);
                for p in (0..panels).step_by(2) {
                    let two = p + 1 < panels;
                    let cols = (m - p * NR).min(if two { 2 * NR } else { NR });
                    let panel = self.data[p * kp * NR..].as_ptr();
                    for i0 in (0..n_rows).step_by(MR_I8_MAX) {
                        let rows = MR_I8_MAX.min(n_rows - i0);
                        // SAFETY: AVX-512F/BF16 were checked above; `qa` holds `rows` rows of
                        // `kp` from `i0`; `data` holds `kp * NR` values per panel, for
                        // panel `p` and, when `two`, `p + 1`.
                        unsafe {
                            x86::bf16_tile_avx512(
                                rows,
                                two,
                                qa.as_ptr().add(i0 * kp),
                                kp,
                                panel,
                                &mut acc,
                            )
                        };
                        for (r, acc_r) in acc[..rows].iter().enumerate() {
                            out[(i0 + r) * m + p * NR..][..cols].copy_from_slice(&acc_r[..cols]);
                        }
                    }
                }
                return;
            }
            _ => {}
        }
        let _ = kernel;
        for (p, panel) in self.data.chunks_exact(kp * NR).enumerate() {
            let cols = NR.min(m - p * NR);
            for r in 0..n_rows {
                let mut acc = [0.0f32; NR];
                let ar = &qa[r * kp..(r + 1) * kp];
                for (pair, block) in ar.chunks_exact(2).zip(panel.chunks_exact(NR * 2)) {
                    let (a0, a1) = (bf16_to_f32(pair[0]), bf16_to_f32(pair[1]));
                    for (c, x) in acc.iter_mut().enumerate() {
                        *x += a0 * bf16_to_f32(block[2 * c]);
                        *x += a1 * bf16_to_f32(block[2 * c + 1]);
                    }
                }
                out[r * m + p * NR..][..cols].copy_from_slice(&acc[..cols]);
            }
        }
    }

    /// The AMX bfloat16 product ([`amx_product`]).
    #[cfg(target_arch = "x86_64")]
    fn matmul_amx(&self, qa: &[u16], n_rows: usize, out: &mut [f32]) {
        let m = self.out_dim;
        assert!(CpuFeatures::detect().has_bf16(Kernel::Amx));
        // SAFETY: u16 slices viewed as bytes.
        let (qa, data) = unsafe {
            (
                std::slice::from_raw_parts(qa.as_ptr().cast::<u8>(), qa.len() * 2),
                std::slice::from_raw_parts(self.data.as_ptr().cast::<u8>(), self.data.len() * 2),
            )
        };
        amx_product(
            true,
            qa,
            self.kp * 2,
            data,
            n_rows,
            m,
            |i0, r, col0, c_r| {
                for (o, &x) in out[(i0 + r) * m + col0..][..c_r.len()].iter_mut().zip(c_r) {
                    *o = f32::from_bits(x);
                }
            },
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{KC, KT, MR, MR_512, MR_I8_MAX, NR, TR};
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// CPUID leaf 7's AMX-TILE, AMX-INT8 and AMX-BF16 bits.
    pub fn amx_cpuid() -> (bool, bool, bool) {
        // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is read only when reported.
        #[allow(unused_unsafe)]
        let edx = unsafe {
            if __cpuid(0).eax < 7 {
                return (false, false, false);
            }
            __cpuid_count(7, 0).edx
        };
        (edx >> 24 & 1 == 1, edx >> 25 & 1 == 1, edx >> 22 & 1 == 1)
    }

    /// Asks Linux for this process's permission to use the AMX tile data (once per
    /// process: the grant covers every thread). False where refused or not Linux.
    pub fn request_amx_permission() -> bool {
        #[cfg(target_os = "linux")]
        {
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with these arguments only changes the process's allowed
            // extended state; it fails cleanly where unsupported.
            unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                ) == 0
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    /// Loads the tile configuration of the AMX kernels on this thread: palette 1, every
    /// tile 16 rows × 64 bytes (`tmm0..3` 32-bit accumulators, `tmm4/5` activations,
    /// `tmm6/7` weights).
    ///
    /// # Safety
    /// The CPU must have AMX-TILE and the OS must have granted the tile state.
    pub unsafe fn amx_config() {
        let mut cfg = [0u8; 64];
        cfg[0] = 1;
        for t in 0..8 {
            cfg[16 + 2 * t..18 + 2 * t].copy_from_slice(&(KT as u16).to_le_bytes());
            cfg[48 + t] = TR as u8;
        }
        asm!("ldtilecfg [{}]", in(reg) cfg.as_ptr(), options(nostack, readonly));
    }

    /// `acc[r][c] = sum over pairs p of a[r][2p]·w[c][2p] + a[r][2p+1]·w[c][2p+1]` for
    /// `r < rows` (at most 8) and the 16 columns of one panel, or 32 of two consecutive
    /// panels when `two`, with `vdpbf16ps` (float32 sums).
    ///
    /// # Safety
    /// AVX-512F/BF16 must be available; `qa` readable for `rows * kp` values, `panel`
    /// for `kp * NR` (twice that when `two`).
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn bf16_tile_avx512(
        rows: usize,
        two: bool,
        qa: *const u16,
        kp: usize,
        panel: *const u16,
        acc: &mut [[f32; 2 * NR]; MR_I8_MAX],
    ) {
        let mut lo = [_mm512_setzero_ps(); MR_I8_MAX];
        let mut hi = [_mm512_setzero_ps(); MR_I8_MAX];
        let second = panel.wrapping_add(kp * NR);
        for p in 0..kp / 2 {
            let w0: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(panel.add(p * NR * 2) as *const __m512i));
            if two {
                let w1: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                    second.wrapping_add(p * NR * 2) as *const __m512i,
                ));
                for r in 0..rows {
                    let pair = (qa.add(r * kp + 2 * p) as *const i32).read_unaligned();
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    lo[r] = _mm512_dpbf16_ps(lo[r], av, w0);
                    hi[r] = _mm512_dpbf16_ps(hi[r], av, w1);
                }
            } else {
                for r in 0..rows {
                    let pair = (qa.add(r * kp + 2 * p) as *const i32).read_unaligned();
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    lo[r] = _mm512_dpbf16_ps(lo[r], av, w0);
                }
            }
        }
        for r in 0..rows {
            _mm512_storeu_ps(acc[r].as_mut_ptr(), lo[r]);
            _mm512_storeu_ps(acc[r].as_mut_ptr().add(NR), hi[r]);
        }
    }

    /// Releases this thread's tile state.
    ///
    /// # Safety
    /// As [`amx_config`].
    pub unsafe fn amx_release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// One block of [`super::amx_product`]: `c[r][c] = sum_k a[r][k] * w[c][k]` for `RT`
    /// tiles of 16 rows and `CT` panels of 16 columns (the panels at `b`, `lda * NR` bytes
    /// each), with `tdpbusd` (u8 × i8, exact i32 sums) or, when `BF16`, `tdpbf16ps`
    /// (bfloat16 pairs, float32 sums). Each step takes 64 bytes of every activation row
    /// (64 int8 or 32 bfloat16 inputs) and the 16 panel rows of 64 bytes that hold the same
    /// inputs, which start `NR` times as far into the panel.
    ///
    /// # Safety
    /// [`amx_config`] must be loaded on this thread; `a` readable for `16·RT` rows of `lda`
    /// bytes, `b` for `CT` panels; `lda` a multiple of 64.
    #[inline(always)]
    pub unsafe fn amx_block<const RT: usize, const CT: usize, const BF16: bool>(
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: &mut [[u32; 2 * NR]; 2 * TR],
    ) {
        const B_STRIDE: usize = 64;
        macro_rules! dot {
            ($dst:literal, $a:literal, $b:literal) => {
                if BF16 {
                    asm!(
                        concat!("tdpbf16ps ", $dst, ", ", $a, ", ", $b),
                        options(nostack, nomem)
                    );
                } else {
                    asm!(
                        concat!("tdpbusd ", $dst, ", ", $a, ", ", $b),
                        options(nostack, nomem)
                    );
                }
            };
        }
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let b1 = b.wrapping_add(lda * NR);
        let a1 = a.wrapping_add(TR * lda);
        for kb in (0..lda).step_by(KT) {
            let (bk0, bk1) = (b.add(kb * NR), b1.wrapping_add(kb * NR));
            asm!("tileloadd tmm4, [{0} + {1}*1]", in(reg) a.add(kb), in(reg) lda, options(nostack, readonly));
            asm!("tileloadd tmm6, [{0} + {1}*1]", in(reg) bk0, in(reg) B_STRIDE, options(nostack, readonly));
            dot!("tmm0", "tmm4", "tmm6");
            if CT == 2 {
                asm!("tileloadd tmm7, [{0} + {1}*1]", in(reg) bk1, in(reg) B_STRIDE, options(nostack, readonly));
                dot!("tmm1", "tmm4", "tmm7");
            }
            if RT == 2 {
                asm!("tileloadd tmm5, [{0} + {1}*1]", in(reg) a1.wrapping_add(kb), in(reg) lda, options(nostack, readonly));
                dot!("tmm2", "tmm5", "tmm6");
                if CT == 2 {
                    dot!("tmm3", "tmm5", "tmm7");
                }
            }
        }
        let ldc = 2 * NR * 4;
        let c0 = c.as_mut_ptr() as *mut u32;
        asm!("tilestored [{0} + {1}*1], tmm0", in(reg) c0, in(reg) ldc, options(nostack));
        if CT == 2 {
            asm!("tilestored [{0} + {1}*1], tmm1", in(reg) c0.add(NR), in(reg) ldc, options(nostack));
        }
        if RT == 2 {
            asm!("tilestored [{0} + {1}*1], tmm2", in(reg) c0.add(TR * 2 * NR), in(reg) ldc, options(nostack));
            if CT == 2 {
                asm!("tilestored [{0} + {1}*1], tmm3", in(reg) c0.add(TR * 2 * NR + NR), in(reg) ldc, options(nostack));
            }
        }
    }

    /// `tile[r][..] = sum_{p < kc} a[r*lda + p] * b[p*NR .. p*NR + NR]` for `r < R`.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `a` must be readable at `r*lda + p` and `b` at
    /// `p*NR + 0..NR` for every `r < R`, `p < kc`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_kernel<const R: usize>(
        a: *const f32,
        lda: usize,
        b: *const f32,
        kc: usize,
        tile: &mut [[f32; NR]; MR],
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * NR));
            let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*a.add(r * lda + p));
                lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
            }
        }
        for r in 0..R {
            _mm256_storeu_ps(tile[r].as_mut_ptr(), lo[r]);
            _mm256_storeu_ps(tile[r].as_mut_ptr().add(8), hi[r]);
        }
    }

    /// `out[n, m] = a[n, k] · Wᵀ` for the packed panels `data` (`out` already zeroed):
    /// tiles of up to [`MR_512`] rows × 2 panels (32 columns: 28 accumulators), depth
    /// blocked by [`KC`] as the other kernels are. Each tile sums `a · b` from zero with
    /// FMA over the block's depth, then adds it into `out`: the AVX2 kernel's order,
    /// hence its bits. A pair of panels is finished (every depth block, every row) before
    /// the next: its output columns stay in L1/L2 while the block's weights stream once.
    ///
    /// # Safety
    /// AVX-512F must be available; `data.len() == ceil(m / NR) * k * NR`,
    /// `a.len() == n * k`, `out.len() == n * m`, `k > 0`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn f32_matmul_avx512(
        data: &[f32],
        k: usize,
        m: usize,
        a: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        f32_matmul_avx512_with::<MR_512, true, true>(data, k, m, a, n, out)
    }

    /// [`f32_matmul_avx512`] with the tile height, the loop order and the packing of `a`
    /// as parameters (the timing harness compares them): `PANEL_OUTER` false runs each
    /// depth block over every panel before the next block (the order up to 0.1.x); `PACK`
    /// first copies `a` into tile order (each tile's rows interleaved, depth-major), so
    /// the kernel reads a tile's 14 rows through one pointer at constant offsets instead
    /// of 14 row pointers (more than the free registers: the compiler re-derives them with
    /// a chain of adds in the innermost loop).
    ///
    /// # Safety
    /// As [`f32_matmul_avx512`]; `MRV <= 14`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn f32_matmul_avx512_with<
        const MRV: usize,
        const PANEL_OUTER: bool,
        const PACK: bool,
    >(
        data: &[f32],
        k: usize,
        m: usize,
        a: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        const { assert!(MRV >= 1 && MRV <= 14) };
        let n_panels = m.div_ceil(NR);
        assert!(k > 0 && data.len() == n_panels * k * NR && a.len() == n * k && out.len() == n * m);
        if n == 0 {
            return;
        }
        if !PACK {
            return f32_tiles::<MRV, PANEL_OUTER, false>(
                data,
                k,
                m,
                a.as_ptr(),
                n,
                out.as_mut_ptr(),
            );
        }
        PACKED_A.with(|cell| {
            let mut packed = cell.borrow_mut();
            packed.resize(n * k, 0.0);
            for (i0, rows) in row_tiles(n, MRV) {
                let tile = &mut packed[i0 * k..(i0 + rows) * k];
                for r in 0..rows {
                    for (p, &v) in a[(i0 + r) * k..(i0 + r + 1) * k].iter().enumerate() {
                        tile[p * rows + r] = v;
                    }
                }
            }
            f32_tiles::<MRV, PANEL_OUTER, true>(data, k, m, packed.as_ptr(), n, out.as_mut_ptr())
        })
    }

    thread_local! {
        /// The `a` operand of [`f32_matmul_avx512`] in tile order, kept between calls.
        static PACKED_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// `(first row, rows)` of each row tile: `n` rows in tiles of near-equal height, at
    /// most `most` each (64 rows, at most 14: 13, 13, 13, 13, 12).
    fn row_tiles(n: usize, most: usize) -> impl Iterator<Item = (usize, usize)> {
        let tiles = n.div_ceil(most);
        let (base, extra) = (n / tiles.max(1), n % tiles.max(1));
        (0..tiles).map(move |t| (t * base + t.min(extra), base + usize::from(t < extra)))
    }

    /// The loops of [`f32_matmul_avx512_with`]: `a` is row-major, or in tile order when
    /// `PACKED` (a tile of `rows` rows from row `i0` at `i0 * k`, element `(r, p)` at
    /// `p * rows + r`).
    ///
    /// # Safety
    /// As [`f32_matmul_avx512`], with `a` and `out` valid for `n * k` and `n * m` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn f32_tiles<const MRV: usize, const PANEL_OUTER: bool, const PACKED: bool>(
        data: &[f32],
        k: usize,
        m: usize,
        a: *const f32,
        n: usize,
        out: *mut f32,
    ) {
        let n_panels = m.div_ceil(NR);
        // Lanes of panel `p` inside `out`: edge panels (m not a multiple of 16) by mask,
        // so no store reaches past a row.
        let mask = |p: usize| -> __mmask16 {
            let cols = NR.min(m.saturating_sub(p * NR));
            if cols == NR {
                0xFFFF
            } else {
                (1u16 << cols) - 1
            }
        };
        let block = |p: usize, k0: usize| {
            let kc = KC.min(k - k0);
            let two = p + 1 < n_panels;
            let b0 = data.as_ptr().add(p * k * NR + k0 * NR);
            // With one panel left, the second operand is never read.
            let b1 = if two { b0.add(k * NR) } else { b0 };
            let (m0, m1) = (mask(p), if two { mask(p + 1) } else { 0 });
            for (i0, rows) in row_tiles(n, MRV) {
                let o = out.add(i0 * m + p * NR);
                let a_tile = if PACKED {
                    a.add(i0 * k + k0 * rows)
                } else {
                    a.add(i0 * k + k0)
                };
                macro_rules! go {
                    ($r:literal) => {
                        if two {
                            f32_kernel_512::<$r, 2, PACKED>(a_tile, k, [b0, b1], kc, o, m, [m0, m1])
                        } else {
                            f32_kernel_512::<$r, 1, PACKED>(a_tile, k, [b0, b1], kc, o, m, [m0, m1])
                        }
                    };
                }
                match rows {
                    14 => go!(14),
                    13 => go!(13),
                    12 => go!(12),
                    11 => go!(11),
                    10 => go!(10),
                    9 => go!(9),
                    8 => go!(8),
                    7 => go!(7),
                    6 => go!(6),
                    5 => go!(5),
                    4 => go!(4),
                    3 => go!(3),
                    2 => go!(2),
                    _ => go!(1),
                }
            }
        };
        if PANEL_OUTER {
            for p in (0..n_panels).step_by(2) {
                for k0 in (0..k).step_by(KC) {
                    block(p, k0);
                }
            }
        } else {
            for k0 in (0..k).step_by(KC) {
                for p in (0..n_panels).step_by(2) {
                    block(p, k0);
                }
            }
        }
    }

    /// `out[r*ldo + j*NR + c] += sum_{p < kc} a[r*lda + p] * b[j][p*NR + c]` for `r < R`,
    /// `j < P`, and the lanes `c` set in `mask[j]`.
    ///
    /// # Safety
    /// AVX-512F must be available; `a` readable at `r*lda + p`, `b[j]` at `p*NR + 0..NR`,
    /// `out` readable and writable at the masked lanes, for every `r < R`, `j < P`,
    /// `p < kc`.
    // Indexed loops over the register block: each index names a register (unrolled).
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn f32_kernel_512<const R: usize, const P: usize, const PACKED: bool>(
        a: *const f32,
        lda: usize,
        b: [*const f32; 2],
        kc: usize,
        out: *mut f32,
        ldo: usize,
        mask: [__mmask16; 2],
    ) {
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        for p in 0..kc {
            let mut bv = [_mm512_setzero_ps(); P];
            for j in 0..P {
                bv[j] = _mm512_loadu_ps(b[j].add(p * NR));
            }
            for r in 0..R {
                let av = _mm512_set1_ps(if PACKED {
                    *a.add(p * R + r)
                } else {
                    *a.add(r * lda + p)
                });
                for j in 0..P {
                    acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
                }
            }
        }
        for r in 0..R {
            for j in 0..P {
                let o = out.add(r * ldo + j * NR);
                let sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask[j], o), acc[r][j]);
                _mm512_mask_storeu_ps(o, mask[j], sum);
            }
        }
    }

    /// `acc[r][c] = sum_k qa[r*k4 + k] * w[c][k]` (exact i32) for `r < R`.
    ///
    /// # Safety
    /// AVX2 must be available; `qa` readable for `R * k4` bytes, `panel` for `k4 * NR`.
    /// Activations must be ≤ 127 and weights in [-127, 127] so that `vpmaddubsw`'s pair
    /// sums (≤ 2·127·127 < 2^15) never saturate.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn i8_kernel<const R: usize>(
        qa: *const u8,
        k4: usize,
        panel: *const i8,
        acc: &mut [[i32; NR]; MR_I8_MAX],
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut lo = [_mm256_setzero_si256(); R];
        let mut hi = [_mm256_setzero_si256(); R];
        for g in 0..k4 / 4 {
            let w0 = _mm256_loadu_si256(panel.add(g * NR * 4) as *const __m256i);
            let w1 = _mm256_loadu_si256(panel.add(g * NR * 4 + 32) as *const __m256i);
            for r in 0..R {
                let av = _mm256_set1_epi32((qa.add(r * k4 + g * 4) as *const i32).read_unaligned());
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, w0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, w1), ones);
                lo[r] = _mm256_add_epi32(lo[r], p0);
                hi[r] = _mm256_add_epi32(hi[r], p1);
            }
        }
        for r in 0..R {
            _mm256_storeu_si256(acc[r].as_mut_ptr() as *mut __m256i, lo[r]);
            _mm256_storeu_si256(acc[r].as_mut_ptr().add(8) as *mut __m256i, hi[r]);
        }
    }

    /// `acc[r][c] = sum_k qa[r*k4 + k] * w[c][k]` (exact i32) for `r < R`: one `vpdpbusd`
    /// per group of 4 inputs adds the 4 u8 × i8 products of all 16 columns straight into
    /// i32 lanes (no 16-bit step, so no saturation whatever the operands).
    ///
    /// # Safety
    /// AVX-512F/BW/VNNI must be available; `qa` readable for `R * k4` bytes, `panel` for
    /// `k4 * NR`.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn i8_kernel_vnni<const R: usize>(
        qa: *const u8,
        k4: usize,
        panel: *const i8,
        acc: &mut [[i32; NR]; MR_I8_MAX],
    ) {
        let mut sum = [_mm512_setzero_si512(); R];
        for g in 0..k4 / 4 {
            let w = _mm512_loadu_si512(panel.add(g * NR * 4) as *const __m512i);
            for r in 0..R {
                let av = _mm512_set1_epi32((qa.add(r * k4 + g * 4) as *const i32).read_unaligned());
                sum[r] = _mm512_dpbusd_epi32(sum[r], av, w);
            }
        }
        for r in 0..R {
            _mm512_storeu_si512(acc[r].as_mut_ptr() as *mut __m512i, sum[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn naive(a: &[f32], n: usize, w: &[f32], m: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; n * m];
        for r in 0..n {
            for c in 0..m {
                out[r * m + c] = (0..k)
                    .map(|i| f64::from(a[r * k + i]) * f64::from(w[c * k + i]))
                    .sum();
            }
        }
        out
    }

    /// Shapes that exercise every row/column/depth tail of both kernels.
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 1, 1),
        (7, 5, 3),
        (13, 300, 17),
        (6, 257, 16),
        (25, 520, 33),
        (4, 8, 48),
    ];

    #[test]
    fn f32_matches_naive_on_every_tail() {
        for &(n, k, m) in &SHAPES {
            let a = lcg(1 + n as u64, n * k);
            let w = lcg(7 + m as u64, m * k);
            let packed = PackedF32::pack(&w, m, k);
            assert_eq!(packed.unpack(), w);
            let mut out = vec![f32::NAN; n * m];
            packed.matmul(&a, n, &mut out);
            for (got, want) in out.iter().zip(naive(&a, n, &w, m, k)) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-4,
                    "{n}x{k}x{m}: {got} vs {want}"
                );
            }
        }
    }

    /// The kernel families this CPU runs (float32, int8).
    fn f32_kernels() -> Vec<Kernel> {
        let cpu = CpuFeatures::detect();
        Kernel::ALL
            .into_iter()
            .filter(|&k| cpu.has_f32(k))
            .collect()
    }
    fn int8_kernels() -> Vec<Kernel> {
        let cpu = CpuFeatures::detect();
        Kernel::ALL
            .into_iter()
            .filter(|&k| cpu.has_int8(k))
            .collect()
    }

    /// Sizes around every tile edge: rows around 4/6/8 (int8, float32 AVX2, AVX-512
    /// micro-tiles), depth around 4 and KC = 256, columns around 16 and 32 (one and two
    /// panels), and the odd sizes of real layers.
    const ROWS: [usize; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 17, 31, 33, 64];
    const DEPTHS: [usize; 14] = [1, 3, 4, 15, 16, 17, 31, 63, 64, 129, 255, 256, 257, 385];
    const COLS: [usize; 13] = [1, 3, 15, 16, 17, 31, 32, 33, 47, 63, 65, 127, 385];

    #[test]
    fn every_f32_kernel_matches_portable_on_every_edge() {
        let kernels = f32_kernels();
        eprintln!("float32 kernels on this CPU: {kernels:?}");
        let mut shapes = 0;
        for (si, &n) in ROWS.iter().enumerate() {
            for (sk, &k) in DEPTHS.iter().enumerate() {
                for (sm, &m) in COLS.iter().enumerate() {
                    // Every (rows, depth) and (depth, cols) pair, a third of the triples.
                    if (si + sk + sm) % 3 != 0 && m > 33 && k > 17 {
                        continue;
                    }
                    shapes += 1;
                    let a = lcg((n * 1000 + k) as u64, n * k);
                    let w = lcg((m * 1000 + k) as u64 + 7, m * k);
                    let packed = PackedF32::pack(&w, m, k);
                    let mut want = vec![f32::NAN; n * m];
                    packed.matmul_with(Kernel::Portable, &a, n, &mut want);
                    let mut first_simd: Option<Vec<f32>> = None;
                    for &kernel in &kernels[1..] {
                        // NaN canaries: every output element must be written.
                        let mut got = vec![f32::NAN; n * m];
                        packed.matmul_with(kernel, &a, n, &mut got);
                        for r in 0..n {
                            for c in 0..m {
                                // Relative to the sum of |products|: the scale of the
                                // rounding error of any summation order.
                                let scale: f32 =
                                    (0..k).map(|i| (a[r * k + i] * w[c * k + i]).abs()).sum();
                                let (g, x) = (got[r * m + c], want[r * m + c]);
                                assert!(
                                    (g - x).abs() <= 1e-5 * scale.max(1e-30),
                                    "{kernel:?} {n}x{k}x{m} [{r},{c}]: {g} vs portable {x}"
                                );
                            }
                        }
                        // AVX2 and AVX-512 sum in the same order with FMA: same bits.
                        match &first_simd {
                            None => first_simd = Some(got),
                            Some(prev) => assert!(
                                prev.iter()
                                    .zip(&got)
                                    .all(|(p, g)| p.to_bits() == g.to_bits()),
                                "{kernel:?} {n}x{k}x{m}: not bit-identical to the AVX2 kernel"
                            ),
                        }
                    }
                }
            }
        }
        assert!(shapes > 600, "{shapes}");
    }

    #[test]
    fn every_f32_kernel_matches_portable_on_random_shapes() {
        let kernels = f32_kernels();
        let mut s = 0x5eed_u64;
        let mut next = |hi: usize| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + (s >> 33) as usize % hi
        };
        for case in 0..200 {
            let (n, k, m) = (next(40), next(600), next(200));
            let a = lcg(case, n * k);
            let w = lcg(case + 1000, m * k);
            let packed = PackedF32::pack(&w, m, k);
            let mut want = vec![0.0; n * m];
            packed.matmul_with(Kernel::Portable, &a, n, &mut want);
            for &kernel in &kernels[1..] {
                let mut got = vec![f32::NAN; n * m];
                packed.matmul_with(kernel, &a, n, &mut got);
                for (i, (g, x)) in got.iter().zip(&want).enumerate() {
                    let (r, c) = (i / m, i % m);
                    let scale: f32 = (0..k).map(|j| (a[r * k + j] * w[c * k + j]).abs()).sum();
                    assert!(
                        (g - x).abs() <= 1e-5 * scale,
                        "{kernel:?} {n}x{k}x{m} [{r},{c}]: {g} vs {x}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_int8_kernel_is_bit_identical_to_portable() {
        let kernels = int8_kernels();
        eprintln!("int8 kernels on this CPU: {kernels:?}");
        for &n in &ROWS {
            for &k in &DEPTHS {
                for &m in &COLS {
                    // ReLU'd activations (a quarter zero), some rows all zero.
                    let a: Vec<f32> = lcg((n * 1000 + k) as u64, n * k)
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            if (i / k.max(1)) % 5 == 4 {
                                0.0
                            } else {
                                (v + 0.5).max(0.0)
                            }
                        })
                        .collect();
                    let w = lcg((m * 1000 + k) as u64 + 3, m * k);
                    let packed = PackedI8::quantize(&w, m, k);
                    let mut want = vec![f32::NAN; n * m];
                    let mut qa = Vec::new();
                    packed.matmul_with(Kernel::Portable, &a, n, &mut want, &mut qa);
                    for &kernel in &kernels[1..] {
                        let mut got = vec![f32::NAN; n * m];
                        packed.matmul_with(kernel, &a, n, &mut got, &mut qa);
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(g, x)| g.to_bits() == x.to_bits());
                        assert!(
                            same,
                            "{kernel:?} {n}x{k}x{m}: int8 result differs from portable"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn int8_integer_products_are_exact_and_kernels_identical() {
        // Integer-valued inputs at the extremes of the ranges: the int8 product must equal
        // the exact integer dot product (no saturation), on every kernel.
        for &(n, k, m) in &SHAPES {
            let w: Vec<f32> = lcg(11 + k as u64, m * k)
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if i % 3 == 0 {
                        -127.0
                    } else {
                        (v * 127.0).round()
                    }
                })
                .collect();
            // One column at full scale so every scale is exactly 1.
            let w: Vec<f32> = w
                .chunks_exact(k)
                .flat_map(|row| {
                    let mut row = row.to_vec();
                    row[0] = 127.0;
                    row
                })
                .collect();
            let a: Vec<f32> = lcg(5 + n as u64, n * k)
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if i % k == 0 {
                        127.0
                    } else {
                        (v.abs() * 127.0).round()
                    }
                })
                .collect();
            let packed = PackedI8::quantize(&w, m, k);
            assert!(packed.scales.iter().all(|&s| s == 1.0));
            let want = naive(&a, n, &w, m, k);
            for kernel in int8_kernels() {
                let mut out = vec![f32::NAN; n * m];
                packed.matmul_with(kernel, &a, n, &mut out, &mut Vec::new());
                for (got, want) in out.iter().zip(&want) {
                    assert_eq!(f64::from(*got), *want, "{kernel:?} {n}x{k}x{m}");
                }
                // Kernel level: one tile of up to 8 rows.
                let qa: Vec<u8> = a
                    .chunks_exact(k)
                    .flat_map(|r| {
                        let mut q: Vec<u8> = r.iter().map(|&v| v as u8).collect();
                        q.resize(packed.k4, 0);
                        q
                    })
                    .collect();
                let mr = if kernel == Kernel::Avx512 {
                    MR_I8_MAX
                } else {
                    MR_I8
                };
                let rows = n.min(mr);
                let mut acc = [[0i32; NR]; MR_I8_MAX];
                i8_tile(
                    kernel,
                    rows,
                    &qa,
                    packed.k4,
                    &packed.data[..packed.k4 * NR],
                    &mut acc,
                );
                for r in 0..rows {
                    for c in 0..NR.min(m) {
                        assert_eq!(f64::from(acc[r][c]), want[r * m + c]);
                    }
                }
            }
        }
    }

    #[test]
    fn kernel_choice_follows_cpu_and_settings() {
        let none = CpuFeatures::default();
        let avx2 = CpuFeatures {
            avx2: true,
            fma: true,
            ..none
        };
        let skylake_x = CpuFeatures {
            avx512f: true,
            avx512bw: true,
            ..avx2
        };
        let sapphire = CpuFeatures {
            avx512vnni: true,
            ..skylake_x
        };
        let amx = CpuFeatures {
            amx_tile: true,
            amx_int8: true,
            amx_bf16: true,
            amx_os: true,
            ..sapphire
        };
        // The CPU has the tiles but the OS refused this process the tile state.
        let amx_refused = CpuFeatures {
            amx_os: false,
            ..amx
        };
        let k = |f32: Kernel, int8: Kernel| (f32, int8);
        use Kernel::*;
        for (requested, no_simd, cpu, want, warns) in [
            (None, false, none, k(Portable, Portable), false),
            (None, false, avx2, k(Avx2, Avx2), false),
            (None, false, skylake_x, k(Avx512, Avx2), false),
            (None, false, sapphire, k(Avx512, Avx512), false),
            (
                Some(Portable),
                false,
                sapphire,
                k(Portable, Portable),
                false,
            ),
            (Some(Avx2), false, sapphire, k(Avx2, Avx2), false),
            (Some(Avx512), false, sapphire, k(Avx512, Avx512), false),
            (Some(Avx512), false, skylake_x, k(Avx512, Avx2), false),
            // Asked for more than the CPU has: the best below, with a warning.
            (Some(Avx512), false, avx2, k(Avx2, Avx2), true),
            (Some(Avx512), false, none, k(Portable, Portable), true),
            (Some(Avx2), false, none, k(Portable, Portable), true),
            // LUXICAL_NO_SIMD wins (a warning when they disagree).
            (None, true, sapphire, k(Portable, Portable), false),
            (Some(Portable), true, sapphire, k(Portable, Portable), false),
            (Some(Avx512), true, sapphire, k(Portable, Portable), true),
            // AMX: int8 only; float32 stays on AVX-512F.
            (None, false, amx, k(Avx512, Amx), false),
            (Some(Amx), false, amx, k(Avx512, Amx), false),
            (Some(Avx512), false, amx, k(Avx512, Avx512), false),
            (None, false, amx_refused, k(Avx512, Avx512), false),
            (Some(Amx), false, amx_refused, k(Avx512, Avx512), true),
            (Some(Amx), false, sapphire, k(Avx512, Avx512), true),
            (Some(Amx), false, avx2, k(Avx2, Avx2), true),
            (Some(Amx), true, amx, k(Portable, Portable), true),
        ] {
            let (got, warnings) = choose_kernels(requested, no_simd, cpu);
            assert_eq!(
                (got.float32, got.int8),
                want,
                "{requested:?} no_simd={no_simd} {cpu:?}"
            );
            assert_eq!(
                !warnings.is_empty(),
                warns,
                "{requested:?} {cpu:?}: {warnings:?}"
            );
        }
        let (_, w) = choose_kernels(Some(Avx512), false, avx2);
        assert!(
            w[0].contains("LUXICAL_KERNEL=avx512")
                && w[0].contains("avx512f")
                && w[0].contains("avx2 kernel"),
            "{w:?}"
        );
        // bfloat16: AMX-BF16 (with the OS's permission), else AVX-512 BF16, else portable.
        let zen4 = CpuFeatures {
            avx512bf16: true,
            ..sapphire
        };
        for (requested, cpu, want) in [
            (None, amx, Amx),
            (None, amx_refused, Portable),
            (None, zen4, Avx512),
            (
                None,
                CpuFeatures {
                    avx512bf16: true,
                    ..amx
                },
                Amx,
            ),
            (
                Some(Avx512),
                CpuFeatures {
                    avx512bf16: true,
                    ..amx
                },
                Avx512,
            ),
            (Some(Avx2), zen4, Portable),
            (None, avx2, Portable),
            (None, sapphire, Portable),
        ] {
            assert_eq!(
                choose_kernels(requested, false, cpu).0.bf16,
                want,
                "{requested:?} {cpu:?}"
            );
        }
        let (_, w) = choose_kernels(Some(Amx), false, amx_refused);
        assert!(
            w[0].contains("LUXICAL_KERNEL=amx")
                && w[0].contains("amx_os")
                && !w[0].contains("amx_tile")
                && w[0].contains("avx512-vnni int8 kernel"),
            "{w:?}"
        );
        // The process's choice is one the CPU runs.
        let chosen = kernels();
        assert!(
            CpuFeatures::detect().has_f32(chosen.float32)
                && CpuFeatures::detect().has_int8(chosen.int8)
        );
        let info = cpu_info();
        assert!(info.float32_kernels.contains(&info.float32_kernel));
        assert!(info.int8_kernels.contains(&info.int8_kernel));
    }

    /// Timing of the Luxical-One dense layers (96 -> 3072 -> 3072 -> 192) per kernel:
    /// `cargo test -p luxical-core --release time_luxical_one -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing by hand (speed lives in bench/), not a pass/fail test"]
    fn time_luxical_one_dense_layers() {
        let n: usize = std::env::var("LUXICAL_TIME_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        let runs: usize = std::env::var("LUXICAL_TIME_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(7);
        let dims = [96, 3072, 3072, 192];
        let layers: Vec<(usize, usize, Vec<f32>)> = dims
            .windows(2)
            .enumerate()
            .map(|(i, d)| {
                (
                    d[1],
                    d[0],
                    lcg(100 + i as u64, d[0] * d[1])
                        .iter()
                        .map(|v| v * 0.05)
                        .collect(),
                )
            })
            .collect();
        let f32_layers: Vec<PackedF32> = layers
            .iter()
            .map(|(o, i, w)| PackedF32::pack(w, *o, *i))
            .collect();
        let i8_layers: Vec<PackedI8> = layers
            .iter()
            .map(|(o, i, w)| PackedI8::quantize(w, *o, *i))
            .collect();
        let input: Vec<f32> = lcg(1, n * dims[0]).iter().map(|v| v.max(0.0)).collect();
        let flops: f64 = dims
            .windows(2)
            .map(|d| 2.0 * (n * d[0] * d[1]) as f64)
            .sum();
        let median = |mut t: Vec<f64>| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let run = |f: &dyn Fn()| {
            f();
            median(
                (0..runs)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        f();
                        t.elapsed().as_secs_f64()
                    })
                    .collect(),
            )
        };
        println!("{n} rows, dense layers {dims:?}, median of {runs} runs, one thread");
        #[cfg(target_arch = "x86_64")]
        if crate::settings::env_flag("LUXICAL_TIME_VARIANTS") {
            type V = unsafe fn(&[f32], usize, usize, &[f32], usize, &mut [f32]);
            let variants: [(&str, V); 4] = [
                (
                    "avx512 8 rows, depth outer",
                    x86::f32_matmul_avx512_with::<8, false, false>,
                ),
                (
                    "avx512 14 rows, depth outer",
                    x86::f32_matmul_avx512_with::<14, false, false>,
                ),
                (
                    "avx512 14 rows, panels outer",
                    x86::f32_matmul_avx512_with::<14, true, false>,
                ),
                (
                    "avx512 14 rows, panels outer, packed",
                    x86::f32_matmul_avx512_with::<14, true, true>,
                ),
            ];
            let mut times = vec![Vec::new(); variants.len()];
            for _ in 0..runs {
                for (i, (_, f)) in variants.iter().enumerate() {
                    let t = std::time::Instant::now();
                    let mut x = input.clone();
                    for l in &f32_layers {
                        let mut y = vec![0.0; n * l.out_dim];
                        unsafe { f(l.packed(), l.in_dim, l.out_dim, &x, n, &mut y) };
                        x = y;
                    }
                    times[i].push(t.elapsed().as_secs_f64());
                }
            }
            for ((name, _), t) in variants.iter().zip(times) {
                let t = median(t);
                println!(
                    "{name:>22}: {:7.2} ms {:6.1} GFLOP/s",
                    t * 1e3,
                    flops / t / 1e9
                );
            }
            return;
        }
        for kernel in f32_kernels() {
            let t = run(&|| {
                let mut x = input.clone();
                for l in &f32_layers {
                    let mut y = vec![0.0; n * l.out_dim];
                    l.matmul_with(kernel, &x, n, &mut y);
                    x = y;
                }
                std::hint::black_box(&x);
            });
            println!(
                "float32 {:>12}: {:8.2} ms  {:6.1} GFLOP/s",
                kernel.name(),
                t * 1e3,
                flops / t / 1e9
            );
        }
        // The reduced-precision paths: hidden layers reduced, the output layer float32.
        let time_reduced = |kernel: Kernel, hidden: &dyn Fn(usize, &[f32], &mut [f32])| {
            run(&|| {
                let mut x = input.clone();
                for (i, l) in f32_layers.iter().enumerate() {
                    let mut y = vec![0.0; n * l.out_dim];
                    if i + 1 < f32_layers.len() {
                        hidden(i, &x, &mut y);
                    } else {
                        l.matmul_with(CpuFeatures::detect().best_f32(kernel), &x, n, &mut y);
                    }
                    x = y;
                }
                std::hint::black_box(&x);
            })
        };
        let bf16_layers: Vec<PackedBf16> = layers
            .iter()
            .map(|(o, i, w)| PackedBf16::pack(w, *o, *i))
            .collect();
        let report = |what: &str, name: &str, t: f64| {
            println!(
                "{what} {name:>12}: {:8.2} ms  {:6.1} G(FL)OP/s",
                t * 1e3,
                flops / t / 1e9
            );
        };
        for kernel in int8_kernels() {
            let t = time_reduced(kernel, &|i, x, y| {
                i8_layers[i].matmul_with(kernel, x, n, y, &mut Vec::new())
            });
            report("int8   ", kernel.int8_name(), t);
        }
        for kernel in bf16_kernels() {
            let t = time_reduced(kernel, &|i, x, y| {
                bf16_layers[i].matmul_with(kernel, x, n, y, &mut Vec::new())
            });
            report("bf16   ", kernel.bf16_name(), t);
        }
    }

    fn bf16_kernels() -> Vec<Kernel> {
        let cpu = CpuFeatures::detect();
        Kernel::ALL
            .into_iter()
            .filter(|&k| k != Kernel::Avx2 && cpu.has_bf16(k))
            .collect()
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        for (x, want) in [
            (1.0f32, 0x3F80u16),
            (-2.5, 0xC020),
            (f32::from_bits(0x3F80_8000), 0x3F80), // tie, even below
            (f32::from_bits(0x3F81_8000), 0x3F82), // tie, even above
            (f32::from_bits(0x3F80_8001), 0x3F81),
            (f32::INFINITY, 0x7F80),
            (0.0, 0),
        ] {
            assert_eq!(bf16_bits(x), want, "{x}");
            assert_eq!(bf16_to_f32(want).to_bits(), u32::from(want) << 16);
        }
        assert!(bf16_to_f32(bf16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn every_bf16_kernel_matches_the_exact_sum_of_rounded_products() {
        let kernels = bf16_kernels();
        eprintln!("bfloat16 kernels on this CPU: {kernels:?}");
        for &n in &ROWS {
            for &k in &DEPTHS {
                for &m in &COLS {
                    let a: Vec<f32> = lcg((n * 1000 + k) as u64 + 7, n * k)
                        .iter()
                        .map(|v| v.max(0.0))
                        .collect();
                    let w = lcg((m * 1000 + k) as u64 + 11, m * k);
                    let packed = PackedBf16::pack(&w, m, k);
                    // Independent expectation: f64 sums of the bfloat16-rounded operands.
                    let (ar, wr): (Vec<f32>, Vec<f32>) = (
                        a.iter().map(|&v| bf16_to_f32(bf16_bits(v))).collect(),
                        w.iter().map(|&v| bf16_to_f32(bf16_bits(v))).collect(),
                    );
                    let want = naive(&ar, n, &wr, m, k);
                    let abs: Vec<f64> = naive(
                        &ar.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                        n,
                        &wr.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                        m,
                        k,
                    );
                    let mut qa = Vec::new();
                    for &kernel in &kernels {
                        let mut got = vec![f32::NAN; n * m];
                        packed.matmul_with(kernel, &a, n, &mut got, &mut qa);
                        for (i, ((g, x), s)) in got.iter().zip(&want).zip(&abs).enumerate() {
                            // float32 sums of k exact products: within k ulps of the sum of |products|
                            let tol = s * f64::from(f32::EPSILON) * (k as f64 + 1.0) + 1e-30;
                            assert!(
                                (f64::from(*g) - x).abs() <= tol,
                                "{kernel:?} {n}x{k}x{m} [{i}]: {g} vs {x}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn int8_approximates_float_on_relu_activations() {
        let (n, k, m) = (9, 384, 70);
        let a: Vec<f32> = lcg(21, n * k).iter().map(|v| v.max(0.0)).collect();
        let w = lcg(22, m * k);
        let mut out = vec![0.0; n * m];
        PackedI8::quantize(&w, m, k).matmul(&a, n, &mut out, &mut Vec::new());
        let want = naive(&a, n, &w, m, k);
        for r in 0..n {
            let (x, y) = (&out[r * m..(r + 1) * m], &want[r * m..(r + 1) * m]);
            let dot: f64 = x.iter().zip(y).map(|(&a, &b)| f64::from(a) * b).sum();
            let nx: f64 = x.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|b| b * b).sum::<f64>().sqrt();
            assert!(
                dot / (nx * ny) > 0.999,
                "row {r}: cosine {}",
                dot / (nx * ny)
            );
        }
    }
}
