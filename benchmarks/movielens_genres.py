"""Multi-label benchmark data: MovieLens movie titles -> genres, from Debian's ``r-cran-dslabs``.

    pip install rdata                         # the pure-Python reader of R's serialisation format
    python -m benchmarks.movielens_genres     # into ~/.cache/fewlabel/bench-data

A SUBSTITUTE: no raw-text multi-label set (Reuters-21578 topics, GoEmotions, toxic comments, plot ->
genre) was reachable from a package registry here, so the texts are movie *titles* only: enough to
exercise the multi-label path and compare ways of training it, not to judge text classification.
Provenance, licence and counts: ``benchmarks/PROVENANCE-movielens-genres.md``. MovieLens data may
not be redistributed: the CSV stays in the cache, never in the repository.

The ``.deb`` is fetched with ``apt-get download`` into a temporary directory (never installed),
unpacked in Python (ar, then tar), and the R lazy-load database ``data/Rdata.rdb`` read with
``rdata``. Writes ``movielens_titles_genres.csv`` (``text,labels``; labels joined by ``|``, one row
per movie; movies with no genre listed are dropped).
"""

from __future__ import annotations

import argparse
import bz2
import collections
import csv
import gzip
import hashlib
import io
import lzma
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path

DEB = "r-cran-dslabs"
RDB_PREFIX = "./usr/lib/R/site-library/dslabs/data/Rdata"
OBJECT = "movielens"
OUT_NAME = "movielens_titles_genres.csv"
DEFAULT_DIR = Path.home() / ".cache" / "fewlabel" / "bench-data"
# The CSV the provenance file describes (r-cran-dslabs 0.7.4-1); another package version may differ.
EXPECTED_SHA256 = "20140ce74a9668a8b224c48c177d04d572b58d32e251b9f4041624927d75c16a"


def ar_members(blob: bytes):
    """The members of an ``ar`` archive (the format of a .deb): (name, bytes)."""
    if blob[:8] != b"!<arch>\n":
        raise SystemExit("not a .deb (ar) archive")
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        yield name, blob[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)


def extract_rdata(deb: Path) -> tuple[bytes, bytes]:
    """The lazy-load index (.rdx) and database (.rdb) of the package's data sets."""
    for name, data in ar_members(deb.read_bytes()):
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                rdx, rdb = (tar.extractfile(RDB_PREFIX + suffix) for suffix in (".rdx", ".rdb"))
                assert rdx is not None and rdb is not None
                return rdx.read(), rdb.read()
    raise SystemExit(f"no data.tar member in {deb}")


def _unpack(blob: bytes) -> bytes:
    """A lazy-load record: a 4-byte length, then a type byte (Z, 2, X, 0) and the payload, or zlib."""
    kind = blob[4:5]
    if kind == b"Z":
        return zlib.decompress(blob[5:])
    if kind == b"2":
        return bz2.decompress(blob[5:])
    if kind == b"X":
        return lzma.decompress(blob[5:])
    if kind == b"0":
        return blob[5:]
    return zlib.decompress(blob[4:])


def read_object(rdx: bytes, rdb: bytes, name: str):
    import warnings

    import rdata  # pip install rdata (MIT)

    warnings.filterwarnings("ignore", message="Unknown file type")
    try:
        index_raw = gzip.decompress(rdx)
    except OSError:
        index_raw = zlib.decompress(rdx[4:])
    index = rdata.conversion.convert(rdata.parser.parse_data(index_raw))
    offset, length = index["variables"][name]
    blob = rdb[int(offset) : int(offset) + int(length)]
    return rdata.conversion.convert(rdata.parser.parse_data(_unpack(blob)))


def rows_of(frame) -> list[tuple[str, str]]:
    """(title, genres joined by '|') per movie; movies with no genre listed left out."""
    movies = frame.drop_duplicates("movieId")
    rows = []
    for title, genres in zip(movies["title"], movies["genres"], strict=True):
        labels = [g for g in str(genres).split("|") if g and g != "(no genres listed)"]
        title = " ".join(str(title).split())
        if labels and title:
            rows.append((title, "|".join(labels)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)  # apt's sandbox user may write there
        subprocess.run(["apt-get", "download", DEB], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        debs = sorted(Path(tmp).glob(f"{DEB}_*.deb"))
        if not debs:
            raise SystemExit("apt-get download produced no .deb")
        rdx, rdb = extract_rdata(debs[0])
    rows = rows_of(read_object(rdx, rdb, OBJECT))
    out = args.out / OUT_NAME
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "labels"])
        writer.writerows(rows)
    counts = collections.Counter(g for _, labels in rows for g in labels.split("|"))
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(
        f"{out}: {len(rows)} rows, {len(counts)} labels, {sum(counts.values()) / len(rows):.3f} labels/text"
    )
    print(f"sha256 {digest}" + ("" if digest == EXPECTED_SHA256 else " (differs from the provenance file's)"))


if __name__ == "__main__":
    main()
