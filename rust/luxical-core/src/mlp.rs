//! The sparse-to-dense network: a gather-accumulate first layer over the TF-IDF features,
//! then dense layers through GEMM, with ReLU + L2-normalisation between layers and an
//! L2-normalised output.

use crate::error::{Error, Result};
use crate::gemm::{PackedBf16, PackedF32, PackedI8};
use crate::weights::SharedF32;

/// One dense layer, weights stored `[out, in]` row-major as the model file stores them.
#[derive(Debug, Clone)]
pub struct DenseLayer {
    pub out_dim: usize,
    pub in_dim: usize,
    pub weights_out_in: Vec<f32>,
}

/// Arithmetic of the dense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// float32 weights and activations (matches the reference to float rounding).
    #[default]
    Exact,
    /// int8 weights (per output column scales) and 7-bit activations (per row scales),
    /// exact i32 sums: faster on CPUs with AVX2, approximate (see `gemm`).
    Int8,
    /// bfloat16 weights and activations, float32 sums: fast on CPUs with AMX-BF16 or
    /// AVX-512 BF16, closer to float32 than int8 (see `gemm::PackedBf16`).
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Exact => "float32",
            Precision::Int8 => "int8",
            Precision::Bf16 => "bfloat16",
        }
    }
}

/// Storage of the first layer's table (its sums are float32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableDtype {
    /// float32 rows.
    #[default]
    Float32,
    /// IEEE float16 rows (half the memory and memory traffic of the gather), widened to
    /// float32 exactly before the same multiply and add: a model whose file stores the
    /// first layer in float16 embeds bit for bit as with a float32 table; other models
    /// lose the precision of the rounding to float16.
    Float16,
}

impl TableDtype {
    pub fn name(self) -> &'static str {
        match self {
            TableDtype::Float32 => "float32",
            TableDtype::Float16 => "float16",
        }
    }

    /// Floats of the buffer holding a `[vocab_size, first_dim]` table (float16 values
    /// are stored two per float32 slot, so that every weight buffer is a `SharedF32`).
    pub fn buffer_len(self, vocab_size: usize, first_dim: usize) -> usize {
        match self {
            TableDtype::Float32 => vocab_size * first_dim,
            TableDtype::Float16 => (vocab_size * first_dim).div_ceil(2),
        }
    }
}

/// The hidden dense layers in a reduced precision.
#[derive(Debug, Clone)]
enum Reduced {
    None,
    Int8(Vec<PackedI8>),
    Bf16(Vec<PackedBf16>),
}

/// The network. The first layer is kept transposed (`[vocab, dim0]`, one contiguous row
/// per feature) so the sparse product is a gather of rows; the dense layers are packed for
/// `gemm` once, at load.
#[derive(Debug, Clone)]
pub struct Network {
    vocab_size: usize,
    first_dim: usize,
    /// The transposed first layer; float16 values two per slot when `table` says so.
    first_in_out: SharedF32,
    table: TableDtype,
    dense: Vec<PackedF32>,
    /// The hidden dense layers (all but the output layer) in reduced precision, when
    /// chosen.
    reduced: Reduced,
}

impl Network {
    /// Builds the network from layers stored `[out, in]`; checks that they chain.
    pub fn from_layers(layers: Vec<DenseLayer>) -> Result<Self> {
        let mut layers = layers.into_iter();
        let first = layers.next().ok_or_else(|| {
            Error::InconsistentModel("the network has no layers (num_nn_layers = 0)".into())
        })?;
        let dense: Vec<DenseLayer> = layers.collect();
        check_chain(first.out_dim, dense.iter().map(|l| (l.in_dim, l.out_dim)))?;
        let first_in_out = transpose(&first.weights_out_in, first.out_dim, first.in_dim);
        let dense = dense
            .iter()
            .map(|l| PackedF32::pack(&l.weights_out_in, l.out_dim, l.in_dim))
            .collect();
        Self::from_parts(
            first.in_dim,
            first.out_dim,
            SharedF32::owned(first_in_out),
            TableDtype::Float32,
            dense,
        )
    }

