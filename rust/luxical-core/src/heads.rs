//! Heads: small models applied to each document's embedding in the same pass that computes
//! it, while the chunk's embeddings are still in cache (a linear probe, a small MLP
//! classifier, nearest-centroid assignment).
//!
//! Every head reads the L2-normalised embedding (float32, as returned to the caller) and
//! writes its output columns as f64. All of a head's arithmetic is f64 (weights converted
//! once at construction; products of float32 values are exact in f64), so its outputs
//! agree with float64 numpy on the returned embeddings to f64 rounding, far below 1e-6.
//! The dot products run 8 lanes wide in a fixed order, so every kernel (portable, AVX2,
//! AVX-512: chosen like the network's, `gemm::kernels`) gives the same bits; the SIMD
//! kernels fuse multiply and add only where the products are exact (layers that read the
//! float32 embedding), where fusing cannot change a bit.
//!
//! Output columns per head, in order:
//! - linear / MLP: one score per output (after the activation);
//! - centroid: nearest centroid id, its cosine, and the coarse id when a fine → coarse
//!   map is given; ties go to the lowest id. Ids are written as f64 here and reach the
//!   caller as float32 columns (`model::HeadOut`), exact because ids stay below 2^24.

use crate::error::{Error, Result};
use crate::gemm::{kernels, Kernel, PackedF32};

/// What a linear or MLP head applies to its final logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Raw scores (ridge regression, a margin).
    Identity,
    /// `1 / (1 + e^-x)` per output (binary / multi-label logistic).
    Sigmoid,
    /// Softmax over the outputs (multi-class logistic).
    Softmax,
}

impl Activation {
    /// Parses `"none"`, `"sigmoid"` or `"softmax"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "none" | "identity" => Ok(Self::Identity),
            "sigmoid" => Ok(Self::Sigmoid),
            "softmax" => Ok(Self::Softmax),
            other => Err(Error::InvalidArgument(format!(
                "activation must be \"none\", \"sigmoid\" or \"softmax\", got {other:?}"
            ))),
        }
    }
}

/// Weight rows of a product tile; weight matrices are stored padded to a multiple of it.
const TW: usize = 3;
/// Documents of a product tile; inputs are padded to a multiple of it.
const TD: usize = 8;
/// Lanes of a dot product; inner dimensions are padded to a multiple of it (zeros).
const LANES: usize = 8;
/// Weight rows per block: a block (96 rows of 384 f64: 288 KB) stays in L2 while every
/// document tile of the chunk passes over it, so a head of thousands of centroids is read
/// from memory once per chunk, not once per tile.
const WB: usize = 32 * TW;

fn pad(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// `[rows, cols]` f64 values stored as `[pad(rows, TW), pad(cols, LANES)]`, zeros in the
/// padding: the layout [`products`] reads.
#[derive(Debug, Clone)]
struct Padded {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Padded {
    fn new(values: &[f32], rows: usize, cols: usize) -> Self {
        let stride = pad(cols, LANES);
        let mut data = vec![0.0; pad(rows, TW) * stride];
        for (dst, src) in data.chunks_exact_mut(stride).zip(values.chunks_exact(cols)) {
            dst[..cols]
                .iter_mut()
                .zip(src)
                .for_each(|(d, &s)| *d = s as f64);
        }
        Self { rows, cols, data }
    }

    /// Values per stored row.
    fn stride(&self) -> usize {
        pad(self.cols, LANES)
    }

    /// Stored rows.
    fn padded_rows(&self) -> usize {
        pad(self.rows, TW)
    }
}

/// One affine layer of a head: `x · Wᵀ + b`, in f64.
#[derive(Debug, Clone)]
struct Affine {
    out_dim: usize,
    /// `[out_dim, in_dim]`.
    weights: Padded,
    bias: Vec<f64>,
    /// Whether the layer's inputs are float32 values (the embedding): then every product
    /// of an input and a weight is exact in f64, and FMA gives the same bits as a
    /// multiply then an add.
    exact: bool,
}

impl Affine {
    fn new(
        what: &str,
        weights_out_in: &[f32],
        bias: &[f32],
        out_dim: usize,
        in_dim: usize,
        exact: bool,
    ) -> Result<Self> {
        if out_dim == 0 || in_dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "{what}: weights have shape [{out_dim}, {in_dim}]; both must be at least 1"
            )));
        }
        if weights_out_in.len() != out_dim * in_dim {
            return Err(Error::InvalidArgument(format!(
                "{what}: {} weights for shape [{out_dim}, {in_dim}]",
                weights_out_in.len()
            )));
        }
        if bias.len() != out_dim {
            return Err(Error::InvalidArgument(format!(
                "{what}: bias has {} entries, expected {out_dim} (one per output)",
                bias.len()
            )));
        }
        check_finite(what, "weights", weights_out_in)?;
        check_finite(what, "bias", bias)?;
        Ok(Self {
            out_dim,
            weights: Padded::new(weights_out_in, out_dim, in_dim),
            bias: bias.iter().map(|&b| b as f64).collect(),
            exact,
        })
    }
}

