#!/usr/bin/env python3
"""Build the repository's real-text test sample, tests/data/real_texts.jsonl.xz.

Two kinds of real English text, both from Debian `main` (see tests/data/README.md):

* "short": package descriptions (up to 2,000 characters) from the apt index.
  `apt-cache dumpavail` lists the available binary packages with their
  `Description-md5`; the English long descriptions
  come from the `Translation-en` index files (located with `apt-get indextargets`, read
  with `apt-helper cat-file`). Text = synopsis + ". " + long description; the rows also
  carry the two parts as "title" (synopsis) and "body" (long description).
* "long": prose chunks (200-1000 words) cut from a few documentation packages, fetched
  with `apt-get download` and unpacked with `dpkg -x` into a work folder: Sphinx HTML
  (linux-doc-6.1, python3.11-doc) and POD (perl-doc), turned into plain paragraphs by
  the small converters below.

Output: lzma-compressed JSON lines, one object per text: "i" (0..N-1), "source", "kind"
("short" or "long"), "text", and for short texts "title" and "body". Texts are kept as
they are (no unicode normalisation); only markup is removed and runs of ASCII whitespace
inside a paragraph are collapsed, as a browser would. The sample is drawn with a fixed
seed, so the output is the same for the same package versions (printed at the end, and
listed in tests/data/README.md).

For tests only (tokenisation and embedding), never for training.

Usage (Debian bookworm; root is needed only if the Translation-en index is missing, in
which case the script runs `apt-get -o Acquire::Languages=en update` itself):

    python3 scripts/data/build_test_texts.py [--out tests/data/real_texts.jsonl.xz] [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import html
import html.parser
import json
import lzma
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "data" / "real_texts.jsonl.xz"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "luxical-test-texts"

DOC_PACKAGES = ("linux-doc-6.1", "python3.11-doc", "perl-doc")

SEED = 20240601
N_SHORT = 32_000
N_LONG = 1_000
MAX_SHORT_CHARS = 2_000  # the few longer package descriptions are left out (size)
MIN_WORDS, MAX_WORDS = 200, 1000

_ASCII_WS = re.compile(r"[ \t\n\r\f\v]+")
_WORD = re.compile(r"[A-Za-z]+")
# A few very common English function words: a paragraph made of prose has plenty of them.
_FUNCTION_WORDS = frozenset(
    "the a an of to in is are be and or that this it for on with as by not can if from "
    "at was which when you your use used will may should must have has but all any its "
    "their they there these those than then also only such each more most into one".split()
)


# ------------------------------------------------------------------------------ helpers
def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def collapse(text: str) -> str:
    return _ASCII_WS.sub(" ", text).strip()


def looks_like_prose(par: str) -> bool:
    words = par.split()
    if len(words) < 8:
        return False
    letters = sum(ch.isalpha() for ch in par)
    visible = sum(not ch.isspace() for ch in par)
    if visible == 0 or letters / visible < 0.75:
        return False
    latin = _WORD.findall(par)
    if len(latin) < 0.6 * len(words):
        return False
    function = sum(w.lower() in _FUNCTION_WORDS for w in latin)
    return function / len(words) >= 0.12


# ------------------------------------------------------------------- short: apt index
def _translation_files() -> list[str]:
    def targets() -> list[str]:
        out = run(
            ["apt-get", "-o", "Acquire::Languages=en", "indextargets", "--format", "$(FILENAME)", "Identifier: Translations"],
            text=True,
        ).stdout
        return sorted(line for line in out.splitlines() if line.strip() and os.path.exists(line.strip()))

    files = targets()
    if not files:
        print("Translation-en index missing: running apt-get -o Acquire::Languages=en update", file=sys.stderr)
        run(["apt-get", "-o", "Acquire::Languages=en", "update"])
        files = targets()
    if not files:
        raise SystemExit("no Translation-en index files found (is this a Debian system with apt?)")
    return files


def _stanzas(text: str):
    """Yields the fields of each deb822 stanza as a dict (continuation lines kept)."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if not line:
                continue
            if line[0] in " \t" and key is not None:
                fields[key] += "\n" + line
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