    /// Builds the network from a transposed first layer (`[vocab_size, first_dim]`, stored
    /// as `table` says) and packed dense layers.
    pub fn from_parts(
        vocab_size: usize,
        first_dim: usize,
        first_in_out: SharedF32,
        table: TableDtype,
        dense: Vec<PackedF32>,
    ) -> Result<Self> {
        if first_in_out.len() != table.buffer_len(vocab_size, first_dim) {
            return Err(Error::InconsistentModel(format!(
                "nn_layer_0 holds {} weights for shape [{first_dim}, {vocab_size}]",
                first_in_out.len()
            )));
        }
        check_chain(first_dim, dense.iter().map(|l| (l.in_dim, l.out_dim)))?;
        Ok(Self {
            vocab_size,
            first_dim,
            first_in_out,
            table,
            dense,
            reduced: Reduced::None,
        })
    }

    /// The storage of the first layer's table.
    pub fn table_dtype(&self) -> TableDtype {
        self.table
    }

    /// Converts a float32 table to `table` (float16: round to nearest even, as numpy's
    /// `astype(float16)`; values beyond float16's range become ±inf, so a model whose
    /// weights exceed 65504 in magnitude is refused). Going back to float32 from float16
    /// widens the float16 values (it does not restore the lost precision).
    pub fn set_table_dtype(&mut self, table: TableDtype) -> Result<()> {
        if table == self.table {
            return Ok(());
        }
        let converted = match table {
            TableDtype::Float16 => {
                let src: &[f32] = &self.first_in_out;
                if let Some(i) = src.iter().position(|v| v.is_finite() && v.abs() > 65504.0) {
                    return Err(Error::InconsistentModel(format!(
                        "nn_layer_0 weight {} (at n-gram {}) is beyond float16's range (±65504): \
                         keep the first layer in float32",
                        src[i],
                        i / self.first_dim.max(1)
                    )));
                }
                let n = TableDtype::Float16.buffer_len(self.vocab_size, self.first_dim);
                let mut packed = Vec::with_capacity(n);
                crate::advise_spare_capacity(&mut packed);
                packed.resize(n, 0.0f32);
                {
                    // SAFETY: a float32 buffer viewed as twice as many u16 (alignment 4 >= 2).
                    let bits: &mut [u16] = unsafe {
                        std::slice::from_raw_parts_mut(
                            packed.as_mut_ptr().cast::<u16>(),
                            packed.len() * 2,
                        )
                    };
                    use rayon::prelude::*;
                    bits[..src.len()]
                        .par_chunks_mut(1 << 16)
                        .zip(src.par_chunks(1 << 16))
                        .for_each(|(b, s)| {
                            for (b, &v) in b.iter_mut().zip(s) {
                                *b = half::f16::from_f32(v).to_bits();
                            }
                        });
                }
                packed
            }
            TableDtype::Float32 => self.table_f32(),
        };
        self.first_in_out = SharedF32::owned(converted);
        self.table = table;
        Ok(())
    }

    /// The float16 table's bits (`vocab_size * first_dim` values).
    fn table_f16(&self) -> &[u16] {
        debug_assert_eq!(self.table, TableDtype::Float16);
        let f: &[f32] = &self.first_in_out;
        // SAFETY: float16 values are stored two per f32 slot (see `TableDtype::buffer_len`);
        // u16 needs less alignment than f32; the length is within the buffer.
        unsafe {
            std::slice::from_raw_parts(f.as_ptr().cast::<u16>(), self.vocab_size * self.first_dim)
        }
    }

    /// The first layer's table `[vocab, dim0]` as float32 values.
    fn table_f32(&self) -> Vec<f32> {
        match self.table {
            TableDtype::Float32 => self.first_in_out.to_vec(),
            TableDtype::Float16 => self
                .table_f16()
                .iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect(),
        }
    }

    /// The float32 buffers, in weight-cache order (first layer, then each dense layer).
    pub fn buffers(&self) -> Vec<&SharedF32> {
        let mut b = vec![&self.first_in_out];
        b.extend(self.dense.iter().map(PackedF32::packed));
        b
    }

    /// Whether the weights live in a shared (memory-mapped) weight-cache file.
    pub fn weights_mapped(&self) -> bool {
        self.buffers().iter().all(|b| b.is_mapped())
    }
}

