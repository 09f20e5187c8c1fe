//! The sparse-to-dense network: a gather-accumulate first layer over the TF-IDF features,
//! then dense layers through GEMM, with ReLU + L2-normalisation between layers and an
//! L2-normalised output.

use crate::error::{Error, Result};
use crate::gemm::{PackedF32, PackedI8};
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
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Exact => "float32",
            Precision::Int8 => "int8",
        }
    }
}

/// The network. The first layer is kept transposed (`[vocab, dim0]`, one contiguous row
/// per feature) so the sparse product is a gather of rows; the dense layers are packed for
/// `gemm` once, at load.
#[derive(Debug, Clone)]
pub struct Network {
    vocab_size: usize,
    first_dim: usize,
    first_in_out: SharedF32,
    dense: Vec<PackedF32>,
    /// The hidden dense layers quantised (all but the output layer), when
    /// `Precision::Int8` was chosen.
    dense_int8: Option<Vec<PackedI8>>,
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
            dense,
        )
    }

    /// Builds the network from a transposed first layer (`[vocab_size, first_dim]`) and
    /// packed dense layers.
    pub fn from_parts(
        vocab_size: usize,
        first_dim: usize,
        first_in_out: SharedF32,
        dense: Vec<PackedF32>,
    ) -> Result<Self> {
        if first_in_out.len() != vocab_size * first_dim {
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
            dense,
            dense_int8: None,
        })
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
        self.dense_int8 = match precision {
            Precision::Exact => None,
            // The output layer stays float32: it is small next to the hidden layers, and it
            // may carry a post-processing transform (e.g. whitening) that cancels a large
            // common component of its input, where 7-bit activations lose the small rest.
            Precision::Int8 => Some(
                self.dense
                    .iter()
                    .take(self.dense.len().saturating_sub(1))
                    .map(|l| PackedI8::quantize(&l.unpack(), l.out_dim, l.in_dim))
                    .collect(),
            ),
        };
    }

    pub fn precision(&self) -> Precision {
        if self.dense_int8.is_some() {
            Precision::Int8
        } else {
            Precision::Exact
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
            weights_out_in: transpose(&self.first_in_out, self.vocab_size, self.first_dim),
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
        let weights: &[f32] = &self.first_in_out;
        for (j, (&idx, &value)) in indices.iter().zip(values).enumerate() {
            // The rows are scattered over a table far larger than the caches: ask for the
            // row a few features ahead so that its misses overlap this row's work.
            if let Some(&ahead) = indices.get(j + FIRST_LAYER_AHEAD) {
                prefetch_row(weights, ahead as usize * d, d);
            }
            let w = &weights[idx as usize * d..(idx as usize + 1) * d];
            for (acc, &wk) in row.iter_mut().zip(w) {
                *acc += value * wk;
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
        for (i, layer) in self.dense.iter().enumerate() {
            let target: &mut [f32] = if i == last {
                &mut *out
            } else {
                &mut dst[..n_rows * layer.out_dim]
            };
            let input = &src[..n_rows * cur_dim];
            match self.dense_int8.as_ref().and_then(|q| q.get(i)) {
                Some(int8) => int8.matmul(input, n_rows, target, &mut quantized),
                None => layer.matmul(input, n_rows, target),
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
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// How many features ahead `first_layer` prefetches.
const FIRST_LAYER_AHEAD: usize = 4;

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
        assert_eq!(int8.dense_int8.as_ref().unwrap().len(), 1); // hidden layer only
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

    #[test]
    fn transpose_round_trip() {
        let src: Vec<f32> = (0..(70 * 130)).map(|i| i as f32).collect();
        let t = transpose(&src, 70, 130);
        assert_eq!(t[5 * 70 + 3], src[3 * 130 + 5]);
        assert_eq!(transpose(&t, 130, 70), src);
    }
}