def _long_description(lines: list[str]) -> str:
    """Debian long description -> plain text: a line " ." is a paragraph break; lines of a
    paragraph are joined with a space; paragraphs are separated by a newline."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        body = line[1:] if line.startswith(" ") else line
        if body.strip() == ".":
            paragraphs.append([])
        elif body.strip():
            paragraphs[-1].append(body.strip())
    return "\n".join(" ".join(p) for p in paragraphs if p)


def short_texts() -> tuple[list[tuple[str, dict]], dict]:
    avail = run(["apt-cache", "dumpavail"]).stdout.decode("utf-8", "replace")
    wanted: set[tuple[str, str]] = set()
    for st in _stanzas(avail):
        if "Package" in st and "Description-md5" in st:
            wanted.add((st["Package"], st["Description-md5"]))
    descriptions: dict[tuple[str, str], tuple[str, str]] = {}
    files = _translation_files()
    for path in files:
        raw = run(["/usr/lib/apt/apt-helper", "cat-file", path]).stdout.decode("utf-8", "replace")
        for st in _stanzas(raw):
            key = (st.get("Package", ""), st.get("Description-md5", ""))
            if key not in wanted or "Description-en" not in st or key in descriptions:
                continue
            first, *rest = st["Description-en"].split("\n")
            synopsis = first.strip()
            body = _long_description(rest)
            if not synopsis or not body or len(synopsis) + 2 + len(body) > MAX_SHORT_CHARS:
                continue
            descriptions[key] = (synopsis, body)
    seen: set[str] = set()
    out: list[tuple[str, dict]] = []
    for (pkg, _md5), (title, body) in sorted(descriptions.items()):
        text = f"{title}. {body}"
        if text not in seen:
            seen.add(text)
            out.append((f"debian-description:{pkg}", {"text": text, "title": title, "body": body}))
    info = {"available_packages": len(wanted), "kept_descriptions": len(descriptions), "unique_texts": len(out)}
    return out, info


# -------------------------------------------------------------- long: documentation
class _SphinxText(html.parser.HTMLParser):
    """Paragraphs of the main content of a Sphinx HTML page (role="main"), without code
    blocks, tables, signatures, navigation and permalink marks."""

    SKIP_TAGS = {"script", "style", "pre", "table", "nav", "footer", "head", "math", "svg", "object", "form"}
    SKIP_CLASSES = {"headerlink", "highlight", "sig", "toctree-wrapper", "sphinxsidebar", "related",
                    "section-number", "footer", "contents", "topic", "rubric", "graphviz"}
    BLOCK_TAGS = {"p", "div", "section", "li", "dt", "dd", "blockquote", "h1", "h2", "h3", "h4", "h5",
                  "h6", "ul", "ol", "dl", "br", "hr", "figure", "figcaption", "caption", "aside", "tr"}
    VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, skipping, in_main)
        self.paragraphs: list[tuple[str, bool]] = []  # (text, is_heading)
        self.buf: list[str] = []
        self.heading = False

    def _state(self) -> tuple[bool, bool]:
        return (self.stack[-1][1], self.stack[-1][2]) if self.stack else (False, False)

    def _flush(self) -> None:
        text = collapse("".join(self.buf))
        if text:
            self.paragraphs.append((text, self.heading))
        self.buf = []
        self.heading = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        skipping, in_main = self._state()
        classes = set((a.get("class") or "").split())
        if tag in self.BLOCK_TAGS:
            self._flush()
        if tag in self.VOID:
            return
        skip = skipping or tag in self.SKIP_TAGS or bool(classes & self.SKIP_CLASSES) or a.get("role") == "navigation"
        main = in_main or a.get("role") == "main"
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            self.heading = True
        self.stack.append((tag, skip, main))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if tag in self.BLOCK_TAGS:
            self._flush()
        # pop to the matching open tag (tolerates unclosed <p>, <li>, ...)
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k][0] == tag:
                del self.stack[k:]
                break

    def handle_data(self, data):
        skipping, in_main = self._state()
        if in_main and not skipping:
            self.buf.append(data)

    def close(self):
        super().close()
        self._flush()


def html_paragraphs(raw: str) -> list[tuple[str, bool]]:
    p = _SphinxText()
    p.feed(raw)
    p.close()
    return p.paragraphs


_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&", "apos": "'"}


def _pod_codes(s: str) -> str:
    """Expands POD formatting codes (B<>, I<>, C<>, L<>, E<>, F<>, S<>, X<>, Z<>, also the
    C<< ... >> forms) with a small recursive scanner."""
    out: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        m = re.match(r"([A-Z])(<+)", s[i:]) if s[i].isupper() else None
        if m and (len(m.group(2)) == 1 or (i + len(m.group(0)) < n and s[i + len(m.group(0))].isspace())):
            code, opens = m.group(1), len(m.group(2))
            start = i + len(m.group(0))
            if opens == 1:
                depth, j = 1, start
                while j < n and depth:
                    if s[j] == "<" and j > 0 and s[j - 1].isupper():
                        depth += 1
                    elif s[j] == ">":
                        depth -= 1
                    j += 1
                inner, end = s[start : j - 1] if depth == 0 else s[start:], j
            else:
                close = " " + ">" * opens
                j = s.find(close, start)
                if j < 0:
                    inner, end = s[start:], n
                else:
                    inner, end = s[start:j], j + len(close)
                inner = inner.strip()
            inner = _pod_codes(inner)
            if code in ("X", "Z"):
                pass
            elif code == "E":
                if inner in _POD_ENTITIES:
                    out.append(_POD_ENTITIES[inner])
                elif inner.isdigit():
                    out.append(chr(int(inner)))
                elif inner.lower().startswith("0x"):
                    out.append(chr(int(inner, 16)))
                else:
                    out.append(html.unescape(f"&{inner};"))
            elif code == "L":
                text = inner.split("|", 1)[0] if "|" in inner else inner
                if "|" not in inner:
                    name, _, sec = text.partition("/")
                    sec = sec.strip('"')
                    text = f"{sec} in {name}" if name and sec else (sec or name)
                out.append(text)
            else:
                out.append(inner)
            i = end
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def pod_paragraphs(raw: str) -> list[tuple[str, bool]]:
    pars: list[tuple[str, bool]] = []
    skipping_block = False
    in_pod = True
    for block in re.split(r"\n[ \t]*\n", raw):
        if not block.strip():
            continue
        first = block.lstrip("\n")
        if first.startswith("="):
            cmd, _, rest = first.partition(" ")
            cmd = cmd.split("\n")[0]
            rest = first[len(cmd) :].strip()
            if cmd == "=cut":
                in_pod = False
            elif cmd in ("=pod",) or cmd.startswith("=head"):
                in_pod = True
            if cmd == "=begin":
                skipping_block = True
            elif cmd == "=end":
                skipping_block = False
            elif cmd.startswith("=head") and not skipping_block and rest:
                pars.append((collapse(_pod_codes(rest)), True))
            elif cmd == "=item" and not skipping_block and rest and rest not in ("*", "o") and not rest.isdigit():
                pars.append((collapse(_pod_codes(rest)), False))
            continue
        if not in_pod or skipping_block or first[0] in " \t":
            continue  # code outside POD, =begin blocks, verbatim paragraphs
        pars.append((collapse(_pod_codes(first)), False))
    return pars


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


def doc_files(root: Path, package: str) -> list[tuple[Path, str]]:
    """(file, format) pairs of the English documentation of one unpacked package."""
    files: list[tuple[Path, str]] = []
    if package.startswith("perl-doc"):
        for p in sorted(root.glob("usr/share/perl/*/pod/*.pod")):
            if p.name not in ("perltoc.pod",):
                files.append((p, "pod"))
    else:
        for p in sorted(root.rglob("*.html")):
            rel = p.relative_to(root).as_posix()
            parts = set(rel.split("/"))
            if parts & {"_sources", "_static", "_downloads", "_images", "translations"}:
                continue
            if p.name.startswith(("genindex", "search", "py-modindex", "copyright", "license")):
                continue
            files.append((p, "html"))
    return files


def chunk_paragraphs(pars: list[tuple[str, bool]]) -> list[str]:
    """Packs consecutive prose paragraphs (and the headings right before them) into chunks
    of MIN_WORDS..MAX_WORDS words, paragraphs separated by a blank line."""
    chunks: list[str] = []
    cur: list[str] = []
    words = 0
    pending_heading: str | None = None

    def emit() -> None:
        nonlocal cur, words
        if words >= MIN_WORDS:
            chunks.append("\n\n".join(cur))
        cur, words = [], 0

    for text, is_heading in pars:
        if is_heading:
            pending_heading = text if len(text.split()) <= 20 else None
            continue
        if not looks_like_prose(text):
            # a non-prose paragraph (list of names, command line, ...) ends the chunk
            emit()
            pending_heading = None
            continue
        n = len(text.split())
        if n > MAX_WORDS:
            emit()
            pending_heading = None
            continue
        extra = n + (len(pending_heading.split()) if pending_heading else 0)
        if words + extra > MAX_WORDS:
            emit()
        if pending_heading:
            cur.append(pending_heading)
            words += len(pending_heading.split())
            pending_heading = None
        cur.append(text)
        words += n
    emit()
    return chunks


def fetch_package(name: str, work: Path) -> tuple[Path, str]:
    """apt-get download + dpkg -x into work/; returns (unpacked root, version)."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    version = run(["apt-cache", "policy", name], text=True).stdout
    m = re.search(r"Candidate:\s*(\S+)", version)
    if not m or m.group(1) == "(none)":
        raise SystemExit(f"package {name} is not available from apt (run apt-get update)")
    version = m.group(1)
    deb = next(iter(sorted(debs.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))), None)
    if deb is None:
        run(["apt-get", "download", f"{name}={version}"], cwd=debs)
        deb = next(iter(sorted(debs.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))))
    root = work / "unpacked" / deb.stem
    if not (root / ".done").exists():
        root.mkdir(parents=True, exist_ok=True)
        run(["dpkg", "-x", str(deb), str(root)])
        (root / ".done").write_text("")
    return root, version


