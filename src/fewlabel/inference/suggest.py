"""What to label next: unlabelled texts ranked by how much a label for each is expected to help.

Plain uncertainty sampling picks the texts the model is least sure of, but those tend to be near
copies of one another (one confusing product, one sarcastic phrasing), so a batch of them teaches
the model one thing many times. Here a batch is chosen as in Zhdanov (2019), "Diverse mini-batch
active learning": keep the ``prefilter * n`` most uncertain texts, cluster them into ``n`` groups
with k-means weighted by uncertainty, and suggest from each group the text nearest its centre. Each
suggestion stands for a different region of what the model finds hard.

Uncertainty is one minus the margin between the two most probable classes (the model's calibrated
probabilities); distances are between backbone embeddings, or TF-IDF + LSA vectors of the pool for
models without a backbone.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fewlabel.atomic import atomic_file, check_output_file, output_lock, remove_stale_temporaries
from fewlabel.data.files import (
    TEXT_COLUMN_NAMES,
    Table,
    detect_format,
    find_column,
    neutralise_formula,
    read_table,
)
from fewlabel.data.labelled import MAX_TEXT_CHARS
from fewlabel.errors import DataError, FewlabelError
from fewlabel.inference.predicting import STDOUT, refuse_existing
from fewlabel.inference.rows import check_temperature
from fewlabel.model_dir.store import TrainedModel

RANK_COLUMN = "suggest_rank"
SCORE_COLUMN = "suggest_score"
PREFILTER = 10  # candidates per suggestion: Zhdanov (2019) found 10 a good balance of the two aims
LSA_DIMS = 100  # TF-IDF reduced to this many dimensions for distances when the model has no backbone


def margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    """One minus the gap between the two most probable classes: 1 for a coin toss, 0 for certainty."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise FewlabelError(f"need class probabilities of shape (n, >=2), got {proba.shape}")
    top2 = np.sort(proba, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


@dataclass
class Suggestion:
    """One text to label: its position in the pool, its uncertainty, and the value of its label."""

    index: int
    rank: int
    score: float
    uncertainty: float


def select_batch(
    proba: np.ndarray, vectors: np.ndarray, n: int, seed: int = 0, prefilter: int = PREFILTER
) -> list[Suggestion]:
    """Choose ``n`` rows of a pool to label: uncertain, and unlike one another.

    Args:
        proba: class probabilities of the pool, shape (m, n_classes).
        vectors: a representation of the pool for distances, shape (m, d).
        n: how many to choose (all of the pool if it has fewer rows).
        seed: seeds k-means.
        prefilter: cluster the ``prefilter * n`` most uncertain rows; 1 means plain uncertainty
            sampling, a very large value plain (uncertainty-weighted) diversity.

    Returns:
        Suggestions ordered by ``score``, best first. ``score`` is the summed uncertainty of the
        candidates the suggestion's cluster holds, as a share of all candidates' uncertainty: the part
        of what the model finds hard that one label speaks for. Ranks are 1-based.
    """
    if n < 1:
        raise FewlabelError(f"the number of suggestions must be at least 1, got {n}")
    if prefilter < 1:
        raise FewlabelError(f"prefilter must be at least 1, got {prefilter}")
    vectors = np.asarray(vectors, dtype=np.float64)
    if len(vectors) != len(proba):
        raise FewlabelError(f"{len(proba)} rows of probabilities but {len(vectors)} vectors")
    uncertainty = margin_uncertainty(proba)
    m = len(uncertainty)
    if m == 0:
        return []
    # Stable sort on the negated values: ties keep pool order, so results do not depend on the platform.
    order = np.argsort(-uncertainty, kind="stable")
    if n >= m:
        total = float(uncertainty.sum()) or 1.0
        return [
            Suggestion(int(i), r + 1, float(uncertainty[i]) / total, float(uncertainty[i]))
            for r, i in enumerate(order)
        ]
    candidates = order[: min(m, prefilter * n)]
    picked = _one_per_cluster(vectors, uncertainty, candidates, n, seed)
    picked.sort(key=lambda p: (-p[0], -uncertainty[p[1]], p[1]))
    return [Suggestion(i, r + 1, s, float(uncertainty[i])) for r, (s, i) in enumerate(picked)]


def _one_per_cluster(
    vectors: np.ndarray, uncertainty: np.ndarray, candidates: np.ndarray, n: int, seed: int
) -> list[tuple[float, int]]:
    """``n`` of the candidates, each with its score: the one nearest each centre of an
    uncertainty-weighted k-means of the candidates, then (when clusters are empty) the most uncertain."""
    from sklearn.cluster import KMeans

    weights = uncertainty[candidates] + 1e-6  # k-means needs positive weights; certain rows still count
    if len(candidates) == n:
        labels = np.arange(n)
        centres = vectors[candidates]
    else:
        km = KMeans(n_clusters=n, init="k-means++", n_init=1, random_state=seed)
        labels = km.fit_predict(vectors[candidates], sample_weight=weights)
        centres = km.cluster_centers_
    total = float(weights.sum())
    picked: list[tuple[float, int]] = []
    for cluster in range(n):
        members = np.flatnonzero(labels == cluster)
        if len(members) == 0:  # k-means can leave a cluster empty when points coincide
            continue
        dist = np.linalg.norm(vectors[candidates[members]] - centres[cluster], axis=1)
        nearest = members[int(np.argmin(dist))]
        picked.append((float(weights[members].sum()) / total, int(candidates[nearest])))
    chosen = {i for _, i in picked}
    # Empty clusters leave the batch short; fill it with the most uncertain candidates not yet chosen.
    for i in candidates:
        if len(picked) >= n:
            break
        if int(i) not in chosen:
            picked.append((float(weights[candidates == i][0]) / total, int(i)))
            chosen.add(int(i))
    return picked


def lsa_vectors(texts: Sequence[str], dims: int = LSA_DIMS, seed: int = 0) -> np.ndarray:
    """Unit-length TF-IDF + truncated SVD (latent semantic analysis) vectors of ``texts``."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    try:
        tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1).fit_transform(texts)
    except ValueError:  # no words at all (texts of emoji or punctuation): their characters, then
        try:
            tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).fit_transform(texts)
        except ValueError:
            return np.zeros((len(texts), 1))
    k = min(dims, tfidf.shape[1] - 1, len(texts) - 1)
    if k < 1:
        return normalize(tfidf.toarray())
    return normalize(TruncatedSVD(n_components=k, random_state=seed).fit_transform(tfidf))


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _refuse_multi_label(model_dir: str | Path) -> None:
    from fewlabel.model_dir.manifest import load_manifest

    if load_manifest(model_dir).task == "multi-label":
        raise DataError(
            f"{model_dir}: a multi-label model; `fewlabel suggest` works with single-label models only"
        )


def suggest_file(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    n: int = 50,
    text_column: str | None = None,
    format: str | None = None,
    exclude_path: str | Path | None = None,
    force: bool = False,
    seed: int = 0,
    prefilter: int = PREFILTER,
    sheet: str | int | None = None,
    stdout: TextIO | None = None,
) -> dict:
    """Rank the rows of an unlabelled file by the value of labelling them; write the best ``n``.

    The output holds each chosen row as it was in the input, plus ``suggest_rank`` (1 = label first)
    and ``suggest_score`` (see :func:`select_batch`). Rows with an empty text, repeats of a text
    already seen, and texts in ``exclude_path`` (e.g. the training data) are not suggested.

    The output is for people to open in a spreadsheet: in CSV and TSV, a cell that a spreadsheet
    could run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return)
    is written with a ``'`` in front; JSONL keeps every value as it was. Texts are read up to
    ``MAX_TEXT_CHARS`` (100,000 characters), as in training.

    ``sheet`` chooses the sheet of an Excel input (name or 0-based index; default: the first).
    ``output_path`` ``-`` writes to ``stdout`` (CSV, or TSV or JSONL for such an input); an existing
    output file is replaced only with ``force``, and never while another run writes it.

    Returns:
        A summary: rows read, candidates considered, suggestions written, representation used.
    """
    from fewlabel.inference.loading import load_model

    target, out_fmt = _checked_output(input_path, output_path, format, force, stdout)
    _refuse_multi_label(model_dir)
    if n < 1:
        raise DataError(f"-n must be at least 1, got {n}")
    with _claimed(target):
        model = load_model(model_dir)
        check_temperature(model.manifest, model_dir)
        table = read_table(input_path, format, sheet)
        column = _text_column(table, text_column, model.manifest.text_column)
        pool = _pool(table, column, exclude_path)
        texts = [(table.rows[i].get(column) or "").strip() for i in pool]
        cut = sum(1 for t in texts if len(t) > MAX_TEXT_CHARS)
        texts = [t[:MAX_TEXT_CHARS] for t in texts]
        proba, vectors, representation = _represent(model, texts, seed)
        suggestions = select_batch(proba, vectors, n, seed=seed, prefilter=prefilter)
        _write(table, [(pool[s.index], s) for s in suggestions], target, out_fmt)
        return {
            "rows": len(table.rows),
            "candidates": len(pool),
            "suggested": len(suggestions),
            "text_column": column,
            "representation": representation,
            "output": str(target) if isinstance(target, Path) else STDOUT,
            "cut_texts": cut,
        }


def _checked_output(
    input_path: str | Path, output_path: str | Path, format: str | None, force: bool, stdout: TextIO | None
) -> tuple[Path | TextIO, str]:
    """Where to write (a file, or ``stdout`` for ``-``) and in which format, checked before any work."""
    if str(output_path) == STDOUT:
        in_fmt = detect_format(Path(input_path), format)
        return stdout or sys.stdout, in_fmt if in_fmt in {"tsv", "jsonl"} else "csv"
    out = Path(output_path)
    check_output_file(output_path)  # as given: Path drops the slash of "newdir/"
    if out.exists() and out.resolve() == Path(input_path).resolve():
        raise DataError(f"{out}: is the input file; write suggestions to a new file so the input is kept")
    refuse_existing(out, force)
    out_fmt = detect_format(out)
    if out_fmt in {"parquet", "xlsx"} or out.suffix.lower() in {".xls", ".xlsb", ".ods"}:
        raise DataError(f"{out}: suggestions are written as CSV, TSV or JSONL; choose one of those suffixes")
    return out, out_fmt


def _text_column(table: Table, text_column: str | None, trained_on: Any) -> str:
    """The column of texts to rank: ``text_column``, else the one the model was trained on, else found."""
    if not table.rows:
        raise DataError(f"{table.path}: the file has a header but no data rows")
    if text_column is None and trained_on in table.columns:
        column = trained_on
    else:
        column = find_column(table, text_column, TEXT_COLUMN_NAMES, "texts", "--text-column")
    for clash in (RANK_COLUMN, SCORE_COLUMN):
        if clash in table.columns:
            raise DataError(f"{table.path}: already has a column {clash!r}; rename it so it is not replaced")
    return column


def _pool(table: Table, column: str, exclude_path: str | Path | None) -> list[int]:
    """The rows that may be suggested: a text, not a repeat of an earlier row's, not in ``exclude_path``."""
    skip: set[str] = set()
    if exclude_path is not None:
        ex = read_table(exclude_path)
        ex_column = (
            column
            if column in ex.columns
            else find_column(ex, None, TEXT_COLUMN_NAMES, "texts", "--exclude (its text column)")
        )
        skip = {_normal(row.get(ex_column) or "") for row in ex.rows}
    pool: list[int] = []
    seen: set[str] = set()
    for i, row in enumerate(table.rows):
        key = _normal(row.get(column) or "")
        if key and key not in seen and key not in skip:
            pool.append(i)
            seen.add(key)
    if not pool:
        raise DataError(
            f"{table.path}: no row of column {column!r} is left to suggest (all are empty, repeated, "
            "or in the --exclude file)"
        )
    return pool


