//! `Model` = tokenizer + n-gram vocabulary + idf + network, and the batch entry points.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::{self, Dtype, NpyArray, NpyOut};
use crate::gemm::PackedF32;
use crate::heads::{HeadScratch, Heads};
use crate::mlp::{DenseLayer, Network, Precision, TableDtype};
use crate::options::RunOptions;
use crate::tfidf::apply_idf;
use crate::threads;
use crate::tokenize::TextTokenizer;
use crate::vocab::{CountScratch, Vocabulary};
use crate::weights::{self, SharedF32};

/// How `Model::load_with` loads a model file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directory of weight-cache files: the converted weights are written there once and
    /// memory-mapped on every load (shared between processes, no conversion). `None`:
    /// private memory. A cache that cannot be written or read is skipped, never an error.
    pub weight_cache: Option<PathBuf>,
    /// Arithmetic of the dense layers.
    pub precision: Precision,
    /// Storage of the first layer's table; `None`: as the file stores the first layer
    /// (float16 if `nn_layer_0` is float16, which embeds bit for bit as float32 and takes
    /// half the memory; else float32).
    pub table: Option<TableDtype>,
}

/// Documents per unit of parallel work: large enough for the dense layers to run as
/// efficient GEMMs, small enough to balance two threads on small inputs.
const CHUNK_DOCS: usize = 64;

/// Text → TF-IDF features: tokenizer + n-gram vocabulary + idf. Used by `Model`, and
/// alone by training (so training and serving compute features with the same code).
#[derive(Debug, Clone)]
pub struct Featurizer {
    tokenizer: TextTokenizer,
    vocab: Vocabulary,
    idf: Vec<f32>,
}

/// A loaded Luxical model.
#[derive(Debug, Clone)]
pub struct Model {
    /// Shared: models that differ only in precision share the vocabulary and idf.
    featurizer: std::sync::Arc<Featurizer>,
    network: Network,
    /// `format::archive_fingerprint` of the file (or bytes) it was loaded from; `None` for
    /// a model built from its parts.
    fingerprint: Option<u64>,
}

/// TF-IDF rows in CSR form (column order within a row: first occurrence, as the reference).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    pub indptr: Vec<i64>,
    pub indices: Vec<u32>,
    pub data: Vec<f32>,
}

/// Per-thread buffers reused across the documents of a chunk.
#[derive(Default)]
struct Scratch {
    tokens: Vec<u32>,
    count: CountScratch,
    features: Vec<(u32, u32)>,
    indices: Vec<u32>,
    values: Vec<f32>,
    hidden: Vec<f32>,
    dense: Vec<f32>,
    heads: HeadScratch,
    /// One chunk's head outputs, `[docs, n_outputs]` (f64, before the columns).
    head_rows: Vec<f64>,
}

/// Where [`Model::embed_with_heads_into`] writes the heads' outputs: column-major float32,
/// output `c` of text `i` at `data[c * stride + start + i]` (`data` holds `n_outputs`
/// columns of `stride` values; a batch of texts fills `start..start + texts.len()` of
/// each). Scores and cosines are rounded to float32; centroid ids are exact (below 2^24).
pub struct HeadOut<'a> {
    pub data: &'a mut [f32],
    pub stride: usize,
    pub start: usize,
}

/// The head columns' base pointer, shared by the chunks of one call (each writes only
/// its own texts' values).
#[derive(Clone, Copy)]
struct ColumnsPtr(*mut f32);
// SAFETY: see the one use in `embed_with_heads_into`: disjoint writes, no reads.
unsafe impl Send for ColumnsPtr {}
unsafe impl Sync for ColumnsPtr {}

impl ColumnsPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Each worker thread's embedding scratch, kept between calls: the activation buffers of
    /// a large model are megabytes, and allocating them per chunk cost fresh zeroed pages
    /// (page faults + kernel page clearing: ~4% of short-document time).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch (a fresh one if it is already in use higher up the
/// stack, e.g. when rayon runs another chunk while this one waits).
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