/// Checks that dense layers `(in, out)` chain from `first_dim` to a non-empty output.
fn check_chain(first_dim: usize, dense: impl Iterator<Item = (usize, usize)>) -> Result<()> {
    {
        let mut prev = first_dim;
        for (i, (in_dim, out_dim)) in dense.enumerate() {
            if in_dim != prev {
                return Err(Error::InconsistentModel(format!(
                    "nn_layer_{} takes {} inputs but nn_layer_{} gives {} outputs; the layers \
                     do not chain",
                    i + 1,
                    in_dim,
                    i,
                    prev
                )));
            }
            prev = out_dim;
        }
        if prev == 0 {
            return Err(Error::InconsistentModel("the output dimension is 0".into()));
        }
        Ok(())
    }
}

impl Network {
    /// Chooses the arithmetic of the dense layers (quantising them for `Int8`).
    pub fn set_precision(&mut self, precision: Precision) {
        let hidden = self.dense.len().saturating_sub(1);
        self.reduced = match precision {
            Precision::Exact => Reduced::None,
            // The output layer stays float32: it is small next to the hidden layers, and it
            // may carry a post-processing transform (e.g. whitening) that cancels a large
            // common component of its input, where 7-bit activations lose the small rest.
            Precision::Int8 => Reduced::Int8(
                self.dense
                    .iter()
                    .take(hidden)
                    .map(|l| PackedI8::quantize(&l.unpack(), l.out_dim, l.in_dim))
                    .collect(),
            ),
            // The output layer stays float32 for the same reason as with int8.
            Precision::Bf16 => Reduced::Bf16(
                self.dense
                    .iter()
                    .take(hidden)
                    .map(|l| PackedBf16::pack(&l.unpack(), l.out_dim, l.in_dim))
                    .collect(),
            ),
        };
    }