def _represent(model: TrainedModel, texts: list[str], seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The model's probabilities for ``texts``, vectors of them for distances, and what the vectors are."""
    if model.manifest.backbone and model.backbone_ref:
        from fewlabel.encoders.sentence import get_encoder

        # One cached encoder for both the probabilities and the distances: each text is encoded once.
        encoder = get_encoder(model.backbone_ref, cache=True)  # pinned by hash: from the store only
        model.strategy.attach_encoder(encoder)
        return model.predict_proba(texts), encoder.encode(texts), f"{model.manifest.backbone.name} embeddings"
    return model.predict_proba(texts), lsa_vectors(texts, seed=seed), "TF-IDF + LSA of the pool"


@contextlib.contextmanager
def _claimed(target: Path | TextIO) -> Iterator[None]:
    """Hold an output file's lock for the block (a second run into it refuses), clearing what killed runs left."""
    if not isinstance(target, Path):
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):
        remove_stale_temporaries(target)
        yield


def _write(table: Table, chosen: list[tuple[int, Suggestion]], out: Path | TextIO, fmt: str) -> None:
    # No predicted label in the output: the labeller decides, and showing the model's guess anchors them.
    # A file is written beside the target and moved into place: an interrupted run leaves no half file.
    opened = atomic_file(out, newline="") if isinstance(out, Path) else contextlib.nullcontext(out)
    with opened as f:
        if fmt == "jsonl":
            rows = table.raw or table.rows
            for row_index, s in chosen:
                record = {**rows[row_index], RANK_COLUMN: s.rank, SCORE_COLUMN: round(s.score, 6)}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            writer = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            writer.writerow([*map(neutralise_formula, table.columns), RANK_COLUMN, SCORE_COLUMN])
            for row_index, s in chosen:
                row = table.rows[row_index]
                cells = (neutralise_formula(row.get(c, "")) for c in table.columns)
                writer.writerow([*cells, s.rank, f"{s.score:.6f}"])
