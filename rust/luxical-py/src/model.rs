//! `#[pyclass] Model` wrapping `luxical_core::Model`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use luxical_core::mlp::{Precision, TableDtype};
use luxical_core::model::{HeadOut, LoadOptions};
use luxical_core::tokenize::DEFAULT_MAX_TOKENS;
use luxical_core::{Error, Model as CoreModel, RunOptions};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::errors::{emit_warnings, panic_to_pyerr, to_pyerr};
use crate::heads::Heads;

fn parse_precision(name: &str) -> PyResult<Precision> {
    match name {
        "float32" => Ok(Precision::Exact),
        "int8" => Ok(Precision::Int8),
        "bfloat16" => Ok(Precision::Bf16),
        other => Err(PyValueError::new_err(format!(
            "precision must be \"float32\", \"int8\" or \"bfloat16\", got {other:?}"
        ))),
    }
}

fn parse_table_dtype(name: Option<&str>) -> PyResult<Option<TableDtype>> {
    match name {
        None => Ok(None),
        Some("float32") => Ok(Some(TableDtype::Float32)),
        Some("float16") => Ok(Some(TableDtype::Float16)),
        Some(other) => Err(PyValueError::new_err(format!(
            "first_layer_dtype must be None, \"float32\" or \"float16\", got {other:?}"
        ))),
    }
}

/// Runs `f` without the GIL; a core error or a panic becomes a Python exception, and the
/// warnings it queued become Python warnings.
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    what: &str,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> PyResult<T> {
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    emit_warnings(py)?;
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(to_pyerr(py, err)),
        Err(payload) => Err(panic_to_pyerr(py, what, payload)),
    }
}

/// Below this many bytes of text a batch runs inline (it ends within ~0.1 s anyway).
const INTERRUPT_CHECK_BYTES: usize = 1 << 19;

