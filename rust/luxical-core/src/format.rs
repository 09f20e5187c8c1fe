//! Reading and writing the model file: the reference Luxical `.npz` layout, format v1.
//!
//! An `.npz` is a zip archive of `.npy` arrays. We parse `.npy` ourselves so that we can
//! refuse object (pickled) arrays, check every declared size against the bytes actually
//! present before allocating, and report what was wrong with which array.

use std::collections::HashMap;
use std::io::{Cursor, Read, Seek, Write};

use crate::error::{Error, Result};

/// The only model format version this build reads and writes (the reference's
/// `EMBEDDER_FORMAT_VERSION`).
pub const FORMAT_VERSION: i64 = 1;

/// Array names of format v1.
pub const KEY_TOKENIZER: &str = "tokenizer";
pub const KEY_VERSION: &str = "version";
pub const KEY_NGRAMS: &str = "recognized_ngrams";
pub const KEY_HASH_KEYS: &str = "ngram_hash_to_ngram_idx_keys";
pub const KEY_HASH_VALUES: &str = "ngram_hash_to_ngram_idx_values";
pub const KEY_IDF: &str = "idf_values";
pub const KEY_NUM_LAYERS: &str = "num_nn_layers";
/// Layer `i` is stored as `nn_layer_{i}`, float32 `[out, in]`.
pub const LAYER_PREFIX: &str = "nn_layer_";
/// Optional (written by us, ignored by the reference): the luxical version that wrote it.
pub const KEY_WRITER: &str = "luxical_writer_version";

/// Upper bound on an `.npy` header; real headers are < 1 KiB.
const MAX_NPY_HEADER: usize = 1 << 20;
/// Upper bound on the number of layers we accept.
const MAX_LAYERS: i64 = 1024;

/// Element types we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    U8,
    I32,
    U32,
    I64,
    U64,
    F16,
    F32,
    F64,
}

impl Dtype {
    fn parse(descr: &str) -> Option<Self> {
        // '|' = not applicable, '<' = little-endian, '=' native (we only run on LE).
        // (split on the first char, not byte: a damaged header may start with any char)
        let order = descr.chars().next()?;
        if !matches!(order, '<' | '|' | '=') {
            return None;
        }
        let code = &descr[1..];
        Some(match code {
            "u1" | "b1" | "i1" => Dtype::U8,
            "i4" => Dtype::I32,
            "u4" => Dtype::U32,
            "i8" => Dtype::I64,
            "u8" => Dtype::U64,
            "f2" => Dtype::F16,
            "f4" => Dtype::F32,
            "f8" => Dtype::F64,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    fn descr(self) -> &'static str {
        match self {
            Dtype::U8 => "|u1",
            Dtype::I32 => "<i4",
            Dtype::U32 => "<u4",
            Dtype::I64 => "<i8",
            Dtype::U64 => "<u8",
            Dtype::F16 => "<f2",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }
}

/// One array read from an `.npy` entry: raw little-endian bytes in C order.
#[derive(Debug, Clone)]
pub struct NpyArray {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl NpyArray {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn wrong_dtype(&self, expected: &'static str) -> Error {
        Error::UnsupportedDtype {
            array: self.name.clone(),
            found: self.dtype.descr().to_string(),
            expected,
        }
    }

    /// Values as f32 (f16/f32/f64 accepted).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            Dtype::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::F64 => self
                .data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            Dtype::F16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => return Err(self.wrong_dtype("a float dtype (float32)")),
        })
    }

    /// Values as i64 (any integer dtype; u64 values above i64::MAX are reinterpreted).
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        Ok(match self.dtype {
            Dtype::U8 => self.data.iter().map(|&b| i64::from(b)).collect(),
            Dtype::I32 => self
                .data
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes(b.try_into().unwrap())))
                .collect(),
            Dtype::U32 => self
                .data
                .chunks_exact(4)
                .map(|b| i64::from(u32::from_le_bytes(b.try_into().unwrap())))
                .collect(),
            Dtype::I64 => self
                .data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::U64 => self
                .data
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as i64)
                .collect(),
            _ => return Err(self.wrong_dtype("an integer dtype")),
        })
    }

    /// Values as u32, refusing anything out of range. Integer dtypes of other widths are
    /// accepted; in token arrays the dtype's maximum (its padding value) maps to u32::MAX.
    pub fn to_u32_tokens(&self) -> Result<Vec<u32>> {
        let pad: i128 = match self.dtype {
            Dtype::I32 => i32::MAX as i128,
            Dtype::U32 => u32::MAX as i128,
            Dtype::I64 => i64::MAX as i128,
            Dtype::U64 => u64::MAX as i128,
            _ => return Err(self.wrong_dtype("uint32")),
        };
        if self.dtype == Dtype::U32 {
            return Ok(self
                .data
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .collect());
        }
        let wide: Vec<i128> = match self.dtype {
            Dtype::U64 => self
                .data
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as i128)
                .collect(),
            _ => self.to_i64()?.into_iter().map(i128::from).collect(),
        };
        wide.into_iter()
            .map(|v| {
                if v == pad {
                    Ok(u32::MAX)
                } else if (0..u32::MAX as i128).contains(&v) {
                    Ok(v as u32)
                } else {
                    Err(Error::MalformedArray {
                        array: self.name.clone(),
                        reason: format!("token id {v} does not fit in uint32"),
                    })
                }
            })
            .collect()
    }

    /// Values as u32 indices (any integer dtype, range-checked).
    pub fn to_u32(&self) -> Result<Vec<u32>> {
        self.to_i64()?
            .into_iter()
            .map(|v| {
                u32::try_from(v).map_err(|_| Error::MalformedArray {
                    array: self.name.clone(),
                    reason: format!("value {v} does not fit in uint32"),
                })
            })
            .collect()
    }

    /// The single value of a scalar or one-element integer array.
    pub fn scalar_i64(&self) -> Result<i64> {
        let values = self.to_i64()?;
        match values.as_slice() {
            [v] => Ok(*v),
            _ => Err(Error::ShapeMismatch {
                array: self.name.clone(),
                expected: "a scalar or a one-element array".into(),
                found: self.shape.clone(),
            }),
        }
    }

    /// Checks the number of dimensions.
    pub fn expect_ndim(&self, ndim: usize, what: &str) -> Result<()> {
        if self.shape.len() != ndim {
            return Err(Error::ShapeMismatch {
                array: self.name.clone(),
                expected: what.to_string(),
                found: self.shape.clone(),
            });
        }
        Ok(())
    }
}

