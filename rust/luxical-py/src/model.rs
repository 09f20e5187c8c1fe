//! `#[pyclass] Model` wrapping `luxical_core::Model`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use luxical_core::{Error, Model as CoreModel};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::errors::{panic_to_pyerr, to_pyerr};

/// Runs `f` without the GIL; a core error or a panic becomes a Python exception.
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    what: &str,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(to_pyerr(py, err)),
        Err(payload) => Err(panic_to_pyerr(py, what, payload)),
    }
}

/// Strong references to the texts of a list, so their UTF-8 buffers outlive the GIL
/// release even if another thread mutates the list meanwhile.
pub(crate) fn collect_strings<'py>(
    texts: &Bound<'py, PyList>,
) -> PyResult<Vec<Bound<'py, PyString>>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.cast_into::<PyString>().map_err(|e| {
                let found = e.into_inner();
                if found.is_none() {
                    return PyTypeError::new_err(format!("texts[{i}] is None, expected str"));
                }
                let type_name = found
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into());
                PyTypeError::new_err(format!("texts[{i}] is {type_name}, expected str"))
            })
        })
        .collect()
}

pub(crate) fn utf8_views<'a>(strings: &'a [Bound<'_, PyString>]) -> PyResult<Vec<&'a str>> {
    strings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.to_str().map_err(|_| {
                PyValueError::new_err(format!(
                    "texts[{i}] is not valid Unicode (it contains a lone surrogate); \
                     clean it, e.g. s.encode('utf-8', 'replace').decode()"
                ))
            })
        })
        .collect()
}

/// Splits Arrow-style UTF-8 data at `offsets` into string views, validating UTF-8.
fn arrow_views<'a>(data: &'a [u8], offsets: &[i64]) -> PyResult<Vec<&'a str>> {
    offsets
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let (start, end) = (w[0], w[1]);
            if start < 0 || end < start || end as usize > data.len() {
                return Err(PyValueError::new_err(format!(
                    "texts[{i}]: offsets [{start}, {end}) out of bounds of {} data bytes",
                    data.len()
                )));
            }
            std::str::from_utf8(&data[start as usize..end as usize])
                .map_err(|e| PyValueError::new_err(format!("texts[{i}] is not valid UTF-8: {e}")))
        })
        .collect()
}

fn check_out(out: &PyReadwriteArray2<'_, f32>, n: usize, dim: usize) -> PyResult<()> {
    if out.shape() != [n, dim] || !out.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "out must be a C-contiguous float32 array of shape ({n}, {dim}), got shape {:?}",
            out.shape()
        )));
    }
    Ok(())
}

/// TF-IDF rows as CSR arrays: (indptr int64, indices uint32, data float32).
pub(crate) type CsrArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<f32>>,
);

/// Token ids as (ids uint32, offsets int64 of n+1 entries).
pub(crate) type TokenArrays<'py> = (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<i64>>);

/// Shared by `Model.tokenize` and `Tokenizer.tokenize`.
pub(crate) fn tokenize_arrays<'py>(
    py: Python<'py>,
    tokenizer: &luxical_core::tokenize::TextTokenizer,
    texts: &Bound<'py, PyList>,
    num_threads: Option<usize>,
) -> PyResult<TokenArrays<'py>> {
    let strings = collect_strings(texts)?;
    let views = utf8_views(&strings)?;
    let docs = detached(py, "tokenizing", || {
        tokenizer.encode_batch(&views, num_threads)
    })?;
    let (ids, offsets) = luxical_core::tokenize::concat_ids(docs);
    Ok((ids.into_pyarray(py), offsets.into_pyarray(py)))
}

/// Shared by `Model.tfidf` and `Featurizer.tfidf`.
pub(crate) fn tfidf_arrays<'py>(
    py: Python<'py>,
    featurizer: &luxical_core::Featurizer,
    texts: &Bound<'py, PyList>,
    num_threads: Option<usize>,
) -> PyResult<CsrArrays<'py>> {
    let strings = collect_strings(texts)?;
    let views = utf8_views(&strings)?;
    let csr = detached(py, "computing TF-IDF", || {
        featurizer.tfidf(&views, num_threads)
    })?;
    Ok((
        csr.indptr.into_pyarray(py),
        csr.indices.into_pyarray(py),
        csr.data.into_pyarray(py),
    ))
}

/// A loaded Luxical model (native). Use `luxical.Embedder`, which wraps it.
#[pyclass(module = "luxical._luxical", frozen)]
pub struct Model {
    inner: CoreModel,
}

