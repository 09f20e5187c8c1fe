//! Heads: small models applied to each document's embedding in the same pass that computes
//! it, while the chunk's embeddings are still in cache (a linear probe, a small MLP
//! classifier, nearest-centroid assignment).
//!
//! Every head reads the L2-normalised embedding (float32, as returned to the caller) and
//! writes its output columns as f64. All of a head's arithmetic is f64 (weights converted
//! once at construction; products of float32 values are exact in f64), so its outputs
//! agree with float64 numpy on the returned embeddings to f64 rounding, far below 1e-6.
//! The dot products run 8 lanes wide in a fixed order, without FMA, so every kernel
//! (portable, AVX2, AVX-512: chosen like the network's, `gemm::kernels`) gives the same
//! bits.
//!
//! Output columns per head, in order:
//! - linear / MLP: one score per output (after the activation);
//! - centroid: nearest centroid id, its cosine, and the coarse id when a fine → coarse
//!   map is given. Ids are written as f64 (exact below 2^53); ties go to the lowest id.

use crate::error::{Error, Result};
use crate::gemm::{kernels, Kernel};

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

/// One affine layer of a head: `x · Wᵀ + b`, in f64.
#[derive(Debug, Clone)]
struct Affine {
    out_dim: usize,
    in_dim: usize,
    /// `[out_dim, in_dim]` row-major.
    weights: Vec<f64>,
    bias: Vec<f64>,
}

impl Affine {
    fn new(
        what: &str,
        weights_out_in: &[f32],
        bias: &[f32],
        out_dim: usize,
        in_dim: usize,
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
            in_dim,
            weights: weights_out_in.iter().map(|&w| w as f64).collect(),
            bias: bias.iter().map(|&b| b as f64).collect(),
        })
    }
}