/// `out[r, j] = Σ_i x[r, i] · w[j, i]` for `n` rows (a multiple of [`TD`]) of `x [n,
/// w.stride()]` and every stored row of `w`, into `out [n, w.padded_rows()]`, with the
/// kernel chosen for this process. Every kernel sums each product into lane `i % 8` in
/// order and reduces the lanes in one fixed order, so all give the same bits: the SIMD
/// kernels use FMA only when `exact` (products exact in f64, so fused or not is the same).
fn products(x: &[f64], n: usize, w: &Padded, exact: bool, out: &mut [f64]) {
    let (d, m) = (w.stride(), w.padded_rows());
    assert!(n.is_multiple_of(TD) && x.len() >= n * d && out.len() >= n * m);
    #[cfg(target_arch = "x86_64")]
    {
        let (x, wp, o) = (x.as_ptr(), w.data.as_ptr(), out.as_mut_ptr());
        // SAFETY: `kernels()` only chooses a kernel this CPU has (the float32 kernel is
        // never AMX without AVX-512F under it); `tiles` only names tiles inside the
        // asserted sizes.
        match (kernels().float32, exact) {
            (Kernel::Avx512 | Kernel::Amx, true) => {
                return tiles(n, m, |r, j| unsafe {
                    tile_avx512::<true>(x.add(r * d), wp.add(j * d), d, o.add(r * m + j), m)
                })
            }
            (Kernel::Avx512 | Kernel::Amx, false) => {
                return tiles(n, m, |r, j| unsafe {
                    tile_avx512::<false>(x.add(r * d), wp.add(j * d), d, o.add(r * m + j), m)
                })
            }
            (Kernel::Avx2, true) => {
                return tiles(n, m, |r, j| unsafe {
                    tile_avx2::<true>(x.add(r * d), wp.add(j * d), d, o.add(r * m + j), m)
                })
            }
            (Kernel::Avx2, false) => {
                return tiles(n, m, |r, j| unsafe {
                    tile_avx2::<false>(x.add(r * d), wp.add(j * d), d, o.add(r * m + j), m)
                })
            }
            (Kernel::Portable, _) => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (kernels, Kernel::Portable);
    products_portable(x, n, &w.data, m, d, out)
}

/// Calls `tile(r, j)` for every tile of [`TD`] documents × [`TW`] weight rows: weight
/// blocks of [`WB`] rows outer, documents inner.
#[inline(always)]
fn tiles(n: usize, m: usize, mut tile: impl FnMut(usize, usize)) {
    for j0 in (0..m).step_by(WB) {
        let j1 = (j0 + WB).min(m);
        for r in (0..n).step_by(TD) {
            for j in (j0..j1).step_by(TW) {
                tile(r, j);
            }
        }
    }
}

/// The portable kernel, the definition the others reproduce: [`dot`] per output.
fn products_portable(x: &[f64], n: usize, w: &[f64], m: usize, d: usize, out: &mut [f64]) {
    tiles(n, m, |r, j| {
        for i in r..r + TD {
            let row = &x[i * d..(i + 1) * d];
            for q in j..j + TW {
                out[i * m + q] = dot(row, &w[q * d..(q + 1) * d]);
            }
        }
    })
}

/// One tile with AVX-512F: 8 documents × 3 weight rows, 24 accumulators of 8 lanes;
/// `FMA` fuses each multiply-add (only for exact products).
///
/// # Safety
/// The CPU has AVX-512F; `x` holds 8 rows and `w` 3 rows of `d` (a multiple of 8)
/// values; `out` is writable at `i * ldo + q` for `i < 8`, `q < 3`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// Indexed loops over the register block: each index names a register (unrolled).
#[allow(clippy::needless_range_loop)]
unsafe fn tile_avx512<const FMA: bool>(
    x: *const f64,
    w: *const f64,
    d: usize,
    out: *mut f64,
    ldo: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_pd(); TW]; TD];
    let mut k = 0;
    while k < d {
        let mut wv = [_mm512_setzero_pd(); TW];
        for q in 0..TW {
            wv[q] = _mm512_loadu_pd(w.add(q * d + k));
        }
        for i in 0..TD {
            let xv = _mm512_loadu_pd(x.add(i * d + k));
            for q in 0..TW {
                acc[i][q] = if FMA {
                    _mm512_fmadd_pd(xv, wv[q], acc[i][q])
                } else {
                    _mm512_add_pd(acc[i][q], _mm512_mul_pd(xv, wv[q]))
                };
            }
        }
        k += LANES;
    }
    for i in 0..TD {
        for q in 0..TW {
            *out.add(i * ldo + q) = reduce8(acc[i][q]);
        }
    }
}

