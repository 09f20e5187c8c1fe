//! `#[pyclass] Head` / `Heads`: heads applied in the embedding pass (`luxical_core::heads`).

use std::sync::Arc;

use luxical_core::heads::{Activation, Head as CoreHead, Heads as CoreHeads};
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;

use crate::errors::to_pyerr;

/// One head (native). Build heads with `luxical.heads`, which wraps these.
#[pyclass(module = "luxical._luxical", frozen)]
pub struct Head {
    pub(crate) inner: CoreHead,
}

#[pymethods]
impl Head {
    /// An MLP head (a linear head is one layer): `layers` are `(out_dim, in_dim, weights
    /// [out*in] float32, bias [out] float32)` in order, ReLU between them; `activation`:
    /// "none", "sigmoid" or "softmax" after the last.
    #[staticmethod]
    fn mlp(
        py: Python<'_>,
        layers: Vec<(
            usize,
            usize,
            PyReadonlyArray1<'_, f32>,
            PyReadonlyArray1<'_, f32>,
        )>,
        activation: &str,
    ) -> PyResult<Self> {
        let activation = Activation::parse(activation).map_err(|e| to_pyerr(py, e))?;
        let views = layers
            .iter()
            .map(|(o, i, w, b)| Ok((w.as_slice()?, b.as_slice()?, *o, *i)))
            .collect::<PyResult<Vec<_>>>()?;
        let inner = CoreHead::mlp(&views, activation).map_err(|e| to_pyerr(py, e))?;
        Ok(Self { inner })
    }

    /// A centroid head: `centroids` `[k*dim]` float32 (no zero row), optional fine →
    /// coarse map `[k]` uint32. Outputs: nearest id, its cosine, [coarse id].
    #[staticmethod]
    #[pyo3(signature = (centroids, k, dim, coarse=None))]
    fn centroid(
        py: Python<'_>,
        centroids: PyReadonlyArray1<'_, f32>,
        k: usize,
        dim: usize,
        coarse: Option<PyReadonlyArray1<'_, u32>>,
    ) -> PyResult<Self> {
        let coarse = coarse
            .map(|c| c.as_slice().map(<[u32]>::to_vec))
            .transpose()?;
        let inner = CoreHead::centroid(centroids.as_slice()?, k, dim, coarse)
            .map_err(|e| to_pyerr(py, e))?;
        Ok(Self { inner })
    }

    /// Embedding dimension the head reads.
    #[getter]
    fn in_dim(&self) -> usize {
        self.inner.in_dim()
    }

    /// Output columns the head writes.
    #[getter]
    fn n_outputs(&self) -> usize {
        self.inner.n_outputs()
    }
}

/// Heads applied together, their output columns side by side (native).
#[pyclass(module = "luxical._luxical", frozen)]
pub struct Heads {
    pub(crate) inner: Arc<CoreHeads>,
}

#[pymethods]
impl Heads {
    #[new]
    fn new(py: Python<'_>, heads: Vec<PyRef<'_, Head>>) -> PyResult<Self> {
        let heads = heads.iter().map(|h| h.inner.clone()).collect();
        let inner = CoreHeads::new(heads).map_err(|e| to_pyerr(py, e))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Embedding dimension every head reads (0 without heads).
    #[getter]
    fn in_dim(&self) -> usize {
        self.inner.in_dim()
    }

    /// Output columns of all heads together.
    #[getter]
    fn n_outputs(&self) -> usize {
        self.inner.n_outputs()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}
