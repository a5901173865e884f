"""The systems the benchmark compares, each a small adapter, and how one is measured in a subprocess.

An adapter has two methods: ``fit(texts, y, n_classes)`` (integer labels ``0..n_classes-1``; returns a
dict of facts worth recording, e.g. a validation accuracy) and ``predict_proba(texts)`` (columns in
label-index order). Heavy libraries are imported inside the adapters, so a subprocess that runs the
scikit-learn baseline never loads torch and its peak memory is its own.

Systems (``python -m benchmarks.run --list``):

- ``fewlabel/<strategy>``: every strategy registered in ``fewlabel.strategies.REGISTRY``, fitted once
  with its defaults (``make_strategy(name).fit``); read from the registry, so new strategies appear here.
- ``fewlabel/train``: the public ``fewlabel.training.train`` with its defaults (nested CV, calibration,
  diagnostics), saved and loaded as a user would, predicting through ``TrainedModel``.
- ``setfit/default`` and ``setfit/iter20``: the setfit library on the same backbone.
- ``sklearn/tfidf-logreg``: ``make_pipeline(TfidfVectorizer(), LogisticRegression())``.
- ``hf/naive-finetune``: Hugging Face ``Trainer`` fine-tuning, the setup users report failing.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WARMUP_TEXTS = 16  # predicted once before timing, so first-call allocations are not timed


def seed_everything(seed: int, torch_too: bool = False) -> None:
    """Seed Python, NumPy and (only if asked, so the sklearn child never imports it) torch."""
    random.seed(seed)
    np.random.seed(seed)
    if torch_too:
        import torch

        torch.manual_seed(seed)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Adapter:
    """Fit on texts with integer labels, then class probabilities; see the module docstring."""

    # Imported before the training clock starts: import time is a property of the machine's disk and
    # Python, not of the method, and on a busy machine it can dwarf a linear model's fit.
    modules: tuple[str, ...] = ()

    def __init__(self, seed: int, backbone: str):
        self.seed = seed
        self.backbone = backbone

    def import_modules(self) -> None:
        for module in self.modules:
            importlib.import_module(module)

    def fit(self, texts: list[str], y: np.ndarray, n_classes: int) -> dict[str, Any]:
        raise NotImplementedError

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _location(self) -> str:
        """The backbone as a local directory (``minilm`` → the packaged model) or a Hub id."""
        from fewlabel.encoders.backbones import resolve

        return resolve(self.backbone).location


def _fresh_fewlabel_home() -> None:
    """A cold embedding cache per subprocess, as on a first run (assembled models kept)."""
    from benchmarks.train_default import cold_embedding_cache

    cold_embedding_cache()


class FewlabelStrategy(Adapter):
    """One registered fewlabel strategy, fitted once with its defaults."""

    def __init__(self, seed: int, backbone: str, strategy: str):
        super().__init__(seed, backbone)
        self.strategy = strategy

    def import_modules(self) -> None:
        from fewlabel.strategies import REGISTRY, get_strategy_class

        importlib.import_module(REGISTRY[self.strategy].split(":")[0])
        if get_strategy_class(self.strategy).uses_backbone:
            importlib.import_module("sentence_transformers")

    def fit(self, texts: list[str], y: np.ndarray, n_classes: int) -> dict[str, Any]:
        from fewlabel import progress
        from fewlabel.strategies import get_strategy_class, make_strategy

        progress.set_enabled(False)
        _fresh_fewlabel_home()
        cls = get_strategy_class(self.strategy)
        defaults = cls.defaults
        seed_everything(self.seed, torch_too=cls.uses_backbone)
        # Only settings the strategy has: new strategies may take neither a backbone nor a seed.
        params: dict[str, Any] = {}
        if "backbone" in defaults:
            params["backbone"] = self.backbone
        if "seed" in defaults:
            params["seed"] = self.seed
        self.model = make_strategy(self.strategy, **params).fit(texts, y, n_classes)
        return {"params": _jsonable(self.model.params), "describe": self.model.describe()}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_proba(texts)


class FewlabelTrain(Adapter):
    """``fewlabel.training.train`` with its defaults; ``backbone`` is its ``model`` setting (``best``)."""

    modules = ("fewlabel.training", "fewlabel.inference.loading", "sentence_transformers")

    def fit(self, texts: list[str], y: np.ndarray, n_classes: int) -> dict[str, Any]:
        from fewlabel import progress
        from fewlabel.config import TrainConfig
        from fewlabel.data.labelled import LabelledTexts
        from fewlabel.inference.loading import load_model
        from fewlabel.training import train

        progress.set_enabled(False)
        _fresh_fewlabel_home()
        seed_everything(self.seed, torch_too=True)
        # Label names "0", "1", ...: zero-padded so fewlabel's sorted classes keep our index order.
        width = len(str(n_classes - 1))
        data = LabelledTexts(list(texts), [str(int(i)).zfill(width) for i in y], list(range(len(texts))))
        model_dir = f"{tempfile.mkdtemp(prefix='fewlabel-model-')}/model"
        result = train(data, model_dir, TrainConfig(seed=self.seed, model=self.backbone))
        self.model = load_model(model_dir)  # what a user does next; timed with training (it is cheap)
        self.order = [self.model.labels.index(str(i).zfill(width)) for i in range(n_classes)]
        exp = result.expected
        return {
            "chosen": result.chosen,
            # The chosen strategy's own backbone: slow strategies pick theirs within the budget, so
            # it can differ from the embedding backbone (config.model; minilm on long texts).
            "backbone": result.strategy.params.get("backbone") or result.config.model,
            "embedding_backbone": result.config.model,
            "reported_accuracy": exp.value,
            "reported_ci95": [exp.ci95_low, exp.ci95_high],
        }

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_proba(texts)[:, self.order]


class SklearnTfidfLogReg(Adapter):
    """What a user writes in five lines: TF-IDF and logistic regression, all defaults."""

    modules = ("sklearn.feature_extraction.text", "sklearn.linear_model", "sklearn.pipeline")

    def fit(self, texts: list[str], y: np.ndarray, n_classes: int) -> dict[str, Any]:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        seed_everything(self.seed)
        self.model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, y)
        return {}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_proba(texts)


# setfit settings beyond its defaults. Default sampling ("oversampling") draws about every pair of
# training texts: ~125,000 pairs (7,800 steps of 16) for 500 texts. A careful user caps the pairs at
# 20 per text and label side (SetFit paper's R=20): 20,000 pairs, 1,250 steps, one epoch.
SETFIT_SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "iter20": {"num_iterations": 20},
}


class SetFit(Adapter):
    """The setfit library (contrastive fine-tuning of the backbone, then a logistic-regression head)."""

    modules = ("datasets", "setfit")

    def __init__(self, seed: int, backbone: str, setting: str):
        super().__init__(seed, backbone)
        self.settings = SETFIT_SETTINGS[setting]

    def fit(self, texts: list[str], y: np.ndarray, n_classes: int) -> dict[str, Any]:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        seed_everything(self.seed, torch_too=True)
        self.model = SetFitModel.from_pretrained(self._location())
        # Only where files go, logging and the seed differ from the defaults; none changes the model.
        # Trainer.evaluate() is not used: it loads its metric from the Hub, which fails offline.
        args = TrainingArguments(
            output_dir=tempfile.mkdtemp(prefix="setfit-"),
            seed=self.seed,
            report_to="none",
            save_strategy="no",
            show_progress_bar=False,
            **self.settings,
        )
        data = Dataset.from_dict({"text": list(texts), "label": [int(i) for i in y]})
        Trainer(model=self.model, args=args, train_dataset=data).train()
        return {"settings": _jsonable(self.settings)}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict_proba(texts, as_numpy=True, show_progress_bar=False))


class HfNaiveFinetune(Adapter):
    """The setup users report failing: plain ``Trainer`` fine-tuning of a BERT-type encoder.

    80/20 split of the training sample, lr 5e-5, no warm-up, 2 epochs, batch 16, max_length 256.
    Padding is per batch (the ``Trainer``'s default collator), which changes speed, not results.
    """

    modules = ("torch", "transformers")

    def fit(self, texts: list[str], y: np.ndarray, n_classes: int) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        seed_everything(self.seed, torch_too=True)
        location = self._location()
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=n_classes)
        order = np.random.default_rng(self.seed).permutation(len(texts))
        n_val = round(0.2 * len(texts))
        val, trn = order[:n_val], order[n_val:]
        rows = [
            {**self.tokenizer(texts[i], truncation=True, max_length=256), "labels": int(y[i])} for i in trn
        ]
        args = TrainingArguments(
            output_dir=tempfile.mkdtemp(prefix="hf-naive-"),
            learning_rate=5e-5,
            num_train_epochs=2,
            per_device_train_batch_size=16,
            warmup_steps=0,
            seed=self.seed,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),  # the GPU where there is one (benchmarks.like_for_like)
            dataloader_pin_memory=False,
        )
        Trainer(model=self.model, args=args, train_dataset=rows, processing_class=self.tokenizer).train()
        self.model.eval()
        self._torch = torch
        val_pred = self.predict_proba([texts[i] for i in val]).argmax(axis=1)
        return {"validation_accuracy": float(np.mean(val_pred == y[val])), "validation_size": int(n_val)}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = self.tokenizer(
                    texts[start : start + 32],
                    truncation=True,
                    max_length=256,
                    padding=True,
                    return_tensors="pt",
                )
                batch = batch.to(self.model.device)
                out.append(torch.softmax(self.model(**batch).logits, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.num_labels))


@dataclass(frozen=True)
class System:
    name: str
    cheap: bool  # runs in seconds on 2 CPU cores: part of --quick and of the "cheap" group
    make: Callable[[int, dict[str, str]], Adapter]
    description: str = ""


CHEAP_STRATEGIES = {"tfidf", "embed", "ensemble"}


def registry() -> dict[str, System]:
    """Every system, the fewlabel strategies read from the registry now (others are adding some)."""
    from fewlabel.strategies import REGISTRY

    systems: dict[str, System] = {}
    for name in REGISTRY:
        systems[f"fewlabel/{name}"] = System(
            f"fewlabel/{name}",
            name in CHEAP_STRATEGIES,
            lambda seed, opts, n=name: FewlabelStrategy(seed, opts["backbone"], n),
            f"fewlabel strategy {name!r}, fitted once with its defaults",
        )
    systems["fewlabel/train"] = System(
        "fewlabel/train",
        False,
        lambda seed, opts: FewlabelTrain(seed, opts["train_model"]),
        "fewlabel.training.train with its defaults (nested CV choice, calibration, diagnostics)",
    )
    for setting in SETFIT_SETTINGS:
        systems[f"setfit/{setting}"] = System(
            f"setfit/{setting}",
            False,
            lambda seed, opts, s=setting: SetFit(seed, opts["backbone"], s),
            f"setfit library, {SETFIT_SETTINGS[setting] or 'default settings'}",
        )
    systems["sklearn/tfidf-logreg"] = System(
        "sklearn/tfidf-logreg",
        True,
        lambda seed, opts: SklearnTfidfLogReg(seed, opts["backbone"]),
        "scikit-learn TfidfVectorizer + LogisticRegression, defaults",
    )
    systems["hf/naive-finetune"] = System(
        "hf/naive-finetune",
        False,
        lambda seed, opts: HfNaiveFinetune(seed, opts["backbone"]),
        "transformers Trainer fine-tuning: lr 5e-5, 80/20 split, no warm-up, 2 epochs, batch 16",
    )
    return systems


@dataclass
class Job:
    """Everything one subprocess needs: one system on one split, plus the throughput samples."""

    system: str
    seed: int
    options: dict[str, str]
    train_texts: list[str]
    train_y: list[int]
    test_texts: list[str]
    n_classes: int
    throughput: dict[str, tuple[list[str], list[str]]] = field(
        default_factory=dict
    )  # kind: (warm-up, sample)


def measure(job: Job) -> dict[str, Any]:
    """Fit, time prediction on the throughput samples, then predict the test rows (in this process).

    Throughput is timed before the test rows are predicted and its samples hold no training text, so
    an embedding cache filled by fitting cannot make prediction look faster than it is on new texts.
    """
    adapter = registry()[job.system].make(job.seed, job.options)
    start = time.perf_counter()
    adapter.import_modules()
    import_seconds = time.perf_counter() - start
    start = time.perf_counter()
    info = adapter.fit(job.train_texts, np.asarray(job.train_y, dtype=np.int64), job.n_classes)
    train_seconds = time.perf_counter() - start
    rates = {}
    for kind, (warmup, sample) in job.throughput.items():
        adapter.predict_proba(warmup)
        start = time.perf_counter()
        adapter.predict_proba(sample)
        rates[f"{kind}_texts_per_second"] = len(sample) / (time.perf_counter() - start)
    proba = np.asarray(adapter.predict_proba(job.test_texts), dtype=np.float64)
    return {
        "train_seconds": train_seconds,
        "import_seconds": import_seconds,
        **rates,
        "info": info,
        "proba": proba.tolist(),
    }


def _child(conn, job: Job, workdir: str) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["FEWLABEL_PROGRESS"] = "0"
    tempfile.tempdir = workdir
    os.chdir(workdir)
    try:
        result = measure(job)
    except BaseException as err:  # report anything, the parent records it and goes on
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    # ru_maxrss is in KiB on Linux: the peak of this process alone, imports and all.
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(result)
    conn.close()


def run_isolated(job: Job, timeout: float | None = None) -> dict[str, Any]:
    """Run :func:`measure` in a fresh spawned Python, so time and peak memory are the system's own."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    # Everything the child writes (checkpoints, logs, its fresh fewlabel home, saved models) goes into
    # one folder, removed afterwards even if the child was killed: some libraries write into the
    # working directory.
    workdir = tempfile.mkdtemp(prefix="fewlabel-bench-run-")
    proc = ctx.Process(target=_child, args=(send, job, workdir), daemon=True)
    proc.start()
    send.close()
    finished = False
    try:
        if receive.poll(timeout):
            result = receive.recv()
            finished = True
        else:
            result = {"error": f"timed out after {timeout:.0f}s"}
    except EOFError:
        finished = True
        proc.join()
        result = {"error": f"the subprocess died with exit code {proc.exitcode} (out of memory?)"}
    finally:
        # Timed out, or the harness was stopped (Ctrl-C, SIGTERM): the system must not run on,
        # taking the CPU from whatever runs next.
        if not finished and proc.is_alive():
            proc.terminate()
        proc.join()
        shutil.rmtree(workdir, ignore_errors=True)  # symlinks inside (the models folder) are not followed
    return result


def metrics(y: Sequence[int], proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1 and log loss of class probabilities against integer labels."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, None)
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(n_classes)))),
        "log_loss": float(log_loss(y, proba, labels=list(range(n_classes)))),
    }
