"""Scores with intervals, stratified folds, (nested) cross-validation and the majority baseline."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import encode_labels
from fewlabel.evaluation.scores import (
    CVResult,
    Interval,
    Scores,
    choose,
    cross_validate,
    folds_for,
    majority_baseline,
    nested_cross_validate,
    per_class,
    score,
    wilson,
)
from fewlabel.strategies import make_strategy
from fewlabel.strategies.base import Strategy


def noisy_proba(y: np.ndarray, n_classes: int, seed: int, flip: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), n_classes))
    right = rng.random(len(y)) > flip
    logits[np.arange(len(y))[right], y[right]] += 3.0
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_score_intervals_contain_value_and_are_ordered(seed, n_classes):
    y = np.random.default_rng(100 + seed).integers(0, n_classes, size=120)
    proba = noisy_proba(y, n_classes, seed)
    scores = score(y, proba, seed=seed)
    for est in (scores.accuracy, scores.macro_f1, scores.log_loss):
        assert est.low <= est.value <= est.high
        assert est.low < est.high  # noisy predictions: a real interval
    assert scores.n == 120
    assert scores.accuracy.value == pytest.approx(float((proba.argmax(1) == y).mean()))
    manual_nll = -np.mean(np.log(proba[np.arange(len(y)), y]))
    assert scores.log_loss.value == pytest.approx(manual_nll, rel=1e-6)
    assert scores.accuracy.low >= 0.0 and scores.accuracy.high <= 1.0


def test_score_interval_narrows_with_more_data():
    small_y = np.tile([0, 1], 20)
    big_y = np.tile([0, 1], 500)
    small = score(small_y, noisy_proba(small_y, 2, 0))
    big = score(big_y, noisy_proba(big_y, 2, 0))
    assert (big.accuracy.high - big.accuracy.low) < (small.accuracy.high - small.accuracy.low)


def test_score_is_deterministic_for_a_seed():
    y = np.tile([0, 1, 1], 30)
    proba = noisy_proba(y, 2, 5)
    assert score(y, proba, seed=3).to_dict() == score(y, proba, seed=3).to_dict()


def test_perfect_predictions_give_accuracy_one():
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 0] * 4)
    proba = np.eye(3)[y]
    scores = score(y, proba)
    assert scores.accuracy.value == 1.0
    # 40 of 40 right is not proof of 100%: the interval is Wilson's, never a single point.
    assert (scores.accuracy.low, scores.accuracy.high) == (pytest.approx(wilson(40, 40)[0]), 1.0)
    assert 0.85 < scores.accuracy.low < 0.95
    assert scores.balanced_accuracy.value == 1.0 and scores.balanced_accuracy.low < 1.0
    assert scores.recall == [1.0, 1.0, 1.0]
    assert scores.macro_f1.value == 1.0
    assert scores.log_loss.value == pytest.approx(0.0, abs=1e-6)
    d = scores.to_dict()
    assert d["accuracy"]["value"] == 1.0 and d["accuracy"]["ci95_high"] == 1.0 and d["n"] == 40


def test_all_wrong_predictions_give_accuracy_zero():
    y = np.array([0, 1] * 10)
    scores = score(y, np.eye(2)[1 - y])
    assert scores.accuracy.value == 0.0 and 0.0 < scores.accuracy.high == pytest.approx(wilson(0, 20)[1])
    assert scores.log_loss.value > 10  # clipped at 1e-7: -log(1e-7) ~ 16


def test_perfect_predictions_macro_f1_interval_is_one():
    y = np.array([0] * 97 + [1] * 3)  # a rare class, as in a small evaluation set
    scores = score(y, np.eye(2)[y])
    assert scores.macro_f1.value == 1.0
    assert scores.macro_f1.low == 1.0


def test_folds_for_is_stratified_and_a_partition():
    y = np.array([0] * 30 + [1] * 15 + [2] * 10)
    folds = folds_for(y, 5, seed=0)
    assert len(folds) == 5
    all_val = np.concatenate([val for _, val in folds])
    assert sorted(all_val.tolist()) == list(range(len(y)))  # every row validated exactly once
    for train, val in folds:
        assert not set(train) & set(val)
        assert len(train) + len(val) == len(y)
        counts = np.bincount(y[val], minlength=3)
        assert counts.tolist() == [6, 3, 2]  # class proportions kept in each fold


def test_folds_for_reduces_folds_for_rare_class_and_is_seeded():
    y = np.array([0] * 20 + [1] * 3)
    folds = folds_for(y, 5, seed=0)
    assert len(folds) == 3
    for _, val in folds:
        assert (y[val] == 1).sum() == 1
    again = folds_for(y, 5, seed=0)
    other = folds_for(y, 5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_cross_validate_gives_out_of_fold_probabilities_for_every_row(reviews):
    texts, labels = reviews
    y = encode_labels(labels)[0]
    folds = folds_for(y, 4, seed=0)
    fold_calls = []
    result = cross_validate(
        lambda: make_strategy("tfidf"), texts, y, 2, folds, "tfidf", on_fold=lambda: fold_calls.append(1)
    )
    assert result.oof_proba.shape == (len(texts), 2)
    np.testing.assert_allclose(result.oof_proba.sum(axis=1), 1.0, atol=1e-6)  # no row left at zero
    assert len(result.val_accuracy) == len(result.train_accuracy) == 4 == len(fold_calls)
    assert result.scores.accuracy.value == pytest.approx(float((result.oof_proba.argmax(1) == y).mean()))
    assert result.scores.accuracy.value >= 0.75
    assert result.name == "tfidf" and result.description.startswith("tfidf")
    assert result.gap == pytest.approx(np.mean(result.train_accuracy) - np.mean(result.val_accuracy))
    d = result.to_dict()
    assert d["fold_accuracy"] == result.val_accuracy and "choices_per_fold" not in d


def test_out_of_fold_means_unseen(reviews):
    """Each row's probability comes from a model that did not see it: a memoriser scores at chance."""

    class Memoriser(Strategy):
        name = "memoriser"

        def _fit(self, texts, y):
            self.seen_ = dict(zip(texts, y.tolist(), strict=True))

        def _predict_proba(self, texts):
            out = np.full((len(texts), self.n_classes_), 1 / self.n_classes_)
            for i, t in enumerate(texts):
                if t in self.seen_:
                    out[i] = np.eye(self.n_classes_)[self.seen_[t]]
            return out

        def _save(self, directory):  # pragma: no cover - not used
            raise NotImplementedError

        def _load(self, directory):  # pragma: no cover - not used
            raise NotImplementedError

    texts, labels = reviews
    y = encode_labels(labels)[0]
    result = cross_validate(Memoriser, texts, y, 2, folds_for(y, 4, 0), "memoriser")
    assert np.allclose(result.oof_proba, 0.5)
    assert all(acc == 1.0 for acc in result.train_accuracy)
    assert result.gap > 0.4


