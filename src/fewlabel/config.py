"""Training and distillation settings: one dataclass each, with defaults, validated, saved with the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fewlabel.errors import FewlabelError

# Candidates ``auto`` compares. Frozen embeddings are robust with few labels; TF-IDF wins on some
# vocabulary-driven data; the ensemble averages both and is rarely worse than the better one.
# Fine-tuning is usually the most accurate and joins when the time budget allows it.
AUTO_CANDIDATES = (
    "tfidf",
    "embed",
    "ensemble",
    "finetune",
    "setfit",
)  # setfit below 200 rows, finetune from 200
# Minutes a whole ``train`` run may take by default: a coffee break for 500 reviews on a laptop,
# enough to fine-tune on them. Fine-tuning stops early (keeping its best checkpoint) to stay inside.
DEFAULT_BUDGET_MINUTES = 15.0


@dataclass
class TrainConfig:
    """Settings of one ``fewlabel train`` run.

    Attributes:
        strategy: ``auto`` (compare candidates by nested cross-validation) or one registered name.
        model: backbone for strategies that embed text: ``best`` (``embeddinggemma`` when installed
            and fast enough, else ``mpnet`` if installed, else ``minilm``),
            ``minilm``, ``mpnet``, a local directory or a Hugging Face Hub id.
        seed: seeds fold assignment and anything random in strategies.
        folds: outer cross-validation folds (5 is the usual bias/variance balance for ~500 texts).
        inner_folds: folds of the inner cross-validation that makes ``auto``'s choice.
        candidates: strategies ``auto`` compares.
        strategy_params: per-strategy overrides, e.g. ``{"tfidf": {"C": 3.0}}``.
        diagnostics: compute the learning curve, label issues, near-duplicates and the report.
        budget_minutes: upper bound on the whole run; fine-tuning is skipped when it cannot fit and
            stops early (keeping its best checkpoint) when time runs out.
        preset: fine-tuning recipe, ``robust`` (default) or ``naive`` (the common failing setup, to
            reproduce and explain it).
        augment: ``eda`` fits every strategy on its training texts plus EDA variants of them
            (:mod:`fewlabel.strategies.augment`; training folds only, never validation folds); ``None`` (default)
            does not augment: on the shared benchmarks it did not help.
        tune_threshold: for two classes, move the decision threshold to where balanced accuracy is
            highest on out-of-fold probabilities; ``None`` (default) does so when the classes are
            imbalanced (the smallest under half its fair share), ``True`` always, ``False`` never.
        strict: raise instead of saving when the model is not clearly better than chance.
        choose_engine: for a model that embeds with a frozen backbone, predict a sample of the
            training texts in float32 and in bfloat16 and record the engine ``auto`` predicts with
            (:mod:`fewlabel.model_dir.engines`; a few seconds); ``False`` records none (float32).
    """

    strategy: str = "auto"
    model: str = "best"
    seed: int = 0
    folds: int = 5
    inner_folds: int = 4
    candidates: list[str] = field(default_factory=lambda: list(AUTO_CANDIDATES))
    strategy_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    diagnostics: bool = True
    budget_minutes: float = DEFAULT_BUDGET_MINUTES
    preset: str = "robust"
    augment: str | None = None
    tune_threshold: bool | None = None
    strict: bool = False
    choose_engine: bool = True

    def __post_init__(self) -> None:
        from fewlabel.strategies import REGISTRY, get_strategy_class

        if self.strategy != "auto" and self.strategy not in REGISTRY:
            get_strategy_class(self.strategy)  # raises with a suggestion
        if not 2 <= self.folds <= 20:
            raise FewlabelError(f"folds must be between 2 and 20, got {self.folds}")
        if not 2 <= self.inner_folds <= 10:
            raise FewlabelError(f"inner_folds must be between 2 and 10, got {self.inner_folds}")
        if not self.budget_minutes > 0:
            raise FewlabelError(f"budget_minutes must be positive, got {self.budget_minutes}")
        if self.preset not in ("robust", "naive"):
            raise FewlabelError(f"preset must be robust or naive, got {self.preset!r}")
        if self.augment not in (None, "eda"):
            raise FewlabelError(f"augment must be eda or None, got {self.augment!r}")
        if not self.candidates:
            raise FewlabelError("candidates must name at least one strategy")
        for name in [*self.candidates, *self.strategy_params]:
            get_strategy_class(name)

    @property
    def strategies(self) -> list[str]:
        """The strategies this run cross-validates."""
        return list(self.candidates) if self.strategy == "auto" else [self.strategy]

    def params_for(self, name: str) -> dict[str, Any]:
        from fewlabel.strategies import get_strategy_class

        params = dict(self.strategy_params.get(name, {}))
        defaults = get_strategy_class(name).defaults
        if "backbone" in defaults:
            params.setdefault("backbone", self.model)
        if "preset" in defaults:
            params.setdefault("preset", self.preset)
        if "seed" in defaults:
            params.setdefault("seed", self.seed)
        return params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise FewlabelError(
                f"unknown config key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)


# Students ``fewlabel distill`` trains: the ones that learn from class probabilities (soft targets).
STUDENTS = ("tfidf", "embed", "finetune")
# tfidf: on blitzer_books, one seed (BENCHMARKS.md, "Distilling into a small student"), it came within
# a point of the fine-tuned minilm student (83.8% against 84.7%), predicting 160 long reviews/s through
# `fewlabel predict` against 34, trained in 33 s against 15 min; frozen minilm was the weakest (76.2%).
DEFAULT_STUDENT = "tfidf"
# The small backbone a deployed student runs on: seven times faster than mpnet (README).
DEFAULT_STUDENT_MODEL = "minilm"


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one ``distill`` run.

    Attributes:
        student: ``tfidf``, ``embed`` (frozen ``model`` embeddings + logistic regression) or
            ``finetune`` (``model`` fine-tuned with a soft-target cross-entropy).
        model: the student's backbone (``embed``, ``finetune``).
        folds: splits of the labelled rows for the cross-fitted estimate; a fine-tuned student, or a
            fine-tuned teacher refitted honestly, gets one 80/20 split instead.
        seed: seeds the splits and anything random in the student.
        budget_minutes: time the student's fine-tuning runs may take in all (they stop early,
            keeping their best checkpoint); the other students ignore it.
        honest_teacher: a teacher too slow to refit per split (fine-tuned) is refitted once without
            the held-out rows, instead of the saved teacher (which saw them) labelling the texts.
        student_params: the student strategy's own settings, e.g. ``{"C": 3.0}`` or ``{"epochs": 3}``.
    """

    student: str = DEFAULT_STUDENT
    model: str = DEFAULT_STUDENT_MODEL
    folds: int = 5
    seed: int = 0
    budget_minutes: float = DEFAULT_BUDGET_MINUTES
    honest_teacher: bool = False
    student_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.student not in STUDENTS:
            raise FewlabelError(f"unknown student {self.student!r}; choose from {', '.join(STUDENTS)}")
        if not 2 <= self.folds <= 20:
            raise FewlabelError(f"folds must be between 2 and 20, got {self.folds}")
        if not self.budget_minutes > 0:
            raise FewlabelError(f"budget_minutes must be positive, got {self.budget_minutes}")
        from fewlabel.strategies import make_strategy

        make_strategy(self.student, **self.params())  # unknown settings refused before any work

    def params(self, time_budget_s: float | None = None) -> dict[str, Any]:
        """The student strategy's settings (a fine-tuning run gets ``time_budget_s`` unless given one)."""
        params = dict(self.student_params)
        if self.student != "tfidf":
            params.setdefault("backbone", self.model)
        if self.student == "finetune":
            params.setdefault("seed", self.seed)
            if time_budget_s is not None:
                params.setdefault("time_budget_s", time_budget_s)
        return params

    @property
    def slow_student(self) -> bool:
        """Whether the student validates on a split of its own run (fine-tuning): too slow to cross-fit."""
        from fewlabel.strategies import get_strategy_class
        from fewlabel.strategies.base import HoldoutStrategy

        return issubclass(get_strategy_class(self.student), HoldoutStrategy)