    pub fn precision(&self) -> Precision {
        match self.reduced {
            Reduced::None => Precision::Exact,
            Reduced::Int8(_) => Precision::Int8,
            Reduced::Bf16(_) => Precision::Bf16,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn output_dim(&self) -> usize {
        self.dense.last().map_or(self.first_dim, |l| l.out_dim)
    }

    /// `[vocab, d0, d1, ..., out]`.
    pub fn layer_dims(&self) -> Vec<usize> {
        let mut dims = vec![self.vocab_size, self.first_dim];
        dims.extend(self.dense.iter().map(|l| l.out_dim));
        dims
    }

    /// Layers stored `[out, in]` (the file's orientation).
    pub fn layers_out_in(&self) -> Vec<DenseLayer> {
        let mut layers = vec![DenseLayer {
            out_dim: self.first_dim,
            in_dim: self.vocab_size,
            weights_out_in: match self.table {
                TableDtype::Float32 => {
                    transpose(&self.first_in_out, self.vocab_size, self.first_dim)
                }
                TableDtype::Float16 => {
                    transpose(&self.table_f32(), self.vocab_size, self.first_dim)
                }
            },
        }];
        layers.extend(self.dense.iter().map(|l| DenseLayer {
            out_dim: l.out_dim,
            in_dim: l.in_dim,
            weights_out_in: l.unpack(),
        }));
        layers
    }

    /// Largest activation width (sizes scratch buffers).
    pub fn max_hidden_dim(&self) -> usize {
        self.layer_dims()[1..].iter().copied().max().unwrap_or(0)
    }

    /// First layer for one document: `row = sum_j value_j * W0[:, idx_j]`, accumulated in
    /// f32 in feature order (as the reference's `csr_matvecs_tiled_unrolled_8`).
    pub fn first_layer(&self, indices: &[u32], values: &[f32], row: &mut [f32]) {
        debug_assert_eq!(row.len(), self.first_dim);
        row.fill(0.0);
        let d = self.first_dim;
        if self.table == TableDtype::Float16 {
            self.first_layer_f16(indices, values, row);
            return;
        }
        let weights: &[f32] = &self.first_in_out;
        let wide = gather_width();
        for (j, (&idx, &value)) in indices.iter().zip(values).enumerate() {
            // The rows are scattered over a table far larger than the caches: ask for the
            // row a few features ahead so that its misses overlap this row's work.
            if let Some(&ahead) = indices.get(j + FIRST_LAYER_AHEAD) {
                prefetch_row(weights, ahead as usize * d, d);
            }
            let w = &weights[idx as usize * d..(idx as usize + 1) * d];
            #[cfg(target_arch = "x86_64")]
            match wide {
                // SAFETY: the kernels were chosen for this CPU (`gather_width`); `w` and
                // `row` both have `d` elements.
                GatherWidth::Avx512 => unsafe { accumulate_f32_avx512(row, value, w) },
                GatherWidth::Avx2 => unsafe { accumulate_f32_avx2(row, value, w) },
                GatherWidth::Scalar => accumulate_f32(row, value, w),
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = wide;
                accumulate_f32(row, value, w);
            }
        }
    }

    /// [`Network::first_layer`] over the float16 table: each weight widened to float32
    /// (exact), then the same product and sum, in the same order, as the float32 table.
    fn first_layer_f16(&self, indices: &[u32], values: &[f32], row: &mut [f32]) {
        let d = self.first_dim;
        let bits = self.table_f16();
        let f16c = f16c_available();
        for (j, (&idx, &value)) in indices.iter().zip(values).enumerate() {
            if let Some(&ahead) = indices.get(j + FIRST_LAYER_AHEAD) {
                let start = ahead as usize * d;
                let end = (start + d).min(bits.len());
                for at in (start..end).step_by(32) {
                    crate::prefetch(&bits[at]); // one 64-byte line per 32 values
                }
            }
            let w = &bits[idx as usize * d..(idx as usize + 1) * d];
            #[cfg(target_arch = "x86_64")]
            if f16c {
                // SAFETY: AVX + F16C were detected; `w` and `row` have `d` elements.
                unsafe { accumulate_f16_f16c(row, value, w) };
                continue;
            }
            let _ = f16c;
            for (acc, &wk) in row.iter_mut().zip(w) {
                *acc += value * half::f16::from_bits(wk).to_f32();
            }
        }
    }

    /// Runs everything after the first layer for `n_rows` documents.
    ///
    /// `hidden` holds the first layer's raw output `[n_rows, d0]`; `hidden` and `scratch`
    /// must each have room for `n_rows * max_hidden_dim()` (they take turns as the input and
    /// output of the hidden layers); the L2-normalised result lands in `out`
    /// `[n_rows, output_dim]`.
    pub fn forward_dense(
        &self,
        n_rows: usize,
        hidden: &mut [f32],
        scratch: &mut [f32],
        out: &mut [f32],
    ) {
        let mut cur_dim = self.first_dim;
        let (mut src, mut dst) = (hidden, scratch);
        if self.dense.is_empty() {
            // A single layer network: its output is the embedding (no ReLU).
            normalize_rows(&mut src[..n_rows * cur_dim], cur_dim);
            out.copy_from_slice(&src[..n_rows * cur_dim]);
            return;
        }
        relu_normalize_rows(&mut src[..n_rows * cur_dim], cur_dim);
        let last = self.dense.len() - 1;
        let mut quantized = Vec::new();
        let mut rounded = Vec::new();
        for (i, layer) in self.dense.iter().enumerate() {
            let target: &mut [f32] = if i == last {
                &mut *out
            } else {
                &mut dst[..n_rows * layer.out_dim]
            };
            let input = &src[..n_rows * cur_dim];
            match &self.reduced {
                Reduced::Int8(q) if i < q.len() => {
                    q[i].matmul(input, n_rows, target, &mut quantized)
                }
                Reduced::Bf16(q) if i < q.len() => q[i].matmul(input, n_rows, target, &mut rounded),
                _ => layer.matmul(input, n_rows, target),
            }
            if i == last {
                normalize_rows(target, layer.out_dim);
            } else {
                relu_normalize_rows(target, layer.out_dim);
                std::mem::swap(&mut src, &mut dst);
            }
            cur_dim = layer.out_dim;
        }
    }
}

/// L2-normalises each row in place; all-zero rows stay zero.
pub fn normalize_rows(mat: &mut [f32], dim: usize) {
    for row in mat.chunks_exact_mut(dim) {
        let norm_sq = sum_squares(row);
        if norm_sq > 0.0 {
            let inv = (1.0 / norm_sq.sqrt()) as f32;
            row.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

/// Sum of squares in f64, in 8 independent lanes so that the compiler vectorises it (a
/// single running sum is a chain of dependent adds: ~4 cycles per element).
fn sum_squares(x: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(c) {
            *lane += f64::from(v) * f64::from(v);
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum();
    lanes.iter().sum::<f64>() + tail
}

/// How many features ahead `first_layer` prefetches (8 on a Sapphire Rapids Xeon: long
/// documents +2% over 4, float16 rows of the Luxical-One shape; 16 and 24 no better).
const FIRST_LAYER_AHEAD: usize = 8;

/// Whether the F16C conversion instructions (with AVX) run here and SIMD is allowed
/// (`LUXICAL_NO_SIMD` / `LUXICAL_KERNEL=portable` turn them off with the other kernels).
fn f16c_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static F16C: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *F16C.get_or_init(|| {
            crate::gemm::simd_kernels()
                && is_x86_feature_detected!("avx")
                && is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `row += value * widen(w)`, 8 lanes at a time, multiply then add (no FMA: the same
/// roundings as the scalar loop over a float32 table).
///
/// # Safety
/// AVX and F16C must be available; `row.len() == w.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn accumulate_f16_f16c(row: &mut [f32], value: f32, w: &[u16]) {
    use std::arch::x86_64::*;
    debug_assert_eq!(row.len(), w.len());
    let n = row.len().min(w.len());
    let v = _mm256_set1_ps(value);
    let mut i = 0;
    while i + 8 <= n {
        let wk = _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i).cast()));
        let acc = _mm256_loadu_ps(row.as_ptr().add(i));
        _mm256_storeu_ps(
            row.as_mut_ptr().add(i),
            _mm256_add_ps(acc, _mm256_mul_ps(v, wk)),
        );
        i += 8;
    }
    for k in i..n {
        row[k] += value * half::f16::from_bits(w[k]).to_f32();
    }
}

/// How wide the first layer's accumulation runs: the widest vectors of the chosen
/// float32 kernel family (`LUXICAL_KERNEL=portable` gives the plain loop, which the build
/// target's baseline, SSE2 on x86-64, vectorises 4 wide). Every width computes the same
/// bits: a product and a sum per element, both rounded, in the same order (no FMA).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum GatherWidth {
    Scalar,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
}

fn gather_width() -> GatherWidth {
    match crate::gemm::kernels().float32 {
        #[cfg(target_arch = "x86_64")]
        crate::gemm::Kernel::Avx512 | crate::gemm::Kernel::Amx => GatherWidth::Avx512,
        #[cfg(target_arch = "x86_64")]
        crate::gemm::Kernel::Avx2 => GatherWidth::Avx2,
        _ => GatherWidth::Scalar,
    }
}

/// `row += value * w`, elementwise (the definition the vector versions reproduce).
#[inline]
fn accumulate_f32(row: &mut [f32], value: f32, w: &[f32]) {
    for (acc, &wk) in row.iter_mut().zip(w) {
        *acc += value * wk;
    }
}

/// [`accumulate_f32`], 16 lanes at a time.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_f32_avx512(row: &mut [f32], value: f32, w: &[f32]) {
    use std::arch::x86_64::*;
    let n = row.len().min(w.len());
    let v = _mm512_set1_ps(value);
    let mut i = 0;
    while i + 16 <= n {
        let acc = _mm512_loadu_ps(row.as_ptr().add(i));
        let wk = _mm512_loadu_ps(w.as_ptr().add(i));
        _mm512_storeu_ps(
            row.as_mut_ptr().add(i),
            _mm512_add_ps(acc, _mm512_mul_ps(v, wk)),
        );
        i += 16;
    }
    accumulate_f32(&mut row[i..n], value, &w[i..n]);
}

/// [`accumulate_f32`], 8 lanes at a time.
///
/// # Safety
/// AVX must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn accumulate_f32_avx2(row: &mut [f32], value: f32, w: &[f32]) {
    use std::arch::x86_64::*;
    let n = row.len().min(w.len());
    let v = _mm256_set1_ps(value);
    let mut i = 0;
    while i + 8 <= n {
        let acc = _mm256_loadu_ps(row.as_ptr().add(i));
        let wk = _mm256_loadu_ps(w.as_ptr().add(i));
        _mm256_storeu_ps(
            row.as_mut_ptr().add(i),
            _mm256_add_ps(acc, _mm256_mul_ps(v, wk)),
        );
        i += 8;
    }
    accumulate_f32(&mut row[i..n], value, &w[i..n]);
}

/// Hints the cache lines of `weights[start..start + len]`.
#[inline]
fn prefetch_row(weights: &[f32], start: usize, len: usize) {
    let end = (start + len).min(weights.len());
    for at in (start..end).step_by(16) {
        crate::prefetch(&weights[at]); // one 64-byte line per 16 floats
    }
}

/// ReLU, then L2-normalise each row in place.
pub fn relu_normalize_rows(mat: &mut [f32], dim: usize) {
    mat.iter_mut().for_each(|x| *x = x.max(0.0));
    normalize_rows(mat, dim);
}

fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut dst = vec![0.0f32; src.len()];
    const BLOCK: usize = 64;
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in c0..(c0 + BLOCK).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(out_dim: usize, in_dim: usize, w: &[f32]) -> DenseLayer {
        DenseLayer {
            out_dim,
            in_dim,
            weights_out_in: w.to_vec(),
        }
    }

    #[test]
    fn two_layer_network_by_hand() {
        // W0: [3 out, 4 in]; W1: [2 out, 3 in].
        let w0 = [1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.0];
        let w1 = [1.0, 1.0, 0.0, 0.0, -1.0, 1.0];
        let net = Network::from_layers(vec![layer(3, 4, &w0), layer(2, 3, &w1)]).unwrap();
        assert_eq!(net.layer_dims(), vec![4, 3, 2]);
        // features: idx 0 value 0.6, idx 2 value 0.8
        let mut hidden = vec![0.0; 3];
        net.first_layer(&[0, 2], &[0.6, 0.8], &mut hidden);
        // column 0 = (1, 0, -1), column 2 = (2, 0, 0) -> (0.6 + 1.6, 0, -0.6)
        assert!((hidden[0] - 2.2).abs() < 1e-6 && hidden[1] == 0.0);
        assert!((hidden[2] + 0.6).abs() < 1e-6);
        let mut scratch = vec![0.0; 3];
        let mut out = vec![0.0; 2];
        assert_eq!(net.max_hidden_dim(), 3);
        net.forward_dense(1, &mut hidden, &mut scratch, &mut out);
        // relu -> (2.2, 0, 0) -> normalise (1, 0, 0) -> W1 -> (1, 0) -> normalise (1, 0)
        assert_eq!(out, vec![1.0, 0.0]);
    }

    /// Straightforward forward pass over a batch, for comparison.
    fn naive_forward(layers: &[DenseLayer], input: &[f32]) -> Vec<f32> {
        let mut x = input.to_vec();
        for (li, l) in layers.iter().enumerate() {
            let mut y: Vec<f32> = (0..l.out_dim)
                .map(|o| {
                    (0..l.in_dim)
                        .map(|i| l.weights_out_in[o * l.in_dim + i] * x[i])
                        .sum()
                })
                .collect();
            if li + 1 < layers.len() {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let n: f32 = y.iter().map(|v| v * v).sum::<f32>().sqrt();
            if n > 0.0 {
                y.iter_mut().for_each(|v| *v /= n);
            }
            x = y;
        }
        x
    }

    #[test]
    fn deep_network_with_varying_widths_matches_naive() {
        let dims = [6usize, 4, 9, 3, 5];
        let layers: Vec<DenseLayer> = dims
            .windows(2)
            .enumerate()
            .map(|(li, w)| {
                let vals = (0..w[0] * w[1])
                    .map(|i| (((i * 7 + li * 3) % 11) as f32 - 4.0) / 5.0)
                    .collect::<Vec<_>>();
                layer(w[1], w[0], &vals)
            })
            .collect();
        let net = Network::from_layers(layers.clone()).unwrap();
        let docs: [&[(u32, f32)]; 3] = [
            &[(0, 1.0)],
            &[(1, 0.6), (5, 0.8)],
            &[(2, 0.5), (3, 0.5), (4, 0.7)],
        ];
        let n = docs.len();
        let mut hidden = vec![0.0; n * net.max_hidden_dim()];
        for (r, doc) in docs.iter().enumerate() {
            let (idx, val): (Vec<u32>, Vec<f32>) = doc.iter().copied().unzip();
            net.first_layer(&idx, &val, &mut hidden[r * 4..(r + 1) * 4]);
        }
        let mut scratch = vec![0.0; n * net.max_hidden_dim()];
        let mut out = vec![0.0; n * 5];
        net.forward_dense(n, &mut hidden, &mut scratch, &mut out);
        for (r, doc) in docs.iter().enumerate() {
            let mut x = vec![0.0; 6];
            doc.iter().for_each(|&(i, v)| x[i as usize] = v);
            let want = naive_forward(&layers, &x);
            for (a, b) in out[r * 5..(r + 1) * 5].iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "row {r}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn int8_hidden_layers_track_float32_and_the_output_layer_stays_exact() {
        // 4 -> 64 -> 48 -> 8 with an output layer that subtracts the mean of its input (a
        // whitening-like transform that cancels a large common component).
        let dims = [4usize, 64, 48, 8];
        let mut layers: Vec<DenseLayer> = dims
            .windows(2)
            .enumerate()
            .map(|(li, w)| {
                let vals = (0..w[0] * w[1])
                    .map(|i| ((((i * 7919 + li * 31) % 101) as f32) - 50.0) / 50.0)
                    .collect::<Vec<_>>();
                layer(w[1], w[0], &vals)
            })
            .collect();
        let (k, m) = (48, 8);
        let out = &mut layers[2].weights_out_in;
        for o in 0..m {
            let mean: f32 = (0..k).map(|i| out[o * k + i]).sum::<f32>() / k as f32;
            (0..k).for_each(|i| out[o * k + i] += 3.0 - mean);
        }
        let exact = Network::from_layers(layers.clone()).unwrap();
        let mut int8 = exact.clone();
        int8.set_precision(Precision::Int8);
        assert_eq!(int8.precision(), Precision::Int8);
        assert!(matches!(&int8.reduced, Reduced::Int8(q) if q.len() == 1)); // hidden layer only
        let run = |net: &Network, x: &[f32]| {
            let mut h = vec![0.0; 64];
            let idx: Vec<u32> = (0..4).collect();
            net.first_layer(&idx, x, &mut h);
            let mut s = vec![0.0; 64];
            let mut o = vec![0.0; 8];
            net.forward_dense(1, &mut h, &mut s, &mut o);
            o
        };
        for x in [
            [1.0, 0.0, 0.0, 0.0],
            [0.5, 0.5, 0.5, 0.5],
            [0.1, 0.9, 0.3, 0.2],
        ] {
            let (a, b) = (run(&exact, &x), run(&int8, &x));
            let want = naive_forward(&layers, &x);
            for (a, w) in a.iter().zip(&want) {
                assert!((a - w).abs() < 1e-5, "exact path: {a} vs {w}");
            }
            let cos: f32 = b.iter().zip(&want).map(|(x, y)| x * y).sum();
            assert!(cos > 0.999, "{x:?}: int8 cosine {cos}");
        }
    }

    #[test]
    fn float16_table_gathers_like_float32_on_float16_values_and_rounds_others() {
        // dims not a multiple of 8 (the F16C loop's tail) and an odd table length.
        for (vocab, d) in [(37usize, 19usize), (50, 96), (7, 3)] {
            let mut x = 0x9E37_79B9u32;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            };
            let w: Vec<f32> = (0..vocab * d).map(|_| next()).collect();
            let w16: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
            let indices: Vec<u32> = (0..vocab as u32)
                .rev()
                .step_by(2)
                .chain([0, 0, 3])
                .collect();
            let values: Vec<f32> = indices.iter().map(|&i| 0.1 + i as f32 / 7.0).collect();
            let gather = |weights: &[f32], table: TableDtype| {
                let mut net = Network::from_layers(vec![
                    layer(d, vocab, weights),
                    layer(2, d, &vec![0.5; 2 * d]),
                ])
                .unwrap();
                net.set_table_dtype(table).unwrap();
                assert_eq!(net.table_dtype(), table);
                let mut row = vec![f32::NAN; d];
                net.first_layer(&indices, &values, &mut row);
                (row, net)
            };
            // float16-representable weights: bit for bit the float32 table's sums.
            let (want, _) = gather(&w16, TableDtype::Float32);
            let (got, net16) = gather(&w16, TableDtype::Float16);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{vocab}x{d}"
            );
            // The table's values round-trip (the file's orientation, widened).
            assert_eq!(net16.layers_out_in()[0].weights_out_in, w16);
            // Arbitrary weights: rounded to float16 (relative error <= 2^-11 per weight).
            let (exact, _) = gather(&w, TableDtype::Float32);
            let (rounded, _) = gather(&w, TableDtype::Float16);
            let bound: f32 = values.iter().sum::<f32>() * 2f32.powi(-11) + 1e-5;
            for (a, b) in rounded.iter().zip(&exact) {
                assert!((a - b).abs() <= bound, "{vocab}x{d}: {a} vs {b}");
            }
        }
        // Weights beyond float16's range are refused, naming the layer.
        let mut net = Network::from_layers(vec![layer(2, 2, &[1.0, 7.0e4, 0.0, 1.0])]).unwrap();
        let err = net
            .set_table_dtype(TableDtype::Float16)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nn_layer_0") && err.contains("float16"),
            "{err}"
        );
        assert_eq!(net.table_dtype(), TableDtype::Float32);
    }

