#!/usr/bin/env python3
"""Builds a general-English corpus (novels, conversation, a modern Bible, dictionary and
thesaurus entries, story and description text of games, everyday help pages) to set beside
the technical corpus of build_corpus.py.

    python scripts/data/build_general_corpus.py [--out .data/general] [--cache .data/cache/general]
                                                [--exclude-dir .data/eval/dev ...] [--seed 0]

Needs apt and dpkg (Debian bookworm, `apt-get update` done once), pip (for two PyPI
wheels), pyarrow and PyYAML. Reuses build_corpus.py: `fetch` (`apt-get download` +
`dpkg -x`, nothing installed), `html_text`/`xml_text`, `is_prose`, `documents` (packing
paragraphs into passages), `dedup_keys`, `shingles`/`eval_shingles` (the 13-word-shingle
filter against the evaluation suite).

Outputs (in --out):
  shard-0000.parquet  columns `text`, `source` (Debian package or PyPI project name),
                      `license` (of that source); sources in SOURCES order, documents in
                      each source's own order.
  stats.json          per source: documents, words, license, package version and sha256,
                      candidates, duplicates, documents dropped by the shingle filter and
                      by the cap; totals and timings.

Sources, in output order (Debian bookworm `main` unless marked PyPI; licences from each
package's `copyright` file or the wheel's metadata; versions and counts of the build of
2026-12-02: 31,385 documents, 4.36 M words, 23.6 MB of text):

| source (version) | what | licence | docs | words |
|---|---|---|---|---|
| chitchat-dataset 0.9.0 (PyPI) | open-domain chat between students (BYU PCC lab's Chit-Chat Challenge, 7,168 conversations); turns packed into passages; 8,000 of 10,318 passages (seeded sample) | MIT | 8,000 | 1,838,760 |
| chatterbot-corpus 1.3.3 (PyPI) | English small-talk and trivia question/answer lists, packed per topic (coding.yml and tech_support.yml left out) | BSD-3-Clause | 52 | 12,027 |
| r-cran-janeaustenr 1.0.0-1 | Jane Austen's six novels | public domain (novels), MIT (package) | 3,020 | 714,230 |
| r-cran-tokenizers 0.3.0-1 | Melville's Moby-Dick (the package's `mobydick` data, Project Gutenberg header and licence cut off) | public domain (novel), MIT (package) | 909 | 209,296 |
| sword-text-web 426.0-1 | World English Bible, modern English, with deuterocanon (SWORD zText module; footnotes and headings left out) | public domain | 3,760 | 909,479 |
| dict-devil 1.0-13.1 | Ambrose Bierce's The Devil's Dictionary, one entry a document | public domain | 952 | 59,495 |
| libaiksaurus-1.2-data 1.2.1+dev-0.12-7 | Aiksaurus English thesaurus, one meaning group a document: "title words: synonym, synonym, ..." | GPL-2+ | 2,620 | 60,675 |
| cataclysm-dda-data 0.F-3-9 | Cataclysm: DDA item, creature, place and profession descriptions ("name: description"), newspaper/note/lore snippets, NPC dialogue lines (templates and test files left out); 8,000 of 11,627 (seeded sample) | CC-BY-SA-3.0 | 8,000 | 208,464 |
| endless-sky-data 0.9.8-1.2 | Endless Sky planet, spaceport and ship descriptions and mission conversations (placeholders such as <ship> filled with fixed words) | GPL-3+ | 1,239 | 207,474 |
| crawl-common 2:0.28.0-1.1 | Dungeon Crawl Stone Soup monster, item, spell, god, place and status descriptions ("name: text"; quotes.txt, which quotes copyrighted books, and the tutorial/hint/command files left out) | GPL-2+ | 2,083 | 61,122 |
| freeciv-data 3.0.6-1+deb12u1 | Freeciv nation legends (short histories of peoples and states) | GPL-2+ | 553 | 31,145 |
| aisleriot 1:3.22.23-1 | rules of 90 patience card games and a glossary (help/C, DocBook) | GFDL-NIV-1.1+ | 112 | 23,528 |
| sgt-puzzles 20230122.806ae71-2 | manual of Simon Tatham's puzzle collection (help/en, HTML; licence and index pages left out) | Expat | 85 | 19,557 |

Not used (the evaluation suites are built from them): Debian package descriptions, GCIDE
(dict-gcide), WordNet and anything derived from it (wordnet*, dict-wn, mythes-en-us),
FOLDOC, the Jargon File, fortune files, SimLex-999, WordSim-353, gensim's test data; nor any
package of build_corpus.py's PACKAGES.

Steps: fetch and convert each source to documents (prose: paragraphs of >= 25 words,
shorter ones merged with the next and headings dropped, packed into passages of 50-300
words with build_corpus's `documents`, which also drops non-prose paragraphs; entries: one
document each, kept if they pass `is_prose` and have >= 8 words, cut into 300-word pieces
if longer); drop duplicates across all sources (same normalised text or same first 32
words; earlier sources win) and every document sharing a 13-word shingle with a text of
the evaluation suite; finally cap the two largest sources (Source.max_docs) with a seeded
sample that keeps their order, so that none is over ~25% of the documents. The shingle
filter dropped no document of these sources (they share no text with the suite); 878
duplicates were dropped. Output is deterministic: the same sources and --seed give a
byte-identical parquet file.

Run time (2 shared cores, 2026-12-02): ~40 s from an empty cache (11 .deb files, 127 MB,
308 MB unpacked, and 2 wheels, 8 MB), ~20 s with the cache warm.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import random
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_corpus import (  # noqa: E402
    PACKAGES as TECHNICAL_PACKAGES,
    dedup_keys,
    documents,
    eval_shingles,
    fetch,
    html_text,
    is_prose,
    shingles,
    xml_text,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".data" / "general"
DEFAULT_CACHE = REPO / ".data" / "cache" / "general"
DEFAULT_EXCLUDE = REPO / ".data" / "eval" / "dev"

PASSAGE_MIN, PASSAGE_MAX = 50, 300  # words in a packed passage
PARAGRAPH_MIN = 25  # shorter paragraphs (dialogue lines, chat turns) are merged with the next
ENTRY_MIN = 8  # words in an entry document (dictionary entry, description)


# ---------------------------------------------------------------------------- helpers
def squash(text: str) -> str:
    return " ".join(text.split())


_HEADING_END = tuple(".!?:;,\"'”’)…-—")


def is_heading(paragraph: str) -> bool:
    """A short line without closing punctuation: a title, heading or navigation bar."""
    return len(paragraph.split()) < ENTRY_MIN and not paragraph.endswith(_HEADING_END)


def merge_short(paragraphs: Iterable[str], min_words: int = PARAGRAPH_MIN, drop_headings: bool = True) -> str:
    """Blank-line-separated text whose paragraphs have >= min_words words: a shorter
    paragraph is joined with the ones after it (dialogue lines, chat turns), so that
    `documents` does not take it for a heading and cut the passage there. Headings
    (`is_heading`) are dropped first unless drop_headings is False (chat turns)."""
    out, current, n = [], [], 0
    for p in paragraphs:
        p = squash(p)
        if not p or (drop_headings and is_heading(p)):
            continue
        current.append(p)
        n += len(p.split())
        if n >= min_words:
            out.append(" ".join(current))
            current, n = [], 0
    if current:
        out.append(" ".join(current))
    return "\n\n".join(out)


def passages(paragraphs: Iterable[str], drop_headings: bool = True) -> Iterator[str]:
    """Prose paragraphs -> passages of PASSAGE_MIN..PASSAGE_MAX words."""
    yield from documents(merge_short(paragraphs, drop_headings=drop_headings), PASSAGE_MIN, PASSAGE_MAX)


def entries(text: str) -> Iterator[str]:
    """One entry (dictionary entry, description) as a document if it has >= ENTRY_MIN
    words and reads as English prose; an entry over PASSAGE_MAX words is cut into
    PASSAGE_MAX-word pieces (a last piece under PASSAGE_MIN words is dropped)."""
    text = squash(text)
    if len(text.split()) > PASSAGE_MAX:
        yield from documents(text, PASSAGE_MIN, PASSAGE_MAX)
    elif len(text.split()) >= ENTRY_MIN and is_prose(text):
        yield text


# ---------------------------------------------------------------------------- R data (janeaustenr, tokenizers)
class _RVector(list):
    """An R vector with its attributes (a list of (tag, value) pairs)."""

    def __init__(self, values: list, attributes: list) -> None:
        super().__init__(values)
        self.attributes = dict(attributes)


class _RReader:
    """The subset of R's XDR serialization format that data packages use: vectors,
    strings, pairlists, symbols, references, compact integer sequences."""

    def __init__(self, data: bytes) -> None:
        if data[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.data, self.pos, self.refs = data, 2, []
        version = self.int()
        self.pos += 8  # writer and minimal reader R versions
        if version == 3:
            self.pos += 4 + self.int()  # native encoding

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def length(self) -> int:
        n = self.int()
        return (self.int() << 32) + self.int() if n == -1 else n

    def item(self):  # noqa: C901 (one branch per R type)
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (254, 253, 252, 251, 250, 242, 241):  # NULL, environments, missing arg
            return None
        if kind == 255:  # reference to an earlier symbol/environment
            return self.refs[(flags >> 8 or self.int()) - 1]
        if kind in (249, 248, 247):  # namespace / package / persistent name
            self.int()
            value = [self.item() for _ in range(self.int())]
            self.refs.append(value)
            return value
        if kind == 1:  # symbol
            value = ("symbol", self.item())
            self.refs.append(value)
            return value
        if kind in (2, 3, 5, 6, 17, 239, 240):  # pairlist-like: [(tag, value), ...]
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            head = (tag[1] if isinstance(tag, tuple) else tag, self.item())
            tail = self.item()
            return [head] + (tail if isinstance(tail, list) else [])
        if kind == 4:  # environment
            env: dict = {}
            self.refs.append(env)
            self.int()
            for _ in range(4):
                self.item()
            return env
        if kind == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            self.pos += n
            return self.data[self.pos - n : self.pos].decode("utf-8", "replace")
        if kind == 238:  # ALTREP
            info, state, _ = self.item(), self.item(), self.item()
            cls = info[0][1][1] if isinstance(info, list) else None
            if cls == "compact_intseq":
                n, start, step = (int(x) for x in state)
                return list(range(start, start + n * step, step))
            return state
        if kind in (10, 13):
            n = self.length()
            values = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == 14:
            n = self.length()
            values = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        elif kind == 24:
            n = self.length()
            values = list(self.data[self.pos : self.pos + n])
            self.pos += n
        elif kind in (16, 19, 20):
            values = [self.item() for _ in range(self.length())]
        else:
            raise ValueError(f"R type {kind} is not supported")
        return _RVector(values, self.item()) if has_attr else values


def r_lazyload(prefix: Path) -> dict:
    """The objects of an R lazy-load database (`<prefix>.rdx` + `.rdb`, zlib-compressed)."""
    index = _RReader(gzip.decompress(prefix.with_suffix(".rdx").read_bytes())).item()
    variables = index[0]
    blob = prefix.with_suffix(".rdb").read_bytes()
    out = {}
    for name, (offset, size) in zip(variables.attributes["names"], variables):
        record = blob[int(offset) : int(offset) + int(size)]
        out[name] = _RReader(zlib.decompress(record[4:])).item()  # 4 bytes: uncompressed length
    return out


# ---------------------------------------------------------------------------- readers
# Each reader gets the source's extracted package root (Debian) or wheel path (PyPI) and
# yields documents.

def read_chitchat(wheel: Path) -> Iterator[str]:
    with zipfile.ZipFile(wheel) as z:
        conversations = json.loads(z.read("chitchat_dataset/dataset.json"))
    for key in sorted(conversations):
        turns = [" ".join(m["text"] for m in turn) for turn in conversations[key]["messages"]]
        yield from passages(turns, drop_headings=False)


CHATTERBOT_SKIPPED = {"coding.yml", "tech_support.yml"}  # programming Q&A: not general English


def read_chatterbot(wheel: Path) -> Iterator[str]:
    import yaml

    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if re.fullmatch(r"chatterbot_corpus/data/english/[^/]+\.yml", n))
        for name in names:
            if name.rsplit("/", 1)[1] in CHATTERBOT_SKIPPED:
                continue
            data = yaml.safe_load(z.read(name))
            lines = []
            for conversation in data.get("conversations", []):
                said = [str(s).strip() for s in conversation if s is not None]
                # A question without its final punctuation reads as a fragment when packed.
                lines.append(" ".join(s if s[-1:] in ".?!\"'" else s + "." for s in said if s))
            yield from passages(lines, drop_headings=False)


def read_austen(root: Path) -> Iterator[str]:
    data = r_lazyload(root / "usr/lib/R/site-library/janeaustenr/data/Rdata")
    heading = re.compile(r"(?i:^(chapter|volume|finis|the end)\b|^by jane austen)|^[^a-z]*$")  # no lower case: titles
    for name in sorted(data):
        lines = [line or "" for line in data[name]]
        paragraphs = "\n".join(lines).split("\n\n")
        paragraphs = [p.replace("_", "") for p in paragraphs if p.strip() and not heading.match(p.strip())]
        yield from passages(paragraphs)


def read_moby_dick(root: Path) -> Iterator[str]:
    (text,) = r_lazyload(root / "usr/lib/R/site-library/tokenizers/data/Rdata")["mobydick"]
    text = text.replace("\r\n", "\n")
    text = text[text.index("ETYMOLOGY.") : text.index("End of Project Gutenberg")]
    heading = re.compile(r"^(CHAPTER \d+|ETYMOLOGY|EXTRACTS|Epilogue)\b|^[^a-z]*$")
    yield from passages(p for p in text.split("\n\n") if p.strip() and not heading.match(p.strip()))


def _osis_text(markup: str) -> str:
    """OSIS (SWORD module) markup -> plain text with paragraph breaks; footnotes,
    cross-references and headings left out."""
    markup = re.sub(r"<note\b[^>]*/>|<note\b.*?</note>", "", markup, flags=re.S)
    markup = re.sub(r"<title\b.*?</title>", "\n\n", markup, flags=re.S)
    markup = re.sub(r"<(div|lb|lg|chapter|list|item|speaker)\b[^>]*>", "\n\n", markup)
    markup = re.sub(r"</(lg|list|item|speaker)>", "\n\n", markup)
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def read_sword_web(root: Path) -> Iterator[str]:
    """zText module: per testament, `.bzs` (12-byte entries: offset, size, uncompressed
    size of each zlib block), `.bzz` (the blocks), `.bzv` (10-byte entries: block, offset,
    size of each verse in its uncompressed block)."""
    folder = root / "usr/share/sword/modules/texts/ztext/engWEB2015eb"
    for testament in ("ot", "nt"):
        index = (folder / f"{testament}.bzs").read_bytes()
        data = (folder / f"{testament}.bzz").read_bytes()
        verses = (folder / f"{testament}.bzv").read_bytes()
        blocks: dict[int, bytes] = {}
        current_block, texts = -1, []
        for i in range(0, len(verses) - 9, 10):
            block, offset, size = struct.unpack_from("<IIH", verses, i)
            if size == 0:
                continue
            if block != current_block and texts:
                yield from passages(_osis_text(" ".join(texts)).split("\n\n"))
                texts = []
            current_block = block
            if block not in blocks:
                start, length, _ = struct.unpack_from("<III", index, 12 * block)
                blocks = {block: zlib.decompress(data[start : start + length])}
            texts.append(blocks[block][offset : offset + size].decode("utf-8", "replace"))
        if texts:
            yield from passages(_osis_text(" ".join(texts)).split("\n\n"))


def _b64_number(s: str) -> int:
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = 0
    for c in s:
        value = value * 64 + digits.index(c)
    return value


def read_dictd(root: Path, name: str) -> Iterator[str]:
    """A dictd database (`<name>.index` + gzip-compatible `<name>.dict.dz`): one document
    per entry, in the order of the text; the 00-database-* header entries are skipped."""
    folder = root / "usr/share/dictd"
    data = gzip.decompress((folder / f"{name}.dict.dz").read_bytes())
    spans = set()
    for line in (folder / f"{name}.index").read_text(encoding="utf-8").splitlines():
        headword, offset, size = line.split("\t")
        if not headword.startswith("00"):
            spans.add((_b64_number(offset), _b64_number(size)))
    for offset, size in sorted(spans):
        text = data[offset : offset + size].decode("utf-8", "replace")
        yield from entries(re.sub(r"\{([^{}]*)\}", r"\1", text))  # {CROSS-REFERENCE}


def read_aiksaurus(root: Path) -> Iterator[str]:
    """words.dat: per word, NUL-terminated string + big-endian uint16 meaning ids + 0xFFFF;
    meanings.dat: per meaning, uint16 word ids + 0xFFFF, the first two naming the meaning.
    One document per meaning: "title, title: synonym, synonym, ..." (":" in a word is a space)."""
    folder = root / "usr/share/aiksaurus"
    raw = (folder / "words.dat").read_bytes()
    words, pos = [], 0
    while pos < len(raw):
        end = raw.index(b"\0", pos)
        words.append(raw[pos:end].decode("latin-1").replace(":", " "))
        pos = end + 1
        while raw[pos : pos + 2] != b"\xff\xff":
            pos += 2
        pos += 2
    raw = (folder / "meanings.dat").read_bytes()
    ids = struct.unpack(f">{len(raw) // 2}H", raw[: len(raw) // 2 * 2])
    group: list[int] = []
    for i in ids:
        if i != 0xFFFF:
            group.append(i)
            continue
        names = [words[i] for i in group if i < len(words)]
        title, members = names[:2], [w for w in dict.fromkeys(names[2:]) if w not in names[:2]]
        if len(members) >= 3:
            yield f"{', '.join(dict.fromkeys(title))}: {', '.join(members)}"
        group = []


_CDDA_TAG = re.compile(r"</?(color(_[a-z_]+)?|info|good|bad|neutral|stat|header|bold|num)>")
_CDDA_TEXT_KEYS = {"text", "dynamic_line", "yes", "no", "offer", "advice", "success", "failure",
                   "accepted", "rejected", "describe", "inquire", "detailed_definition", "message"}


def _cdda_string(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("str") or value.get("str_sp")
    if not isinstance(value, str):
        return None
    value = _CDDA_TAG.sub("", value)
    return None if re.search(r"<[a-z_][^<>]*>|%[0-9$]*[sd]", value) else value  # templates


def read_cataclysm(root: Path) -> Iterator[str]:
    """Every JSON object under data/json: "name: description" for objects that have both;
    other text (snippets, dialogue) from the keys in _CDDA_TEXT_KEYS."""
    folder = root / "usr/share/games/cataclysm-dda/json"

    def walk(node) -> Iterator[str]:
        if isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            description = _cdda_string(node.get("description"))
            if description:
                name = _cdda_string(node.get("name"))
                yield from entries(f"{name}: {description}" if name else description)
            for key, value in node.items():
                if key in _CDDA_TEXT_KEYS:
                    text = _cdda_string(value)
                    if text:
                        yield from entries(text)
                if isinstance(value, (list, dict)):
                    yield from walk(value)

    for path in sorted(folder.rglob("*.json")):
        if "TEST" not in path.name:  # the game's test dialogue
            yield from walk(json.loads(path.read_text(encoding="utf-8")))


_ES_FILES_SKIPPED = {"hails.txt", "names.txt", "news.txt", "help.txt", "tooltips.txt", "interfaces.txt",
                     "landing messages.txt", "keys.txt"}
_ES_STRING = re.compile(r"^\s*(?:(?:description|spaceport|dialog)\s+)?`([^`]*)`\s*$"  # `text`
                        r"|^\s*(?:description|spaceport|dialog)\s+\"([^\"]*)\"\s*$")  # description "text"
_ES_PLACEHOLDERS = {  # mission text placeholders -> a fixed filler that reads naturally
    "first": "Alex", "last": "Morgan", "ship": "Falcon", "npc": "Osprey", "system": "Sol", "origin": "Earth",
    "planet": "Earth", "destination": "Mars", "stopovers": "Mars", "date": "Friday", "day": "Friday",
    "cargo": "ten tons of food", "commodity": "food", "tons": "ten tons", "capacity": "ten tons",
    "payment": "ten thousand credits", "fare": "a thousand credits", "bunks": "five", "passengers": "five passengers",
}


def read_endless_sky(root: Path) -> Iterator[str]:
    """Quoted text of the game's data files (planet descriptions, mission conversations);
    each top-level object (a line without indentation) is one run of paragraphs."""
    folder = root / "usr/share/games/endless-sky/data"

    def fill(m: re.Match) -> str:
        return _ES_PLACEHOLDERS.get(m.group(1), "")

    for path in sorted(folder.rglob("*.txt")):
        if path.name in _ES_FILES_SKIPPED:
            continue
        paragraphs: list[str] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line and not line[0].isspace() and not line.startswith("#"):
                yield from passages(paragraphs)
                paragraphs = []
                continue
            m = _ES_STRING.match(line)
            if m:
                text = m.group(1) if m.group(1) is not None else m.group(2)
                paragraphs.append(re.sub(r"<([a-z ]+)>", fill, text))
        yield from passages(paragraphs)


_CRAWL_SKIPPED = {"quotes.txt", "tutorial.txt", "hints.txt", "commands.txt"}


def read_crawl(root: Path) -> Iterator[str]:
    """dat/descript/*.txt (English only): entries separated by %%%%, a key line, a blank
    line, the text. One document per entry: "key: text"."""
    for path in sorted((root / "usr/share/crawl/dat/descript").glob("*.txt")):
        if path.name in _CRAWL_SKIPPED:
            continue
        for block in path.read_text(encoding="utf-8", errors="replace").split("%%%%"):
            lines = [line for line in block.strip().split("\n") if not line.startswith("#")]
            if len(lines) < 3 or lines[0].startswith("_") or not lines[1].strip() == "":
                continue
            text = "\n".join(lines[2:])
            if re.search(r"[<>{}@$]", text):  # templates and references to other entries
                continue
            yield from entries(f"{lines[0].strip()}: {text}")


def read_freeciv(root: Path) -> Iterator[str]:
    """The legend of every nation (nation/*.ruleset: legend=_("...") with \\ line breaks)."""
    for path in sorted((root / "usr/share/games/freeciv/nation").glob("*.ruleset")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r'legend\s*=\s*_\("((?:[^"\\]|\\.)*)"\)', text, flags=re.S):
            legend = re.sub(r"\\(.)", r"\1", re.sub(r"\\\n", "", m.group(1)))
            yield from entries(legend)


def read_aisleriot(root: Path) -> Iterator[str]:
    """help/C/aisleriot/*.xml (DocBook), one page per game: table rows become "label: text."
    paragraphs, and the game's name leads the first paragraph (pages start alike, and the
    duplicate filter compares first words)."""
    for path in sorted((root / "usr/share/help/C/aisleriot").glob("*.xml")):
        if path.name == "legal.xml":  # the licence notice
            continue
        raw = re.sub(r"<!--.*?-->", "", path.read_text(encoding="utf-8"), flags=re.S)
        title = re.search(r"<title>(.*?)</title>", raw, flags=re.S)
        raw = raw[title.end():] if title else raw
        raw = re.sub(r"</entry>\s*<entry>", ": ", raw)
        raw = re.sub(r"</?(row|listitem|sect\d)\b[^>]*>", "\n\n", raw)
        paragraphs = [squash(p) for p in xml_text(raw).split("\n\n")]
        paragraphs = [p if p.endswith(_HEADING_END) or ": " not in p else p + "." for p in paragraphs
                      if p and not p.startswith("Written by")]
        first = next((i for i, p in enumerate(paragraphs) if not is_heading(p)), None)
        if title and first is not None:
            paragraphs[first] = f"{squash(html.unescape(title.group(1)))}: {paragraphs[first]}"
        yield from passages(paragraphs)


def read_sgt_puzzles(root: Path) -> Iterator[str]:
    for path in sorted((root / "usr/share/sgt-puzzles/help/en").glob("*.html")):
        if path.name in ("licence.html", "docindex.html", "index.html"):  # licence text, indexes
            continue
        yield from passages(html_text(path.read_text(encoding="utf-8", errors="replace")).split("\n\n"))


# ---------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Source:
    name: str  # the `source` column: Debian package or PyPI project
    license: str
    read: Callable[[Path], Iterator[str]]
    pypi_version: str | None = None  # a PyPI wheel instead of a Debian package
    max_docs: int | None = None  # cap (seeded sample, order kept)


SOURCES = [
    Source("chitchat-dataset", "MIT", read_chitchat, pypi_version="0.9.0", max_docs=8_000),
    Source("chatterbot-corpus", "BSD-3-Clause", read_chatterbot, pypi_version="1.3.3"),
    Source("r-cran-janeaustenr", "public domain (novels); MIT (package)", read_austen),
    Source("r-cran-tokenizers", "public domain (novel); MIT (package)", read_moby_dick),
    Source("sword-text-web", "public domain", read_sword_web),
    Source("dict-devil", "public domain", lambda root: read_dictd(root, "devil")),
    Source("libaiksaurus-1.2-data", "GPL-2+", read_aiksaurus),
    Source("cataclysm-dda-data", "CC-BY-SA-3.0", read_cataclysm, max_docs=8_000),
    Source("endless-sky-data", "GPL-3+", read_endless_sky),
    Source("crawl-common", "GPL-2+", read_crawl),
    Source("freeciv-data", "GPL-2+", read_freeciv),
    Source("aisleriot", "GFDL-NIV-1.1+", read_aisleriot),
    Source("sgt-puzzles", "Expat", read_sgt_puzzles),
]
FORBIDDEN = re.compile(r"^(dict-gcide|wordnet.*|dict-wn|mythes-.*|dict-foldoc|dict-jargon|jargon-text|fortune.*)$")
assert not any(FORBIDDEN.match(s.name) or s.name in TECHNICAL_PACKAGES for s in SOURCES)


# ---------------------------------------------------------------------------- download
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheel(project: str, version: str, cache: Path) -> Path:
    folder = cache / "pypi"
    folder.mkdir(parents=True, exist_ok=True)
    pattern = f"{project.replace('-', '_')}-{version}-*.whl"
    have = sorted(folder.glob(pattern))
    if not have:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", str(folder), f"{project}=={version}"], check=True)
        have = sorted(folder.glob(pattern))
    if not have:
        raise RuntimeError(f"pip download {project}=={version} left no {pattern}")
    return have[-1]


def fetch_sources(sources: list[Source], cache: Path) -> dict[str, tuple[Path, str, Path]]:
    """name -> (path to read: extracted root or wheel, version, downloaded file)."""
    out = {}
    debs = [s.name for s in sources if s.pypi_version is None]
    roots = fetch(debs, cache)
    missing = [p for p in debs if p not in roots]
    if missing:
        raise RuntimeError(f"could not fetch {missing} (apt-get update done?)")
    for s in sources:
        if s.pypi_version is None:
            deb = sorted((cache / "debs").glob(f"{s.name}_*.deb"))[-1]
            version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                                     check=True).stdout.strip()
            out[s.name] = (roots[s.name], version, deb)
        else:
            wheel = fetch_wheel(s.name, s.pypi_version, cache)
            out[s.name] = (wheel, s.pypi_version, wheel)
    return out


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="downloads and extractions (default: %(default)s)")
    ap.add_argument("--exclude-dir", type=Path, action="append",
                    help="evaluation suite folder whose texts must not overlap the corpus; repeatable "
                    f"(default: {DEFAULT_EXCLUDE})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the samples that cap the largest sources")
    ap.add_argument("--sources", help="comma-separated subset of the source names (default: all)")
    args = ap.parse_args()

    t0 = time.time()
    sources = SOURCES
    if args.sources:
        wanted = args.sources.split(",")
        unknown = set(wanted) - {s.name for s in SOURCES}
        if unknown:
            ap.error(f"unknown sources: {sorted(unknown)}")
        sources = [s for s in SOURCES if s.name in wanted]
    exclude_dirs = args.exclude_dir or [DEFAULT_EXCLUDE]
    for d in exclude_dirs:
        if not d.is_dir():
            ap.error(f"evaluation suite {d} not found: build it first (python scripts/eval/build_dev_suite.py)")
    excluded, n_files = eval_shingles(exclude_dirs)
    print(f"eval overlap filter: {len(excluded)} shingles from {n_files} files", file=sys.stderr)
    fetched = fetch_sources(sources, args.cache)
    fetch_s = time.time() - t0

    seen_text: set[bytes] = set()
    seen_start: set[bytes] = set()
    kept: dict[str, list[str]] = {}
    per_source: dict[str, dict] = {}
    for s in sources:
        path, version, download = fetched[s.name]
        info = {"license": s.license, "version": version, "file": download.name, "sha256": sha256(download),
                "candidates": 0, "duplicates": 0, "eval_overlap": 0, "capped": 0}
        docs = []
        for doc in s.read(path):
            info["candidates"] += 1
            text_key, start_key = dedup_keys(doc)
            if text_key in seen_text or start_key in seen_start:
                info["duplicates"] += 1
                continue
            seen_text.add(text_key)
            seen_start.add(start_key)
            if any(sh in excluded for sh in shingles(doc)):
                info["eval_overlap"] += 1
                continue
            docs.append(doc)
        if s.max_docs is not None and len(docs) > s.max_docs:
            chosen = sorted(random.Random(f"{args.seed}:{s.name}").sample(range(len(docs)), s.max_docs))
            info["capped"] = len(docs) - s.max_docs
            docs = [docs[i] for i in chosen]
        kept[s.name] = docs
        info.update(documents=len(docs), words=sum(len(d.split()) for d in docs))
        per_source[s.name] = info
        print(f"{s.name} {version}: {len(docs)} docs, {info['words']} words "
              f"({info['candidates']} candidates, {info['duplicates']} dup, {info['eval_overlap']} eval overlap, "
              f"{info['capped']} capped) {time.time() - t0:.0f}s", file=sys.stderr, flush=True)

    import pyarrow as pa
    import pyarrow.parquet as pq

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("shard-*.parquet"):
        old.unlink()
    names = [s.name for s in sources]
    table = pa.table({
        "text": [d for n in names for d in kept[n]],
        "source": [n for n in names for _ in kept[n]],
        "license": [per_source[n]["license"] for n in names for _ in kept[n]],
    })
    pq.write_table(table, args.out / "shard-0000.parquet", compression="zstd")
    total_docs = table.num_rows
    for info in per_source.values():
        info["share"] = round(info["documents"] / max(total_docs, 1), 4)
    stats = {
        "documents": total_docs,
        "words": sum(i["words"] for i in per_source.values()),
        "chars": sum(len(d) for n in names for d in kept[n]),
        "eval_overlap_dropped": sum(i["eval_overlap"] for i in per_source.values()),
        "duplicates_dropped": sum(i["duplicates"] for i in per_source.values()),
        "capped": sum(i["capped"] for i in per_source.values()),
        "seed": args.seed,
        "eval_dirs": [str(d.resolve().relative_to(REPO)) if d.resolve().is_relative_to(REPO) else str(d)
                      for d in exclude_dirs],
        "per_source": per_source,
        "fetch_extract_s": round(fetch_s, 1),
        "total_s": round(time.time() - t0, 1),
    }
    (args.out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    print(json.dumps({k: v for k, v in stats.items() if k != "per_source"}, indent=1))


if __name__ == "__main__":
    main()