impl Featurizer {
    /// Assembles a featurizer, checking that idf matches the vocabulary.
    pub fn new(tokenizer: TextTokenizer, vocab: Vocabulary, idf: Vec<f32>) -> Result<Self> {
        if idf.len() != vocab.len() {
            return Err(Error::InconsistentModel(format!(
                "idf_values has {} entries but the vocabulary has {} n-grams",
                idf.len(),
                vocab.len()
            )));
        }
        if let Some(i) = idf.iter().position(|v| !v.is_finite()) {
            return Err(Error::InconsistentModel(format!(
                "idf_values[{i}] = {} is not finite",
                idf[i]
            )));
        }
        Ok(Self {
            tokenizer,
            vocab,
            idf,
        })
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn vocab(&self) -> &Vocabulary {
        &self.vocab
    }

    pub fn idf(&self) -> &[f32] {
        &self.idf
    }

    /// Normalised TF-IDF rows of every text, in parallel.
    pub fn tfidf(&self, texts: &[&str], opts: &RunOptions<'_>) -> Result<Csr> {
        let rows: Vec<(Vec<u32>, Vec<f32>)> = threads::pool(opts.num_threads)?.install(|| {
            texts
                .par_iter()
                .enumerate()
                .map_init(Scratch::default, |s, (i, text)| {
                    opts.check_cancelled()?;
                    self.features_of(i, text, s, opts.max_tokens)?;
                    Ok((s.indices.clone(), s.values.clone()))
                })
                .collect::<Result<_>>()
        })?;
        let mut csr = Csr {
            indptr: vec![0],
            ..Default::default()
        };
        for (indices, values) in rows {
            csr.indices.extend_from_slice(&indices);
            csr.data.extend_from_slice(&values);
            csr.indptr.push(csr.indices.len() as i64);
        }
        Ok(csr)
    }

    /// Number of texts each n-gram of the vocabulary occurs in.
    pub fn document_frequencies(&self, texts: &[&str], opts: &RunOptions<'_>) -> Result<Vec<u64>> {
        let v = self.vocab.len();
        threads::pool(opts.num_threads)?.install(|| {
            texts
                .par_iter()
                .enumerate()
                .try_fold(
                    || (Scratch::default(), vec![0u64; v]),
                    |(mut s, mut df), (i, text)| {
                        opts.check_cancelled()?;
                        self.features_of(i, text, &mut s, opts.max_tokens)?;
                        s.indices.iter().for_each(|&j| df[j as usize] += 1);
                        Ok((s, df))
                    },
                )
                .map(|r| r.map(|(_, df)| df))
                .try_reduce(
                    || vec![0u64; v],
                    |mut a, b| {
                        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                        Ok(a)
                    },
                )
        })
    }

    /// Tokenize → count n-grams → TF-IDF for one document, into `s.indices` / `s.values`.
    fn features_of(
        &self,
        index: usize,
        text: &str,
        s: &mut Scratch,
        max_tokens: Option<usize>,
    ) -> Result<()> {
        s.tokens.clear();
        self.tokenizer
            .encode_into(text, index, &mut s.tokens, max_tokens)?;
        s.features.clear();
        self.vocab
            .count_features(&s.tokens, &mut s.count, &mut s.features);
        s.indices.clear();
        s.indices.extend(s.features.iter().map(|&(idx, _)| idx));
        s.values.clear();
        s.values.resize(s.features.len(), 0.0);
        apply_idf(&s.features, &self.idf, &mut s.values);
        Ok(())
    }
}

impl Model {
    /// Assembles a model from its parts, checking that they agree.
    pub fn new(
        tokenizer: TextTokenizer,
        vocab: Vocabulary,
        idf: Vec<f32>,
        layers: Vec<DenseLayer>,
    ) -> Result<Self> {
        let featurizer = Featurizer::new(tokenizer, vocab, idf)?;
        for (i, layer) in layers.iter().enumerate() {
            check_layer(i, layer)?;
        }
        Self::assemble(featurizer, Network::from_layers(layers)?)
    }

    fn assemble(featurizer: Featurizer, network: Network) -> Result<Self> {
        if network.vocab_size() != featurizer.vocab.len() {
            return Err(Error::InconsistentModel(format!(
                "nn_layer_0 takes {} inputs but the vocabulary has {} n-grams",
                network.vocab_size(),
                featurizer.vocab.len()
            )));
        }
        Ok(Self {
            featurizer: std::sync::Arc::new(featurizer),
            network,
            fingerprint: None,
        })
    }

