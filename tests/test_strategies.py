"""One contract every registered strategy must meet; a newly registered strategy is covered automatically."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from conftest import BACKBONE, encode_labels
from fewlabel.errors import FewlabelError
from fewlabel.strategies import REGISTRY, Strategy, get_strategy_class, make_strategy
from fewlabel.strategies.base import NotFittedError

NAMES = sorted(REGISTRY)
# Settings that keep slow strategies to seconds on the tiny fixtures; the contract is the same.
FAST = {
    "finetune": {"epochs": 3, "max_tokens": 32},
    "setfit": {"epochs": 3, "max_tokens": 32, "min_steps": 0},
}


def build(name: str, **params) -> Strategy:
    """A strategy with the backbone pinned to minilm when it takes one, and fast settings."""
    if "backbone" in get_strategy_class(name).defaults:
        params.setdefault("backbone", BACKBONE)
    for key, value in FAST.get(name, {}).items():
        params.setdefault(key, value)
    return make_strategy(name, **params)


@pytest.fixture(scope="module", params=NAMES)
def fitted(request, reviews):
    """(name, strategy fitted on the binary fixture, texts, y)."""
    texts, labels = reviews
    y, _ = encode_labels(labels)
    return request.param, build(request.param).fit(texts, y), texts, y


def test_registry_entries_are_strategies():
    assert {"tfidf", "embed", "ensemble"} <= set(REGISTRY)
    for name in NAMES:
        cls = get_strategy_class(name)
        assert issubclass(cls, Strategy)
        assert cls.name == name


def test_unknown_strategy_suggests_closest_name():
    with pytest.raises(FewlabelError) as err:
        get_strategy_class("tfdif")
    msg = str(err.value)
    assert "unknown strategy 'tfdif'" in msg and "Did you mean 'tfidf'?" in msg
    for name in NAMES:
        assert name in msg


@pytest.mark.parametrize("name", NAMES)
def test_unknown_param_is_refused(name):
    with pytest.raises(FewlabelError) as err:
        make_strategy(name, no_such_setting=1)
    assert "no_such_setting" in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_predict_before_fit_raises(name, tmp_path):
    strategy = build(name)
    with pytest.raises(NotFittedError):
        strategy.predict_proba(["anything"])
    with pytest.raises(NotFittedError):
        strategy.save(tmp_path / "s")


@pytest.mark.parametrize("name", NAMES)
def test_fit_checks_lengths(name):
    with pytest.raises(FewlabelError, match="2 texts but 3 labels"):
        build(name).fit(["a", "b"], np.array([0, 1, 0]))
    with pytest.raises(FewlabelError, match="zero texts"):
        build(name).fit([], np.array([], dtype=int))


def test_proba_shape_and_rows_sum_to_one(fitted):
    name, strategy, texts, y = fitted
    proba = strategy.predict_proba(texts)
    assert proba.shape == (len(texts), 2), name
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_empty_input_gives_empty_proba(fitted):
    _, strategy, _, _ = fitted
    assert strategy.predict_proba([]).shape == (0, 2)


def test_training_accuracy_well_above_chance(fitted):
    name, strategy, texts, y = fitted
    accuracy = float((strategy.predict_proba(texts).argmax(axis=1) == y).mean())
    assert accuracy >= 0.9, f"{name}: training accuracy {accuracy:.2f} on a separable set"


def test_generalises_to_new_texts(fitted):
    from conftest import NEW_NEGATIVE, NEW_POSITIVE

    name, strategy, _, _ = fitted
    pred = strategy.predict_proba(NEW_NEGATIVE + NEW_POSITIVE).argmax(axis=1)  # 0 = negative, 1 = positive
    assert pred.tolist() == [0] * len(NEW_NEGATIVE) + [1] * len(NEW_POSITIVE), name


def test_save_load_gives_identical_probabilities(fitted, tmp_path):
    name, strategy, texts, _ = fitted
    strategy.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "strategy.json").read_text())
    assert meta["name"] == name and meta["n_classes"] == 2
    loaded = get_strategy_class(name).load(tmp_path / "s")
    assert isinstance(loaded, get_strategy_class(name))
    assert loaded.params == strategy.params
    probe = [*texts[:6], "A text the model has never seen, with zzqx tokens."]
    assert np.allclose(loaded.predict_proba(probe), strategy.predict_proba(probe), atol=1e-6)


def test_saved_files_need_no_pickle(fitted, tmp_path, monkeypatch):
    name, strategy, texts, _ = fitted
    strategy.save(tmp_path / "s")
    files = [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert files
    assert not [p for p in files if p.suffix in {".pkl", ".pickle", ".joblib", ".pt", ".bin"}]
    assert {p.suffix for p in files} <= {".json", ".npz", ".safetensors"}
    for npz in (p for p in files if p.suffix == ".npz"):
        with np.load(npz, allow_pickle=False) as data:  # object arrays would raise here
            assert all(data[k].dtype != object for k in data.files)

    def no_pickle(*args, **kwargs):
        raise AssertionError("loading a strategy must not unpickle anything")

    expected = strategy.predict_proba(texts[:4])
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    loaded = get_strategy_class(name).load(tmp_path / "s")
    assert np.allclose(loaded.predict_proba(texts[:4]), expected, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_three_classes(name, three_class, tmp_path):
    texts, labels = three_class
    y, classes = encode_labels(labels)
    strategy = build(name).fit(texts, y)
    proba = strategy.predict_proba(texts)
    assert proba.shape == (len(texts), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (proba.argmax(axis=1) == y).mean() >= 0.8
    strategy.save(tmp_path / "s")
    loaded = get_strategy_class(name).load(tmp_path / "s")
    assert np.allclose(loaded.predict_proba(texts), proba, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_class_missing_from_training_keeps_all_columns(name, three_class):
    """Cross-validation folds may miss a class: the strategy still answers with n_classes columns."""
    texts, labels = three_class
    y, _ = encode_labels(labels)
    keep = y != 1
    strategy = build(name).fit([t for t, k in zip(texts, keep, strict=True) if k], y[keep], n_classes=3)
    proba = strategy.predict_proba(texts)
    assert proba.shape == (len(texts), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert proba[:, 1].max() < 0.01  # the unseen class is (practically) never predicted


@pytest.mark.parametrize(
    "name",
    # Two fits each: fine-tuning ones take several seconds, so they are slow-marked.
    [pytest.param(n, marks=pytest.mark.slow) if n in ("finetune", "setfit") else n for n in NAMES],
)
def test_fit_is_deterministic(name, reviews):
    texts, labels = reviews
    y, _ = encode_labels(labels)
    a = build(name).fit(texts, y).predict_proba(texts[:5])
    b = build(name).fit(texts, y).predict_proba(texts[:5])
    assert np.allclose(a, b, atol=1e-9)


def test_describe_names_the_strategy():
    for name in NAMES:
        assert build(name).describe().startswith(name)


def test_holdout_strategies_follow_the_protocol(fitted):
    """Slow strategies say what their fit held out and how long a fit takes; the others hold nothing out."""
    from fewlabel.strategies.base import HoldoutStrategy

    name, strategy, texts, _ = fitted
    if strategy.evaluation != "holdout":
        assert not isinstance(strategy, HoldoutStrategy)
        with pytest.raises(FewlabelError, match="cross-validated: its fit holds no rows out"):
            strategy.holdout_run()
        return
    assert isinstance(strategy, HoldoutStrategy)
    assert {"backbone", "time_budget_s"} <= set(strategy.defaults)  # what training sets
    run = strategy.holdout_run()
    assert run.val_index == sorted(set(run.val_index)) and 0 < len(run.val_index) < len(texts)
    assert run.val_proba.shape == (len(run.val_index), 2)
    assert np.allclose(run.val_proba.sum(axis=1), 1.0)
    assert 0.0 <= run.val_accuracy <= 1.0 and run.seconds > 0
    as_json = json.dumps(run.record)  # JSON-ready, for metrics.json (NaN where a figure is missing)
    assert json.dumps(json.loads(as_json)) == as_json
    assert type(strategy).estimated_seconds(texts, BACKBONE) > 0