class Constant(Strategy):
    """Always answers class 0 with certainty: a candidate that should never be chosen."""

    name = "constant"

    def _fit(self, texts, y):
        pass

    def _predict_proba(self, texts):
        return np.tile(np.eye(self.n_classes_)[0], (len(texts), 1))

    def _save(self, directory):  # pragma: no cover - not used
        raise NotImplementedError

    def _load(self, directory):  # pragma: no cover - not used
        raise NotImplementedError


def test_nested_cross_validate_one_choice_per_outer_fold(reviews):
    texts, labels = reviews
    y = encode_labels(labels)[0]
    folds = folds_for(y, 3, seed=0)
    factories = {"constant": Constant, "tfidf": lambda: make_strategy("tfidf")}
    result = nested_cross_validate(factories, texts, y, 2, folds, inner_folds=2, seed=0)
    assert result.name == "auto"
    assert len(result.choices) == len(folds)
    assert set(result.choices) <= set(factories)
    assert result.choices == ["tfidf"] * len(folds)  # the useless candidate never wins an inner CV
    assert result.oof_proba.shape == (len(texts), 2)
    np.testing.assert_allclose(result.oof_proba.sum(axis=1), 1.0, atol=1e-6)
    assert result.scores.accuracy.value > 0.75
    assert result.to_dict()["choices_per_fold"] == result.choices


def _cv(name: str, balanced: float, loss: float, accuracy: float | None = None) -> CVResult:
    acc = balanced if accuracy is None else accuracy
    est = Scores(
        Interval(acc, acc, acc),
        Interval(0.5, 0.5, 0.5),
        Interval(loss, loss, loss),
        10,
        balanced_accuracy=Interval(balanced, balanced, balanced),
    )
    return CVResult(name, name, np.zeros((10, 2)), np.zeros(10, dtype=int), [1.0], [acc], 0.0, est)


def test_choose_prefers_balanced_accuracy_then_log_loss():
    assert choose({"a": _cv("a", 0.80, 0.2), "b": _cv("b", 0.85, 0.9)}) == "b"
    assert choose({"a": _cv("a", 0.85, 0.3), "b": _cv("b", 0.85, 0.2)}) == "b"
    assert choose({"a": _cv("a", 0.85, 0.2), "b": _cv("b", 0.85, 0.3)}) == "a"
    # Always answering the common class of 95/5 data: 95% accuracy, 50% balanced accuracy; it loses.
    majority = _cv("majority", 0.50, 0.2, accuracy=0.95)
    assert choose({"majority": majority, "weighted": _cv("weighted", 0.85, 0.4, accuracy=0.90)}) == "weighted"
    # A candidate with a tuned threshold is ranked by the answers it gives with it.
    tuned = _cv("tuned", 0.60, 0.3)
    tuned.decided = _cv("tuned", 0.90, 0.3).scores
    assert choose({"tuned": tuned, "plain": _cv("plain", 0.80, 0.2)}) == "tuned"
    assert tuned.final is tuned.decided and "with_threshold" in tuned.to_dict()


