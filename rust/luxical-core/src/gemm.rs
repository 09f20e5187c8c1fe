//! Dense-layer products with weights packed once at load time.
//!
//! `out[n, m] = a[n, k] · Wᵀ` where `W` is the layer's `[m, k]` (out, in) matrix. The
//! weights are packed into panels of [`NR`] output columns, each panel `[k, NR]`
//! contiguous, so the inner loop streams one panel while broadcasting activations. Two
//! kernels share that layout:
//!
//! - float32 (the exact path): an AVX2 + FMA kernel of [`MR`] rows × 16 columns when the
//!   CPU has them (checked at run time), else a portable kernel the compiler vectorises for
//!   the target (SSE2, NEON, ...). Only the summation order differs from a plain dot
//!   product.
//! - int8 (the opt-in reduced-precision path): weights quantised per output column to
//!   `[-127, 127]`, activations (non-negative: they follow a ReLU) per row to `[0, 127]`,
//!   products summed exactly in i32 (`vpmaddubsw` + `vpmaddwd` on AVX2; the operands are
//!   bounded so the 16-bit pair sums never saturate), then scaled back to float32. The
//!   portable kernel computes the same integers, so both give bit-identical results.

use crate::weights::SharedF32;

/// Output columns per packed panel.
pub const NR: usize = 16;
/// Rows per float32 micro-tile.
const MR: usize = 6;
/// Rows per int8 micro-tile.
const MR_I8: usize = 4;
/// Depth of one pass over the panels (keeps a panel slice in L1).
const KC: usize = 256;

fn n_panels(m: usize) -> usize {
    m.div_ceil(NR)
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::settings::env_flag(crate::settings::NO_SIMD) {
            return false;
        }
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the vectorised kernels run on this CPU (AVX2 + FMA); else the portable ones.
pub fn simd_kernels() -> bool {
    static SIMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SIMD.get_or_init(simd_available)
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

    /// `out[n_rows, out_dim] = a[n_rows, in_dim] · Wᵀ`.
    pub fn matmul(&self, a: &[f32], n_rows: usize, out: &mut [f32]) {
        let (k, m) = (self.in_dim, self.out_dim);
        assert_eq!(a.len(), n_rows * k);
        assert_eq!(out.len(), n_rows * m);
        out.fill(0.0);
        if k == 0 {
            return;
        }
        let simd = simd_kernels();
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
    /// `in_dim` rounded up to a multiple of 4 (the depth of one `vpmaddubsw` pair).
    k4: usize,
    /// `[n_panels, k4 / 4, NR, 4]`: for each group of 4 inputs, 4 consecutive bytes per
    /// output column; zero in the padding.
    data: Vec<i8>,
    /// Per output column: the float weight of one int8 step.
    scales: Vec<f32>,
}

impl PackedI8 {
    /// Quantises `w` stored `[out_dim, in_dim]` row-major, one scale per output column
    /// (symmetric, `max |w| / 127`).
    pub fn quantize(w: &[f32], out_dim: usize, in_dim: usize) -> Self {
        assert_eq!(w.len(), out_dim * in_dim);
        let k4 = in_dim.div_ceil(4) * 4;
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
    /// inputs are taken as 0, as after a ReLU). `qa` is scratch for the quantised rows.
    pub fn matmul(&self, a: &[f32], n_rows: usize, out: &mut [f32], qa: &mut Vec<u8>) {
        let (k, k4, m) = (self.in_dim, self.k4, self.out_dim);
        assert_eq!(a.len(), n_rows * k);
        assert_eq!(out.len(), n_rows * m);
        qa.clear();
        qa.resize(n_rows * k4, 0);
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
        let simd = simd_kernels();
        let mut acc = [[0i32; NR]; MR_I8];
        for (p, panel) in self.data.chunks_exact(k4 * NR).enumerate() {
            let cols = NR.min(m - p * NR);
            let scales = &self.scales[p * NR..p * NR + cols];
            for i0 in (0..n_rows).step_by(MR_I8) {
                let rows = MR_I8.min(n_rows - i0);
                i8_tile(simd, rows, &qa[i0 * k4..], k4, panel, &mut acc);
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

/// Dispatches one int8 micro-tile over the whole depth `k4`.
fn i8_tile(
    simd: bool,
    rows: usize,
    qa: &[u8],
    k4: usize,
    panel: &[i8],
    acc: &mut [[i32; NR]; MR_I8],
) {
    assert!((1..=MR_I8).contains(&rows) && qa.len() >= rows * k4 && panel.len() >= k4 * NR);
    #[cfg(target_arch = "x86_64")]
    if simd {
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
    let _ = simd;
    i8_kernel_portable(rows, qa, k4, panel, acc);
}

fn i8_kernel_portable(
    rows: usize,
    qa: &[u8],
    k4: usize,
    panel: &[i8],
    acc: &mut [[i32; NR]; MR_I8],
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, MR_I8, NR};
    use std::arch::x86_64::*;

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
        acc: &mut [[i32; NR]; MR_I8],
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

    #[test]
    fn f32_simd_and_portable_kernels_agree() {
        let (n, k, m) = (13, 300, 40);
        let (a, w) = (lcg(3, n * k), lcg(4, m * k));
        let b = PackedF32::pack(&w, m, k);
        for rows in 1..=MR {
            for simd in [false, simd_kernels()] {
                let mut t = [[0.0f32; NR]; MR];
                f32_tile(simd, rows, &a, k, &b.data[..k * NR], k, &mut t);
                for r in 0..rows {
                    for c in 0..NR {
                        let want: f32 = (0..k).map(|i| a[r * k + i] * w[c * k + i]).sum();
                        assert!((t[r][c] - want).abs() < 1e-4);
                    }
                }
            }
        }
    }

    #[test]
    fn int8_integer_products_are_exact_and_kernels_identical() {
        // Integer-valued inputs at the extremes of the ranges: the int8 product must equal
        // the exact integer dot product (no saturation), on both kernels.
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
            for simd in [false, simd_kernels()] {
                let mut acc = [[0i32; NR]; MR_I8];
                let mut qa = Vec::new();
                let mut out = vec![f32::NAN; n * m];
                if simd == simd_kernels() {
                    packed.matmul(&a, n, &mut out, &mut qa);
                    for (got, want) in out.iter().zip(&want) {
                        assert_eq!(f64::from(*got), *want, "{n}x{k}x{m}");
                    }
                }
                // Kernel level, explicit choice of kernel.
                let qa: Vec<u8> = a
                    .chunks_exact(k)
                    .flat_map(|r| {
                        let mut q: Vec<u8> = r.iter().map(|&v| v as u8).collect();
                        q.resize(packed.k4, 0);
                        q
                    })
                    .collect();
                let rows = n.min(MR_I8);
                i8_tile(
                    simd,
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
