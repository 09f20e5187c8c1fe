//! Bindings used by training: `Tokenizer`, `Featurizer` (TF-IDF without a network) and
//! `SpaceSaving` (approximate n-gram counts, mergeable, serialisable).

use luxical_core::summary::SpaceSaving as CoreSummary;
use luxical_core::tokenize::{TextTokenizer, DEFAULT_MAX_TOKENS};
use luxical_core::vocab::Vocabulary;
use luxical_core::{Featurizer as CoreFeaturizer, RunOptions};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::errors::{emit_warnings, to_pyerr};
use crate::model::{
    collect_strings, detached, tfidf_arrays, tokenize_arrays, utf8_views, CsrArrays, TokenArrays,
};

/// A Hugging Face tokenizer (truncation and padding off) that returns u32 ids.
#[pyclass(module = "luxical._luxical", frozen)]
pub struct Tokenizer {
    inner: TextTokenizer,
}

#[pymethods]
impl Tokenizer {
    #[new]
    fn new(py: Python<'_>, tokenizer_json: &str) -> PyResult<Self> {
        let inner = TextTokenizer::from_json(tokenizer_json).map_err(|e| to_pyerr(py, e));
        emit_warnings(py)?;
        Ok(Self { inner: inner? })
    }

    /// Whether luxical's exact fast WordPiece path serves this tokenizer (ASCII text of
    /// BERT-style tokenizers; off with LUXICAL_NO_FAST_TOKENIZER=1).
    #[getter]
    fn fast_path(&self) -> bool {
        self.inner.has_fast_path()
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
        tokenize_arrays(py, &self.inner, texts, num_threads, max_tokens)
    }

    /// The tokenizer JSON (with truncation and padding off when they were on).
    #[getter]
    fn json(&self) -> &str {
        self.inner.to_json()
    }
}

/// Text → L2-normalised TF-IDF features over a fixed n-gram vocabulary (the runtime's
/// own code, so training features equal serving features).
#[pyclass(module = "luxical._luxical", frozen)]
pub struct Featurizer {
    inner: CoreFeaturizer,
}

#[pymethods]
impl Featurizer {
    /// `ngrams`: flat uint32 [vocab_size * max_ngram_len], padded with 2**32-1.
    #[new]
    fn new(
        py: Python<'_>,
        tokenizer_json: &str,
        ngrams: PyReadonlyArray1<'_, u32>,
        max_ngram_len: usize,
        idf: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<Self> {
        let ngrams = ngrams.as_slice()?.to_vec();
        let idf = idf.as_slice()?.to_vec();
        let inner = detached(py, "building a featurizer", || {
            let tok = TextTokenizer::from_json(tokenizer_json)?;
            let vocab = Vocabulary::from_ngrams(ngrams, max_ngram_len)?;
            CoreFeaturizer::new(tok, vocab, idf)
        })?;
        Ok(Self { inner })
    }

    /// CSR arrays (indptr int64, indices uint32, data float32) of the TF-IDF rows.
    #[pyo3(signature = (texts, num_threads=None, max_tokens=Some(DEFAULT_MAX_TOKENS)))]
    #[allow(clippy::type_complexity)]
    fn tfidf<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyList>,
        num_threads: Option<usize>,
        max_tokens: Option<usize>,
    ) -> PyResult<CsrArrays<'py>> {
        tfidf_arrays(py, &self.inner, texts, num_threads, max_tokens)
    }

    /// Number of texts each vocabulary n-gram occurs in (uint64 [vocab_size]).
    #[pyo3(signature = (texts, num_threads=None))]
    fn document_frequencies<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyList>,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let strings = collect_strings(texts)?;
        let views = utf8_views(&strings)?;
        let df = detached(py, "counting document frequencies", || {
            self.inner
                .document_frequencies(&views, &RunOptions::threads(num_threads))
        })?;
        Ok(df.into_pyarray(py))
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab().len()
    }
}

/// Space-Saving summary of n-gram counts (Metwally et al. 2005), mergeable.
#[pyclass(module = "luxical._luxical")]
pub struct SpaceSaving {
    inner: CoreSummary,
}

#[pymethods]
impl SpaceSaving {
    #[new]
    fn new(py: Python<'_>, capacity: usize, max_ngram_len: usize) -> PyResult<Self> {
        let inner = CoreSummary::new(capacity, max_ngram_len).map_err(|e| to_pyerr(py, e))?;
        Ok(Self { inner })
    }

