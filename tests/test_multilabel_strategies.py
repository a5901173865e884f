"""Multi-label fits: shared features, one binary head per label, independent probabilities, strict loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import BACKBONE, multi_label_rows
from fewlabel.errors import FewlabelError, ModelDirError
from fewlabel.strategies import REGISTRY, get_strategy_class, make_strategy
from fewlabel.strategies.base import MULTI_LABEL_STRATEGIES
from fewlabel.strategies.linear import fit_one_vs_rest

TEXTS = [t for t, _ in multi_label_rows()]
TOPICS = ["food", "sports", "tech"]
Y = np.array([[int(t in labels.split("|")) for t in TOPICS] for _, labels in multi_label_rows()])


def build(name: str):
    params = {"backbone": BACKBONE} if "backbone" in get_strategy_class(name).defaults else {}
    return make_strategy(name, **params)


def test_the_list_of_multi_label_strategies_matches_the_registry():
    supporting = [n for n in REGISTRY if get_strategy_class(n).supports_multi_label]
    assert sorted(supporting) == sorted(MULTI_LABEL_STRATEGIES)


@pytest.fixture(scope="module", params=list(MULTI_LABEL_STRATEGIES))
def fitted(request):
    return request.param, build(request.param).fit(TEXTS, Y)


def test_per_label_probabilities_are_independent(fitted):
    name, strategy = fitted
    proba = strategy.predict_proba(TEXTS)
    assert strategy.multi_label_ and strategy.n_classes_ == 3
    assert proba.shape == (40, 3) and ((proba >= 0) & (proba <= 1)).all()
    assert proba.sum(axis=1).max() > 1.5  # texts with all three topics: not a softmax
    assert proba.sum(axis=1).min() < 0.5  # texts with none
    assert ((proba >= 0.5) == Y).mean() > 0.9, name


def test_save_and_load_round_trip(fitted, tmp_path):
    name, strategy = fitted
    strategy.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "strategy.json").read_text())
    assert meta["multi_label"] is True and meta["n_classes"] == 3
    loaded = get_strategy_class(name).load(tmp_path / "s")
    assert loaded.multi_label_
    np.testing.assert_allclose(loaded.predict_proba(TEXTS[:6]), strategy.predict_proba(TEXTS[:6]), atol=1e-6)


def test_a_damaged_multi_label_field_or_head_is_refused(tmp_path):
    strategy = make_strategy("tfidf").fit(TEXTS, Y)
    strategy.save(tmp_path / "s")
    meta_path = tmp_path / "s" / "strategy.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "multi_label": "yes"}))
    with pytest.raises(ModelDirError, match="field 'multi_label' must be true or false"):
        get_strategy_class("tfidf").load(tmp_path / "s")
    meta_path.write_text(json.dumps({**meta, "n_classes": 2}))  # 3 label rows saved, 2 claimed
    with pytest.raises(ModelDirError, match="do not fit 2 classes"):
        get_strategy_class("tfidf").load(tmp_path / "s")


@pytest.mark.parametrize("name", ["finetune", "setfit"])
def test_slow_strategies_refuse_a_label_matrix(name):
    with pytest.raises(FewlabelError) as err:
        make_strategy(name, backbone=BACKBONE).fit(TEXTS, Y)
    assert "single-label only" in str(err.value) and "tfidf, embed, ensemble" in str(err.value)


def test_a_label_constant_in_the_training_rows_gets_its_smoothed_share():
    X = np.eye(6)
    Y2 = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    head = fit_one_vs_rest(X, Y2, C=1.0, class_weight="balanced")
    proba = head.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], 0.5 / 7)
    assert (proba[[0, 2, 4], 0] > proba[[1, 3, 5], 0]).all()


def test_a_label_matrix_must_be_zeros_and_ones():
    with pytest.raises(FewlabelError, match="0/1 matrix"):
        make_strategy("tfidf").fit(TEXTS, Y * 2)