    #[test]
    fn zero_rows_stay_zero_and_norms_are_one() {
        let mut m = vec![0.0, 0.0, 3.0, -4.0, -1.0, -2.0];
        relu_normalize_rows(&mut m, 2);
        assert_eq!(m, vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        let mut m = vec![3.0, 4.0];
        normalize_rows(&mut m, 2);
        assert!((m[0] - 0.6).abs() < 1e-7 && (m[1] - 0.8).abs() < 1e-7);
    }

    #[test]
    fn layers_that_do_not_chain_are_rejected() {
        let err = Network::from_layers(vec![layer(3, 4, &[0.0; 12]), layer(2, 5, &[0.0; 10])])
            .unwrap_err();
        assert!(err.to_string().contains("do not chain"), "{err}");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_gather_width_computes_the_same_bits() {
        // Rows of every length up to 70 (vector bodies and tails) and 96, values and
        // weights of mixed sign and magnitude, 50 rows summed into one accumulator.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
        };
        let avx512 = is_x86_feature_detected!("avx512f");
        let avx = is_x86_feature_detected!("avx");
        for d in (1..=70).chain([96]) {
            let rows: Vec<(f32, Vec<f32>)> = (0..50)
                .map(|_| (next(), (0..d).map(|_| next()).collect()))
                .collect();
            let mut want = vec![0.0f32; d];
            for (value, w) in &rows {
                accumulate_f32(&mut want, *value, w);
            }
            let mut got512 = vec![0.0f32; d];
            let mut got256 = vec![0.0f32; d];
            for (value, w) in &rows {
                // SAFETY: each runs only where its feature was detected.
                unsafe {
                    if avx512 {
                        accumulate_f32_avx512(&mut got512, *value, w);
                    }
                    if avx {
                        accumulate_f32_avx2(&mut got256, *value, w);
                    }
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            if avx512 {
                assert_eq!(bits(&got512), bits(&want), "avx512, d = {d}");
            }
            if avx {
                assert_eq!(bits(&got256), bits(&want), "avx, d = {d}");
            }
        }
    }

    #[test]
    fn transpose_round_trip() {
        let src: Vec<f32> = (0..(70 * 130)).map(|i| i as f32).collect();
        let t = transpose(&src, 70, 130);
        assert_eq!(t[5 * 70 + 3], src[3 * 130 + 5]);
        assert_eq!(transpose(&t, 130, 70), src);
    }
}