/// The header of an `.npy` stream: what follows it is `n_bytes` of data.
#[derive(Debug, Clone)]
pub struct NpyHeader {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub fortran: bool,
    pub n_bytes: usize,
}

/// Parses the header of one `.npy` stream, leaving `reader` at the first data byte.
/// `declared_len` is what the archive says the entry holds (uncompressed); a header that
/// promises more data than that is rejected.
pub fn read_npy_header(name: &str, reader: &mut impl Read, declared_len: u64) -> Result<NpyHeader> {
    let malformed = |reason: String| Error::MalformedArray {
        array: name.to_string(),
        reason,
    };
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .map_err(|_| malformed("shorter than an .npy header".into()))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(malformed("not an .npy array (bad magic)".into()));
    }
    let header_len = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            reader
                .read_exact(&mut b)
                .map_err(|_| malformed("truncated header".into()))?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            reader
                .read_exact(&mut b)
                .map_err(|_| malformed("truncated header".into()))?;
            u32::from_le_bytes(b) as usize
        }
        v => {
            return Err(malformed(format!(
                ".npy format version {v} is not supported"
            )))
        }
    };
    if header_len > MAX_NPY_HEADER || header_len as u64 > declared_len {
        return Err(malformed(format!(
            "header length {header_len} is implausible"
        )));
    }
    let mut header = vec![0u8; header_len];
    reader
        .read_exact(&mut header)
        .map_err(|_| malformed("truncated header".into()))?;
    let header = String::from_utf8_lossy(&header);
    let descr =
        dict_value(&header, "descr").ok_or_else(|| malformed("header has no 'descr'".into()))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if descr.contains('O') {
        return Err(Error::UnsupportedDtype {
            array: name.to_string(),
            found: descr.to_string(),
            expected: "a numeric dtype (object arrays need unpickling, which luxical never does)",
        });
    }
    let dtype = Dtype::parse(descr).ok_or_else(|| Error::UnsupportedDtype {
        array: name.to_string(),
        found: descr.to_string(),
        expected: "a little-endian numeric dtype",
    })?;
    let fortran = dict_value(&header, "fortran_order")
        .ok_or_else(|| malformed("header has no 'fortran_order'".into()))?
        .starts_with("True");
    let shape_txt =
        dict_value(&header, "shape").ok_or_else(|| malformed("header has no 'shape'".into()))?;
    let shape: Vec<usize> = shape_txt
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| malformed(format!("bad shape {shape_txt}")))
        })
        .collect::<Result<_>>()?;
    let n_bytes = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| malformed(format!("shape {shape:?} overflows")))?;
    let prefix = 8 + if magic[6] == 1 { 2 } else { 4 } + header_len;
    if (prefix as u64).saturating_add(n_bytes as u64) > declared_len {
        return Err(malformed(format!(
            "header declares {n_bytes} data bytes for shape {shape:?} but the entry holds only {} \
             (truncated file?)",
            declared_len.saturating_sub(prefix as u64)
        )));
    }
    Ok(NpyHeader {
        dtype,
        shape,
        fortran,
        n_bytes,
    })
}