/// [`reduce`] of a register's 8 lanes, in 512-bit operations only: 256- and 128-bit ones
/// would need AVX-512VL to reach registers 16-31, and without them the accumulators of
/// [`tile_avx512`] would spill.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn reduce8(v: std::arch::x86_64::__m512d) -> f64 {
    use std::arch::x86_64::*;
    // Lanes 0-3: l0+l4, l1+l5, l2+l6, l3+l7.
    let s = _mm512_add_pd(v, _mm512_shuffle_f64x2::<0b0000_1110>(v, v));
    // Lanes 0-1: (l0+l4)+(l2+l6), (l1+l5)+(l3+l7).
    let s = _mm512_add_pd(s, _mm512_shuffle_f64x2::<0b0000_0001>(s, s));
    // Lane 0: their sum.
    _mm512_cvtsd_f64(_mm512_add_pd(s, _mm512_permute_pd::<0b0000_0001>(s)))
}

/// `((s0 + s2) + (s1 + s3))` of `(s0, s1, s2, s3) = (l0+l4, l1+l5, l2+l6, l3+l7)`:
/// [`reduce`]'s grouping.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn reduce4(s4: std::arch::x86_64::__m256d) -> f64 {
    use std::arch::x86_64::*;
    let s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd::<1>(s4));
    _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)))
}

/// One tile with AVX2: as [`tile_avx512`], two documents at a time (12 accumulators of
/// 4 lanes: lanes 0-3 and 4-7 of each dot).
///
/// # Safety
/// The CPU has AVX2 and FMA; sizes as [`tile_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_avx2<const FMA: bool>(
    x: *const f64,
    w: *const f64,
    d: usize,
    out: *mut f64,
    ldo: usize,
) {
    use std::arch::x86_64::*;
    for i0 in (0..TD).step_by(2) {
        let mut acc = [[[_mm256_setzero_pd(); 2]; TW]; 2];
        let mut k = 0;
        while k < d {
            for h in 0..2 {
                let kk = k + 4 * h;
                let mut wv = [_mm256_setzero_pd(); TW];
                for q in 0..TW {
                    wv[q] = _mm256_loadu_pd(w.add(q * d + kk));
                }
                for i in 0..2 {
                    let xv = _mm256_loadu_pd(x.add((i0 + i) * d + kk));
                    for q in 0..TW {
                        acc[i][q][h] = if FMA {
                            _mm256_fmadd_pd(xv, wv[q], acc[i][q][h])
                        } else {
                            _mm256_add_pd(acc[i][q][h], _mm256_mul_pd(xv, wv[q]))
                        };
                    }
                }
            }
            k += LANES;
        }
        for i in 0..2 {
            for q in 0..TW {
                let [lo, hi] = acc[i][q];
                *out.add((i0 + i) * ldo + q) = reduce4(_mm256_add_pd(lo, hi));
            }
        }
    }
}

/// [`dot`] of two padded rows (lengths a multiple of 8) with this process's kernel: the
/// same bits.
fn dot_simd(a: &[f64], b: &[f64]) -> f64 {
    assert!(a.len() == b.len() && a.len() % LANES == 0);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let (pa, pb, d) = (a.as_ptr(), b.as_ptr(), a.len());
        match kernels().float32 {
            // SAFETY: `kernels()` only chooses a kernel this CPU has; `k < d` stays inside
            // both rows.
            Kernel::Avx512 | Kernel::Amx => {
                #[target_feature(enable = "avx512f")]
                unsafe fn go(pa: *const f64, pb: *const f64, d: usize) -> f64 {
                    let mut acc = _mm512_setzero_pd();
                    for k in (0..d).step_by(LANES) {
                        acc = _mm512_add_pd(
                            acc,
                            _mm512_mul_pd(_mm512_loadu_pd(pa.add(k)), _mm512_loadu_pd(pb.add(k))),
                        );
                    }
                    reduce8(acc)
                }
                return unsafe { go(pa, pb, d) };
            }
            Kernel::Avx2 => {
                #[target_feature(enable = "avx2")]
                unsafe fn go(pa: *const f64, pb: *const f64, d: usize) -> f64 {
                    let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
                    for k in (0..d).step_by(LANES) {
                        lo = _mm256_add_pd(
                            lo,
                            _mm256_mul_pd(_mm256_loadu_pd(pa.add(k)), _mm256_loadu_pd(pb.add(k))),
                        );
                        hi = _mm256_add_pd(
                            hi,
                            _mm256_mul_pd(
                                _mm256_loadu_pd(pa.add(k + 4)),
                                _mm256_loadu_pd(pb.add(k + 4)),
                            ),
                        );
                    }
                    reduce4(_mm256_add_pd(lo, hi))
                }
                return unsafe { go(pa, pb, d) };
            }
            Kernel::Portable => {}
        }
    }
    dot(a, b)
}

/// `Σ a[i]·b[i]` in 8 lanes then a fixed pairwise sum: the same bits on every target
/// (no FMA: Rust does not contract `a * b + c`).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        lanes[l] += x * y;
    }
    reduce(&lanes)
}

#[inline(always)]
fn reduce(lanes: &[f64; 8]) -> f64 {
    ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
        + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}

