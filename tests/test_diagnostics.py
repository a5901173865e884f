"""Diagnostics on synthetic arrays: label issues, ranking, near-duplicates, confident mistakes, learning curve."""

from __future__ import annotations

import numpy as np
import pytest

from fewlabel.evaluation import diagnostics as diag
from fewlabel.evaluation.scores import cross_validate, folds_for
from fewlabel.strategies import make_strategy

LABELS2 = ["negative", "positive"]
LABELS3 = ["a", "b", "c"]


def _indices(labels: list[str]) -> tuple[list[str], np.ndarray]:
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index[c] for c in labels])


def _noisy_setting(n: int = 1000, k: int = 3, noise: float = 0.05, seed: int = 0):
    """Out-of-fold probabilities of a good model (about 97% accurate) and labels with `noise` of them flipped."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), true] += 3.0
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    y = true.copy()
    flipped = rng.choice(n, int(round(noise * n)), replace=False)
    y[flipped] = (true[flipped] + rng.integers(1, k, len(flipped))) % k  # always a different class
    return proba, y, true, flipped


# ---------------------------------------------------------------------------------------------- label issues


def test_label_issues_flags_disputed_rows_most_doubtful_first():
    y = np.array([0, 0, 0, 1, 1, 1])
    oof = np.array(
        [
            [0.95, 0.05],  # confident, correct
            [0.90, 0.10],  # confident, correct
            [0.10, 0.90],  # labelled 0, the model is sure it is 1
            [0.05, 0.95],  # confident, correct
            [0.20, 0.80],  # correct, a little less sure
            [0.85, 0.15],  # labelled 1, the model is sure it is 0
        ]
    )
    texts = [f"text {i}" for i in range(6)]
    rows = [10, 11, 12, 13, 14, 15]  # line numbers of a data file, not positions
    issues = diag.label_issues(oof, y, LABELS2, texts, rows)
    assert [i["row"] for i in issues] == [12, 15]  # p(given) 0.10 before 0.15
    first, second = issues
    assert first == {
        "row": 12,
        "given_label": "negative",
        "suggested_label": "positive",
        "given_label_probability": pytest.approx(0.10),
        "suggested_label_probability": pytest.approx(0.90),
        "text": "text 2",
    }
    assert (second["given_label"], second["suggested_label"]) == ("positive", "negative")
    assert second["given_label_probability"] == pytest.approx(0.15)
    for issue in issues:
        assert isinstance(issue["row"], int) and isinstance(issue["given_label_probability"], float)


def test_label_issues_none_when_every_row_is_confidently_correct():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 20)
    oof = np.full((60, 3), 0.02)
    oof[np.arange(60), y] = 0.96
    oof += rng.uniform(0, 0.01, oof.shape)
    oof /= oof.sum(axis=1, keepdims=True)
    assert diag.label_issues(oof, y, LABELS3, [str(i) for i in range(60)], list(range(60))) == []


def test_label_issues_suggests_the_most_likely_other_class():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    oof = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.9, 0.05, 0.05],
            [0.05, 0.1, 0.85],  # labelled a, clearly c (above c's average self-confidence, 0.8)
            [0.05, 0.9, 0.05],
            [0.05, 0.9, 0.05],
            [0.05, 0.9, 0.05],
            [0.1, 0.1, 0.8],
            [0.1, 0.1, 0.8],
            [0.1, 0.1, 0.8],
        ]
    )
    issues = diag.label_issues(oof, y, LABELS3, [str(i) for i in range(9)], list(range(9)))
    assert len(issues) == 1
    assert issues[0]["row"] == 2
    assert (issues[0]["given_label"], issues[0]["suggested_label"]) == ("a", "c")


def test_label_issues_shortens_long_texts():
    y = np.array([0, 0, 1, 1])
    oof = np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])
    long_text = "word " * 200
    issues = diag.label_issues(oof, y, LABELS2, [long_text, long_text, "c", "d"], [0, 1, 2, 3])
    assert [i["row"] for i in issues] == [1]
    assert len(issues[0]["text"]) == diag.SNIPPET and issues[0]["text"].endswith("…")


def test_noisy_labels_rank_near_the_top_and_are_flagged():
    proba, y, true, flipped = _noisy_setting()
    n = len(y)
    assert (proba.argmax(axis=1) == true).mean() > 0.9  # the simulated model is good

    ranking = diag.label_quality_ranking(proba, y)
    assert sorted(ranking.tolist()) == list(range(n))  # a permutation of all rows
    given = proba[ranking, y[ranking]]
    assert np.all(np.diff(given) >= 0)  # most doubtful first
    top = set(ranking[: n // 10].tolist())
    recall = len(top & set(flipped.tolist())) / len(flipped)
    assert recall >= 0.8, f"only {recall:.0%} of the flipped labels are in the top 10% of the ranking"

    issues = diag.label_issues(proba, y, LABELS3, [str(i) for i in range(n)], list(range(n)))
    flagged = {i["row"] for i in issues}
    assert flagged, "no label issue found in a 5%-noise setting"
    precision = len(flagged & set(flipped.tolist())) / len(flagged)
    assert precision >= 0.8, f"only {precision:.0%} of the flagged rows have a flipped label"
    assert len(flagged & set(flipped.tolist())) >= len(flipped) // 2
    probs = [i["given_label_probability"] for i in issues]
    assert probs == sorted(probs)
    # Rows whose given label the model confidently agrees with are never flagged.
    confident_correct = np.flatnonzero(proba[np.arange(n), y] > 0.8)
    assert confident_correct.size > n // 2
    assert not flagged & set(confident_correct.tolist())


def test_label_quality_ranking_is_stable_for_ties():
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.7, 0.3]])
    assert diag.label_quality_ranking(proba, y).tolist() == [3, 0, 1, 2]


# ----------------------------------------------------------------------------------------- near-duplicates

LONG = (
    "The battery on this laptop lasts all day, the screen is bright and sharp, and it charges very quickly."
)
UNRELATED = [
    "Bake the cake for forty minutes.",
    "The striker scored two goals in the match.",
    "Snow will fall overnight in the mountains.",
]


@pytest.mark.parametrize(
    "variant",
    [LONG[:-1] + "!", LONG.replace("bright", "brigh"), LONG.replace("sharp", "sharq")],
    ids=["punctuation", "deleted-letter", "changed-letter"],
)
def test_near_duplicates_finds_one_character_edit_with_conflicting_labels(variant):
    texts = [UNRELATED[0], LONG, UNRELATED[1], variant, UNRELATED[2]]
    y = np.array([0, 1, 1, 0, 0])
    rows = [2, 3, 4, 5, 6]
    pairs = diag.near_duplicates(texts, y, LABELS2, rows)
    assert len(pairs) == 1
    pair = pairs[0]
    assert (pair["row_a"], pair["row_b"]) == (3, 5)
    assert (pair["label_a"], pair["label_b"]) == ("positive", "negative")
    assert pair["conflicting_labels"] is True
    assert 0.9 <= pair["similarity"] <= 1.0 + 1e-9
    assert (pair["text_a"], pair["text_b"]) == (LONG, variant)


def test_near_duplicates_ignores_unrelated_texts():
    texts = [*UNRELATED, LONG, "I love this blender, it works perfectly."]
    assert diag.near_duplicates(texts, np.array([0, 1, 0, 1, 0]), LABELS2, list(range(5))) == []
    assert diag.near_duplicates([LONG], np.array([0]), LABELS2, [0]) == []


def test_near_duplicates_lists_conflicting_pairs_first_and_honours_limit():
    same_a = (
        "Great headphones with a deep bass, clear highs and a comfortable fit for long listening sessions."
    )
    same_b = same_a.replace("deep", "deap")
    texts = [same_a, LONG, same_b, UNRELATED[0], LONG.replace("sharp", "sharq")]
    y = np.array([1, 1, 1, 0, 0])
    pairs = diag.near_duplicates(texts, y, LABELS2, list(range(5)))
    assert [(p["row_a"], p["row_b"], p["conflicting_labels"]) for p in pairs] == [(1, 4, True), (0, 2, False)]
    assert diag.near_duplicates(texts, y, LABELS2, list(range(5)), limit=1) == pairs[:1]


def test_near_duplicates_across_similarity_blocks():
    """Pairs are found when they straddle the 1000-row blocks of the similarity computation."""
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    texts = [" ".join("".join(rng.choice(letters, 6)) for _ in range(10)) for _ in range(1200)]
    texts[1000] = texts[999][:-1] + ("x" if texts[999][-1] != "x" else "y")
    texts[1100] = texts[5][:-1] + ("x" if texts[5][-1] != "x" else "y")
    y = np.zeros(1200, dtype=int)
    y[1000] = 1
    pairs = diag.near_duplicates(texts, y, LABELS2, list(range(1200)))
    assert {(p["row_a"], p["row_b"]) for p in pairs} == {(5, 1100), (999, 1000)}
    assert pairs[0]["row_a"] == 999 and pairs[0]["conflicting_labels"]


def test_near_duplicates_finds_one_character_edit_in_a_short_text():
    a = "Great headphones, the sound is amazing."
    texts = [a, UNRELATED[0], a[:-1] + "!", UNRELATED[1]]
    pairs = diag.near_duplicates(texts, np.array([1, 0, 0, 1]), LABELS2, [0, 1, 2, 3])
    assert [(p["row_a"], p["row_b"], p["conflicting_labels"]) for p in pairs] == [(0, 2, True)]


# ------------------------------------------------------------------------------------- confident mistakes


def test_confident_mistakes_only_mistakes_most_confident_first():
    proba, y, _, _ = _noisy_setting(n=300, seed=3)
    rows = list(range(100, 400))
    mistakes = diag.confident_mistakes(proba, y, LABELS3, [f"t{i}" for i in range(300)], rows, limit=1000)
    pred = proba.argmax(axis=1)
    assert len(mistakes) == int((pred != y).sum()) > 5
    conf = [m["confidence"] for m in mistakes]
    assert conf == sorted(conf, reverse=True)
    for m in mistakes:
        i = m["row"] - 100
        assert m["given_label"] == LABELS3[y[i]]
        assert m["predicted_label"] == LABELS3[pred[i]] != m["given_label"]
        assert m["confidence"] == pytest.approx(proba[i].max())
        assert m["text"] == f"t{i}"
    top = diag.confident_mistakes(proba, y, LABELS3, [f"t{i}" for i in range(300)], rows, limit=3)
    assert top == mistakes[:3]


def test_confident_mistakes_empty_when_all_correct():
    y = np.array([0, 1, 1])
    proba = np.array([[0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])
    assert diag.confident_mistakes(proba, y, LABELS2, ["a", "b", "c"], [0, 1, 2]) == []


# ---------------------------------------------------------------------------------------- learning curve


@pytest.fixture(scope="module")
def reviews_curve(reviews):
    texts, labels = reviews
    classes, y = _indices(labels)
    folds = folds_for(y, 3, 0)
    factory = lambda: make_strategy("tfidf")  # noqa: E731
    full = cross_validate(factory, texts, y, len(classes), folds, "tfidf", 0).val_accuracy
    calls = []
    curve = diag.learning_curve(
        factory, texts, y, len(classes), folds, full, 0, on_fit=lambda: calls.append(1)
    )
    return curve, folds, full, len(calls)


def test_learning_curve_on_fixture(reviews_curve):
    curve, folds, full, fits = reviews_curve
    points = curve["points"]
    assert [p["fraction"] for p in points] == list(diag.FRACTIONS)
    n_train = [p["n_train"] for p in points]
    assert all(a < b for a, b in zip(n_train, n_train[1:], strict=False)), n_train
    assert n_train[-1] == round(np.mean([len(t) for t, _ in folds]))
    for p in points:
        assert 0.0 <= p["accuracy"] <= 1.0
        assert p["low"] <= p["accuracy"] <= p["high"]
    assert points[-1]["accuracy"] == pytest.approx(np.mean(full))
    assert fits == len(folds) * (len(diag.FRACTIONS) - 1)
    ext = curve["extrapolation"]
    assert ext["n_train"] == 2 * points[-1]["n_train"]
    assert set(ext) == {"n_train", "accuracy", "gain", "low", "high"}
    if ext["accuracy"] is not None:
        assert 0.0 <= ext["accuracy"] <= 1.0


@pytest.mark.filterwarnings("ignore::scipy.optimize.OptimizeWarning")  # 3 parameters, 2 points
def test_learning_curve_custom_fractions(reviews):
    texts, labels = reviews
    classes, y = _indices(labels)
    folds = folds_for(y, 4, 1)
    curve = diag.learning_curve(
        lambda: make_strategy("tfidf"), texts, y, len(classes), folds, [1.0] * 4, seed=1, fractions=(0.5, 1.0)
    )
    assert [p["n_train"] for p in curve["points"]] == [18, 36]
    assert curve["points"][-1]["accuracy"] == 1.0
    assert curve["extrapolation"]["n_train"] == 72


def test_extrapolation_interval_brackets_its_gain():
    # Every fold gives the same accuracy, so every bootstrap resample equals the data: the interval must
    # collapse onto the gain itself.
    accs = [0.6667, 0.5625, 0.7292, 0.8958]
    points = [
        {"n_train": n, "accuracy": a, "low": a, "high": a} for n, a in zip([4, 8, 16, 32], accs, strict=True)
    ]
    ext = diag._extrapolate(points, [[a] * 3 for a in accs], np.random.default_rng(0))
    assert ext["gain"] is not None
    assert ext["low"] - 1e-6 <= ext["gain"] <= ext["high"] + 1e-6, ext


class _RecordingStrategy:
    """Predicts class 0 for everything; records how many texts each fit saw."""

    sizes: list[int] = []

    def fit(self, texts, y, n_classes):
        _RecordingStrategy.sizes.append(len(texts))
        self.n_classes = n_classes
        return self

    def predict_proba(self, texts):
        proba = np.zeros((len(texts), self.n_classes))
        proba[:, 0] = 1.0
        return proba


def test_learning_curve_n_train_is_the_number_of_texts_fitted(three_class):
    texts, labels = three_class
    classes, y = _indices(labels)
    folds = folds_for(y, 3, 0)
    _RecordingStrategy.sizes = []
    curve = diag.learning_curve(_RecordingStrategy, texts, y, len(classes), folds, [0.5] * 3)
    fitted = np.array(_RecordingStrategy.sizes).reshape(len(diag.FRACTIONS) - 1, len(folds)).mean(axis=1)
    assert [p["n_train"] for p in curve["points"][:-1]] == [round(s) for s in fitted]