/// Parses one `.npy` stream (see `read_npy_header`).
fn read_npy(name: &str, reader: &mut impl Read, declared_len: u64) -> Result<NpyArray> {
    let malformed = |reason: String| Error::MalformedArray {
        array: name.to_string(),
        reason,
    };
    let NpyHeader {
        dtype,
        shape,
        fortran,
        n_bytes,
    } = read_npy_header(name, reader, declared_len)?;
    // Grow the buffer only as bytes actually arrive; never trust the declared size alone.
    let mut data = Vec::with_capacity(n_bytes.min(64 << 20));
    reader
        .take(n_bytes as u64)
        .read_to_end(&mut data)
        .map_err(|e| malformed(format!("cannot read data: {e}")))?;
    if data.len() != n_bytes {
        return Err(malformed(format!(
            "data truncated: {} of {n_bytes} bytes",
            data.len()
        )));
    }
    if fortran && shape.len() == 2 {
        data = transpose_bytes(&data, shape[1], shape[0], dtype.size());
    } else if fortran && shape.len() > 2 {
        return Err(malformed(
            "Fortran-order arrays of more than 2 dimensions are not supported".into(),
        ));
    }
    Ok(NpyArray {
        name: name.to_string(),
        dtype,
        shape,
        data,
    })
}

/// Transposes a row-major `[rows, cols]` matrix of `elem`-byte items.
fn transpose_bytes(src: &[u8], rows: usize, cols: usize, elem: usize) -> Vec<u8> {
    let mut dst = vec![0u8; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            let s = (r * cols + c) * elem;
            let d = (c * rows + r) * elem;
            dst[d..d + elem].copy_from_slice(&src[s..s + elem]);
        }
    }
    dst
}

/// Extracts the textual value of `key` from the `.npy` header's Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_a = format!("'{key}':");
    let pat_b = format!("\"{key}\":");
    let pos = header
        .find(&pat_a)
        .map(|p| p + pat_a.len())
        .or_else(|| header.find(&pat_b).map(|p| p + pat_b.len()))?;
    let rest = header[pos..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if rest.starts_with('\'') || rest.starts_with('"') {
        let q = rest.as_bytes()[0] as char;
        rest[1..].find(q)? + 2
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// Reads every array of an `.npz` archive.
pub fn read_npz<R: Read + Seek>(reader: R) -> Result<HashMap<String, NpyArray>> {
    read_npz_where(&mut open_npz(reader)?, |_| true)
}

/// Opens an `.npz` archive.
pub fn open_npz<R: Read + Seek>(reader: R) -> Result<zip::ZipArchive<R>> {
    zip::ZipArchive::new(reader).map_err(|e| Error::Archive(e.to_string()))
}

/// The model's fingerprint: a 64-bit FNV-1a hash over the name, CRC-32 and size of every
/// member of the archive, in name order, except `KEY_WRITER` (which luxical wrote the file
/// does not change the model). Read from the zip directory only, so it costs no pass over
/// the weights; equal files have equal fingerprints wherever they are, and any change to
/// an array changes its CRC-32. Not part of the file format: it is never stored.
pub fn archive_fingerprint<R: Read + Seek>(archive: &mut zip::ZipArchive<R>) -> Result<u64> {
    let writer = format!("{KEY_WRITER}.npy");
    let mut members = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let e = archive
            .by_index_raw(i)
            .map_err(|e| Error::Archive(e.to_string()))?;
        if e.name() != writer {
            members.push((e.name().to_string(), e.crc32(), e.size()));
        }
    }
    members.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (name, crc, size) in &members {
        eat(&(name.len() as u64).to_le_bytes());
        eat(name.as_bytes());
        eat(&crc.to_le_bytes());
        eat(&size.to_le_bytes());
    }
    Ok(h)
}

/// The fingerprint (see [`archive_fingerprint`]) of the model file at `path`.
pub fn file_fingerprint(path: &std::path::Path) -> Result<u64> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        action: "cannot open model file",
        path: path.to_path_buf(),
        source,
    })?;
    archive_fingerprint(&mut open_npz(std::io::BufReader::new(file))?)
}