    /// Tokenizes `texts` (in parallel) and counts their n-grams into the summary.
    #[pyo3(signature = (tokenizer, texts, num_threads=None))]
    fn update(
        &mut self,
        py: Python<'_>,
        tokenizer: &Tokenizer,
        texts: &Bound<'_, PyList>,
        num_threads: Option<usize>,
    ) -> PyResult<()> {
        let strings = collect_strings(texts)?;
        let views = utf8_views(&strings)?;
        let summary = &mut self.inner;
        detached(py, "counting n-grams", || {
            let docs = tokenizer
                .inner
                .encode_batch(&views, &RunOptions::threads(num_threads))?;
            docs.iter().for_each(|d| summary.add_document(d));
            Ok(())
        })
    }

    /// Counts already tokenized documents (ids uint32 + offsets int64).
    fn update_tokens(
        &mut self,
        py: Python<'_>,
        ids: PyReadonlyArray1<'_, u32>,
        offsets: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let ids = ids.as_slice()?;
        let offsets = offsets.as_slice()?;
        for w in offsets.windows(2) {
            if w[0] < 0 || w[1] < w[0] || w[1] as usize > ids.len() {
                return Err(PyValueError::new_err("offsets out of bounds of ids"));
            }
        }
        let summary = &mut self.inner;
        detached(py, "counting n-grams", || {
            for w in offsets.windows(2) {
                summary.add_document(&ids[w[0] as usize..w[1] as usize]);
            }
            Ok(())
        })
    }

    /// Merges another summary into this one (e.g. one per Spark/Dask partition).
    fn merge(&mut self, py: Python<'_>, other: &SpaceSaving) -> PyResult<()> {
        self.inner.merge(&other.inner).map_err(|e| to_pyerr(py, e))
    }

    /// (ngrams uint32 [k, max_ngram_len] padded, counts uint64, errors uint64), by count
    /// descending. `count - error <= true count <= count`.
    #[allow(clippy::type_complexity)]
    fn items<'py>(
        &self,
        py: Python<'py>,
    ) -> (
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<u64>>,
        Bound<'py, PyArray1<u64>>,
    ) {
        let n = self.inner.max_ngram_len();
        let items = self.inner.items();
        let mut rows = Vec::with_capacity(items.len() * n);
        let mut counts = Vec::with_capacity(items.len());
        let mut errors = Vec::with_capacity(items.len());
        for (tokens, c, e) in items {
            rows.extend_from_slice(&tokens);
            rows.extend(std::iter::repeat_n(u32::MAX, n - tokens.len()));
            counts.push(c);
            errors.push(e);
        }
        (
            rows.into_pyarray(py),
            counts.into_pyarray(py),
            errors.into_pyarray(py),
        )
    }

    #[getter]
    fn total(&self) -> u64 {
        self.inner.total()
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    #[getter]
    fn max_ngram_len(&self) -> usize {
        self.inner.max_ngram_len()
    }

    /// Upper bound on any count's overestimate.
    #[getter]
    fn error_bound(&self) -> u64 {
        self.inner.error_bound()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Compact serialisation (for shipping partition summaries between processes).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = CoreSummary::from_bytes(data).map_err(|e| to_pyerr(py, e))?;
        Ok(Self { inner })
    }

    fn __getstate__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        self.to_bytes(py)
    }

    fn __setstate__(&mut self, py: Python<'_>, state: &[u8]) -> PyResult<()> {
        self.inner = CoreSummary::from_bytes(state).map_err(|e| to_pyerr(py, e))?;
        Ok(())
    }

    fn __getnewargs__(&self) -> (usize, usize) {
        (self.inner.capacity(), self.inner.max_ngram_len())
    }
}

/// Exact n-gram counts of tokenized documents (for small corpora and testing):
/// (ngrams uint32 [k, max_ngram_len] padded, counts uint64).
#[pyfunction]
pub fn exact_ngram_counts<'py>(
    py: Python<'py>,
    ids: PyReadonlyArray1<'py, u32>,
    offsets: PyReadonlyArray1<'py, i64>,
    max_ngram_len: usize,
) -> PyResult<(Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u64>>)> {
    let ids = ids.as_slice()?;
    let offsets = offsets.as_slice()?;
    let docs: Vec<Vec<u32>> = offsets
        .windows(2)
        .map(|w| {
            ids.get(w[0] as usize..w[1] as usize)
                .map(<[u32]>::to_vec)
                .ok_or_else(|| PyValueError::new_err("offsets out of bounds"))
        })
        .collect::<PyResult<_>>()?;
    let counts = luxical_core::summary::exact_counts(&docs, max_ngram_len);
    let mut rows = Vec::with_capacity(counts.len() * max_ngram_len);
    let mut values = Vec::with_capacity(counts.len());
    for (tokens, c) in counts {
        rows.extend_from_slice(&tokens);
        rows.extend(std::iter::repeat_n(u32::MAX, max_ngram_len - tokens.len()));
        values.push(c);
    }
    Ok((rows.into_pyarray(py), values.into_pyarray(py)))
}