/// How often a long batch checks for Ctrl-C (and other Python signals).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Like [`detached`], but a long batch stays responsive to Ctrl-C: the work runs on a
/// helper thread while this (Python) thread waits without the GIL and runs Python's
/// signal handlers every [`SIGNAL_POLL`]. When one raises (KeyboardInterrupt), the batch
/// is cancelled (the workers stop between documents) and that exception is returned.
/// `f` gets the batch's options: `num_threads`, `max_tokens`, and the cancel flag.
pub(crate) fn interruptible<T: Send>(
    py: Python<'_>,
    what: &str,
    texts: &[&str],
    num_threads: Option<usize>,
    max_tokens: Option<usize>,
    f: impl FnOnce(&RunOptions<'_>) -> Result<T, Error> + Send,
) -> PyResult<T> {
    let opts = RunOptions {
        num_threads,
        max_tokens,
        cancel: None,
    };
    if texts.iter().map(|t| t.len()).sum::<usize>() < INTERRUPT_CHECK_BYTES {
        return detached(py, what, || f(&opts));
    }
    let cancel = AtomicBool::new(false);
    let opts = RunOptions {
        cancel: Some(&cancel),
        ..opts
    };
    let done = (Mutex::new(false), Condvar::new());
    let outcome = std::thread::scope(|scope| {
        let (opts, done) = (&opts, &done);
        let worker = scope.spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| f(opts)));
            *done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            done.1.notify_all();
            result
        });
        loop {
            let finished = py.detach(|| {
                let guard = done.0.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = done
                    .1
                    .wait_timeout_while(guard, SIGNAL_POLL, |finished| !*finished)
                    .unwrap_or_else(|e| e.into_inner());
                *guard
            });
            if finished {
                return Ok(worker.join().expect("the worker catches its panics"));
            }
            if let Err(signal) = py.check_signals() {
                cancel.store(true, Ordering::Relaxed);
                let _ = py.detach(|| worker.join());
                return Err(signal);
            }
        }
    })?;
    emit_warnings(py)?;
    match outcome {
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

/// `heads` and `head_out` come together or not at all.
fn pair_heads<'a, 'py>(
    heads: &'a Option<PyRef<'py, Heads>>,
    head_out: Option<PyReadwriteArray2<'py, f32>>,
) -> PyResult<Option<(&'a Heads, PyReadwriteArray2<'py, f32>)>> {
    match (heads, head_out) {
        (Some(h), Some(o)) => Ok(Some((&**h, o))),
        (None, None) => Ok(None),
        _ => Err(PyValueError::new_err(
            "heads and head_out must be given together",
        )),
    }
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
    max_tokens: Option<usize>,
) -> PyResult<TokenArrays<'py>> {
    let strings = collect_strings(texts)?;
    let views = utf8_views(&strings)?;
    let docs = interruptible(py, "tokenizing", &views, num_threads, max_tokens, |o| {
        tokenizer.encode_batch(&views, o)
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
    max_tokens: Option<usize>,
) -> PyResult<CsrArrays<'py>> {
    let strings = collect_strings(texts)?;
    let views = utf8_views(&strings)?;
    let csr = interruptible(
        py,
        "computing TF-IDF",
        &views,
        num_threads,
        max_tokens,
        |o| featurizer.tfidf(&views, o),
    )?;
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

impl Model {
    fn embed_views(
        &self,
        py: Python<'_>,
        views: &[&str],
        out: &mut [f32],
        num_threads: Option<usize>,
        max_tokens: Option<usize>,
        heads: Option<(&Heads, PyReadwriteArray2<'_, f32>)>,
        head_start: usize,
    ) -> PyResult<()> {
        match heads {
            None => interruptible(py, "embedding", views, num_threads, max_tokens, |o| {
                self.inner.embed_into(views, out, o)
            }),
            Some((heads, mut head_out)) => {
                let cols = heads.inner.n_outputs();
                let shape = head_out.shape().to_vec();
                if shape[0] != cols
                    || head_start + views.len() > shape[1]
                    || !head_out.is_c_contiguous()
                {
                    return Err(PyValueError::new_err(format!(
                        "head_out must be a C-contiguous float32 array of {cols} rows with room for {} texts from column {head_start}, got shape {shape:?}",
                        views.len(),
                    )));
                }
                let head_out = HeadOut {
                    data: head_out.as_slice_mut()?,
                    stride: shape[1],
                    start: head_start,
                };
                let core_heads = &*heads.inner;
                interruptible(py, "embedding", views, num_threads, max_tokens, |o| {
                    self.inner
                        .embed_with_heads_into(views, out, Some((core_heads, head_out)), o)
                })
            }
        }
    }
}

#[pymethods]
impl Model {
    /// Loads a model file (reference `.npz`, format v1); `weight_cache`: directory of
    /// memory-mapped weight-cache files (None: private memory); `precision`: "float32" or
    /// "int8" (dense layers); `first_layer_dtype`: storage of the first layer's table,
    /// "float32", "float16" or None (as the file stores it).
    #[staticmethod]
    #[pyo3(signature = (path, weight_cache=None, precision="float32", first_layer_dtype=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        weight_cache: Option<PathBuf>,
        precision: &str,
        first_layer_dtype: Option<&str>,
    ) -> PyResult<Self> {
        let opts = LoadOptions {
            weight_cache,
            precision: parse_precision(precision)?,
            table: parse_table_dtype(first_layer_dtype)?,
        };
        let inner = detached(py, "loading a model", || CoreModel::load_with(&path, &opts))?;
        Ok(Self { inner })
    }

    /// This model computing its dense layers in `precision` (shares the weights).
    fn with_precision(&self, precision: &str) -> PyResult<Self> {
        Ok(Self {
            inner: self.inner.with_precision(parse_precision(precision)?),
        })
    }

    /// Arithmetic of the dense layers: "float32" or "int8".
    #[getter]
    fn precision(&self) -> &'static str {
        self.inner.precision().name()
    }

    /// This model with its first layer's table stored as `first_layer_dtype` ("float32" or
    /// "float16"; converted into private memory).
    fn with_first_layer_dtype(&self, py: Python<'_>, first_layer_dtype: &str) -> PyResult<Self> {
        let table = parse_table_dtype(Some(first_layer_dtype))?.expect("Some in, Some out");
        let inner = detached(py, "converting the first layer", || {
            self.inner.with_table_dtype(table)
        })?;
        Ok(Self { inner })
    }

    /// Storage of the first layer's table in memory: "float32" or "float16".
    #[getter]
    fn first_layer_dtype(&self) -> &'static str {
        self.inner.table_dtype().name()
    }

    /// Whether the weights are memory-mapped from a weight-cache file (shared between
    /// processes).
    #[getter]
    fn weights_mapped(&self) -> bool {
        self.inner.weights_mapped()
    }

    /// Fingerprint of the file or bytes the model was loaded from (16 hex digits), None for
    /// a model built from its parts.
    #[getter]
    fn fingerprint(&self) -> Option<String> {
        self.inner.fingerprint().map(|f| format!("{f:016x}"))
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

    /// Embeds a list of str into `out` (shape (n, dim), float32, C-contiguous); with
    /// `heads`, also writes their outputs into `head_out` (shape (heads.n_outputs, N),
    /// float32, C-contiguous: one row per output column), at columns `head_start..head_start
    /// + n` of each row.
    #[pyo3(signature = (texts, out, num_threads=None, max_tokens=Some(DEFAULT_MAX_TOKENS), heads=None, head_out=None, head_start=0))]
    #[allow(clippy::too_many_arguments)]
    fn embed(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyList>,
        mut out: PyReadwriteArray2<'_, f32>,
        num_threads: Option<usize>,
        max_tokens: Option<usize>,
        heads: Option<PyRef<'_, Heads>>,
        head_out: Option<PyReadwriteArray2<'_, f32>>,
        head_start: usize,
    ) -> PyResult<()> {
        let strings = collect_strings(texts)?;
        let views = utf8_views(&strings)?;
        check_out(&out, views.len(), self.inner.dim())?;
        let heads = pair_heads(&heads, head_out)?;
        let out = out.as_slice_mut()?;
        self.embed_views(py, &views, out, num_threads, max_tokens, heads, head_start)
    }

    /// Embeds Arrow-layout UTF-8 strings (`data`, `offsets` of n+1 entries) into `out`
    /// (and the heads' outputs into `head_out`, as `embed`).
    #[pyo3(signature = (data, offsets, out, num_threads=None, max_tokens=Some(DEFAULT_MAX_TOKENS), heads=None, head_out=None, head_start=0))]
    #[allow(clippy::too_many_arguments)]
    fn embed_utf8(
        &self,
        py: Python<'_>,
        data: PyReadonlyArray1<'_, u8>,
        offsets: PyReadonlyArray1<'_, i64>,
        mut out: PyReadwriteArray2<'_, f32>,
        num_threads: Option<usize>,
        max_tokens: Option<usize>,
        heads: Option<PyRef<'_, Heads>>,
        head_out: Option<PyReadwriteArray2<'_, f32>>,
        head_start: usize,
    ) -> PyResult<()> {
        let views = arrow_views(data.as_slice()?, offsets.as_slice()?)?;
        check_out(&out, views.len(), self.inner.dim())?;
        let heads = pair_heads(&heads, head_out)?;
        let out = out.as_slice_mut()?;
        self.embed_views(py, &views, out, num_threads, max_tokens, heads, head_start)
    }

    /// Token ids of each text: (ids uint32, offsets int64 of n+1 entries).
    #[pyo3(signature = (texts, num_threads=None, max_tokens=Some(DEFAULT_MAX_TOKENS)))]
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyList>,
        num_threads: Option<usize>,
        max_tokens: Option<usize>,
    ) -> PyResult<TokenArrays<'py>> {
        tokenize_arrays(py, self.inner.tokenizer(), texts, num_threads, max_tokens)
    }

    /// L2-normalised TF-IDF rows as CSR arrays (indptr int64, indices uint32, data float32).
    #[pyo3(signature = (texts, num_threads=None, max_tokens=Some(DEFAULT_MAX_TOKENS)))]
    #[allow(clippy::type_complexity)]
    fn tfidf<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyList>,
        num_threads: Option<usize>,
        max_tokens: Option<usize>,
    ) -> PyResult<CsrArrays<'py>> {
        tfidf_arrays(py, self.inner.featurizer(), texts, num_threads, max_tokens)
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
/// RAYON_NUM_THREADS (each: a positive integer, else not set), else the number of cores;
/// at most `threads::max_threads()` (a `LuxicalWarning` says when that cap applies).
#[pyfunction]
#[pyo3(signature = (num_threads=None))]
pub fn resolve_num_threads(py: Python<'_>, num_threads: Option<usize>) -> PyResult<usize> {
    let n = luxical_core::threads::resolve_num_threads(num_threads).map_err(|e| to_pyerr(py, e));
    emit_warnings(py)?;
    n
}

/// Whether boolean environment variable `name` is true (`1 true yes on y t`; `0 false no
/// off n f`, empty or unset are false; anything else is false with a `LuxicalWarning`):
/// the one parser of luxical's boolean settings.
#[pyfunction]
pub fn env_flag(py: Python<'_>, name: &str) -> PyResult<bool> {
    let value = luxical_core::settings::env_flag(name);
    emit_warnings(py)?;
    Ok(value)
}

/// Fingerprint (16 hex digits) of the model file at `path`, from its zip directory only.
#[pyfunction]
pub fn file_fingerprint(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    let f = detached(py, "fingerprinting a model file", || {
        luxical_core::format::file_fingerprint(&path)
    })?;
    Ok(format!("{f:016x}"))
}

/// Removes the weight-cache files of `dir` (unlinks them; see `weights::clear_cache`);
/// returns how many were removed.
#[pyfunction]
pub fn clear_weight_cache(py: Python<'_>, dir: PathBuf) -> PyResult<usize> {
    detached(py, "clearing the weight cache", || {
        luxical_core::weights::clear_cache(&dir).map_err(|source| Error::Io {
            action: "cannot clear the weight cache",
            path: dir.clone(),
            source,
        })
    })
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