/// `out[r, j] = Σ_i x[r, i] · w[j, i]` for `n` rows, with the kernel chosen for this
/// process (all give identical bits).
fn products(x: &[f64], n: usize, w: &[f64], m: usize, d: usize, out: &mut [f64]) {
    assert!(x.len() >= n * d && w.len() == m * d && out.len() >= n * m);
    #[cfg(target_arch = "x86_64")]
    {
        match kernels().float32 {
            // SAFETY: `kernels()` only chooses a kernel this CPU has.
            // The float32 kernel is never AMX (no float tiles); AVX-512F is under it.
            Kernel::Avx512 | Kernel::Amx => return unsafe { products_avx512(x, n, w, m, d, out) },
            Kernel::Avx2 => return unsafe { products_avx2(x, n, w, m, d, out) },
            Kernel::Portable => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (kernels, Kernel::Portable);
    products_body(x, n, w, m, d, out)
}

/// [`products_body`] with AVX-512F: the same per-lane mul then add (no FMA) and the same
/// tail and reduction, so the same bits. Tiles of 4 weight rows x 4 documents (16
/// accumulators) load each input once per 16 products.
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `n * d`, `w` `m * d` and `out` `n * m` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn products_avx512(x: &[f64], n: usize, w: &[f64], m: usize, d: usize, out: &mut [f64]) {
    use std::arch::x86_64::*;
    assert!(x.len() >= n * d && w.len() >= m * d && out.len() >= n * m);
    let full = d / 8 * 8;
    let finish = |acc: __m512d, row: *const f64, wrow: *const f64| {
        let mut lanes = [0.0f64; 8];
        _mm512_storeu_pd(lanes.as_mut_ptr(), acc);
        for (l, k) in (full..d).enumerate() {
            lanes[l] += *row.add(k) * *wrow.add(k);
        }
        reduce(&lanes)
    };
    let row = |r: usize| x.as_ptr().add(r * d);
    let wrow = |j: usize| w.as_ptr().add(j * d);
    let mut j = 0;
    while j + 4 <= m {
        let wq = [0, 1, 2, 3].map(|q| wrow(j + q));
        let mut r = 0;
        while r + 4 <= n {
            let rows = [0, 1, 2, 3].map(|i| row(r + i));
            let mut acc = [[_mm512_setzero_pd(); 4]; 4];
            let mut k = 0;
            while k < full {
                let wv = wq.map(|p| _mm512_loadu_pd(p.add(k)));
                for i in 0..4 {
                    let xv = _mm512_loadu_pd(rows[i].add(k));
                    for q in 0..4 {
                        acc[i][q] = _mm512_add_pd(acc[i][q], _mm512_mul_pd(xv, wv[q]));
                    }
                }
                k += 8;
            }
            for i in 0..4 {
                for q in 0..4 {
                    out[(r + i) * m + j + q] = finish(acc[i][q], rows[i], wq[q]);
                }
            }
            r += 4;
        }
        for r in r..n {
            for (q, &wp) in wq.iter().enumerate() {
                out[r * m + j + q] = avx512_dot(row(r), wp, full, &finish);
            }
        }
        j += 4;
    }
    for j in j..m {
        for r in 0..n {
            out[r * m + j] = avx512_dot(row(r), wrow(j), full, &finish);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_dot(
    row: *const f64,
    wp: *const f64,
    full: usize,
    finish: &impl Fn(std::arch::x86_64::__m512d, *const f64, *const f64) -> f64,
) -> f64 {
    use std::arch::x86_64::*;
    let mut acc = _mm512_setzero_pd();
    let mut k = 0;
    while k < full {
        acc = _mm512_add_pd(
            acc,
            _mm512_mul_pd(_mm512_loadu_pd(row.add(k)), _mm512_loadu_pd(wp.add(k))),
        );
        k += 8;
    }
    finish(acc, row, wp)
}

/// [`products_body`] with AVX2: lanes 0-3 and 4-7 in two registers, otherwise as
/// [`products_avx512`].
///
/// # Safety
/// The CPU has AVX2; sizes as [`products_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn products_avx2(x: &[f64], n: usize, w: &[f64], m: usize, d: usize, out: &mut [f64]) {
    use std::arch::x86_64::*;
    assert!(x.len() >= n * d && w.len() >= m * d && out.len() >= n * m);
    let full = d / 8 * 8;
    let finish = |acc: [__m256d; 2], row: *const f64, wj: &[f64]| {
        let mut lanes = [0.0f64; 8];
        _mm256_storeu_pd(lanes.as_mut_ptr(), acc[0]);
        _mm256_storeu_pd(lanes.as_mut_ptr().add(4), acc[1]);
        for (l, k) in (full..d).enumerate() {
            lanes[l] += *row.add(k) * wj[k];
        }
        reduce(&lanes)
    };
    for (j, wj) in w.chunks_exact(d).take(m).enumerate() {
        let wp = wj.as_ptr();
        let mut r = 0;
        while r + 4 <= n {
            let rows = [0, 1, 2, 3].map(|i| x.as_ptr().add((r + i) * d));
            let mut acc = [[_mm256_setzero_pd(); 2]; 4];
            let mut k = 0;
            while k < full {
                let (w0, w1) = (_mm256_loadu_pd(wp.add(k)), _mm256_loadu_pd(wp.add(k + 4)));
                for i in 0..4 {
                    let (x0, x1) = (
                        _mm256_loadu_pd(rows[i].add(k)),
                        _mm256_loadu_pd(rows[i].add(k + 4)),
                    );
                    acc[i][0] = _mm256_add_pd(acc[i][0], _mm256_mul_pd(x0, w0));
                    acc[i][1] = _mm256_add_pd(acc[i][1], _mm256_mul_pd(x1, w1));
                }
                k += 8;
            }
            for i in 0..4 {
                out[(r + i) * m + j] = finish(acc[i], rows[i], wj);
            }
            r += 4;
        }
        for r in r..n {
            let row = x.as_ptr().add(r * d);
            let mut acc = [_mm256_setzero_pd(); 2];
            let mut k = 0;
            while k < full {
                for (h, a) in acc.iter_mut().enumerate() {
                    let kk = k + 4 * h;
                    *a = _mm256_add_pd(
                        *a,
                        _mm256_mul_pd(_mm256_loadu_pd(row.add(kk)), _mm256_loadu_pd(wp.add(kk))),
                    );
                }
                k += 8;
            }
            out[r * m + j] = finish(acc, row, wj);
        }
    }
}

/// Weight row outer, documents inner, four documents at a time: each weight row is read
/// once per chunk (a 5000-centroid head is megabytes; the chunk's inputs stay in cache),
/// and four independent accumulator chains hide the latency of the adds. Each dot product
/// sums in the same order as [`dot`], so the grouping never changes a result.
#[inline(always)]
fn products_body(x: &[f64], n: usize, w: &[f64], m: usize, d: usize, out: &mut [f64]) {
    for (j, wj) in w.chunks_exact(d).enumerate() {
        let mut r = 0;
        while r + 4 <= n {
            let rows = [
                &x[r * d..(r + 1) * d],
                &x[(r + 1) * d..(r + 2) * d],
                &x[(r + 2) * d..(r + 3) * d],
                &x[(r + 3) * d..(r + 4) * d],
            ];
            let dots = dot4(rows, wj);
            for (i, v) in dots.into_iter().enumerate() {
                out[(r + i) * m + j] = v;
            }
            r += 4;
        }
        for r in r..n {
            out[r * m + j] = dot(&x[r * d..(r + 1) * d], wj);
        }
    }
}

/// Four [`dot`]s against one weight row, bit-identical to four calls of it.
#[inline(always)]
fn dot4(a: [&[f64]; 4], b: &[f64]) -> [f64; 4] {
    let mut lanes = [[0.0f64; 8]; 4];
    let full = b.len() / 8 * 8;
    let mut k = 0;
    while k < full {
        let y = &b[k..k + 8];
        for (acc, x) in lanes.iter_mut().zip(&a) {
            let x = &x[k..k + 8];
            for l in 0..8 {
                acc[l] += x[l] * y[l];
            }
        }
        k += 8;
    }
    for (acc, x) in lanes.iter_mut().zip(&a) {
        for (l, (xv, yv)) in x[full..].iter().zip(&b[full..]).enumerate() {
            acc[l] += xv * yv;
        }
    }
    lanes.map(|l| reduce(&l))
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
        /// `[k, dim]` row-major.
        centroids: Vec<f64>,
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
            affine.push(Affine::new(&format!("layer {i}"), w, b, out_dim, in_dim)?);
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
        if let Some(map) = &coarse {
            if map.len() != k {
                return Err(Error::InvalidArgument(format!(
                    "coarse map has {} entries, expected {k} (one per centroid)",
                    map.len()
                )));
            }
        }
        Ok(Self {
            kind: Kind::Centroid {
                centroids: centroids.iter().map(|&c| c as f64).collect(),
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

    /// Widest intermediate (sizes scratch).
    fn max_width(&self) -> usize {
        match &self.kind {
            Kind::Mlp { layers, .. } => layers.iter().map(|l| l.out_dim).max().unwrap_or(0),
            Kind::Centroid { k, .. } => *k,
        }
    }

    /// Applies the head to `n` embeddings `emb [n, in_dim]` (already f64), writing column
    /// `col..col + n_outputs()` of `out [n, stride]`.
    fn apply(
        &self,
        emb: &[f64],
        n: usize,
        out: &mut [f64],
        stride: usize,
        col: usize,
        s: &mut HeadScratch,
    ) {
        match &self.kind {
            Kind::Mlp { layers, activation } => {
                let last = layers.len() - 1;
                for (i, layer) in layers.iter().enumerate() {
                    let m = layer.out_dim;
                    s.b.resize(n * m, 0.0);
                    {
                        let input: &[f64] = if i == 0 {
                            emb
                        } else {
                            &s.a[..n * layer.in_dim]
                        };
                        products(input, n, &layer.weights, m, layer.in_dim, &mut s.b[..n * m]);
                    }
                    for r in 0..n {
                        let row = &mut s.b[r * m..(r + 1) * m];
                        for (x, &b) in row.iter_mut().zip(&layer.bias) {
                            *x += b;
                            if i != last {
                                *x = x.max(0.0);
                            }
                        }
                        if i == last {
                            activate(row, *activation);
                            out[r * stride + col..r * stride + col + m].copy_from_slice(row);
                        }
                    }
                    std::mem::swap(&mut s.a, &mut s.b);
                }
            }
            Kind::Centroid {
                centroids,
                k,
                inv_norms,
                coarse,
            } => {
                let k = *k;
                s.b.resize(n * k, 0.0);
                products(emb, n, centroids, k, self.in_dim, &mut s.b[..n * k]);
                for r in 0..n {
                    let (mut best, mut best_cos) = (0usize, f64::NEG_INFINITY);
                    for (j, (&dot, &inv)) in
                        s.b[r * k..(r + 1) * k].iter().zip(inv_norms).enumerate()
                    {
                        let cos = dot * inv;
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
        let widest = self.heads.iter().map(Head::max_width).max().unwrap_or(0);
        s.a.reserve(n * widest);
        s.b.reserve(n * widest);
        let mut emb64 = std::mem::take(&mut s.emb);
        emb64.clear();
        emb64.extend(emb.iter().map(|&v| v as f64));
        let mut col = 0;
        for head in &self.heads {
            head.apply(&emb64, n, out, stride, col, s);
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

    #[test]
    fn heads_products_identical_on_every_kernel() {
        // odd sizes: lane tails, one output, one row
        for &(n, m, d) in &[
            (1, 1, 1),
            (3, 5, 7),
            (64, 13, 385),
            (2, 1, 17),
            (5, 40, 64),
            (7, 3, 9),
            (9, 2, 8),
        ] {
            let x: Vec<f64> = (0..n * d)
                .map(|i| ((i * 7919 % 1000) as f64 - 500.0) / 317.0)
                .collect();
            let w: Vec<f64> = (0..m * d)
                .map(|i| ((i * 104729 % 997) as f64 - 498.0) / 91.0)
                .collect();
            let mut want = vec![0.0; n * m];
            products_body(&x, n, &w, m, d, &mut want);
            for r in 0..n {
                for j in 0..m {
                    let single = dot(&x[r * d..(r + 1) * d], &w[j * d..(j + 1) * d]);
                    assert_eq!(
                        want[r * m + j].to_bits(),
                        single.to_bits(),
                        "grouping changed a dot"
                    );
                }
            }
            for r in 0..n {
                for j in 0..m {
                    let exact: f64 = (0..d).map(|i| x[r * d + i] * w[j * d + i]).sum();
                    let scale: f64 = (0..d).map(|i| (x[r * d + i] * w[j * d + i]).abs()).sum();
                    assert!((want[r * m + j] - exact).abs() <= 1e-14 * scale.max(1.0));
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                let cpu = crate::gemm::CpuFeatures::detect();
                if cpu.has_f32(Kernel::Avx2) {
                    let mut got = vec![0.0; n * m];
                    unsafe { products_avx2(&x, n, &w, m, d, &mut got) };
                    assert_eq!(got, want, "avx2 {n}x{m}x{d}");
                }
                if cpu.has_f32(Kernel::Avx512) {
                    let mut got = vec![0.0; n * m];
                    unsafe { products_avx512(&x, n, &w, m, d, &mut got) };
                    assert_eq!(got, want, "avx512 {n}x{m}x{d}");
                }
            }
        }
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
