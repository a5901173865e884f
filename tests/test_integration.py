"""Held-out checks on real data: the cross-validated estimate should predict accuracy on unseen rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import BACKBONE
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts, load_labelled
from fewlabel.training import train

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
UCI_AMAZON = DATASETS / "uci_amazon" / "data.csv"
SLACK = 0.08  # a loose sanity check: the held-out accuracy lies within the reported 95% CI widened by this


def split(data: LabelledTexts, per_class_train: int, per_class_test: int, seed: int):
    """Class-balanced disjoint train and test indices (fixed seed)."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in data.classes:
        members = rng.permutation([i for i, lab in enumerate(data.labels) if lab == label])
        assert len(members) >= per_class_train + per_class_test
        train_idx += members[:per_class_train].tolist()
        test_idx += members[per_class_train : per_class_train + per_class_test].tolist()
    return sorted(train_idx), sorted(test_idx)


def held_out_check(path: Path, min_accuracy: float, seed: int = 0) -> None:
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    data = load_labelled(path)
    train_idx, test_idx = split(data, 150, 150, seed)
    assert not set(train_idx) & set(test_idx)
    train_data = LabelledTexts.from_lists(
        [data.texts[i] for i in train_idx], [data.labels[i] for i in train_idx]
    )
    assert len(train_data) == 300 and len(test_idx) == 300

    result = train(train_data, None, TrainConfig(model=BACKBONE, seed=seed))
    assert result.config.model == BACKBONE
    assert result.chosen in result.config.candidates
    estimate = result.evaluation.scores.accuracy
    assert estimate.low <= estimate.value <= estimate.high

    proba = result.strategy.predict_proba([data.texts[i] for i in test_idx])
    predicted = [result.labels[k] for k in proba.argmax(axis=1)]
    accuracy = float(np.mean([p == data.labels[i] for p, i in zip(predicted, test_idx, strict=True)]))
    assert accuracy > min_accuracy, f"held-out accuracy {accuracy:.3f}"
    assert estimate.low - SLACK <= accuracy <= estimate.high + SLACK, (
        f"held-out accuracy {accuracy:.3f} outside the reported CV interval {estimate} widened by {SLACK}"
    )


@pytest.mark.slow
def test_uci_amazon_held_out_accuracy_matches_estimate():
    held_out_check(UCI_AMAZON, 0.8)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["uci_yelp", "uci_imdb"])
def test_other_uci_sets_held_out_accuracy_matches_estimate(name):
    held_out_check(DATASETS / name / "data.csv", 0.75, seed=1)