/// Reads the arrays of an open archive whose names pass `keep`.
pub fn read_npz_where<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    keep: impl Fn(&str) -> bool,
) -> Result<HashMap<String, NpyArray>> {
    let mut arrays = HashMap::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| Error::Archive(e.to_string()))?;
        let Some(name) = entry.name().strip_suffix(".npy").map(str::to_string) else {
            continue;
        };
        if !keep(&name) {
            continue;
        }
        let declared = entry.size();
        let array = read_npy(&name, &mut entry, declared)?;
        arrays.insert(name, array);
    }
    Ok(arrays)
}

fn entry<'a, R: Read + Seek>(
    archive: &'a mut zip::ZipArchive<R>,
    name: &str,
) -> Result<zip::read::ZipFile<'a, R>> {
    archive
        .by_name(&format!("{name}.npy"))
        .map_err(|_| Error::MissingArray(name.to_string()))
}

/// The `.npy` header of array `name` (reads only the header) and its fingerprint: the
/// `(crc32, uncompressed size)` the archive's directory records for it.
pub fn member_header<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
) -> Result<(NpyHeader, (u32, u64))> {
    let mut e = entry(archive, name)?;
    let declared = e.size();
    let fingerprint = (e.crc32(), declared);
    Ok((read_npy_header(name, &mut e, declared)?, fingerprint))
}

/// Reads array `name` (a 2-D float array: `[out_dim, in_dim]`).
pub fn read_member<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
) -> Result<NpyArray> {
    let mut e = entry(archive, name)?;
    let declared = e.size();
    let arr = read_npy(name, &mut e, declared)?;
    arr.expect_ndim(2, "[out_dim, in_dim]")?;
    Ok(arr)
}

/// Where the raw `.npy` bytes of array `name` lie in the archive file, if it is stored
/// uncompressed (what `numpy.savez` and luxical write): offset, length and the CRC-32 the
/// archive records for them.
#[derive(Debug, Clone, Copy)]
pub struct StoredSpan {
    pub offset: u64,
    pub len: u64,
    pub crc32: u32,
}

pub fn stored_span<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
) -> Result<Option<StoredSpan>> {
    let e = entry(archive, name)?;
    Ok(
        (e.compression() == zip::CompressionMethod::Stored).then(|| StoredSpan {
            offset: e.data_start(),
            len: e.size(),
            crc32: e.crc32(),
        }),
    )
}

