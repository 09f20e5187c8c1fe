#!/usr/bin/env python3
"""Builds the training corpus of the default model: English prose from Debian documentation.

    python scripts/data/build_corpus.py [--out .data/corpus] [--work .data/cache/corpus]
                                        [--exclude-dir .data/eval/dev ...] [--jobs 1]

Needs apt and dpkg (Debian bookworm, `apt-get update` done once) and pyarrow.

1. Fetch: `apt-get download` + `dpkg -x` for each package of PACKAGES (Debian `main`,
   DFSG-free; each package's licence is in its `usr/share/doc/<pkg>/copyright`).
   Nothing is installed. Downloads and extractions are cached in --work.
2. Convert: HTML, Mallard/help XML (.page, .xhp), POD, reST, texinfo and man pages to
   plain text; other text files as they are. Skipped: symlinks, copyright and changelog
   files, non-English translations (by path), binary files, files over 20 MB, and the
   contents of <pre>/<code>/<table>/navigation in HTML and of code/screen/example
   elements in XML.
3. Keep prose: paragraphs (blank-line separated) of >= 8 words, >= 70% letters,
   >= 12% common English function words and few code symbols; consecutive prose
   paragraphs are packed into documents of 50-400 words (a longer paragraph is cut into
   400-word pieces).
4. Deduplicate: a document is dropped if its normalised text, or its first 32 words,
   was seen before (earlier packages and files win).
5. Separate from evaluation: a document sharing any 13-word shingle with a text of an
   evaluation suite (every *.jsonl under each --exclude-dir; default the dev suite that
   scripts/eval/build_dev_suite.py builds) is dropped.
6. Write `shard-NNNN.parquet` (zstd; columns `id` = `package:path:chunk`, `text`) and
   `stats.json` (counts, per-package documents, timings).

Order: packages in PACKAGES order, folders and files in name order, the same on every
machine. The order decides which copy of a near-duplicate is kept and which documents a
seeded shuffle picks. The shipped default model was trained on a build that visited
subfolders in the order the filesystem listed them (`--walk-order filesystem`; on the
project's build machines that reproduces its corpus and IDF exactly, elsewhere the order
differs). The two orders keep the same number of documents; 1,627 of the 92,033 texts
differ (another copy of a near-duplicate: an .html page instead of its .rst source).

None of the evaluation sources (the Debian package index descriptions, dict-gcide,
wordnet-base, dict-foldoc, fortunes, gensim's test data) is in PACKAGES.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".data" / "corpus"
DEFAULT_WORK = REPO / ".data" / "cache" / "corpus"
DEFAULT_EXCLUDE = REPO / ".data" / "eval" / "dev"

# Debian bookworm `main` English documentation packages. Their order is the order of the
# corpus and decides which copy of a duplicate is kept.
PACKAGES = [
    "linux-doc-6.1", "python3.11-doc", "perl-doc", "postgresql-doc-15",
    "debian-reference-en", "debian-handbook", "manpages", "manpages-dev", "rust-doc",
    "libreoffice-help-en-us", "gimp-help-en", "apache2-doc", "git-doc", "python-django-doc",
    "nodejs-doc", "gnome-user-docs", "debian-policy", "developers-reference", "octave-doc",
    "maxima-doc", "ghc-doc", "python-scipy-doc", "kicad-doc-en", "lilypond-doc-html",
    "ruby3.1-doc", "sbcl-doc",
]

MIN_WORDS, MAX_WORDS = 50, 400  # document size
SHINGLE_WORDS = 13  # overlap with an eval text that removes a document
MAX_FILE_BYTES = 20_000_000

# ---------------------------------------------------------------------------- file selection
# Extensions read as documentation ("" = no extension, e.g. README); man pages are
# recognised by their folder and section suffix instead.
TEXT_EXTENSIONS = {".html", ".htm", ".xhtml", ".txt", ".rst", ".pod", ".pm", ".md", ".page", ".xhp",
                   ".texi", ".tex", ""}
_LANGS = ("de|fr|es|it|ja|zh|zh_CN|zh_TW|zh-cn|zh-tw|nl|hu|pt|pt_BR|pt-br|ca|cs|ru|pl|ko|sv|fi|da|nb|el|tr|uk|ar|"
          "ro|sk|sl|vi|id|fa|he|ka|ta|eu|gl|et|lt|lv|bg|hr|sr|ja_JP|es-ES|fr-FR|de-DE|it-IT|pt-BR|ru-RU|zh-CN|"
          "ja-JP|ko-KR|nl-NL|pl-PL|sv-SE|nb-NO|da-DK|el-GR|ro-RO|sq-AL|hr-HR|fa-IR|id-ID|ar-EG|tr-TR|vi-VN|uk-UA|"
          "cs-CZ|hu-HU|fi-FI")
# A translation: a path component named after a language, or page.<lang>.html.
TRANSLATED = re.compile(rf"(^|/)({_LANGS})(/|$)|\.(de|fr|es|it|ja|zh|nl|hu|pt|ca|cs|ru|pl|ko)\.html$")
MAN_SUFFIX = re.compile(r"\.\d[a-z]*$")  # ls.1, printf.3p, ...
PLAIN_NAME = re.compile(r"^[A-Z_-]+$|^[a-z0-9_.-]+$")  # README, NEWS, overview, ...


def wanted(rel: str, name: str) -> bool:
    """Whether the file at `rel` (relative to the package root) is read."""
    if "copyright" in name or "changelog" in name.lower() or TRANSLATED.search(rel):
        return False
    base = name[:-3] if name.endswith(".gz") else name
    if "/man/" in "/" + rel and MAN_SUFFIX.search(base):
        return True
    ext = os.path.splitext(base)[1].lower()
    return ext in TEXT_EXTENSIONS and (ext != "" or bool(PLAIN_NAME.match(base)))


def package_files(root: Path, walk_order: str = "name") -> Iterator[str]:
    """Paths (relative to root, folders depth first) of the files to read. Files of a
    folder come in name order; subfolders in name order, or with walk_order="filesystem"
    in the order the filesystem lists them (see --walk-order)."""
    for folder, dirs, files in os.walk(root):
        if walk_order == "name":
            dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if not os.path.islink(path) and wanted(rel, name):
                yield rel


def read_text(path: str) -> str | None:
    """The file's text (gunzipped if .gz, UTF-8 with replacement); None for unreadable,
    too large or binary files."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return None
        if path.endswith(".gz"):
            with gzip.open(path) as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError, zlib.error):  # unreadable or corrupt: skipped
        return None
    if b"\x00" in data[:4096]:
        return None
    return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------------- markup -> text
