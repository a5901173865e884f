"""Diagnostics computed after cross-validation: learning curve, label issues, near-duplicates, mistakes.

Everything here reads out-of-fold predictions or refits on the same folds, so no number peeks at
data the model was fitted on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from fewlabel.data.files import neutralise_formula
from fewlabel.evaluation.scores import StrategyFactory

FRACTIONS = (0.125, 0.25, 0.5, 1.0)
SNIPPET = 300  # characters of a text shown in the report


def _snippet(text: str) -> str:
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def learning_curve(
    factory: StrategyFactory,
    texts: Sequence[str],
    y: np.ndarray,
    n_classes: int,
    folds: list[tuple[np.ndarray, np.ndarray]],
    full_fold_accuracy: Sequence[float],
    seed: int = 0,
    fractions: Sequence[float] = FRACTIONS,
    on_fit: Callable[[], None] | None = None,
    full_pred: np.ndarray | None = None,
) -> dict:
    """Cross-validated accuracy when training on growing fractions of each training fold.

    The validation folds stay whole, so every point is measured on the same texts. Returns the
    points (mean and a 95% interval across folds, and the recall of each class) and an
    extrapolation to twice the data. ``full_pred`` are the out-of-fold answers at the full fraction
    (for its per-class recall).
    """
    rng = np.random.default_rng(seed)
    points = []
    per_fold: list[list[float]] = []
    for fraction in fractions:
        if fraction >= 1.0:
            accs = [float(a) for a in full_fold_accuracy]
            sizes = [len(train) for train, _ in folds]
            recall: list[float | None] = [None] * n_classes
            if full_pred is not None:
                recall = _recall(y, full_pred, n_classes)
        else:
            accs, sizes, recall = _fit_fraction(factory, texts, y, n_classes, folds, fraction, rng, on_fit)
        per_fold.append(accs)
        points.append(_point(fraction, accs, sizes, recall))
    n = np.array([p["n_train"] for p in points], dtype=float)
    fit = _fit_curve(n, np.array([p["accuracy"] for p in points]))
    return {
        "points": points,
        "fit": list(fit) if fit else None,
        "extrapolation": _extrapolate(points, per_fold, rng, fit),
    }


def _fit_fraction(
    factory: StrategyFactory,
    texts: Sequence[str],
    y: np.ndarray,
    n_classes: int,
    folds: list[tuple[np.ndarray, np.ndarray]],
    fraction: float,
    rng: np.random.Generator,
    on_fit: Callable[[], None] | None,
) -> tuple[list[float], list[int], list[float | None]]:
    """Fit on ``fraction`` of each training fold, score on the whole validation fold.

    Returns the accuracy and training size per fold, and the recall of each class over all folds.
    """
    accs: list[float] = []
    sizes: list[int] = []
    answers = np.full(len(y), -1)
    for train, val in folds:
        take = _stratified_subsample(train, y, fraction, rng)
        sizes.append(len(take))
        model = factory().fit([texts[i] for i in take], y[take], n_classes)
        pred = model.predict_proba([texts[i] for i in val]).argmax(axis=1)
        answers[val] = pred
        accs.append(float((pred == y[val]).mean()))
        if on_fit:
            on_fit()
    covered = answers >= 0
    return accs, sizes, _recall(y[covered], answers[covered], n_classes)


def _point(fraction: float, accs: list[float], sizes: list[int], recall: list[float | None]) -> dict:
    """One point of the curve: mean accuracy across folds with a 95% interval, and recall per class."""
    mean = float(np.mean(accs))
    half = 1.96 * float(np.std(accs, ddof=1)) / np.sqrt(len(accs)) if len(accs) > 1 else 0.0
    n_train = int(round(np.mean(sizes)))  # what was really fitted (small classes keep at least 2)
    return {
        "fraction": fraction,
        "n_train": n_train,
        "accuracy": mean,
        "low": mean - half,
        "high": mean + half,
        "recall": recall,
    }


def _recall(y: np.ndarray, pred: np.ndarray, n_classes: int) -> list[float | None]:
    return [float((pred[y == c] == c).mean()) if (y == c).any() else None for c in range(n_classes)]


def class_to_label(curve: dict, labels: Sequence[str]) -> dict | None:
    """Which class more labels would help most: the one found least often (lowest recall) with all
    the data, and how its recall moved from half the data to all of it. None without per-class points."""
    points = [p for p in curve["points"] if p.get("recall") and None not in p["recall"]]
    if len(points) < 2 or points[-1]["fraction"] < 1.0:
        return None
    full, half = points[-1]["recall"], points[-2]["recall"]
    worst = int(np.argmin(full))
    return {
        "label": labels[worst],
        "recall": full[worst],
        "recall_before": half[worst],
        "n_train_before": points[-2]["n_train"],
        "n_train": points[-1]["n_train"],
        "recall_by_class": dict(zip(labels, full, strict=True)),
    }


def curve_value(fit: Sequence[float], n: float) -> float:
    """The fitted learning curve a - b * n^-c at ``n`` training texts."""
    return float(_power_law(np.array([float(n)]), *fit)[0])


def _stratified_subsample(
    train: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    take: list[np.integer] = []
    for c in np.unique(y[train]):
        members = train[y[train] == c]
        k = max(2, int(round(fraction * len(members))))
        take.extend(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.array(take))


def _power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(np.maximum(n, 1.0), -c)


def _fit_curve(n: np.ndarray, acc: np.ndarray) -> tuple[float, float, float] | None:
    from scipy.optimize import curve_fit

    try:
        params, _ = curve_fit(
            _power_law,
            n,
            acc,
            p0=(min(acc.max() + 0.05, 1.0), 1.0, 0.5),
            bounds=([0, 0, 0.01], [1, 100, 3]),
            maxfev=5000,
        )
    except (RuntimeError, ValueError):
        return None
    return tuple(float(p) for p in params)  # type: ignore[return-value]


def _extrapolate(
    points: list[dict],
    per_fold: list[list[float]],
    rng: np.random.Generator,
    fit: tuple[float, float, float] | None = None,
) -> dict:
    """Accuracy expected at twice the data from a power law a - b * n^-c, with a bootstrap interval.

    ``fit`` is the curve already fitted to ``points``, if the caller has it.
    """
    n = np.array([p["n_train"] for p in points], dtype=float)
    acc = np.array([p["accuracy"] for p in points])
    current = float(acc[-1])
    if fit is None:
        fit = _fit_curve(n, acc)
    if fit is None:
        return {"n_train": int(2 * n[-1]), "accuracy": None, "gain": None, "low": None, "high": None}
    predicted = float(_power_law(2 * n[-1], *fit))
    # Bootstrap over folds: resample each point's fold accuracies and refit.
    folds = np.array(per_fold)  # (points, folds)
    draws = []
    for _ in range(200):
        idx = rng.integers(0, folds.shape[1], folds.shape[1])
        boot = folds[:, idx].mean(axis=1)
        f = _fit_curve(n, boot)
        if f is not None:
            # The same quantity as the estimate: the fitted curve's rise from n to 2n.
            draws.append(float(_power_law(2 * n[-1], *f)) - float(_power_law(n[-1], *f)))
    gain = predicted - float(_power_law(n[-1], *fit))
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (gain, gain)
    return {
        "n_train": int(2 * n[-1]),
        "accuracy": min(current + gain, 1.0),
        "gain": gain,
        "low": float(low),
        "high": float(high),
    }


def label_issues(
    oof_proba: np.ndarray, y: np.ndarray, labels: list[str], texts: Sequence[str], rows: Sequence[int]
) -> list[dict]:
    """Rows whose given label the out-of-fold model disputes, most doubtful first (confident learning).

    A row is flagged when another class gets at least that class's average self-confidence (the
    per-class threshold of Northcutt et al., 2021), ranked by the probability of its given label.
    """
    n_classes = oof_proba.shape[1]
    thresholds = np.array([oof_proba[y == c, c].mean() if (y == c).any() else 1.0 for c in range(n_classes)])
    issues = []
    for i in range(len(y)):
        others = [c for c in range(n_classes) if c != y[i] and oof_proba[i, c] >= thresholds[c]]
        if not others:
            continue
        suggested = max(others, key=lambda c: oof_proba[i, c])
        issues.append(
            {
                "row": int(rows[i]),
                "given_label": labels[y[i]],
                "suggested_label": labels[suggested],
                "given_label_probability": float(oof_proba[i, y[i]]),
                "suggested_label_probability": float(oof_proba[i, suggested]),
                "text": _snippet(texts[i]),
            }
        )
    issues.sort(key=lambda d: d["given_label_probability"])
    return issues


LABEL_ISSUE_COLUMNS = (
    "row",
    "given_label",
    "suggested_label",
    "given_label_probability",
    "suggested_label_probability",
    "text",
)


def label_issues_csv(issues: Sequence[dict]) -> str:
    """The label issues as CSV text (``label_issues.csv``), for people to read in a spreadsheet.

    Texts and labels that a spreadsheet could run as a formula (``=HYPERLINK(...)``) get a ``'`` in
    front, so opening the file runs nothing.
    """
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LABEL_ISSUE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for issue in issues:
        writer.writerow(
            {k: f"{v:.4f}" if isinstance(v, float) else neutralise_formula(v) for k, v in issue.items()}
        )
    return out.getvalue()


def label_quality_ranking(oof_proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of all rows from most to least doubtful (probability of the given label, ascending)."""
    return np.argsort(oof_proba[np.arange(len(y)), y], kind="stable")


