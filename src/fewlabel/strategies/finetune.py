"""``finetune``: the encoder itself trained on the labels, with a recipe that does not collapse.

Most accurate with a few hundred labels when there are minutes to spend (see
:mod:`fewlabel.finetuning` for the recipe and why it is fast on a CPU). Only the weights training
changed are saved (safetensors); the rest comes from the backbone, which the manifest pins by hash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fewlabel.errors import FewlabelError, ModelDirError
from fewlabel.strategies.base import HoldoutRun, HoldoutStrategy

_RECIPE_KEYS = (
    "lr", "epochs", "patience", "batch_size", "max_tokens", "long_texts", "head_fraction",
    "freeze_layers", "layer_decay", "reinit_layers", "linear_probe_init", "warmup", "weight_decay",
    "dropout", "evals_per_epoch", "val_fraction", "time_budget_s", "seed", "precision", "device", "refit",
    "min_steps",
)  # fmt: skip


class FineTunedEncoder(HoldoutStrategy):
    name = "finetune"
    uses_backbone = True
    supports_soft_targets = True
    recipe_preset = "robust"
    defaults: ClassVar[dict[str, Any]] = {
        "backbone": "minilm",
        "preset": "robust",  # robust | naive (the common failing setup, reproduced to be explained)
        **{key: None for key in _RECIPE_KEYS},  # None: the preset's value
    }

    def recipe(self, **override: Any):
        from fewlabel.finetuning import PRESETS, Recipe

        preset = self.params.get("preset", self.recipe_preset)
        if preset not in PRESETS:
            raise FewlabelError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        chosen = {k: v for k, v in {**self.params, **override}.items() if k in _RECIPE_KEYS and v is not None}
        known = {f.name for f in fields(Recipe)}
        return Recipe(**{k: v for k, v in {**PRESETS[preset], **chosen}.items() if k in known})

    def _fit(
        self, texts: list[str], y: np.ndarray, extra: tuple[list[str], np.ndarray] | None = None
    ) -> None:
        from fewlabel import progress
        from fewlabel.encoders.backbones import resolve
        from fewlabel.finetuning import FineTuner

        assert self.n_classes_ is not None  # fit() and fit_with_extra() set it before calling _fit
        recipe = self.recipe()
        tuner = FineTuner(resolve(self._pin_backbone()).location, self.n_classes_, recipe)
        extra_texts, extra_y = extra if extra is not None else ([], None)
        start = time.perf_counter()
        with progress.tracker(f"Fine-tuning {self.params['backbone']}") as update:
            self.report_ = tuner.fit(texts, y, on_step=update, extra_texts=extra_texts, extra_y=extra_y)
        if recipe.refit:
            deadline = start + recipe.time_budget_s if recipe.time_budget_s else None
            with progress.tracker(f"Refitting {self.params['backbone']} on every row") as update:
                tuner.refit(texts, y, self.report_, update, extra_texts, extra_y, deadline=deadline)
        self.tuner_ = tuner

    def fit_with_extra(
        self,
        texts: list[str],
        y: np.ndarray,
        n_classes: int,
        extra_texts: list[str],
        extra_y: np.ndarray,
    ) -> FineTunedEncoder:
        """Fit with ``extra_texts`` (pseudo-labelled, say) in the training split only.

        Validation, early stopping and the held-out estimate use the rows of ``texts`` alone: the
        same rows as a fit without the extra texts.
        """
        self.n_classes_ = int(n_classes)
        self._fit(list(texts), np.asarray(y, dtype=np.int64), (list(extra_texts), np.asarray(extra_y)))
        return self

    def _fit_soft(self, texts: list[str], targets: np.ndarray, n_labelled: int) -> None:
        """The labelled rows train and validate; the others train towards their class probabilities."""
        labels = targets[:n_labelled].argmax(axis=1)
        self._fit(texts[:n_labelled], labels, (texts[n_labelled:], targets[n_labelled:]))

    @classmethod
    def estimated_seconds(cls, texts: Sequence[str], backbone: str) -> float:
        """Rough seconds of a run of the default recipe (see :func:`fewlabel.finetuning.estimated_seconds`)."""
        from fewlabel.finetuning import estimated_seconds

        return estimated_seconds(texts, backbone)

    def holdout_run(self) -> HoldoutRun:
        """The run's validation rows and scores, how it went, and its record with the resolved recipe."""
        self._check_fitted()
        run = self.report_
        if not run.val_index:
            raise FewlabelError(
                f"{self.name} trained without a validation split (val_fraction 0): it has no held-out rows "
                "to score it on; cross-validate it instead"
            )
        notes = [f"{restart}." for restart in run.restarts]
        if run.stopped:
            notes.append(f"{run.stopped} (best checkpoint after epoch {run.best_epoch:.1f}).")
        if run.truncated:
            notes.append(f"{run.truncated} text(s) longer than {run.max_tokens} tokens ({run.long_texts}).")
        if run.refit:
            notes.append(f"{run.refit}.")
        record = {k: v for k, v in run.to_dict().items() if k not in ("val_index", "val_proba")}
        record["recipe"] = asdict(self.tuner_.resolved_recipe())
        return HoldoutRun(
            val_index=list(run.val_index),
            val_proba=np.asarray(run.val_proba, dtype=float),
            train_accuracy=run.train_accuracy,
            val_accuracy=run.val_accuracy,
            seconds=run.seconds,
            notes=tuple(notes),
            flags=tuple(run.flags),
            record=record,
        )

    def _predict_proba(self, texts: list[str]) -> np.ndarray:
        exported = self.__dict__.get("attached_encoder_")
        if exported is not None:
            return exported.predict_proba(texts)
        return self.tuner_.predict_proba(texts)

    def attach_encoder(self, encoder) -> None:
        """Predict with the model's exported ONNX classifier (``OnnxFineTuned``); a sentence encoder
        (what the PyTorch engines attach to embedding strategies) changes nothing here: the network
        encodes for itself."""
        if hasattr(encoder, "predict_proba"):
            self.attached_encoder_ = encoder

    def head_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The trained linear head's weight (classes x hidden) and bias, as float32 arrays."""
        assert self.tuner_.net is not None
        linear = self.tuner_.net.head[-1]
        return (
            linear.weight.detach().float().cpu().numpy(),
            linear.bias.detach().float().cpu().numpy(),
        )

    def _save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        assert self.tuner_.net is not None  # tuner_ is only set once it holds a network (fit or load)
        save_file(
            {k: v.contiguous() for k, v in self.tuner_.net.trained_state().items()},
            str(directory / "weights.safetensors"),
        )
        (directory / "training_run.json").write_text(
            json.dumps(self.report_.to_dict(), indent=1), encoding="utf-8"
        )

    def _check_params(self, where: Path) -> None:
        from fewlabel.finetuning import Recipe

        super()._check_params(where)
        kinds = {f.name: f.type for f in fields(Recipe)}
        for key in _RECIPE_KEYS:
            value, kind = self.params.get(key), str(kinds.get(key, ""))
            if value is None:
                continue
            if "bool" in kind:
                ok = isinstance(value, bool)
            elif "int" in kind:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif "float" in kind:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ModelDirError(
                    f"{where}: field 'params.{key}' must be a {kind}, got {type(value).__name__}"
                )
        try:
            self.recipe(device="auto")  # the recipe's own checks (ranges, choices)
        except (FewlabelError, TypeError, ValueError) as err:
            raise ModelDirError(f"{where}: field 'params': {err}") from None

    def _load(self, directory: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from fewlabel.encoders.backbones import resolve
        from fewlabel.finetuning import FineTuner, RunReport
        from fewlabel.strategies.files import read_json, safetensors_arrays

        weights = directory / "weights.safetensors"
        safetensors_arrays(weights)  # header, shapes and sizes checked before reading any tensor
        run = read_json(directory / "training_run.json")
        try:
            state = load_file(str(weights))
            report = RunReport(**run)
        except (OSError, SafetensorError, TypeError) as err:
            raise ModelDirError(f"{directory}: cannot read fine-tuned weights ({err})") from None
        # A model trained on a GPU predicts wherever it is loaded: the device is chosen afresh.
        assert self.n_classes_ is not None  # load() sets it before calling _load
        tuner = FineTuner(resolve(self.backbone_ref()).location, self.n_classes_, self.recipe(device="auto"))
        tuner.net = tuner.new_net()
        try:
            tuner.net.load_trained_state(state)
        except (RuntimeError, KeyError, ValueError, FewlabelError) as err:
            raise ModelDirError(
                f"{weights}: the weights do not fit this backbone and {self.n_classes_} classes ({err})"
            ) from None
        self.tuner_ = tuner
        self.report_ = report

    def use_precision(self, precision: str) -> None:
        from dataclasses import replace

        self.tuner_.recipe = replace(self.tuner_.recipe, precision=precision)

    def describe(self) -> str:
        r = self.recipe()
        how = (
            "naive preset" if self.params.get("preset") == "naive" else f"lr {r.lr or 'auto'}, early stopping"
        )
        return f"{self.name} ({self.params['backbone']}, {how})"


# A run's fixed cost (loading the network, the head's refits) and how far the token-based estimate
# fell short on short runs; see ContrastiveEncoder.estimated_seconds.
SMALL_RUN_SECONDS = 10.0
SMALL_RUN_FACTOR = 2.0


class ContrastiveEncoder(FineTunedEncoder):
    """``setfit``: SetFit-style contrastive tuning of the sentence encoder, then a logistic-regression head.

    Same machinery as ``finetune`` (frozen lower layers computed once, length-bucketed batches,
    early stopping on validation accuracy of the refitted head, safetensors); a different objective.
    """

    name = "setfit"
    recipe_preset = "contrastive"
    supports_soft_targets = False  # its objective compares labels of pairs: no probabilities to fit
    defaults: ClassVar[dict[str, Any]] = {"backbone": "minilm", **{key: None for key in _RECIPE_KEYS}}

    @classmethod
    def estimated_seconds(cls, texts: Sequence[str], backbone: str) -> float:
        """Rough seconds of one run on every row to the epoch cap (how ``auto`` cross-validates it).

        Small runs cost more than their tokens: loading the network and the head's refits. Measured
        with mpnet, no validation split: 25 s for 32 cr sentences (16 epochs, estimated 26 s) and
        145 s for 32 blitzer_dvd reviews at load 3.4 (estimated 101 s).
        """
        import math
        from dataclasses import replace

        from fewlabel.finetuning import PRESETS, Recipe, estimated_seconds

        recipe = Recipe(**{**PRESETS["contrastive"], "val_fraction": 0.0})
        steps_per_epoch = max(1, math.ceil(len(texts) / recipe.batch_size))
        epochs = max(recipe.epochs or 1, math.ceil(recipe.min_steps / steps_per_epoch))  # as the run does
        return SMALL_RUN_SECONDS + SMALL_RUN_FACTOR * estimated_seconds(
            texts, backbone, replace(recipe, epochs=epochs)
        )