def long_texts(work: Path) -> tuple[list[tuple[str, dict]], dict]:
    out: list[tuple[str, dict]] = []
    seen: set[str] = set()
    info: dict = {}
    for name in DOC_PACKAGES:
        root, version = fetch_package(name, work)
        files = doc_files(root, name)
        count = 0
        for path, fmt in files:
            raw = _read(path)
            pars = pod_paragraphs(raw) if fmt == "pod" else html_paragraphs(raw)
            rel = path.relative_to(root).as_posix()
            for k, chunk in enumerate(chunk_paragraphs(pars)):
                if chunk in seen:
                    continue
                seen.add(chunk)
                out.append((f"{name}:{rel}#{k}", {"text": chunk}))
                count += 1
        info[name] = {"version": version, "files": len(files), "chunks": count}
    return out, info


# ------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="download/unpack cache")
    ap.add_argument("--n-short", type=int, default=N_SHORT)
    ap.add_argument("--n-long", type=int, default=N_LONG)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()

    t0 = time.time()
    shorts, short_info = short_texts()
    print(f"short: {short_info} ({time.time() - t0:.0f}s)", file=sys.stderr)
    longs, long_info = long_texts(args.work)
    print(f"long: {long_info} ({time.time() - t0:.0f}s)", file=sys.stderr)
    if len(shorts) < args.n_short or len(longs) < args.n_long:
        raise SystemExit(f"not enough texts: {len(shorts)} short, {len(longs)} long")

    rng = random.Random(args.seed)
    pick_short = sorted(rng.sample(range(len(shorts)), args.n_short))
    pick_long = sorted(rng.sample(range(len(longs)), args.n_long))
    order = [("short", *shorts[k]) for k in pick_short] + [("long", *longs[k]) for k in pick_long]
    # one fixed shuffle inside each kind, so that any prefix is a fair sample
    short_rows, long_rows = order[: args.n_short], order[args.n_short :]
    rng.shuffle(short_rows)
    rng.shuffle(long_rows)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (kind, source, fields) in enumerate(short_rows + long_rows):
        lines.append(json.dumps({"i": i, "source": source, "kind": kind, **fields}, ensure_ascii=False))
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    # fixed preset and no timestamps in the xz container: same input, same bytes
    args.out.write_bytes(lzma.compress(payload, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))

    summary = {
        "out": os.path.relpath(args.out, REPO) if args.out.is_relative_to(REPO) else args.out.name,
        "rows": len(lines),
        "short": len(short_rows),
        "long": len(long_rows),
        "bytes_utf8": len(payload),
        "bytes_xz": args.out.stat().st_size,
        "seed": args.seed,
        "short_source": short_info,
        "long_sources": long_info,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