def near_duplicates(
    texts: Sequence[str],
    y: np.ndarray,
    labels: list[str],
    rows: Sequence[int],
    threshold: float = 0.9,
    limit: int = 200,
) -> list[dict]:
    """Pairs of texts that are nearly the same (character n-gram cosine >= threshold), across labels first."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(texts) < 2:
        return []
    # Compared without case and punctuation, so "Great!" and "great." are the same text.
    normalised = [re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", t.lower())).strip() for t in texts]
    try:
        matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit_transform(
            normalised
        )
    except ValueError:  # nothing left to compare: every text was only emoji or punctuation
        return []
    pairs = []
    block = 1000
    for start in range(0, matrix.shape[0], block):
        sims = (matrix[start : start + block] @ matrix.T).toarray()
        for local, i in enumerate(range(start, min(start + block, matrix.shape[0]))):
            for j in np.flatnonzero(sims[local, i + 1 :] >= threshold) + i + 1:
                pairs.append((i, int(j), float(sims[local, j])))
    out = [
        {
            "row_a": int(rows[i]),
            "row_b": int(rows[j]),
            "similarity": s,
            "label_a": labels[y[i]],
            "label_b": labels[y[j]],
            "conflicting_labels": bool(y[i] != y[j]),
            "text_a": _snippet(texts[i]),
            "text_b": _snippet(texts[j]),
        }
        for i, j, s in pairs
    ]
    out.sort(key=lambda d: (not d["conflicting_labels"], -d["similarity"]))
    return out[:limit]


def confident_mistakes(
    oof_proba: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    texts: Sequence[str],
    rows: Sequence[int],
    limit: int = 15,
) -> list[dict]:
    """The out-of-fold mistakes the model was most sure of: the first errors to read."""
    pred = oof_proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-oof_proba[wrong, pred[wrong]])][:limit]
    return [
        {
            "row": int(rows[int(i)]),
            "given_label": labels[y[i]],
            "predicted_label": labels[pred[i]],
            "confidence": float(oof_proba[i, pred[i]]),
            "text": _snippet(texts[int(i)]),
        }
        for i in wrong
    ]