/// CRC-32 of `len` bytes of `file` from `offset`, in parallel blocks combined in order.
#[cfg(unix)]
fn file_crc32(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<u32> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 32 << 20;
    let blocks: Vec<(u64, u64)> = (0..len.div_ceil(BLOCK))
        .map(|b| (offset + b * BLOCK, BLOCK.min(len - b * BLOCK)))
        .collect();
    let parts = blocks
        .par_iter()
        .map(|&(at, n)| {
            let mut buf = vec![0u8; n as usize];
            file.read_exact_at(&mut buf, at)?;
            let mut h = crc32fast::Hasher::new();
            h.update(&buf);
            Ok(h)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut total = crc32fast::Hasher::new();
    for h in parts {
        total.combine(&h);
    }
    Ok(total.finalize())
}

/// Transposes the 2-D float `.npy` array stored uncompressed at `span` (header + data)
/// of `file` (`[rows, cols]`, C order) into float32 `[cols, rows]`, in
/// parallel strips of columns read with positioned reads (no second copy of the array, and
/// the file is not mapped), rejecting non-finite values. Returns `None` for layouts it
/// does not handle (Fortran order, non-float32 data): `read_f32_transposed` handles those.
#[cfg(unix)]
pub fn transpose_stored_f32(
    name: &str,
    file: &std::fs::File,
    span: StoredSpan,
) -> Result<Option<(usize, usize, Vec<f32>)>> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt;
    let StoredSpan { offset, len, crc32 } = span;
    let malformed = |reason: String| Error::MalformedArray {
        array: name.to_string(),
        reason,
    };
    let mut head = vec![0u8; len.min(MAX_NPY_HEADER as u64 + 16) as usize];
    file.read_exact_at(&mut head, offset)
        .map_err(|e| malformed(format!("cannot read header: {e}")))?;
    let mut cursor = Cursor::new(&head[..]);
    let header = read_npy_header(name, &mut cursor, len)?;
    if header.fortran || header.dtype != Dtype::F32 || header.shape.len() != 2 {
        return Ok(None);
    }
    let (rows, cols) = (header.shape[0], header.shape[1]);
    let data_start = offset + cursor.position();
    let mut out = Vec::new();
    out.try_reserve_exact(rows * cols)
        .map_err(|_| malformed(format!("cannot allocate {rows} x {cols} floats")))?;
    crate::advise_spare_capacity(&mut out);
    out.resize(rows * cols, 0.0f32);
    if rows == 0 || cols == 0 {
        return Ok(Some((rows, cols, out)));
    }
    // Strips of STRIP columns: one positioned read per row, then a cache-blocked transpose.
    const STRIP: usize = 8192;
    let result: Result<()> = out
        .par_chunks_mut(STRIP * rows)
        .enumerate()
        .try_for_each_init(Vec::new, |buf: &mut Vec<u8>, (t, dst)| {
            let c0 = t * STRIP;
            let width = dst.len() / rows;
            buf.resize(rows * width * 4, 0);
            for r in 0..rows {
                let at = data_start + ((r * cols + c0) * 4) as u64;
                file.read_exact_at(&mut buf[r * width * 4..(r + 1) * width * 4], at)
                    .map_err(|e| malformed(format!("cannot read data: {e}")))?;
            }
            const T: usize = 32;
            for j0 in (0..width).step_by(T) {
                for r in 0..rows {
                    let src = &buf[(r * width + j0) * 4..(r * width + (j0 + T).min(width)) * 4];
                    for (jj, b) in src.chunks_exact(4).enumerate() {
                        let x = f32::from_le_bytes(b.try_into().unwrap());
                        if !x.is_finite() {
                            return Err(Error::InconsistentModel(format!(
                                "{name} has a non-finite weight at flat index {}",
                                r * cols + c0 + j0 + jj
                            )));
                        }
                        dst[(j0 + jj) * rows + r] = x;
                    }
                }
            }
            Ok(())
        });
    result?;
    // The positioned reads bypass the zip reader's CRC check: do it here (as numpy does).
    let crc = file_crc32(file, offset, len).map_err(|e| malformed(format!("cannot read: {e}")))?;
    if crc != crc32 {
        return Err(Error::Archive(format!(
            "{name}.npy fails its CRC-32 check (the file is damaged)"
        )));
    }
    Ok(Some((rows, cols, out)))
}

/// Reads the 2-D float array `name` (`[rows, cols]`) streaming, straight into transposed
/// float32 order (`[cols, rows]`), rejecting non-finite values. Peak extra memory is one
/// block of rows, not a second copy of the array.
pub fn read_f32_transposed<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
) -> Result<(usize, usize, Vec<f32>)> {
    let mut e = entry(archive, name)?;
    let declared = e.size();
    let header = read_npy_header(name, &mut e, declared)?;
    if header.shape.len() != 2 {
        return Err(Error::ShapeMismatch {
            array: name.to_string(),
            expected: "[out_dim, in_dim]".to_string(),
            found: header.shape.clone(),
        });
    }
    let (rows, cols) = (header.shape[0], header.shape[1]);
    let size = header.dtype.size();
    let decode: fn(&[u8]) -> f32 = match header.dtype {
        Dtype::F32 => |b| f32::from_le_bytes(b.try_into().unwrap()),
        Dtype::F64 => |b| f64::from_le_bytes(b.try_into().unwrap()) as f32,
        Dtype::F16 => |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        other => {
            return Err(Error::UnsupportedDtype {
                array: name.to_string(),
                found: other.descr().to_string(),
                expected: "a float dtype (float32)",
            })
        }
    };
    let malformed = |reason: String| Error::MalformedArray {
        array: name.to_string(),
        reason,
    };
    let non_finite = |flat: usize| {
        Error::InconsistentModel(format!(
            "{name} has a non-finite weight at flat index {flat}"
        ))
    };
    let mut out = Vec::new();
    out.try_reserve_exact(rows * cols)
        .map_err(|_| malformed(format!("cannot allocate {rows} x {cols} floats")))?;
    crate::advise_spare_capacity(&mut out);
    if header.fortran {
        // Column-major [rows, cols] is row-major [cols, rows]: already the order we want.
        let mut buf = vec![0u8; (1 << 20) * size];
        let mut left = rows * cols;
        while left > 0 {
            let take = left.min(buf.len() / size);
            let chunk = &mut buf[..take * size];
            e.read_exact(chunk)
                .map_err(|err| malformed(format!("cannot read data: {err}")))?;
            for b in chunk.chunks_exact(size) {
                let x = decode(b);
                if !x.is_finite() {
                    let (c, r) = (out.len() / rows, out.len() % rows);
                    return Err(non_finite(r * cols + c));
                }
                out.push(x);
            }
            left -= take;
        }
        return Ok((rows, cols, out));
    }
    out.resize(rows * cols, 0.0);
    // Blocks of whole rows (~32 MB), scattered column-wise so writes stay contiguous.
    let block_rows = ((32 << 20) / (cols * size).max(1)).clamp(1, rows.max(1));
    let mut buf = vec![0u8; block_rows * cols * size];
    for r0 in (0..rows).step_by(block_rows) {
        let nr = block_rows.min(rows - r0);
        let chunk = &mut buf[..nr * cols * size];
        e.read_exact(chunk)
            .map_err(|err| malformed(format!("cannot read data: {err}")))?;
        for c in 0..cols {
            let dst = &mut out[c * rows + r0..c * rows + r0 + nr];
            for (r, d) in dst.iter_mut().enumerate() {
                let at = (r * cols + c) * size;
                let x = decode(&chunk[at..at + size]);
                if !x.is_finite() {
                    return Err(non_finite((r0 + r) * cols + c));
                }
                *d = x;
            }
        }
    }
    Ok((rows, cols, out))
}