    /// Loads a model file (reference `.npz`, format v1) into private memory, float32.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Loads a model file (reference `.npz`, format v1).
    ///
    /// The first layer is read straight into its transposed order (no second copy); with
    /// `opts.weight_cache` the converted weights come from (or go to) a memory-mapped
    /// weight-cache file shared by every process that loads the same model.
    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            action: "cannot open model file",
            path: path.to_path_buf(),
            source,
        })?;
        let mut archive = format::open_npz(std::io::BufReader::with_capacity(1 << 20, &file))?;
        let fingerprint = format::archive_fingerprint(&mut archive)?;
        let is_layer = |name: &str| {
            name.strip_prefix(format::LAYER_PREFIX)
                .is_some_and(|i| i.parse::<usize>().is_ok())
        };
        let arrays = format::read_npz_where(&mut archive, |name| !is_layer(name))?;
        let plan = LayerPlan::read(
            &mut archive,
            format::check_version_and_layers(&arrays)?,
            opts.table,
        )?;
        // Before entering the pool: a cache miss may wait on the entry's lock for another
        // process, and a pool thread blocked there could hold up the lock holder's own
        // parallel work queued behind it in the same pool.
        let cached = opts
            .weight_cache
            .as_deref()
            .map(|dir| weights::open_or_claim(dir, plan.key, &plan.lens));
        // Our own pool (not rayon's global one): it is rebuilt after fork().
        let pool = threads::pool(None).or_else(|_| threads::pool(Some(1)))?;
        let mut model = pool.install(|| {
            let featurizer = featurizer_from_arrays(&arrays)?;
            let mut network = plan.network(&mut archive, &file, cached)?;
            network.set_precision(opts.precision);
            Self::assemble(featurizer, network)
        })?;
        model.fingerprint = Some(fingerprint);
        Ok(model)
    }

    /// The model's fingerprint: that of the file or bytes it was loaded from (see
    /// `format::archive_fingerprint`); `None` for a model built from its parts.
    pub fn fingerprint(&self) -> Option<u64> {
        self.fingerprint
    }

    /// Chooses the arithmetic of the dense layers (see `Precision`).
    pub fn set_precision(&mut self, precision: Precision) {
        self.network.set_precision(precision);
    }

    /// This model with another precision; shares the featurizer and float32 weights.
    pub fn with_precision(&self, precision: Precision) -> Self {
        let mut m = self.clone();
        m.set_precision(precision);
        m
    }

    pub fn precision(&self) -> Precision {
        self.network.precision()
    }

    /// This model with its first layer's table stored as `table` (shares the featurizer
    /// and the dense layers; the table is converted into private memory).
    pub fn with_table_dtype(&self, table: TableDtype) -> Result<Self> {
        let mut m = self.clone();
        m.network.set_table_dtype(table)?;
        Ok(m)
    }

    /// The storage of the first layer's table (see `LoadOptions::table`).
    pub fn table_dtype(&self) -> TableDtype {
        self.network.table_dtype()
    }

    /// Whether the weights are memory-mapped from a weight-cache file.
    pub fn weights_mapped(&self) -> bool {
        self.network.weights_mapped()
    }

    /// Loads a model from the bytes of a model file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut archive = format::open_npz(Cursor::new(bytes))?;
        let fingerprint = format::archive_fingerprint(&mut archive)?;
        let mut model = Self::from_arrays(&format::read_npz_where(&mut archive, |_| true)?)?;
        model.fingerprint = Some(fingerprint);
        Ok(model)
    }

    fn from_arrays(arrays: &HashMap<String, NpyArray>) -> Result<Self> {
        let n_layers = format::check_version_and_layers(arrays)?;
        let featurizer = featurizer_from_arrays(arrays)?;
        let stored_f16 =
            format::get(arrays, &format!("{}0", format::LAYER_PREFIX))?.dtype == Dtype::F16;
        let layers = (0..n_layers)
            .map(|i| {
                let arr = format::get(arrays, &format!("{}{i}", format::LAYER_PREFIX))?;
                arr.expect_ndim(2, "[out_dim, in_dim]")?;
                let layer = DenseLayer {
                    out_dim: arr.shape[0],
                    in_dim: arr.shape[1],
                    weights_out_in: arr.to_f32()?,
                };
                check_layer(i, &layer)?;
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut network = Network::from_layers(layers)?;
        if stored_f16 {
            // As `load_with` by default: the file's float16 table as is (bit-identical).
            network.set_table_dtype(TableDtype::Float16)?;
        }
        Self::assemble(featurizer, network)
    }

    /// Serialises the model as a reference-compatible `.npz` (format v1).
    ///
    /// `first_layer_f16` stores `nn_layer_0` as float16 (half the size; luxical loads it
    /// as float32, the reference cannot read it).
    pub fn to_bytes(&self, writer_version: &str, first_layer_f16: bool) -> Result<Vec<u8>> {
        let Featurizer {
            tokenizer,
            vocab,
            idf,
        } = &*self.featurizer;
        let tokenizer = tokenizer.to_json().as_bytes();
        let version = format::FORMAT_VERSION.to_le_bytes();
        let ngrams = format::le_bytes(vocab.ngrams(), u32::to_le_bytes);
        let (keys, values) = vocab.hash_map_arrays();
        let keys = format::le_bytes(&keys, i64::to_le_bytes);
        let values = format::le_bytes(&values, u32::to_le_bytes);
        let idf = format::le_bytes(idf, f32::to_le_bytes);
        let layers = self.network.layers_out_in();
        let n_layers = (layers.len() as i64).to_le_bytes();
        let layer_bytes: Vec<Vec<u8>> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 && first_layer_f16 {
                    format::le_bytes(&l.weights_out_in, |x| half::f16::from_f32(x).to_le_bytes())
                } else {
                    format::le_bytes(&l.weights_out_in, f32::to_le_bytes)
                }
            })
            .collect();
        let layer_names: Vec<String> = (0..layers.len())
            .map(|i| format!("{}{i}", format::LAYER_PREFIX))
            .collect();
        let (v, n) = (vocab.len(), vocab.max_ngram_len());
        let mut arrays = vec![
            NpyOut {
                name: format::KEY_TOKENIZER,
                dtype: Dtype::U8,
                shape: vec![tokenizer.len()],
                data: tokenizer,
            },
            NpyOut {
                name: format::KEY_VERSION,
                dtype: Dtype::I64,
                shape: vec![],
                data: &version,
            },
            NpyOut {
                name: format::KEY_NGRAMS,
                dtype: Dtype::U32,
                shape: vec![v, n],
                data: &ngrams,
            },
            NpyOut {
                name: format::KEY_HASH_KEYS,
                dtype: Dtype::I64,
                shape: vec![v],
                data: &keys,
            },
            NpyOut {
                name: format::KEY_HASH_VALUES,
                dtype: Dtype::U32,
                shape: vec![v],
                data: &values,
            },
            NpyOut {
                name: format::KEY_IDF,
                dtype: Dtype::F32,
                shape: vec![v],
                data: &idf,
            },
            NpyOut {
                name: format::KEY_NUM_LAYERS,
                dtype: Dtype::I64,
                shape: vec![1],
                data: &n_layers,
            },
        ];
        for (i, ((layer, bytes), name)) in layers
            .iter()
            .zip(&layer_bytes)
            .zip(&layer_names)
            .enumerate()
        {
            let dtype = if i == 0 && first_layer_f16 {
                Dtype::F16
            } else {
                Dtype::F32
            };
            arrays.push(NpyOut {
                name,
                dtype,
                shape: vec![layer.out_dim, layer.in_dim],
                data: bytes,
            });
        }
        arrays.push(NpyOut {
            name: format::KEY_WRITER,
            dtype: Dtype::U8,
            shape: vec![writer_version.len()],
            data: writer_version.as_bytes(),
        });
        let mut out = Cursor::new(Vec::new());
        format::write_npz(&mut out, &arrays)?;
        Ok(out.into_inner())
    }

    /// Writes the model file atomically: a temporary file of a name no other writer uses
    /// (pid + serial) in the same directory, flushed to disk, then renamed over `path`.
    /// Several processes or threads saving to one path each leave a whole model there.
    pub fn save(&self, path: &Path, writer_version: &str, first_layer_f16: bool) -> Result<()> {
        use std::io::Write;
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let bytes = self.to_bytes(writer_version, first_layer_f16)?;
        let io = |action, source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let name = path.file_name().ok_or_else(|| {
            io(
                "cannot write model file",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
            )
        })?;
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{serial}.partial", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let written = (|| {
            // A file of this name was left by a dead process that had our pid: replace it.
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("cannot write model file", e));
        }
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("cannot move model file into place", e));
        }
        Ok(())
    }

    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.featurizer.tokenizer
    }

    pub fn vocab(&self) -> &Vocabulary {
        &self.featurizer.vocab
    }

    pub fn idf(&self) -> &[f32] {
        &self.featurizer.idf
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Output embedding dimension.
    pub fn dim(&self) -> usize {
        self.network.output_dim()
    }

    /// Normalised TF-IDF rows of every text (see `Featurizer::tfidf`).
    pub fn tfidf(&self, texts: &[&str], opts: &RunOptions<'_>) -> Result<Csr> {
        self.featurizer.tfidf(texts, opts)
    }

    /// Embeds `texts` into `out` (`[texts.len(), dim]` row-major), in parallel.
    pub fn embed_into(&self, texts: &[&str], out: &mut [f32], opts: &RunOptions<'_>) -> Result<()> {
        self.embed_with_heads_into(texts, out, None, opts)
    }

    /// Embeds `texts` into `out` (`[texts.len(), dim]`) and, with `heads`, applies them to
    /// each chunk's embeddings right after computing them (still in cache), writing their
    /// columns into the head output (see [`HeadOut`]).
    pub fn embed_with_heads_into(
        &self,
        texts: &[&str],
        out: &mut [f32],
        heads: Option<(&Heads, HeadOut<'_>)>,
        opts: &RunOptions<'_>,
    ) -> Result<()> {
        let dim = self.dim();
        if out.len() != texts.len() * dim {
            return Err(Error::InvalidArgument(format!(
                "output buffer holds {} floats, expected {} texts x {dim}",
                out.len(),
                texts.len()
            )));
        }
        let heads = match heads {
            Some((h, head_out)) if !h.is_empty() => {
                if h.in_dim() != dim {
                    return Err(Error::InvalidArgument(format!(
                        "the heads read {}-dimensional embeddings but this model makes {dim}-dimensional ones",
                        h.in_dim()
                    )));
                }
                let cols = h.n_outputs();
                if head_out.data.len() != cols * head_out.stride
                    || head_out.start + texts.len() > head_out.stride
                {
                    return Err(Error::InvalidArgument(format!(
                        "head output buffer holds {} values in columns of {}, expected {cols} columns \
                         with room for {} texts from {}",
                        head_out.data.len(),
                        head_out.stride,
                        texts.len(),
                        head_out.start
                    )));
                }
                Some((h, head_out, cols))
            }
            _ => None,
        };
        threads::pool(opts.num_threads)?.install(|| match heads {
            None => out
                .par_chunks_mut(CHUNK_DOCS * dim)
                .zip(texts.par_chunks(CHUNK_DOCS))
                .enumerate()
                .try_for_each(|(chunk, (out_chunk, docs))| {
                    opts.check_cancelled()?;
                    with_scratch(|s| self.embed_chunk(chunk * CHUNK_DOCS, docs, out_chunk, s, opts))
                }),
            Some((h, head_out, cols)) => {
                let (stride, start) = (head_out.stride, head_out.start);
                let columns = ColumnsPtr(head_out.data.as_mut_ptr());
                out.par_chunks_mut(CHUNK_DOCS * dim)
                    .zip(texts.par_chunks(CHUNK_DOCS))
                    .enumerate()
                    .try_for_each(|(chunk, (out_chunk, docs))| {
                        opts.check_cancelled()?;
                        with_scratch(|s| {
                            self.embed_chunk(chunk * CHUNK_DOCS, docs, out_chunk, s, opts)?;
                            let n = docs.len();
                            s.head_rows.resize(n * cols, 0.0);
                            h.apply(out_chunk, n, &mut s.head_rows, &mut s.heads);
                            let first = start + chunk * CHUNK_DOCS;
                            for c in 0..cols {
                                // SAFETY: `data` holds `cols` columns of `stride` values and
                                // `start + texts.len() <= stride` (checked above), so
                                // `c * stride + first + i` is inside it; chunks cover
                                // disjoint ranges of texts, so no two threads write the
                                // same value, and nothing reads `data` until all are done.
                                let column = unsafe {
                                    std::slice::from_raw_parts_mut(
                                        columns.get().add(c * stride + first),
                                        n,
                                    )
                                };
                                for (o, row) in
                                    column.iter_mut().zip(s.head_rows.chunks_exact(cols))
                                {
                                    *o = row[c] as f32;
                                }
                            }
                            Ok(())
                        })
                    })
            }
        })
    }

    fn embed_chunk(
        &self,
        first_index: usize,
        docs: &[&str],
        out: &mut [f32],
        s: &mut Scratch,
        opts: &RunOptions<'_>,
    ) -> Result<()> {
        let d0 = self.network.layer_dims()[1];
        let n = docs.len();
        let scratch_len = n * self.network.max_hidden_dim();
        s.hidden.resize(scratch_len, 0.0);
        s.dense.resize(scratch_len, 0.0);
        for (i, text) in docs.iter().enumerate() {
            if i % 8 == 7 {
                opts.check_cancelled()?; // long documents: stop within a few of them
            }
            self.featurizer
                .features_of(first_index + i, text, s, opts.max_tokens)?;
            self.network
                .first_layer(&s.indices, &s.values, &mut s.hidden[i * d0..(i + 1) * d0]);
        }
        self.network
            .forward_dense(n, &mut s.hidden, &mut s.dense, out);
        Ok(())
    }
}

/// The layers of a model file as its archive directory and `.npy` headers describe them,
/// and the weight-cache entry they map to.
struct LayerPlan {
    names: Vec<String>,
    /// `(out, in)` of each layer.
    shapes: Vec<(usize, usize)>,
    /// Storage of the first layer's table in memory (and in the cache entry).
    table: TableDtype,
    /// Floats of each converted buffer (first layer transposed, dense layers packed).
    lens: Vec<usize>,
    key: u64,
}

impl LayerPlan {
    fn read<R: std::io::Read + std::io::Seek>(
        archive: &mut zip::ZipArchive<R>,
        n_layers: usize,
        table: Option<TableDtype>,
    ) -> Result<Self> {
        let names: Vec<String> = (0..n_layers)
            .map(|i| format!("{}{i}", format::LAYER_PREFIX))
            .collect();
        // Layer shapes and fingerprints from the archive's directory and .npy headers.
        let mut shapes = Vec::with_capacity(n_layers);
        let mut fingerprints = Vec::with_capacity(n_layers);
        let mut stored_f16 = false;
        for (i, name) in names.iter().enumerate() {
            let (header, fingerprint) = format::member_header(archive, name)?;
            if i == 0 {
                stored_f16 = header.dtype == Dtype::F16;
            }
            if header.shape.len() != 2 {
                return Err(Error::ShapeMismatch {
                    array: name.clone(),
                    expected: "[out_dim, in_dim]".into(),
                    found: header.shape,
                });
            }
            shapes.push((header.shape[0], header.shape[1]));
            fingerprints.push(fingerprint);
        }
        let table = table.unwrap_or(if stored_f16 {
            TableDtype::Float16
        } else {
            TableDtype::Float32
        });
        if table == TableDtype::Float16 {
            // Another cache entry than the float32 table's (a marker no archive member has).
            fingerprints.push((u32::from_le_bytes(*b"f16t"), u64::MAX));
        }
        let mut lens = vec![table.buffer_len(shapes[0].1, shapes[0].0)];
        lens.extend(
            shapes[1..]
                .iter()
                .map(|&(o, i)| PackedF32::packed_len(o, i)),
        );
        Ok(Self {
            names,
            shapes,
            table,
            lens,
            key: weights::cache_key(&fingerprints),
        })
    }

    /// The network from mapped cache buffers (one per layer, lengths checked).
    fn mapped_network(&self, buffers: Vec<SharedF32>) -> Result<Network> {
        let (d0, vocab_size) = self.shapes[0];
        let mut it = buffers.into_iter();
        let first = it.next().expect("one buffer per layer");
        let dense = self.shapes[1..]
            .iter()
            .zip(it)
            .map(|(&(o, i), b)| PackedF32::from_packed(o, i, b).expect("length checked"))
            .collect();
        Network::from_parts(vocab_size, d0, first, self.table, dense)
    }

    /// The network: mapped from the cache (`cached`: the outcome of
    /// `weights::open_or_claim`, `None` without a cache), or read from the archive and, on
    /// a cache miss, written to the cache and mapped from there.
    fn network<R: std::io::Read + std::io::Seek>(
        &self,
        archive: &mut zip::ZipArchive<R>,
        file: &std::fs::File,
        cached: Option<Result<Vec<SharedF32>, weights::Claim>>,
    ) -> Result<Network> {
        let (d0, vocab_size) = self.shapes[0];
        let read = |archive: &mut zip::ZipArchive<R>| {
            let mut network = read_layers(archive, Some(file), &self.names, vocab_size, d0)?;
            network.set_table_dtype(self.table)?;
            Ok::<_, Error>(network)
        };
        let claim = match cached {
            None => return read(archive),
            Some(Ok(buffers)) => return self.mapped_network(buffers),
            Some(Err(claim)) => claim,
        };
        let network = read(archive)?;
        let buffers = network.buffers();
        let slices: Vec<&[f32]> = buffers.iter().map(|b| &***b).collect();
        if claim.write(&slices).is_err() {
            return Ok(network);
        }
        // Drop the private copy before mapping the shared one, so the two never coexist
        // (peak memory: one copy of the weights).
        drop(slices);
        drop(buffers);
        drop(network);
        // The claim (the entry's lock) is held until the file is mapped.
        match claim.open(&self.lens) {
            Some(buffers) => self.mapped_network(buffers),
            // Written but unreadable (another file was there, damaged): read again.
            None => read(archive),
        }
    }
}

/// Reads the layers of an open archive into private memory: the first layer straight
/// into its transposed order, the dense layers packed.
fn read_layers<R: std::io::Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    file: Option<&std::fs::File>,
    names: &[String],
    vocab_size: usize,
    d0: usize,
) -> Result<Network> {
    let span = format::stored_span(archive, &names[0])?;
    #[cfg(unix)]
    let fast = match (file, span) {
        (Some(file), Some(span)) => format::transpose_stored_f32(&names[0], file, span)?,
        _ => None,
    };
    #[cfg(not(unix))]
    let fast = {
        let _ = (file, span);
        None
    };
    let first = match fast {
        Some((_, _, first)) => first,
        None => format::read_f32_transposed(archive, &names[0])?.2,
    };
    let dense = names[1..]
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let arr = format::read_member(archive, name)?;
            let layer = DenseLayer {
                out_dim: arr.shape[0],
                in_dim: arr.shape[1],
                weights_out_in: arr.to_f32()?,
            };
            check_layer(j + 1, &layer)?;
            Ok(PackedF32::pack(
                &layer.weights_out_in,
                layer.out_dim,
                layer.in_dim,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Network::from_parts(
        vocab_size,
        d0,
        SharedF32::owned(first),
        TableDtype::Float32,
        dense,
    )
}

/// Tokenizer + vocabulary + idf from the arrays of a model file.
fn featurizer_from_arrays(arrays: &HashMap<String, NpyArray>) -> Result<Featurizer> {
    let tok = format::get(arrays, format::KEY_TOKENIZER)?;
    if tok.dtype != Dtype::U8 {
        return Err(Error::UnsupportedDtype {
            array: tok.name.clone(),
            found: format!("{:?}", tok.dtype),
            expected: "uint8 (the UTF-8 bytes of tokenizer.json)",
        });
    }
    let json = std::str::from_utf8(&tok.data).map_err(|e| Error::MalformedArray {
        array: tok.name.clone(),
        reason: format!("tokenizer JSON is not UTF-8: {e}"),
    })?;
    let tokenizer = TextTokenizer::from_json(json)?;

    let ngrams = format::get(arrays, format::KEY_NGRAMS)?;
    ngrams.expect_ndim(2, "[vocab_size, max_ngram_len]")?;
    let max_ngram_len = ngrams.shape[1];
    let keys = format::get(arrays, format::KEY_HASH_KEYS)?.to_i64()?;
    let values = format::get(arrays, format::KEY_HASH_VALUES)?.to_u32()?;
    let vocab = Vocabulary::from_parts(ngrams.to_u32_tokens()?, max_ngram_len, &keys, &values)?;
    let idf_arr = format::get(arrays, format::KEY_IDF)?;
    idf_arr.expect_ndim(1, "[vocab_size]")?;
    let idf = idf_arr.to_f32()?;

    Featurizer::new(tokenizer, vocab, idf)
}

/// Shape and finiteness of one layer as read from a file or given by a caller.
fn check_layer(i: usize, layer: &DenseLayer) -> Result<()> {
    if layer.weights_out_in.len() != layer.out_dim * layer.in_dim {
        return Err(Error::InconsistentModel(format!(
            "nn_layer_{i} has {} weights for shape [{}, {}]",
            layer.weights_out_in.len(),
            layer.out_dim,
            layer.in_dim
        )));
    }
    if let Some(j) = layer.weights_out_in.iter().position(|v| !v.is_finite()) {
        return Err(Error::InconsistentModel(format!(
            "nn_layer_{i} has a non-finite weight at flat index {j}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ngrams::PAD_TOKEN;
    use crate::tokenize::tests::tiny_bert_json;

    /// Vocabulary over the tiny tokenizer: [hello], [world], [hello world], [!].
    fn tiny_model() -> Model {
        let p = PAD_TOKEN;
        let vocab = Vocabulary::from_ngrams(vec![1, p, 2, p, 1, 2, 5, p], 2).unwrap();
        let tokenizer = TextTokenizer::from_json(&tiny_bert_json(false)).unwrap();
        let layers = vec![
            DenseLayer {
                out_dim: 2,
                in_dim: 4,
                weights_out_in: vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0],
            },
            DenseLayer {
                out_dim: 2,
                in_dim: 2,
                weights_out_in: vec![1.0, 0.0, 0.0, 1.0],
            },
        ];
        Model::new(tokenizer, vocab, vec![1.0, 1.0, 2.0, 1.0], layers).unwrap()
    }

    #[test]
    fn embeds_by_hand() {
        let m = tiny_model();
        let mut out = vec![0.0; 6];
        m.embed_into(
            &["hello world", "", "!"],
            &mut out,
            &RunOptions::threads(Some(1)),
        )
        .unwrap();
        // "hello world": features hello(1), world(1), hello-world(2) -> norm sqrt(6);
        // layer 0: unit 0 <- hello + hello-world = 3/sqrt6, unit 1 <- world = 1/sqrt6;
        // normalise -> (3, 1)/sqrt10; identity layer -> same.
        let s = 10f32.sqrt();
        assert!((out[0] - 3.0 / s).abs() < 1e-6 && (out[1] - 1.0 / s).abs() < 1e-6);
        assert_eq!(&out[2..4], &[0.0, 0.0]);
        assert_eq!(&out[4..6], &[0.0, 1.0]);
    }

    #[test]
    fn heads_run_in_the_embedding_pass_on_its_embeddings() {
        use crate::heads::{Activation, Head, Heads};
        let m = tiny_model();
        // 200 texts: several chunks, applied per chunk; dims checked against the model.
        let texts: Vec<&str> = (0..200)
            .map(|i| ["hello world", "", "!", "world hello !"][i % 4])
            .collect();
        let heads = Heads::new(vec![
            Head::linear(&[2.0, -1.0], &[0.5], 1, 2, Activation::Identity).unwrap(),
            Head::centroid(&[1.0, 0.0, 0.0, 1.0], 2, 2, None).unwrap(),
        ])
        .unwrap();
        let (mut emb, mut plain) = (vec![0.0; 400], vec![0.0; 400]);
        // Three columns of 250 values, the texts at 30..230 of each: the rest untouched.
        let (stride, start) = (250, 30);
        let mut cols = vec![f32::NAN; 3 * stride];
        let out = HeadOut {
            data: &mut cols,
            stride,
            start,
        };
        m.embed_with_heads_into(
            &texts,
            &mut emb,
            Some((&heads, out)),
            &RunOptions::threads(Some(2)),
        )
        .unwrap();
        m.embed_into(&texts, &mut plain, &RunOptions::threads(Some(1)))
            .unwrap();
        assert_eq!(emb, plain);
        for (i, row) in emb.chunks_exact(2).enumerate() {
            let (x, y) = (row[0] as f64, row[1] as f64);
            let c = [0, 1, 2].map(|c| cols[c * stride + start + i] as f64);
            assert!((c[0] - (2.0 * x - y + 0.5)).abs() < 1e-6, "row {i}: {c:?}");
            let want = if y > x { (1.0, y) } else { (0.0, x) };
            assert_eq!(c[1], want.0, "row {i}");
            assert!((c[2] - want.1).abs() < 1e-7, "row {i}");
        }
        for c in 0..3 {
            let column = &cols[c * stride..(c + 1) * stride];
            assert!(column[..start]
                .iter()
                .chain(&column[start + 200..])
                .all(|v| v.is_nan()));
        }
        // A buffer without room for the texts is refused, not written past.
        let mut short = vec![0.0f32; 3 * 100];
        let out = HeadOut {
            data: &mut short,
            stride: 100,
            start: 0,
        };
        let err = m
            .embed_with_heads_into(
                &texts,
                &mut emb,
                Some((&heads, out)),
                &RunOptions::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("room for 200 texts"), "{err}");
        let wrong =
            Heads::new(vec![Head::centroid(&[1.0, 0.0, 0.0], 1, 3, None).unwrap()]).unwrap();
        let mut cols = vec![0.0f32; 200];
        let out = HeadOut {
            data: &mut cols,
            stride: 200,
            start: 0,
        };
        let err = m
            .embed_with_heads_into(
                &texts,
                &mut emb,
                Some((&wrong, out)),
                &RunOptions::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("3-dimensional"), "{err}");
    }

    #[test]
    fn bytes_round_trip_is_identical() {
        let m = tiny_model();
        let bytes = m.to_bytes("test", false).unwrap();
        let m2 = Model::from_bytes(&bytes).unwrap();
        assert_eq!(m2.to_bytes("test", false).unwrap(), bytes);
        let texts: Vec<&str> = vec!["hello world !", "world hello"];
        let (mut a, mut b) = (vec![0.0; 4], vec![0.0; 4]);
        m.embed_into(&texts, &mut a, &RunOptions::threads(Some(1)))
            .unwrap();
        m2.embed_into(&texts, &mut b, &RunOptions::threads(Some(2)))
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn max_tokens_embeds_the_first_tokens_and_cancel_stops() {
        let m = tiny_model();
        let (mut a, mut b) = (vec![0.0; 2], vec![0.0; 2]);
        let opts = RunOptions {
            max_tokens: Some(2),
            ..RunOptions::threads(Some(1))
        };
        m.embed_into(&["hello world ! world world"], &mut a, &opts)
            .unwrap();
        m.embed_into(&["hello world"], &mut b, &RunOptions::threads(Some(1)))
            .unwrap();
        assert_eq!(a, b);
        let flag = std::sync::atomic::AtomicBool::new(true);
        let cancelled = RunOptions {
            cancel: Some(&flag),
            ..RunOptions::default()
        };
        let err = m.embed_into(&["hello"], &mut a, &cancelled).unwrap_err();
        assert!(matches!(err, Error::Cancelled));
    }

    #[test]
    fn half_precision_first_layer_round_trips() {
        let m = tiny_model();
        let m2 = Model::from_bytes(&m.to_bytes("test", true).unwrap()).unwrap();
        // the tiny model's weights (0, 1) are exact in float16
        assert_eq!(
            m2.network().layers_out_in()[0].weights_out_in,
            m.network().layers_out_in()[0].weights_out_in
        );
    }

    #[test]
    fn tfidf_csr_by_hand() {
        let m = tiny_model();
        let csr = m
            .tfidf(
                &["world hello world", "nothing"],
                &RunOptions::threads(Some(2)),
            )
            .unwrap();
        assert_eq!(csr.indptr, vec![0, 3, 3]);
        // world x2, hello x1, "hello world" x1 (idf 2); weights (2, 1, 2) / 3
        assert_eq!(csr.indices, vec![1, 0, 2]);
        let want = [2.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0];
        assert!(
            csr.data.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{:?}",
            csr.data
        );
    }

    #[test]
    fn threads_saving_to_one_path_each_leave_a_whole_model() {
        let dir = std::env::temp_dir().join(format!("luxical-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.npz");
        let m = tiny_model();
        let want = m.to_bytes("test", false).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        m.save(&path, "test", false).unwrap();
                    }
                });
            }
        });
        assert_eq!(std::fs::read(&path).unwrap(), want);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1); // no temporary file left
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_file_is_an_error() {
        let bytes = tiny_model().to_bytes("test", false).unwrap();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(Model::from_bytes(&bytes[..cut]).is_err());
        }
    }
}
