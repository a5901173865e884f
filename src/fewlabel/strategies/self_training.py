"""Self-training: use unlabelled texts by adding the model's most confident predictions as labels.

Each round fits the strategy on the labelled texts plus the pseudo-labelled ones so far, predicts the
remaining unlabelled texts, and adds those predicted with probability at least ``threshold``, the
same number for every class (the most confident first), so that the pseudo-labels cannot tilt the
model towards the class it already favours. Pseudo-labels come only from the unlabelled pool and
only enter fitting: evaluate the result on labelled texts it was not fitted on, as
``benchmarks/semi_supervised.py`` and ``fewlabel train --unlabelled`` do. Strategies that validate on
a split of their own (fine-tuning) take the pseudo-labelled texts into their training split only
(``fit_with_extra``), so their validation rows and held-out estimate stay real labels.
See BENCHMARKS.md for what it gained per strategy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fewlabel.errors import FewlabelError
from fewlabel.strategies.base import HoldoutStrategy, Strategy, texts_digest
from fewlabel.strategies.wrapper import Wrapper


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
    teacher: Strategy | None = None,
) -> SelfTrainingResult:
    """Fit ``factory()`` on ``texts``/``y`` plus confidently pseudo-labelled ``unlabelled`` texts.

    Args:
        threshold: least predicted probability for a pseudo-label (0.9: wrong pseudo-labels do more
            harm than missing ones).
        rounds: rounds of predict-and-add; stops early when a round adds nothing.
        per_class: most pseudo-labels added per class and round; default: the size of the smallest
            labelled class, so pseudo-labels never outnumber real ones by more than ``rounds`` to one.
        teacher: ``factory()`` already fitted on ``texts``/``y``, to start from instead of fitting it.
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
    strategy = teacher if teacher is not None else factory().fit(list(texts), y, n_classes)
    for _ in range(rounds):
        if len(remaining) == 0:
            break
        proba = strategy.predict_proba([unlabelled[int(i)] for i in remaining])
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
        strategy = _fit_with(
            factory(), texts, y, [unlabelled[int(i)] for i in pseudo_index], pseudo_labels, n_classes
        )
    return SelfTrainingResult(strategy, pseudo_index, pseudo_labels, added)


@dataclass(frozen=True)
class SelfTrainingSummary:
    """What self-training added to the fit: pseudo-labelled texts in all, and per round."""

    pseudo_labelled: int
    added_per_round: list[int]


def estimated_seconds(
    strategy: type[HoldoutStrategy],
    texts: Sequence[str],
    backbone: str,
    unlabelled: Sequence[str],
    rounds: int,
) -> float:
    """Rough seconds of self-training a slow strategy: the teacher's fit on the labelled texts, then
    one fit per round with (at most) every unlabelled text added."""
    seconds = strategy.estimated_seconds(texts, backbone)
    for _ in range(rounds):
        seconds += strategy.estimated_seconds([*texts, *unlabelled], backbone)
    return seconds


def _fit_with(
    strategy: Strategy,
    texts: Sequence[str],
    y: np.ndarray,
    extra_texts: list[str],
    extra_y: np.ndarray,
    n_classes: int,
) -> Strategy:
    """Fit on labelled + extra texts; strategies with a validation split keep the extra ones out of it."""
    if hasattr(strategy, "fit_with_extra"):
        return strategy.fit_with_extra(list(texts), y, n_classes, extra_texts, extra_y)
    return strategy.fit([*texts, *extra_texts], np.concatenate([y, extra_y]), n_classes)


class SelfTrained(Wrapper):
    """A strategy self-trained on unlabelled texts (what ``fewlabel train --unlabelled`` fits).

    The unlabelled texts are given to the constructor, not as a parameter (they can be many); the
    parameters record their digest. Like augmentation, self-training only shapes fitting: prediction,
    saving and loading are the wrapped strategy's own, so a saved model loads without this module.
    Within cross-validation each fold self-trains on its own training rows, so no pseudo-label is
    ever derived from, or scored against, a validation fold.
    """

    name = "self-trained"
    defaults = {
        "strategy": "tfidf",  # the wrapped strategy
        "strategy_params": {},
        "threshold": 0.9,
        "rounds": 3,
        "per_class": None,  # None: the smallest labelled class per round (see self_train)
        "unlabelled_sha256": "",
    }

    def __init__(self, unlabelled: Sequence[str] = (), **params):
        super().__init__(**params)
        self.unlabelled = list(unlabelled)
        if not self.unlabelled:
            raise FewlabelError("self-training needs at least one unlabelled text")
        self.params["unlabelled_sha256"] = texts_digest(self.unlabelled)

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        p = self.params
        factory = self.inner
        budget = p["strategy_params"].get("time_budget_s")
        if budget:
            # A time budget covers the whole self-training: the first fit (the teacher) gets a third.
            deadline = time.perf_counter() + float(budget)
            fits = [0]

            def factory() -> Strategy:
                from fewlabel.strategies import make_strategy

                left = max(30.0, deadline - time.perf_counter())
                share = left / 3 if fits[0] == 0 else left
                fits[0] += 1
                return make_strategy(p["strategy"], **{**p["strategy_params"], "time_budget_s": share})

        result = self_train(
            factory,
            texts,
            y,
            self.unlabelled,
            self.n_classes_,
            threshold=float(p["threshold"]),
            rounds=int(p["rounds"]),
            per_class=p["per_class"],
        )
        self.inner_ = result.strategy
        self.pseudo_labelled_ = int(len(result.pseudo_index))
        self.added_per_round_ = list(result.added_per_round)

    def summary(self) -> SelfTrainingSummary:
        """What self-training added to the last fit."""
        self._check_fitted()
        return SelfTrainingSummary(self.pseudo_labelled_, list(self.added_per_round_))

    def describe(self) -> str:
        return f"{self.inner().describe()} + self-training on {len(self.unlabelled)} unlabelled texts"