/// Reads an `.npz` archive from memory.
pub fn read_npz_bytes(bytes: &[u8]) -> Result<HashMap<String, NpyArray>> {
    read_npz(Cursor::new(bytes))
}

/// An array to write: borrowed raw little-endian bytes.
pub struct NpyOut<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// Writes arrays as an uncompressed `.npz` (what `numpy.savez` writes).
pub fn write_npz<W: Write + Seek>(writer: W, arrays: &[NpyOut<'_>]) -> Result<()> {
    let mut zip = zip::ZipWriter::new(writer);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(
            arrays
                .iter()
                .any(|a| a.data.len() > (u32::MAX as usize) / 2),
        );
    let io = |e: std::io::Error| Error::Archive(format!("write failed: {e}"));
    for array in arrays {
        zip.start_file(format!("{}.npy", array.name), options)
            .map_err(|e| Error::Archive(e.to_string()))?;
        zip.write_all(&npy_header(array.dtype, &array.shape))
            .map_err(io)?;
        zip.write_all(array.data).map_err(io)?;
    }
    zip.finish().map_err(|e| Error::Archive(e.to_string()))?;
    Ok(())
}

/// A version 1.0 `.npy` header padded (with the newline) to a multiple of 64 bytes.
fn npy_header(dtype: Dtype, shape: &[usize]) -> Vec<u8> {
    let shape_txt = match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_txt}, }}",
        dtype.descr()
    );
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Checks the declared format version and the layer count; returns the layer count.
pub fn check_version_and_layers(arrays: &HashMap<String, NpyArray>) -> Result<usize> {
    let version = get(arrays, KEY_VERSION)?.scalar_i64()?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormatVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let n_layers = get(arrays, KEY_NUM_LAYERS)?.scalar_i64()?;
    if !(1..=MAX_LAYERS).contains(&n_layers) {
        return Err(Error::InconsistentModel(format!(
            "num_nn_layers = {n_layers}, expected between 1 and {MAX_LAYERS}"
        )));
    }
    Ok(n_layers as usize)
}

