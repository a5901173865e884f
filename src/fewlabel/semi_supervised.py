"""Self-training: use unlabelled texts by adding the model's most confident predictions as labels.

Each round fits the strategy on the labelled texts plus the pseudo-labelled ones so far, predicts the
remaining unlabelled texts, and adds those predicted with probability at least ``threshold``, the
same number for every class (the most confident first), so that the pseudo-labels cannot tilt the
model towards the class it already favours. Pseudo-labels come only from the unlabelled pool and
only enter fitting: evaluate the result on labelled texts it was not fitted on, as
``benchmarks/semi_supervised.py`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fewlabel.errors import FewlabelError
from fewlabel.strategies.base import Strategy


@dataclass
class SelfTrainingResult:
    """The strategy fitted on labelled + pseudo-labelled texts, and what each round added."""

    strategy: Strategy
    pseudo_index: np.ndarray  # positions in the unlabelled list
    pseudo_labels: np.ndarray
    added_per_round: list[int] = field(default_factory=list)


def self_train(
    factory: Callable[[], Strategy],
    texts: Sequence[str],
    y: np.ndarray,
    unlabelled: Sequence[str],
    n_classes: int | None = None,
    threshold: float = 0.9,
    rounds: int = 3,
    per_class: int | None = None,
) -> SelfTrainingResult:
    """Fit ``factory()`` on ``texts``/``y`` plus confidently pseudo-labelled ``unlabelled`` texts.

    Args:
        threshold: least predicted probability for a pseudo-label (0.9: wrong pseudo-labels do more
            harm than missing ones).
        rounds: rounds of predict-and-add; stops early when a round adds nothing.
        per_class: most pseudo-labels added per class and round; default: the size of the smallest
            labelled class, so pseudo-labels never outnumber real ones by more than ``rounds`` to one.
    """
    y = np.asarray(y, dtype=np.int64)
    n_classes = int(n_classes if n_classes is not None else y.max() + 1)
    if not 0.5 <= threshold < 1.0:
        raise FewlabelError(f"threshold must be in [0.5, 1), got {threshold}")
    if rounds < 1:
        raise FewlabelError(f"rounds must be at least 1, got {rounds}")
    cap = per_class if per_class is not None else int(np.bincount(y, minlength=n_classes).min())
    remaining = np.arange(len(unlabelled))
    pseudo_index = np.zeros(0, dtype=np.int64)
    pseudo_labels = np.zeros(0, dtype=np.int64)
    added: list[int] = []
    strategy = factory().fit(list(texts), y, n_classes)
    for _ in range(rounds):
        if len(remaining) == 0:
            break
        proba = strategy.predict_proba([unlabelled[i] for i in remaining])
        pred, conf = proba.argmax(1), proba.max(1)
        chosen_by_class = []
        for c in range(n_classes):
            members = np.flatnonzero((pred == c) & (conf >= threshold))
            chosen_by_class.append(members[np.argsort(-conf[members], kind="stable")])
        k = min(cap, *(len(m) for m in chosen_by_class))  # equal numbers per class keep the balance
        if k == 0:
            added.append(0)
            break
        take = np.concatenate([m[:k] for m in chosen_by_class])
        pseudo_index = np.concatenate([pseudo_index, remaining[take]])
        pseudo_labels = np.concatenate([pseudo_labels, pred[take]])
        remaining = np.delete(remaining, take)
        added.append(len(take))
        strategy = factory().fit(
            [*texts, *(unlabelled[i] for i in pseudo_index)], np.concatenate([y, pseudo_labels]), n_classes
        )
    return SelfTrainingResult(strategy, pseudo_index, pseudo_labels, added)