def test_balanced_accuracy_sees_the_rare_class_and_its_interval_is_never_a_point():
    y = np.array([0] * 4 + [1] * 76)  # 4 of 80 rows in the rare class, all of them found
    scores = score(y, np.eye(2)[y] * 0.8 + 0.1)
    assert scores.balanced_accuracy.value == 1.0
    assert scores.balanced_accuracy.low < 0.8  # 4 rare rows cannot vouch for much
    everything_common = score(y, np.tile([0.1, 0.9], (80, 1)))
    assert everything_common.accuracy.value == pytest.approx(0.95)
    assert everything_common.balanced_accuracy.value == pytest.approx(0.5)
    assert everything_common.recall == [0.0, 1.0]
    # Given answers (a tuned threshold) replace the argmax.
    flipped = score(y, np.tile([0.1, 0.9], (80, 1)), pred=np.zeros(80, dtype=int))
    assert flipped.recall == [1.0, 0.0]


def test_majority_baseline_on_unbalanced_labels():
    y = np.array([0] * 30 + [1] * 10)
    assert majority_baseline(y) == pytest.approx(0.75)
    y2 = np.array([1] * 12 + [0] * 4 + [2] * 4)
    assert majority_baseline(y2) == pytest.approx(0.6)
    assert majority_baseline(np.array([0, 1] * 10)) == pytest.approx(0.5)  # balanced: chance, not below


def test_per_class_and_confusion_matrix():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    out = per_class(y, pred, ["a", "b", "c"])
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert out["per_class"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert out["per_class"]["a"]["support"] == 2


def test_apply_temperature_keeps_argmax_and_normalises():
    from fewlabel.evaluation.calibration import apply_temperature

    proba = noisy_proba(np.tile([0, 1, 2], 20), 3, seed=0)
    assert apply_temperature(proba, 1.0) is proba
    for t in (0.3, 2.5):
        out = apply_temperature(proba, t)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
        assert (out.argmax(1) == proba.argmax(1)).all()
    assert (apply_temperature(proba, 2.5).max(1) <= proba.max(1) + 1e-12).all()  # T > 1 softens
    assert (apply_temperature(proba, 0.3).max(1) >= proba.max(1) - 1e-12).all()  # T < 1 sharpens
    assert apply_temperature(np.zeros((0, 3)), 2.0).shape == (0, 3)


def test_fit_temperature_corrects_over_and_under_confidence():
    from fewlabel.evaluation.calibration import apply_temperature, fit_temperature, reliability

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=400)
    right = rng.random(400) < 0.75  # 75% right ...
    pred = np.where(right, y, 1 - y)
    over = np.where(pred[:, None] == np.arange(2), 0.99, 0.01)  # ... but 99% sure
    t_over = fit_temperature(over, y)
    assert t_over > 1.5
    assert reliability(apply_temperature(over, t_over), y)["ece"] < reliability(over, y)["ece"] / 3
    under = np.where(pred[:, None] == np.arange(2), 0.55, 0.45)  # ... but only 55% sure
    assert fit_temperature(under, y) < 1.0


def test_reliability_ece():
    from fewlabel.evaluation.calibration import reliability

    y = np.array([0, 1, 0, 1])
    sure_and_right = np.eye(2)[y]
    assert reliability(sure_and_right, y)["ece"] == pytest.approx(0.0)
    ninety = np.where(np.eye(2)[y] == 1, 0.9, 0.1)
    report = reliability(ninety, y)
    assert report["ece"] == pytest.approx(0.1)
    assert sum(b["n"] for b in report["bins"]) == 4


def test_expected_accuracy_adds_clipped_curve_gain_and_widens_for_fold_noise():
    from fewlabel.evaluation.scores import expected_accuracy

    y = np.array([0, 1] * 50)
    proba = np.eye(2)[y] * 0.8 + 0.1  # all right, so the bootstrap interval collapses to a point
    steady = CVResult("s", "s", proba, y, [1.0] * 5, [1.0] * 5, 0.0, score(y, proba))
    assert expected_accuracy(steady, 100, 5)["value"] == 1.0
    assert 0.95 < expected_accuracy(steady, 100, 5)["ci95_low"] < 1.0  # 100 of 100 right is not a certainty

    noisy_folds = CVResult("n", "n", proba, y, [1.0] * 5, [0.9, 1.0, 0.8, 1.0, 0.95], 0.0, score(y, proba))
    wide = expected_accuracy(noisy_folds, 100, 5)
    assert wide["ci95_high"] - wide["ci95_low"] > 0.1  # fold disagreement widens what the bootstrap missed

    half = np.array([0, 1] * 50)
    mixed = np.where(np.arange(100)[:, None] < 80, np.eye(2)[half], np.eye(2)[1 - half]) * 0.8 + 0.1
    r = CVResult("m", "m", mixed, half, [1.0] * 5, [0.8] * 5, 0.0, score(half, mixed))
    assert expected_accuracy(r, 100, 5, curve_gain=0.01)["value"] == pytest.approx(0.81)
    assert expected_accuracy(r, 100, 5, curve_gain=0.5)["value"] == pytest.approx(
        0.83
    )  # clipped to +3 points
    assert expected_accuracy(r, 100, 5, curve_gain=-0.2)["value"] == pytest.approx(0.80)  # never lowered