/// Looks up a required array.
pub fn get<'a>(arrays: &'a HashMap<String, NpyArray>, key: &str) -> Result<&'a NpyArray> {
    arrays
        .get(key)
        .ok_or_else(|| Error::MissingArray(key.to_string()))
}

/// Little-endian bytes of a slice of plain numbers.
pub fn le_bytes<T: Copy, const N: usize>(values: &[T], to: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(arrays: &[NpyOut<'_>]) -> HashMap<String, NpyArray> {
        let mut buf = Cursor::new(Vec::new());
        write_npz(&mut buf, arrays).unwrap();
        read_npz_bytes(buf.get_ref()).unwrap()
    }

    #[test]
    fn header_is_64_byte_aligned_and_parses() {
        let h = npy_header(Dtype::F32, &[3, 4]);
        assert_eq!(h.len() % 64, 0);
        assert!(String::from_utf8_lossy(&h).contains("'shape': (3, 4)"));
    }

    #[test]
    fn npz_round_trip_scalar_vector_matrix() {
        let m = le_bytes(&[1.5f32, -2.0, 3.25, 0.0, 1.0, 2.0], f32::to_le_bytes);
        let v = le_bytes(&[7i64], i64::to_le_bytes);
        let out = round_trip(&[
            NpyOut {
                name: "m",
                dtype: Dtype::F32,
                shape: vec![2, 3],
                data: &m,
            },
            NpyOut {
                name: "s",
                dtype: Dtype::I64,
                shape: vec![],
                data: &v,
            },
        ]);
        assert_eq!(out["m"].shape, vec![2, 3]);
        assert_eq!(
            out["m"].to_f32().unwrap(),
            vec![1.5, -2.0, 3.25, 0.0, 1.0, 2.0]
        );
        assert_eq!(out["s"].scalar_i64().unwrap(), 7);
    }

    #[test]
    fn object_arrays_are_refused() {
        let mut data = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n";
        data.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        data.extend_from_slice(dict.as_bytes());
        data.extend_from_slice(&[0u8; 8]);
        let err = read_npy("x", &mut Cursor::new(&data), data.len() as u64).unwrap_err();
        assert!(err.to_string().contains("never"), "{err}");
    }

    #[test]
    fn declared_size_beyond_entry_is_refused_before_allocating() {
        let mut data = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000,), }\n";
        data.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        data.extend_from_slice(dict.as_bytes());
        let err = read_npy("x", &mut Cursor::new(&data), data.len() as u64).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn fortran_order_is_transposed_to_c_order() {
        let mut data = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '<u4', 'fortran_order': True, 'shape': (2, 3), }\n";
        data.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        data.extend_from_slice(dict.as_bytes());
        // column-major [[1,2,3],[4,5,6]] = 1 4 2 5 3 6
        data.extend(le_bytes(&[1u32, 4, 2, 5, 3, 6], u32::to_le_bytes));
        let a = read_npy("x", &mut Cursor::new(&data), data.len() as u64).unwrap();
        assert_eq!(a.to_u32().unwrap(), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn half_precision_arrays_read_as_f32() {
        // 1.0, -2.0, smallest subnormal, as IEEE half bit patterns
        let data = le_bytes(&[0x3c00u16, 0xc000, 0x0001], u16::to_le_bytes);
        let out = round_trip(&[NpyOut {
            name: "h",
            dtype: Dtype::F16,
            shape: vec![3],
            data: &data,
        }]);
        assert_eq!(out["h"].to_f32().unwrap(), vec![1.0, -2.0, 2f32.powi(-24)]);
    }
}