class _HtmlProse(HTMLParser):
    """Text of an HTML page with block elements as paragraph breaks; code, preformatted
    text, tables, navigation, headers and footers are left out."""

    SKIPPED = {"script", "style", "nav", "head", "pre", "code", "table", "footer", "header"}
    BLOCKS = {"p", "div", "li", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "br", "tr", "section",
              "blockquote", "title", "article", "ul", "ol", "dl"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0  # depth inside skipped elements

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_text(raw: str) -> str:
    parser = _HtmlProse()
    try:
        parser.feed(raw)
        parser.close()
    except Exception:  # malformed markup: keep what was parsed so far
        pass
    return "".join(parser.parts)


def xml_text(raw: str) -> str:
    """Mallard (.page) and LibreOffice help (.xhp): drop code-like elements, paragraph
    breaks at block elements, strip the remaining tags."""
    raw = re.sub(r"<(code|screen|pre|example|synopsis)[^>]*>.*?</\1>", " ", raw, flags=re.S)
    raw = re.sub(r"</?(p|para|title|item|section|page|li|h\d)[^>]*>", "\n\n", raw)
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


_MAN_BREAK = re.compile(r"^\.(SH|SS|PP|LP|P|TP|IP|sp|br|HP)\b(.*)")
_MAN_FONT_LINE = re.compile(r"^\.(B|I|BI|BR|IR|RB|RI|IB|SM|SB)\s+(.*)")
_MAN_FONT_ESCAPE = re.compile(r"\\f[BIRP]|\\f\(..|\\f\[[^\]]*\]")
_MAN_CHAR_ESCAPE = re.compile(r"\\\(..|\\\[[^\]]*\]|\\[-&e|^ ]")
_MAN_CHARS = {"\\-": "-", "\\e": "\\"}  # every other special character becomes a space


def man_text(raw: str) -> str:
    """groff man source: section and paragraph macros become breaks (section titles kept),
    font macros keep their words, other requests and comments are dropped."""
    parts = []
    for line in raw.split("\n"):
        if line.startswith((".\\\"", "'\\\"")):
            continue
        if not line.startswith("."):
            parts.append(line + "\n")
            continue
        m = _MAN_BREAK.match(line)
        if m:
            parts.append("\n\n")
            title = m.group(2).strip().strip('"')
            if m.group(1) in ("SH", "SS") and title:
                parts.append(title + "\n\n")
            continue
        m = _MAN_FONT_LINE.match(line)
        if m:
            parts.append(m.group(2).replace('"', "") + " ")
    text = _MAN_FONT_ESCAPE.sub("", "".join(parts))
    return _MAN_CHAR_ESCAPE.sub(lambda m: _MAN_CHARS.get(m.group(0), " "), text)


def pod_text(raw: str) -> str:
    """POD blocks of a .pod/.pm file (code between =cut and the next command is left
    out); headings and items become their own paragraphs; formatting codes keep their text."""
    kept = []
    in_pod = raw.lstrip().startswith("=")
    for line in raw.split("\n"):
        if line.startswith("=cut"):
            in_pod = False
        elif line.startswith("="):
            in_pod = True
            m = re.match(r"^=(head\d|item)\s+(.*)", line)
            kept.append("\n\n" + (m.group(2) if m else "") + "\n\n")
        elif in_pod:
            kept.append(line)
    return re.sub(r"[A-Z]<+\s*([^<>]*?)\s*>+", r"\1", "\n".join(kept))


def rst_text(raw: str) -> str:
    """reStructuredText: directives/comments and underline rows removed, roles, literals,
    links and emphasis reduced to their text."""
    raw = re.sub(r"^\.\. .*$", "", raw, flags=re.M)
    raw = re.sub(r"^[=\-~^*#+`:'\"]{3,}\s*$", "", raw, flags=re.M)
    raw = re.sub(r":[a-z:]+:`([^`<]*?)(<[^>]*>)?`", r"\1", raw)
    raw = re.sub(r"`+([^`]*)`+_?", r"\1", raw)
    return re.sub(r"\*\*?([^*]+)\*\*?", r"\1", raw)


def texinfo_text(raw: str) -> str:
    """Texinfo: structural commands and @example blocks removed, @cmd{text} -> text."""
    raw = re.sub(r"^@(c|comment|node|menu|end|set|include|cindex|findex|vindex|kindex|pindex|opindex)\b.*$", "",
                 raw, flags=re.M)
    raw = re.sub(r"^@example.*?^@end example", "", raw, flags=re.M | re.S)
    raw = re.sub(r"@[a-zA-Z]+\{([^{}]*)\}", r"\1", raw)
    return re.sub(r"^@[a-zA-Z]+\s*", "", raw, flags=re.M)


CONVERTERS = {
    ".html": html_text, ".htm": html_text, ".xhtml": html_text,
    ".page": xml_text, ".xhp": xml_text, ".xml": xml_text,
    ".pod": pod_text, ".pm": pod_text,
    ".rst": rst_text,
    ".texi": texinfo_text, ".texinfo": texinfo_text,
}


def to_text(rel: str, raw: str) -> str:
    """Plain text of a file. The converter is chosen by the path's own last extension,
    so a compressed page (`x.html.gz`, `x.rst.gz`) is kept as it is; the default model's
    corpus was built that way (the prose filter drops what markup remains)."""
    low = rel.lower()
    if "/man/" in low and re.search(r"\.\d[a-z]*(\.gz)?$", low):
        return man_text(raw)
    convert = CONVERTERS.get(os.path.splitext(low)[1])
    return convert(raw) if convert else raw


# ---------------------------------------------------------------------------- prose filter
FUNCTION_WORDS = frozenset(
    "the of and to a in is that for it as with be on by this are or not from at an which can you if your we use "
    "will all has have was its".split()
)


def is_prose(paragraph: str) -> bool:
    """English running text rather than code, tables, lists of names or other languages."""
    words = paragraph.split()
    if len(words) < 8:
        return False
    if sum(c.isalpha() for c in paragraph) < 0.7 * len(paragraph.replace(" ", "")):
        return False
    if sum(w.lower() in FUNCTION_WORDS for w in words) < 0.12 * len(words):
        return False
    code_marks = sum(paragraph.count(c) for c in "({;=")
    return code_marks <= 0.15 * len(words)


def documents(text: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> Iterator[str]:
    """Packs consecutive prose paragraphs into documents of min_words..max_words words
    (default MIN_WORDS..MAX_WORDS). A non-prose paragraph ends the current document; a
    paragraph over max_words is cut into max_words pieces on its own (a short last piece
    is dropped)."""
    current: list[str] = []
    n_words = 0

    def flush() -> Iterator[str]:
        nonlocal current, n_words
        if n_words >= min_words:
            yield " ".join(current)
        current, n_words = [], 0

    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = re.sub(r"\s+", " ", paragraph).strip()
        if not is_prose(paragraph):
            yield from flush()
            continue
        words = paragraph.split()
        if len(words) > max_words:
            yield from flush()
            for i in range(0, len(words), max_words):
                if len(words[i : i + max_words]) >= min_words:
                    yield " ".join(words[i : i + max_words])
            continue
        if n_words + len(words) > max_words:
            yield from flush()
        current.append(paragraph)
        n_words += len(words)
    yield from flush()


def file_documents(task: tuple[str, str]) -> list[str]:
    """The documents of one file (runs in a worker process with --jobs > 1)."""
    root, rel = task
    raw = read_text(os.path.join(root, rel))
    return [] if raw is None else list(documents(to_text(rel, raw)))


# ---------------------------------------------------------------------------- dedup, eval separation
def digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


def dedup_keys(doc: str) -> tuple[bytes, bytes]:
    """The keys under which a document counts as seen: its lower-cased text with runs of
    non-word characters made one space, and its first 32 lower-cased words."""
    lowered = doc.lower()
    return digest(re.sub(r"\W+", " ", lowered), 12), digest(" ".join(lowered.split()[:32]), 12)


def shingles(text: str) -> Iterator[bytes]:
    """64-bit hashes of every run of SHINGLE_WORDS lower-cased alphanumeric words."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    for i in range(len(words) - SHINGLE_WORDS + 1):
        yield digest(" ".join(words[i : i + SHINGLE_WORDS]), 8)


def eval_shingles(dirs: Iterable[Path]) -> tuple[set[bytes], int]:
    """Shingles of the text fields (text, text1, text2) of every *.jsonl under `dirs`."""
    found: set[bytes] = set()
    n_files = 0
    for d in dirs:
        for path in sorted(Path(d).rglob("*.jsonl")):
            n_files += 1
            with open(path, encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    for key in ("text", "text1", "text2"):
                        if isinstance(row.get(key), str):
                            found.update(shingles(row[key]))
    return found, n_files


# ---------------------------------------------------------------------------- download
def fetch(packages: list[str], work: Path) -> dict[str, Path]:
    """Extracted package roots; a package that cannot be downloaded is reported and skipped."""
    debs, extracted = work / "debs", work / "x"
    debs.mkdir(parents=True, exist_ok=True)
    extracted.mkdir(parents=True, exist_ok=True)
    roots = {}
    for package in packages:
        have = sorted(debs.glob(f"{package}_*.deb"))
        if not have:
            r = subprocess.run(["apt-get", "download", "-q", package], cwd=debs, capture_output=True, text=True)
            have = sorted(debs.glob(f"{package}_*.deb"))
            if r.returncode != 0 or not have:
                print(f"[skip] {package}: apt-get download failed: {r.stderr.strip()[:300]}", file=sys.stderr)
                continue
        root = extracted / package
        if not root.is_dir():
            partial = extracted / (package + ".partial")
            partial.mkdir(exist_ok=True)
            r = subprocess.run(["dpkg", "-x", str(have[-1]), str(partial)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"[skip] {package}: dpkg -x failed: {r.stderr.strip()[:300]}", file=sys.stderr)
                continue
            partial.rename(root)
        roots[package] = root
    return roots


# ---------------------------------------------------------------------------- main
class ShardWriter:
    def __init__(self, out: Path, docs_per_shard: int) -> None:
        self.out, self.docs_per_shard = out, docs_per_shard
        self.rows: list[tuple[str, str]] = []
        self.n_shards = 0

    def add(self, doc_id: str, text: str) -> None:
        self.rows.append((doc_id, text))
        if len(self.rows) >= self.docs_per_shard:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.rows:
            table = pa.table({"id": [r[0] for r in self.rows], "text": [r[1] for r in self.rows]})
            pq.write_table(table, self.out / f"shard-{self.n_shards:04d}.parquet", compression="zstd")
            self.n_shards += 1
            self.rows = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="download/extract cache (default: %(default)s)")
    ap.add_argument("--packages", default=",".join(PACKAGES), help="comma-separated Debian packages (default: PACKAGES)")
    ap.add_argument("--exclude-dir", type=Path, action="append",
                    help="evaluation suite folder whose texts must not overlap the corpus; repeatable "
                    f"(default: {DEFAULT_EXCLUDE})")
    ap.add_argument("--no-exclude", action="store_true", help="skip the evaluation-overlap filter (not for the default model)")
    ap.add_argument("--shard-docs", type=int, default=100_000, help="documents per parquet shard")
    ap.add_argument("--walk-order", choices=["name", "filesystem"], default="name",
                    help="order of subfolders: name (reproducible anywhere) or filesystem (as the shipped "
                    "model's corpus was built; machine dependent)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for parsing (output is the same for any value)")
    args = ap.parse_args()

    t0 = time.time()
    exclude_dirs = [] if args.no_exclude else (args.exclude_dir or [DEFAULT_EXCLUDE])
    for d in exclude_dirs:
        if not d.is_dir():
            ap.error(f"evaluation suite {d} not found: build it first (python scripts/eval/build_dev_suite.py) "
                     "or pass --exclude-dir / --no-exclude")
    excluded_shingles, n_files = eval_shingles(exclude_dirs)
    print(f"eval overlap filter: {len(excluded_shingles)} shingles from {n_files} files", file=sys.stderr)
    roots = fetch([p for p in args.packages.split(",") if p], args.work)
    fetch_s = time.time() - t0

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("shard-*.parquet"):
        old.unlink()  # a rebuild must not leave shards of an earlier, larger run behind
    writer = ShardWriter(args.out, args.shard_docs)
    seen_text: set[bytes] = set()
    seen_start: set[bytes] = set()
    stats: dict = {"docs": 0, "chars": 0, "words": 0, "dup": 0, "excluded": 0, "per_package": {}}
    pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
    try:
        for package, root in roots.items():
            files = list(package_files(root, args.walk_order))
            tasks = [(str(root), rel) for rel in files]
            results = pool.map(file_documents, tasks, chunksize=16) if pool else map(file_documents, tasks)
            n_package = 0
            for rel, docs in zip(files, results):
                for chunk, doc in enumerate(docs):
                    text_key, start_key = dedup_keys(doc)
                    if text_key in seen_text or start_key in seen_start:
                        stats["dup"] += 1
                        continue
                    seen_text.add(text_key)
                    seen_start.add(start_key)
                    if excluded_shingles and any(s in excluded_shingles for s in shingles(doc)):
                        stats["excluded"] += 1
                        continue
                    writer.add(f"{package}:{rel}:{chunk}", doc)
                    stats["docs"] += 1
                    stats["chars"] += len(doc)
                    stats["words"] += len(doc.split())
                    n_package += 1
            stats["per_package"][package] = n_package
            print(f"{package}: {n_package} docs ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    finally:
        if pool:
            pool.shutdown()
    writer.flush()
    stats.update(shards=writer.n_shards, text_mb=round(stats["chars"] / 1e6, 1), fetch_extract_s=round(fetch_s, 1),
                 total_s=round(time.time() - t0, 1), walk_order=args.walk_order,
                 packages_skipped=[p for p in args.packages.split(",") if p and p not in roots])
    (args.out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