fn check_finite(what: &str, array: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::InvalidArgument(format!(
            "{what}: {array}[{i}] = {} is not finite",
            values[i]
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, Clone)]
enum Kind {
    /// Hidden layers (ReLU after each) then the output layer and the activation; a linear
    /// head is an MLP without hidden layers.
    Mlp {
        layers: Vec<Affine>,
        activation: Activation,
    },
    Centroid {
        /// `[k, dim]`, f64: the exact cosines.
        centroids: Padded,
        /// The same centroids in float32 for the network's GEMM: the screening pass.
        screen: PackedF32,
        k: usize,
        /// `1 / ‖c‖` per centroid, so the cosine of a unit embedding is `e·c / ‖c‖`.
        inv_norms: Vec<f64>,
        coarse: Option<Vec<u32>>,
    },
}

/// One head.
#[derive(Debug, Clone)]
pub struct Head {
    kind: Kind,
    in_dim: usize,
}

impl Head {
    /// A linear head: `k` scores `activation(e · Wᵀ + b)`; `weights_out_in` is `[k, dim]`.
    pub fn linear(
        weights_out_in: &[f32],
        bias: &[f32],
        k: usize,
        dim: usize,
        activation: Activation,
    ) -> Result<Self> {
        Self::mlp(&[(weights_out_in, bias, k, dim)], activation)
    }

    /// An MLP head: each `(weights [out, in], bias [out], out, in)` layer in order, ReLU
    /// between layers, `activation` after the last. The layers must chain.
    pub fn mlp(layers: &[(&[f32], &[f32], usize, usize)], activation: Activation) -> Result<Self> {
        let first = layers
            .first()
            .ok_or_else(|| Error::InvalidArgument("an MLP head needs at least one layer".into()))?;
        let mut prev_out = first.3;
        let mut affine = Vec::with_capacity(layers.len());
        for (i, &(w, b, out_dim, in_dim)) in layers.iter().enumerate() {
            if in_dim != prev_out {
                return Err(Error::InvalidArgument(format!(
                    "layer {i} takes {in_dim} inputs but layer {} gives {prev_out}",
                    i.saturating_sub(1)
                )));
            }
            // The first layer reads the float32 embedding: exact products.
            affine.push(Affine::new(
                &format!("layer {i}"),
                w,
                b,
                out_dim,
                in_dim,
                i == 0,
            )?);
            prev_out = out_dim;
        }
        Ok(Self {
            kind: Kind::Mlp {
                layers: affine,
                activation,
            },
            in_dim: first.3,
        })
    }

    /// A centroid head over `k` centroids `[k, dim]` (need not be unit; none may be zero):
    /// nearest id by cosine, the cosine, and `coarse[id]` when a fine → coarse map is given.
    pub fn centroid(
        centroids: &[f32],
        k: usize,
        dim: usize,
        coarse: Option<Vec<u32>>,
    ) -> Result<Self> {
        if k == 0 || dim == 0 || centroids.len() != k * dim {
            return Err(Error::InvalidArgument(format!(
                "centroids: {} values for shape [{k}, {dim}] (both at least 1)",
                centroids.len()
            )));
        }
        check_finite("centroids", "centroids", centroids)?;
        let mut inv_norms = Vec::with_capacity(k);
        for (i, row) in centroids.chunks_exact(dim).enumerate() {
            let norm = row
                .iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 {
                return Err(Error::InvalidArgument(format!(
                    "centroids: row {i} is all zeros (a centroid needs a direction)"
                )));
            }
            inv_norms.push(1.0 / norm);
        }
        // Ids reach callers as float32 columns (`model::HeadOut`): exact up to 2^24.
        const MAX_ID: usize = 1 << 24;
        if k > MAX_ID {
            return Err(Error::InvalidArgument(format!(
                "{k} centroids: at most {MAX_ID} are supported"
            )));
        }
        if let Some(map) = &coarse {
            if let Some(&big) = map.iter().find(|&&c| c as usize > MAX_ID) {
                return Err(Error::InvalidArgument(format!(
                    "coarse map holds id {big}: at most {MAX_ID} is supported"
                )));
            }
            if map.len() != k {
                return Err(Error::InvalidArgument(format!(
                    "coarse map has {} entries, expected {k} (one per centroid)",
                    map.len()
                )));
            }
        }
        Ok(Self {
            kind: Kind::Centroid {
                centroids: Padded::new(centroids, k, dim),
                screen: PackedF32::pack(centroids, k, dim),
                k,
                inv_norms,
                coarse,
            },
            in_dim: dim,
        })
    }

    /// Embedding dimension the head reads.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output columns the head writes.
    pub fn n_outputs(&self) -> usize {
        match &self.kind {
            Kind::Mlp { layers, .. } => layers.last().map_or(0, |l| l.out_dim),
            Kind::Centroid { coarse, .. } => 2 + usize::from(coarse.is_some()),
        }
    }

    /// Applies the head to `n` embeddings held in `emb [pad(n, TD), pad(in_dim, LANES)]`
    /// (f64, zeros in the padding; `emb32 [n, in_dim]` the float32 originals), writing columns `col..col + n_outputs()` of `out [n,
    /// stride]`.
    fn apply(
        &self,
        emb: &[f64],
        emb32: &[f32],
        n: usize,
        out: &mut [f64],
        stride: usize,
        col: usize,
        s: &mut HeadScratch,
    ) {
        let rows = pad(n, TD);
        match &self.kind {
            Kind::Mlp { layers, activation } => {
                let last = layers.len() - 1;
                for (i, layer) in layers.iter().enumerate() {
                    let m = layer.weights.padded_rows();
                    s.b.resize(rows * m, 0.0);
                    let input: &[f64] = if i == 0 { emb } else { &s.a };
                    products(
                        input,
                        rows,
                        &layer.weights,
                        layer.exact,
                        &mut s.b[..rows * m],
                    );
                    let width = layer.out_dim;
                    if i == last {
                        for r in 0..n {
                            let o = &mut out[r * stride + col..r * stride + col + width];
                            for ((o, &v), &b) in o.iter_mut().zip(&s.b[r * m..]).zip(&layer.bias) {
                                *o = v + b;
                            }
                            activate(o, *activation);
                        }
                    } else {
                        // The next layer's input: ReLU(x + b), zeros in the padding.
                        let next = pad(width, LANES);
                        s.a.resize(rows * next, 0.0);
                        for (r, row) in s.a.chunks_exact_mut(next).enumerate() {
                            let (a, padding) = row.split_at_mut(width);
                            for ((a, &v), &b) in a.iter_mut().zip(&s.b[r * m..]).zip(&layer.bias) {
                                *a = (v + b).max(0.0);
                            }
                            padding.fill(0.0);
                        }
                    }
                }
            }
            Kind::Centroid {
                centroids,
                screen,
                k,
                inv_norms,
                coarse,
            } => {
                // Screening in float32 (the network's GEMM, twice the lanes of f64), then
                // the exact f64 cosine of every centroid the float32 error could hide the
                // nearest behind: the same id and cosine as f64 products of all `k`.
                let (k, d, dp) = (*k, self.in_dim, centroids.stride());
                s.screen.resize(n * k, 0.0);
                screen.matmul(emb32, n, &mut s.screen);
                // A float32 dot product of `d` terms, in any order, with or without FMA,
                // is within γ_d·Σ|x_i·c_i| ≤ γ_d·‖x‖·‖c‖ of the exact one (Higham, Accuracy
                // and Stability of Numerical Algorithms, §3.1), γ_d = d·u / (1 - d·u) and
                // u = 2^-24; divided by ‖c‖ that is γ_d·‖x‖ in cosine. Twice that, for the
                // f64 rounding of the products below and a wide margin.
                let u = 2f64.powi(-24);
                let gamma = d as f64 * u / (1.0 - d as f64 * u);
                for r in 0..n {
                    let x = &emb[r * dp..(r + 1) * dp];
                    let norm = dot_simd(x, x).sqrt();
                    let slack = 4.0 * gamma * norm;
                    let approx = &s.screen[r * k..(r + 1) * k];
                    let top = approx
                        .iter()
                        .zip(inv_norms)
                        .map(|(&dot, &inv)| dot as f64 * inv)
                        .fold(f64::NEG_INFINITY, f64::max);
                    let (mut best, mut best_cos) = (0usize, f64::NEG_INFINITY);
                    for (j, (&dot32, &inv)) in approx.iter().zip(inv_norms).enumerate() {
                        if (dot32 as f64) * inv < top - slack {
                            continue;
                        }
                        let row = &centroids.data[j * dp..(j + 1) * dp];
                        // The bits of every f64 product kernel.
                        let cos = dot_simd(x, row) * inv;
                        if cos > best_cos {
                            (best, best_cos) = (j, cos);
                        }
                    }
                    let row = &mut out[r * stride + col..];
                    row[0] = best as f64;
                    row[1] = best_cos;
                    if let Some(map) = coarse {
                        row[2] = map[best] as f64;
                    }
                }
            }
        }
    }
}

fn activate(row: &mut [f64], activation: Activation) {
    match activation {
        Activation::Identity => {}
        Activation::Sigmoid => row.iter_mut().for_each(|x| {
            // Two forms, each free of overflow on its side.
            *x = if *x >= 0.0 {
                1.0 / (1.0 + (-*x).exp())
            } else {
                let e = x.exp();
                e / (1.0 + e)
            }
        }),
        Activation::Softmax => {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            row.iter_mut().for_each(|x| {
                *x = (*x - max).exp();
                sum += *x;
            });
            row.iter_mut().for_each(|x| *x /= sum);
        }
    }
}

/// Per-thread buffers of the heads (reused across chunks).
#[derive(Default)]
pub struct HeadScratch {
    emb: Vec<f64>,
    /// Float32 dot products of the centroid heads' screening pass.
    screen: Vec<f32>,
    a: Vec<f64>,
    b: Vec<f64>,
}

/// The heads applied in one pass: their output columns side by side.
#[derive(Debug, Clone)]
pub struct Heads {
    heads: Vec<Head>,
    in_dim: usize,
}

impl Heads {
    /// Heads that all read embeddings of one dimension.
    pub fn new(heads: Vec<Head>) -> Result<Self> {
        let in_dim = heads.first().map_or(0, Head::in_dim);
        if let Some((i, h)) = heads.iter().enumerate().find(|(_, h)| h.in_dim != in_dim) {
            return Err(Error::InvalidArgument(format!(
                "heads[{i}] reads {}-dimensional embeddings but heads[0] reads {in_dim}",
                h.in_dim
            )));
        }
        Ok(Self { heads, in_dim })
    }

    /// Embedding dimension every head reads (0 when there are no heads).
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output columns of all heads together.
    pub fn n_outputs(&self) -> usize {
        self.heads.iter().map(Head::n_outputs).sum()
    }

    pub fn len(&self) -> usize {
        self.heads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// Applies every head to `n` embeddings `emb [n, in_dim]` into `out [n, n_outputs()]`.
    pub fn apply(&self, emb: &[f32], n: usize, out: &mut [f64], s: &mut HeadScratch) {
        debug_assert_eq!(emb.len(), n * self.in_dim);
        let stride = self.n_outputs();
        debug_assert_eq!(out.len(), n * stride);
        if n == 0 || self.in_dim == 0 {
            return;
        }
        // f64 copies of the embeddings, padded to whole tiles with zeros.
        let d = pad(self.in_dim, LANES);
        // Every value is written below (no zero-filling pass over the whole buffer).
        let mut emb64 = std::mem::take(&mut s.emb);
        emb64.resize(pad(n, TD) * d, 0.0);
        let mut src = emb.chunks_exact(self.in_dim);
        for dst in emb64.chunks_exact_mut(d) {
            let (values, padding) = dst.split_at_mut(self.in_dim);
            match src.next() {
                Some(row) => values.iter_mut().zip(row).for_each(|(d, &v)| *d = v as f64),
                None => values.fill(0.0),
            }
            padding.fill(0.0);
        }
        let mut col = 0;
        for head in &self.heads {
            head.apply(&emb64, emb, n, out, stride, col, s);
            col += head.n_outputs();
        }
        s.emb = emb64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: [f32; 6] = [0.6, 0.8, 0.0, 0.0, 0.0, 1.0]; // two unit rows, dim 3

    #[test]
    fn heads_linear_by_hand() {
        // W = [[1, 2, 3], [-1, 0, 0.5]], b = [0.5, -1]
        let w = [1.0, 2.0, 3.0, -1.0, 0.0, 0.5];
        let head = Head::linear(&w, &[0.5, -1.0], 2, 3, Activation::Identity).unwrap();
        let heads = Heads::new(vec![head]).unwrap();
        let mut out = vec![0.0; 4];
        heads.apply(&E, 2, &mut out, &mut HeadScratch::default());
        // row 0: 0.6 + 1.6 + 0.5 = 2.7; -0.6 - 1 = -1.6. row 1: 3 + 0.5 = 3.5; 0.5 - 1 = -0.5
        let want = [2.7, -1.6, 3.5, -0.5];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn heads_sigmoid_and_softmax_by_hand() {
        let w = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let sig = Head::linear(&w, &[0.0, 0.0], 2, 3, Activation::Sigmoid).unwrap();
        let soft = Head::linear(&w, &[0.0, 0.0], 2, 3, Activation::Softmax).unwrap();
        let heads = Heads::new(vec![sig, soft]).unwrap();
        let mut out = vec![0.0; 8];
        heads.apply(&E, 2, &mut out, &mut HeadScratch::default());
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (e6, e8) = (0.6f32 as f64, 0.8f32 as f64);
        let want = [
            s(e6),
            s(e8),
            e6.exp() / (e6.exp() + e8.exp()),
            e8.exp() / (e6.exp() + e8.exp()),
            0.5,
            0.5,
            0.5,
            0.5,
        ];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-7, "{out:?}");
        }
    }

    #[test]
    fn heads_mlp_by_hand() {
        // hidden: [[1, -1, 0], [0, 0, 2]] + [0, -1] → ReLU; out: [[1, 1]] + [0.25]
        let w0 = [1.0, -1.0, 0.0, 0.0, 0.0, 2.0];
        let w1 = [1.0, 1.0];
        let head = Head::mlp(
            &[(&w0, &[0.0, -1.0], 2, 3), (&w1, &[0.25], 1, 2)],
            Activation::Identity,
        )
        .unwrap();
        let heads = Heads::new(vec![head]).unwrap();
        let mut out = vec![0.0; 2];
        heads.apply(&E, 2, &mut out, &mut HeadScratch::default());
        // row 0: hidden [-0.2 → 0, -1 → 0] → 0.25; row 1: [0, 1] → 1.25
        assert!(
            (out[0] - 0.25).abs() < 1e-7 && (out[1] - 1.25).abs() < 1e-7,
            "{out:?}"
        );
    }

    #[test]
    fn heads_centroid_nearest_cosine_and_coarse() {
        // centroids not unit: [2, 0, 0], [0, 0, 3], [0, 1, 1]
        let c = [2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 1.0, 1.0];
        let head = Head::centroid(&c, 3, 3, Some(vec![7, 8, 7])).unwrap();
        let heads = Heads::new(vec![head]).unwrap();
        let mut out = vec![0.0; 6];
        heads.apply(&E, 2, &mut out, &mut HeadScratch::default());
        // row 0 (0.6, 0.8, 0): cosines 0.6, 0, 0.8/√2 = 0.5657 → id 0
        // row 1 (0, 0, 1): cosines 0, 1, 0.7071 → id 1
        assert_eq!((out[0], out[2]), (0.0, 7.0));
        assert!((out[1] - 0.6f32 as f64).abs() < 1e-7);
        assert_eq!((out[3], out[5]), (1.0, 8.0));
        assert!((out[4] - 1.0).abs() < 1e-7);
    }

    /// `products` with a given kernel (None: portable).
    fn products_with(kernel: Kernel, x: &[f64], n: usize, w: &Padded, exact: bool) -> Vec<f64> {
        let (d, m) = (w.stride(), w.padded_rows());
        let mut out = vec![f64::NAN; n * m];
        match kernel {
            Kernel::Portable => products_portable(x, n, &w.data, m, d, &mut out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512 => {
                let (xp, wp, o) = (x.as_ptr(), w.data.as_ptr(), out.as_mut_ptr());
                let avx512 = kernel == Kernel::Avx512;
                tiles(n, m, |r, j| unsafe {
                    let (x, w, o) = (xp.add(r * d), wp.add(j * d), o.add(r * m + j));
                    match (avx512, exact) {
                        (true, true) => tile_avx512::<true>(x, w, d, o, m),
                        (true, false) => tile_avx512::<false>(x, w, d, o, m),
                        (false, true) => tile_avx2::<true>(x, w, d, o, m),
                        (false, false) => tile_avx2::<false>(x, w, d, o, m),
                    }
                });
            }
            _ => unreachable!(),
        }
        out
    }

    #[test]
    fn heads_products_identical_on_every_kernel() {
        // Odd sizes (padding of rows, weight rows and lanes), one output, one row, more
        // weight rows than a block; exact products (float32 inputs: FMA in the SIMD
        // kernels) and inexact ones (hidden layers' f64 inputs: multiply then add).
        for &(n, m, d) in &[
            (1, 1, 1),
            (3, 5, 7),
            (64, 13, 385),
            (2, 1, 17),
            (5, 40, 64),
            (7, 3, 9),
            (9, 2, 8),
            (17, 200, 33),
        ] {
            let w32: Vec<f32> = (0..m * d)
                .map(|i| ((i * 104729 % 997) as f32 - 498.0) / 91.0)
                .collect();
            let w = Padded::new(&w32, m, d);
            let (dp, rows) = (w.stride(), pad(n, TD));
            for exact in [true, false] {
                let mut x = vec![0.0f64; rows * dp];
                for r in 0..n {
                    for i in 0..d {
                        let v = ((r * d + i) * 7919 % 1000) as f64 - 500.0;
                        // Exact: float32 values; otherwise f64 values no float32 equals.
                        x[r * dp + i] = if exact {
                            (v / 317.0) as f32 as f64
                        } else {
                            v / 317.0
                        };
                    }
                }
                let want = products_with(Kernel::Portable, &x, rows, &w, exact);
                let mw = w.padded_rows();
                for r in 0..n {
                    for j in 0..m {
                        let (xr, wj) = (&x[r * dp..r * dp + d], &w32[j * d..(j + 1) * d]);
                        let single = dot(xr, &wj.iter().map(|&v| v as f64).collect::<Vec<_>>());
                        assert_eq!(
                            want[r * mw + j].to_bits(),
                            single.to_bits(),
                            "padding changed a dot"
                        );
                        let exact_sum: f64 = xr.iter().zip(wj).map(|(a, &b)| a * b as f64).sum();
                        let scale: f64 =
                            xr.iter().zip(wj).map(|(a, &b)| (a * b as f64).abs()).sum();
                        assert!((want[r * mw + j] - exact_sum).abs() <= 1e-14 * scale.max(1.0));
                    }
                }
                #[cfg(target_arch = "x86_64")]
                {
                    let cpu = crate::gemm::CpuFeatures::detect();
                    for kernel in [Kernel::Avx2, Kernel::Avx512] {
                        if cpu.has_f32(kernel) {
                            let got = products_with(kernel, &x, rows, &w, exact);
                            for r in 0..n {
                                for j in 0..m {
                                    let (g, e) = (got[r * mw + j], want[r * mw + j]);
                                    assert_eq!(
                                        g.to_bits(),
                                        e.to_bits(),
                                        "{kernel:?} exact={exact} {n}x{m}x{d} [{r},{j}]"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn centroid_screening_gives_the_exact_nearest_and_cosine() {
        // Centroids with an exact duplicate (3 and 10: the lowest id must win) and a near
        // twin (20 = 5 moved by 1e-6: inside float32's error, so only f64 can tell them
        // apart); embeddings at those centroids, random ones and a zero row.
        let (k, d) = (50, 37);
        let mut rng = 0x1234_5678_u64;
        let mut next = move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut c: Vec<f32> = (0..k * d).map(|_| next()).collect();
        c.copy_within(3 * d..4 * d, 10 * d);
        c.copy_within(5 * d..6 * d, 20 * d);
        c[20 * d + 7] += 1e-6;
        let unit = |v: &[f32]| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let mut emb = Vec::new();
        for j in [3, 10, 5, 20] {
            emb.extend(unit(&c[j * d..(j + 1) * d]));
        }
        emb.extend(std::iter::repeat(0.0).take(d));
        for _ in 0..200 {
            emb.extend(unit(&(0..d).map(|_| next()).collect::<Vec<_>>()));
        }
        let n = emb.len() / d;
        let head = Head::centroid(&c, k, d, None).unwrap();
        let heads = Heads::new(vec![head]).unwrap();
        let mut out = vec![f64::NAN; n * 2];
        heads.apply(&emb, n, &mut out, &mut HeadScratch::default());
        for r in 0..n {
            // Brute force: every cosine in f64 (the products' bits), first maximum wins.
            let x: Vec<f64> = emb[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
            let (mut best, mut best_cos) = (0usize, f64::NEG_INFINITY);
            for j in 0..k {
                let cj: Vec<f64> = c[j * d..(j + 1) * d].iter().map(|&v| v as f64).collect();
                let norm = cj.iter().map(|v| v * v).sum::<f64>().sqrt();
                let cos = dot(&x, &cj) * (1.0 / norm);
                if cos > best_cos {
                    (best, best_cos) = (j, cos);
                }
            }
            assert_eq!(out[r * 2], best as f64, "row {r}");
            assert_eq!(out[r * 2 + 1].to_bits(), best_cos.to_bits(), "row {r}");
        }
        assert_eq!(out[0], 3.0, "exact duplicate: lowest id");
        assert_eq!(out[2], 3.0, "exact duplicate: lowest id");
        assert_eq!((out[4], out[6]), (5.0, 20.0), "near twins told apart");
        assert_eq!((out[8], out[9]), (0.0, 0.0), "zero row: id 0, cosine 0");
    }

    #[test]
    fn heads_refuse_bad_parts() {
        assert!(Head::linear(&[1.0, f32::NAN], &[0.0], 1, 2, Activation::Identity).is_err());
        assert!(Head::linear(&[1.0, 2.0], &[0.0, 1.0], 1, 2, Activation::Identity).is_err());
        assert!(Head::centroid(&[0.0, 0.0], 1, 2, None).is_err());
        assert!(Head::centroid(&[1.0, 0.0], 1, 2, Some(vec![0, 1])).is_err());
        let a = Head::centroid(&[1.0, 0.0], 1, 2, None).unwrap();
        let b = Head::centroid(&[1.0, 0.0, 0.0], 1, 3, None).unwrap();
        assert!(Heads::new(vec![a, b]).is_err());
        assert!(Head::mlp(
            &[(&[1.0, 1.0], &[0.0], 1, 2), (&[1.0, 1.0], &[0.0], 1, 2)],
            Activation::Identity
        )
        .is_err());
        assert!(Activation::parse("tanh").is_err());
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    #[test]
    #[ignore = "a timing by hand (speed lives in bench/), not a pass/fail test"]
    fn time_head_products() {
        let (n, m, d) = (64, 42, 383);
        let w32: Vec<f32> = (0..m * d)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let w = Padded::new(&w32, m, d);
        let dp = w.stride();
        let x: Vec<f64> = (0..n * dp)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) as f64 / 9.0)
            .collect();
        let mut out = vec![0.0; n * w.padded_rows()];
        let runs = 20000;
        let t = std::time::Instant::now();
        for _ in 0..runs {
            products(&x, n, &w, true, &mut out);
            std::hint::black_box(&mut out);
        }
        let s = t.elapsed().as_secs_f64();
        let fma = (n * w.padded_rows() * dp) as f64 * runs as f64;
        println!(
            "{:.1} ns per doc, {:.2} GFMA/s (f64 lanes)",
            s / (n * runs) as f64 * 1e9,
            fma / s / 1e9
        );
        // The whole centroid head (screening + exact cosines) on unit rows.
        let emb: Vec<f32> = (0..n)
            .flat_map(|r| {
                let v: Vec<f32> = (0..d)
                    .map(|i| (((r * d + i) * 5 % 11) as f32 - 5.0) / 9.0)
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(move |x| x / norm)
            })
            .collect();
        let mut rng = 7u64;
        let rand: Vec<f32> = (0..m * d)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let heads = Heads::new(vec![Head::centroid(&rand, m, d, None).unwrap()]).unwrap();
        let mut cols = vec![0.0; n * 2];
        let mut s = HeadScratch::default();
        let t = std::time::Instant::now();
        for _ in 0..runs {
            heads.apply(&emb, n, &mut cols, &mut s);
            std::hint::black_box(&mut cols);
        }
        let sec = t.elapsed().as_secs_f64();
        println!(
            "centroid head, {m} centroids: {:.1} ns per doc",
            sec / (n * runs) as f64 * 1e9
        );
    }
}
