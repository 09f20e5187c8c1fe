#!/usr/bin/env python3
"""Builds the English word list shipped with the package
(python/luxical/training/words/english.txt.xz) from SCOWL's `american-english-large`, the
Debian `main` package wamerican-large (fetched with `apt-get download` + `dpkg -x`, no root).

Kept: lower-cased alphabetic words of at least two letters (one inner hyphen allowed),
deduplicated, sorted; possessives and single letters dropped. The training recipe
(`luxical.training.recipe`) fits word pieces on these words so that a technical corpus cannot
pull the general vocabulary away (MODEL.md). The package's copyright file is copied beside
the list (SCOWL license: free use, modification and distribution with the notice).

Usage: python scripts/data/build_word_list.py [--cache .data/cache/words]
"""

from __future__ import annotations

import argparse
import lzma
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "python" / "luxical" / "training" / "words"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=REPO / ".data" / "cache" / "words")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(args.cache.glob("wamerican-large_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", "wamerican-large"], cwd=args.cache, check=True)
        debs = sorted(args.cache.glob("wamerican-large_*.deb"))
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(args.cache)], check=True)
    raw = (args.cache / "usr/share/dict/american-english-large").read_text(encoding="utf-8", errors="replace")
    words = sorted({w.lower() for w in raw.split("\n") if re.fullmatch(r"[A-Za-z][a-z]+(-[a-z]+)?", w)})
    OUT.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(words) + "\n").encode("utf-8")
    # Fixed preset and no timestamps: the file is byte-identical on every run.
    (OUT / "english.txt.xz").write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    shutil.copyfile(args.cache / "usr/share/doc/wamerican-large/copyright", OUT / "COPYRIGHT-SCOWL")
    print(f"{len(words)} words from {debs[-1].name} -> {OUT / 'english.txt.xz'}")


if __name__ == "__main__":
    main()