#[pymethods]
impl Model {
    /// Loads a model file (reference `.npz`, format v1).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = detached(py, "loading a model", || CoreModel::load(&path))?;
        Ok(Self { inner })
    }

    /// Loads a model from the bytes of a model file.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = detached(py, "loading a model", || CoreModel::from_bytes(data))?;
        Ok(Self { inner })
    }

    /// Builds a model from arrays (used by training export and tests).
    #[staticmethod]
    fn from_parts(
        py: Python<'_>,
        tokenizer_json: &str,
        ngrams: PyReadonlyArray1<'_, u32>,
        max_ngram_len: usize,
        idf: PyReadonlyArray1<'_, f32>,
        layers: Vec<(usize, usize, PyReadonlyArray1<'_, f32>)>,
    ) -> PyResult<Self> {
        let ngrams = ngrams.as_slice()?.to_vec();
        let idf = idf.as_slice()?.to_vec();
        let layers = layers
            .into_iter()
            .map(|(out_dim, in_dim, w)| {
                Ok(luxical_core::mlp::DenseLayer {
                    out_dim,
                    in_dim,
                    weights_out_in: w.as_slice()?.to_vec(),
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let inner = detached(py, "building a model", || {
            let tokenizer = luxical_core::tokenize::TextTokenizer::from_json(tokenizer_json)?;
            let vocab = luxical_core::vocab::Vocabulary::from_ngrams(ngrams, max_ngram_len)?;
            CoreModel::new(tokenizer, vocab, idf, layers)
        })?;
        Ok(Self { inner })
    }

    /// Serialises to `.npz` bytes.
    #[pyo3(signature = (writer_version, first_layer_f16=false))]
    fn to_bytes<'py>(
        &self,
        py: Python<'py>,
        writer_version: &str,
        first_layer_f16: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = detached(py, "saving a model", || {
            self.inner.to_bytes(writer_version, first_layer_f16)
        })?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Writes the model file atomically.
    #[pyo3(signature = (path, writer_version, first_layer_f16=false))]
    fn save(
        &self,
        py: Python<'_>,
        path: PathBuf,
        writer_version: &str,
        first_layer_f16: bool,
    ) -> PyResult<()> {
        detached(py, "saving a model", || {
            self.inner.save(&path, writer_version, first_layer_f16)
        })
    }

    /// Embeds a list of str into `out` (shape (n, dim), float32, C-contiguous).
    #[pyo3(signature = (texts, out, num_threads=None))]
    fn embed(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyList>,
        mut out: PyReadwriteArray2<'_, f32>,
        num_threads: Option<usize>,
    ) -> PyResult<()> {
        let strings = collect_strings(texts)?;
        let views = utf8_views(&strings)?;
        check_out(&out, views.len(), self.inner.dim())?;
        let out = out.as_slice_mut()?;
        detached(py, "embedding", || {
            self.inner.embed_into(&views, out, num_threads)
        })
    }

    /// Embeds Arrow-layout UTF-8 strings (`data`, `offsets` of n+1 entries) into `out`.
    #[pyo3(signature = (data, offsets, out, num_threads=None))]
    fn embed_utf8(
        &self,
        py: Python<'_>,
        data: PyReadonlyArray1<'_, u8>,
        offsets: PyReadonlyArray1<'_, i64>,
        mut out: PyReadwriteArray2<'_, f32>,
        num_threads: Option<usize>,
    ) -> PyResult<()> {
        let views = arrow_views(data.as_slice()?, offsets.as_slice()?)?;
        check_out(&out, views.len(), self.inner.dim())?;
        let out = out.as_slice_mut()?;
        detached(py, "embedding", || {
            self.inner.embed_into(&views, out, num_threads)
        })
    }

    /// Token ids of each text: (ids uint32, offsets int64 of n+1 entries).
    #[pyo3(signature = (texts, num_threads=None))]
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyList>,
        num_threads: Option<usize>,
    ) -> PyResult<TokenArrays<'py>> {
        tokenize_arrays(py, self.inner.tokenizer(), texts, num_threads)
    }

    /// L2-normalised TF-IDF rows as CSR arrays (indptr int64, indices uint32, data float32).
    #[pyo3(signature = (texts, num_threads=None))]
    #[allow(clippy::type_complexity)]
    fn tfidf<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyList>,
        num_threads: Option<usize>,
    ) -> PyResult<CsrArrays<'py>> {
        tfidf_arrays(py, self.inner.featurizer(), texts, num_threads)
    }

    /// Output embedding dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// Number of recognized n-grams (input features).
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab().len()
    }

    /// Longest n-gram length.
    #[getter]
    fn max_ngram_len(&self) -> usize {
        self.inner.vocab().max_ngram_len()
    }

    /// `[vocab_size, d0, ..., dim]`.
    #[getter]
    fn layer_dims(&self) -> Vec<usize> {
        self.inner.network().layer_dims()
    }

    /// The tokenizer JSON stored in the model.
    #[getter]
    fn tokenizer_json(&self) -> &str {
        self.inner.tokenizer().to_json()
    }

    /// Recognized n-grams, row-major [vocab_size, max_ngram_len] uint32 (padded u32::MAX).
    fn ngrams<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        PyArray1::from_slice(py, self.inner.vocab().ngrams())
    }

    /// IDF values, float32 [vocab_size].
    fn idf<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, self.inner.idf())
    }

    /// Layer weights as flat float32 arrays, each with its (out_dim, in_dim).
    #[allow(clippy::type_complexity)]
    fn layers<'py>(&self, py: Python<'py>) -> Vec<(usize, usize, Bound<'py, PyArray1<f32>>)> {
        self.inner
            .network()
            .layers_out_in()
            .into_iter()
            .map(|l| (l.out_dim, l.in_dim, l.weights_out_in.into_pyarray(py)))
            .collect()
    }
}

/// Threads a call would use: `num_threads`, else LUXICAL_NUM_THREADS, else
/// RAYON_NUM_THREADS, else the number of cores.
#[pyfunction]
#[pyo3(signature = (num_threads=None))]
pub fn resolve_num_threads(py: Python<'_>, num_threads: Option<usize>) -> PyResult<usize> {
    luxical_core::threads::resolve_num_threads(num_threads).map_err(|e| to_pyerr(py, e))
}

/// The format-v1 hash of an n-gram (FNV-1a over the padded u32 row), as int64.
#[pyfunction]
pub fn hash_ngram(ngram: Vec<u32>, max_ngram_len: usize) -> PyResult<i64> {
    if ngram.is_empty() || ngram.len() > max_ngram_len {
        return Err(PyValueError::new_err(format!(
            "n-gram length {} must be between 1 and max_ngram_len={max_ngram_len}",
            ngram.len()
        )));
    }
    Ok(luxical_core::ngrams::hash_ngram(&ngram, max_ngram_len) as i64)
}
