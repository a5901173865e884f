"""Fine-tuning a transformer encoder on a few hundred labels without collapse, fast on a CPU.

The recipe follows what makes BERT-style fine-tuning stable on small data (Mosbach et al. 2021;
Zhang et al. 2021): bias-corrected AdamW, a small learning rate with linear warmup and decay, weight
decay, gradient clipping, class-weighted loss, early stopping on validation *balanced* accuracy (the
mean per-class recall: the majority answer cannot win it on imbalanced data) with best-checkpoint
restore, and a restart with a new seed when a run ends at chance. Three things make it fast:

- the lower layers are frozen and their outputs computed once, so each epoch runs only the top
  layers (``freeze_layers``); this also regularises, since fewer weights can memorise 500 reviews;
- batches are built from texts of similar length, so almost no time is spent on padding;
- the head starts from a logistic regression on the frozen features (LP-FT, Kumar et al. 2022), so
  the first epoch already starts at the frozen-embedding accuracy instead of from a random head.

Long texts keep their head and tail (Sun et al. 2019: the verdict of a review is often at the end),
or are split into windows whose token states are pooled together (``long_texts="chunks"``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from fewlabel.data.labelled import is_imbalanced
from fewlabel.encoders.device import autocast, resolve_device, torch_module, uses_bf16
from fewlabel.errors import FewlabelError

log = logging.getLogger(__name__)

# Learning rates by backbone width: small encoders tolerate (and need) larger steps.
# Settings scaled to the backbone: "small" is under 768 hidden dimensions (minilm), "base" 768 and up.
# Small encoders need more epochs and more patience: on Blitzer books and DVD (500 reviews, 5 seeds,
# benchmarks.finetune) minilm with a cap of 6 epochs and patience 3 sometimes stopped after half an
# epoch (71.9% on one DVD split); a cap of 10 and patience 6 gave 82.9% and 82.8% with sd 1.4 and 0.3.
# The base values are those the default's measured 91% on the same data used (mpnet).
BASE_LR = {"small": 8e-5, "base": 3e-5}
EPOCHS = {"small": 10, "base": 6}
PATIENCE = {"small": 6, "base": 3}


def size_class(hidden_size: int) -> str:
    return "base" if hidden_size >= 768 else "small"


HEAD_LR_MULTIPLIER = 10.0  # the head starts from a linear probe; it still moves faster than the encoder


@dataclass
class Recipe:
    """Settings of one fine-tuning run (``finetune`` strategy parameters map onto these)."""

    objective: str = "classify"  # classify (cross-entropy through a head) | contrastive (SetFit-style)
    lr: float | None = None  # None: scaled to the backbone (8e-5 below 768 dims, 3e-5 at 768+)
    epochs: int | None = None  # a cap, early stopping usually ends sooner; None: 10 below 768 dims, else 6
    patience: int | None = None  # evaluations without improvement before stopping; None: 6 / 3 likewise
    warmup: float = 0.1  # fraction of the scheduled steps
    weight_decay: float = 0.01
    dropout: float = 0.1  # on the pooled vector, before the head
    batch_size: int = 16
    max_grad_norm: float = 1.0
    max_tokens: int = 256
    long_texts: str = "head_tail"  # head_tail | head | chunks
    head_fraction: float = 0.25  # share of max_tokens kept from the start in head_tail mode
    freeze_layers: int | None = None  # None: half of 12+ layers, else 0; 0: train everything
    layer_decay: float = 1.0  # layer-wise learning-rate decay; 1.0 is off
    reinit_layers: int = 0  # re-initialise the top N layers (Zhang et al. 2021)
    linear_probe_init: bool = True
    early_stopping: bool = True
    restore_best: bool = True
    class_weights: bool = True  # balanced class weights in the loss
    val_fraction: float = 0.2  # 0: no validation split; every row trains to the epoch cap (last step kept)
    evals_per_epoch: int = 2
    max_restarts: int = 2  # new seeds after a collapsed run
    # At least this many steps in all: more epochs than ``epochs`` when an epoch has few steps (few rows).
    min_steps: int = 0
    # After the hold-out run, train again on every row (validation rows too) to its chosen stopping
    # point, so the saved model sees every label; the estimate stays the hold-out run's.
    refit: bool = False
    seed: int = 0
    time_budget_s: float | None = None
    precision: str = "auto"  # auto: bfloat16 matmuls where the CPU has them natively (AMX, AVX512-BF16)
    device: str = "auto"  # auto: the first CUDA GPU when PyTorch sees one, else the CPU; or a torch device

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise FewlabelError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.objective not in ("classify", "contrastive"):
            raise FewlabelError(f"objective must be classify or contrastive, got {self.objective!r}")
        if self.long_texts not in ("head_tail", "head", "chunks"):
            raise FewlabelError(f"long_texts must be head_tail, head or chunks, got {self.long_texts!r}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise FewlabelError(
                f"val_fraction must be 0 (no validation split) or between 0 and 0.5, got {self.val_fraction}"
            )
        if self.max_tokens < 16:
            raise FewlabelError(f"max_tokens must be at least 16, got {self.max_tokens}")
        if (self.epochs is not None and self.epochs < 1) or self.batch_size < 1 or self.evals_per_epoch < 1:
            raise FewlabelError("epochs, batch_size and evals_per_epoch must be at least 1")

    def scaled(self, hidden_size: int) -> Recipe:
        """This recipe with the settings left to the backbone (lr, epochs, patience) filled in."""
        size = size_class(hidden_size)
        return replace(
            self,
            lr=self.lr or BASE_LR[size],
            epochs=self.epochs or EPOCHS[size],
            patience=self.patience or PATIENCE[size],
        )


# The practitioner's original setup: lr 5e-5, no warmup, fixed epochs, every layer trained, a random
# head, the last epoch kept. Reproduced on purpose so its failure can be shown and explained.
PRESETS: dict[str, dict[str, Any]] = {
    "robust": {},
    "naive": {
        "lr": 5e-5,
        "epochs": 2,
        "warmup": 0.0,
        "weight_decay": 0.0,
        "freeze_layers": 0,
        "linear_probe_init": False,
        "early_stopping": False,
        "restore_best": False,
        "class_weights": False,
        "long_texts": "head",
        "evals_per_epoch": 1,
        "max_restarts": 0,
    },
    # SetFit (Tunstall et al. 2022): pull same-label texts together and push others apart (cosine
    # similarity loss on pairs), then fit a logistic-regression head on the tuned embeddings. Pairs
    # are every pair inside a batch, so an epoch costs what a classification epoch costs, and the
    # number of pairs grows with the data, never quadratically in it.
    # With few rows an epoch is a step or two: 4 epochs of 32 blitzer_dvd reviews (8 steps) scored 83.5%
    # on its test rows, 16 epochs (32 steps) 89.4% (mpnet, no validation split; BENCHMARKS.md).
    "contrastive": {"objective": "contrastive", "epochs": 4, "min_steps": 32},
}


@dataclass
class RunReport:
    """What one fine-tuning run did: per-evaluation curves, the checkpoint kept, warnings."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = -1
    best_epoch: float = 0.0
    val_accuracy: float = float("nan")
    val_balanced_accuracy: float = float("nan")  # what early stopping and the checkpoint choice use
    val_loss: float = float("nan")
    train_accuracy: float = float("nan")
    train_balanced_accuracy: float = float("nan")
    majority: float = float("nan")
    n_train: int = 0
    n_val: int = 0
    n_extra: int = 0  # pseudo-labelled (or other extra) texts added to the training split only
    truncated: int = 0
    max_tokens: int = 0  # the window the truncated texts did not fit in (recipe.max_tokens)
    long_texts: str = ""  # what was done with them (recipe.long_texts)
    seconds: float = 0.0
    cache_seconds: float = 0.0
    stopped: str = ""
    restarts: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    frozen_layers: int = 0
    trained_layers: int = 0
    val_index: list[int] = field(default_factory=list)
    val_proba: list[list[float]] = field(default_factory=list)
    # The refit on every row (Recipe.refit): what happened ("" when not asked for), and its size.
    refit: str = ""
    refit_rows: int = 0
    refit_steps: int = 0
    refit_seconds: float = 0.0
    refit_train_accuracy: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_chance(balanced_acc: float, counts: Sequence[int]) -> bool:
    """Balanced accuracy not clearly above chance, 1/k (one-sided 95%, binomial noise per class).

    Balanced accuracy, not accuracy: answering the common class for every text scores exactly 1/k
    on it, however imbalanced the rows, while its accuracy can look excellent.
    """
    present = [int(c) for c in counts if c > 0]
    k = len(present)
    if k < 2:
        return False
    chance = 1.0 / k
    se = math.sqrt(sum(chance * (1 - chance) / n for n in present)) / k
    return balanced_acc <= chance + 1.645 * se


def failure_flags(
    train_acc: float, val_acc: float, val_balanced: float, val_counts: Sequence[int]
) -> list[str]:
    """Plain-language warnings about a run: collapse to the majority class, memorising."""
    flags = []
    present = [int(c) for c in val_counts if c > 0]
    n_val, chance = sum(present), 1.0 / max(len(present), 1)
    if at_chance(val_balanced, val_counts):
        if is_imbalanced(val_counts):
            cause = (
                f"The classes are imbalanced (the smallest has {min(present)} of the {n_val} validation "
                "rows), and answering the common class is the easy way out. The loss already weighs "
                "classes equally; label more texts of the rare class(es), or check that they really "
                "read differently from the rest."
            )
        else:
            cause = (
                "Typical causes: a learning rate too high for the backbone, no warmup, or an unlucky "
                "seed. fewlabel's robust preset restarts such runs with a new seed."
            )
        flags.append(
            f"collapsed: validation balanced accuracy {val_balanced:.1%} is not clearly above chance "
            f"({chance:.1%}, {n_val} validation rows); the model learned nothing usable. {cause}"
        )
    gap = train_acc - val_acc
    if gap >= 0.10:
        flags.append(
            f"memorising: train {train_acc:.1%}, validation {val_acc:.1%} (gap {gap * 100:.1f} points). "
            "A large gap by itself is normal for a model that can fit its training set; what matters "
            f"is the validation accuracy, against the majority baseline ({max(present) / n_val:.1%}) and the "
            "frozen-embedding and TF-IDF strategies. The gap means the training accuracy says nothing "
            "about new data, not that the model is broken."
        )
    return flags


def _passthrough():
    """A module that stands in for the embedding layer when the top layers run on cached states."""
    torch = torch_module()

    class Passthrough(torch.nn.Module):
        def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
            return inputs_embeds

    return Passthrough()


def _layer_list(model) -> tuple[Any, str, str] | None:
    """(parent module, attribute, dotted name) of the model's stack of transformer layers."""
    torch = torch_module()
    n = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and name:
            parent_name, _, attr = name.rpartition(".")
            return (model.get_submodule(parent_name) if parent_name else model), attr, name
    return None


class EncoderClassifier:
    """A Hugging Face encoder, split into a frozen bottom and a trained top, with a mean-pool head."""

    def __init__(self, location: str, n_classes: int, freeze_layers: int | None, dropout: float, device=None):
        torch = torch_module()
        self.device = device if device is not None else torch.device("cpu")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # fewlabel shows its own bars
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.model = AutoModel.from_pretrained(location, trust_remote_code=False)
        if hasattr(self.model, "pooler"):
            self.model.pooler = None  # mean pooling is used; the pooler would be wasted work
        self.n_layers = int(self.model.config.num_hidden_layers)
        hidden = int(self.model.config.hidden_size)
        self.hidden_size = hidden
        found = _layer_list(self.model)
        if freeze_layers is None:
            # Deep encoders: freeze (and compute once) the lower half. Small ones (MiniLM's 6 layers)
            # are cheap to train whole, and on long reviews training all of them measured 4 points
            # better than training the top half (benchmarks.finetune, blitzer_books, seed 0).
            splittable = found is not None and hasattr(self.model, "embeddings")
            freeze_layers = self.n_layers // 2 if splittable and self.n_layers >= 12 else 0
        if freeze_layers and (found is None or not hasattr(self.model, "embeddings")):
            raise FewlabelError(
                f"cannot freeze layers of {location}: its layer stack was not found; use freeze_layers=0"
            )
        if not 0 <= freeze_layers < self.n_layers:
            raise FewlabelError(
                f"freeze_layers must be between 0 and {self.n_layers - 1}, got {freeze_layers}"
            )
        self.freeze = freeze_layers
        self._stack = found
        # Any: the stack's ModuleList, or None without one (then nothing can be frozen)
        self.layers: Any = getattr(found[0], found[1]) if found else None
        self.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(hidden, n_classes))
        self.model.to(self.device)
        self.head.to(self.device)
        for p in self.model.parameters():
            p.requires_grad = self.freeze == 0
        if self.freeze:
            assert self.layers is not None  # freezing without a layer stack was refused above
            for layer in self.layers[self.freeze :]:
                for p in layer.parameters():
                    p.requires_grad = True

    # -- the two halves -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _only(self, layers, passthrough: bool) -> Iterator[None]:
        torch = torch_module()
        assert self._stack is not None  # its callers (bottom, top) index the layer stack first
        parent, attr, _ = self._stack
        embeddings = self.model.embeddings
        setattr(parent, attr, torch.nn.ModuleList(layers))
        if passthrough:
            self.model.embeddings = _passthrough()
        try:
            yield
        finally:
            setattr(parent, attr, self.layers)
            self.model.embeddings = embeddings

    def bottom(self, input_ids, attention_mask):
        """Hidden states after the frozen layers (embeddings alone when nothing is frozen)."""
        with self._only(list(self.layers[: self.freeze]), passthrough=False):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def top(self, hidden, attention_mask):
        """Mean-pooled output of the trained layers, from the frozen layers' hidden states."""
        with self._only(list(self.layers[self.freeze :]), passthrough=True):
            states = self.model(inputs_embeds=hidden, attention_mask=attention_mask).last_hidden_state
        return states

    def forward_tokens(self, input_ids, attention_mask):
        """Token states of the whole encoder (the path used when every layer is trained)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def trainable_parameters(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad] + list(self.head.parameters())

    def trained_state(self) -> dict[str, Any]:
        """The weights fine-tuning changed (the rest comes from the backbone on load)."""
        names = {id(p) for p in self.model.parameters() if p.requires_grad}
        state = {
            f"encoder.{k}": v.detach().to("cpu", copy=True)
            for k, v in self.model.named_parameters()
            if id(v) in names
        }
        state.update(
            {f"head.{k}": v.detach().to("cpu", copy=True) for k, v in self.head.state_dict().items()}
        )
        return state

    def load_trained_state(self, state: dict[str, Any]) -> None:
        torch = torch_module()
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for key, value in state.items():
                where, _, name = key.partition(".")
                if where == "encoder":
                    if name not in params or params[name].shape != value.shape:
                        raise FewlabelError(f"saved weight {name} does not fit this backbone")
                    params[name].copy_(value)
            self.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})


# -- tokenising long texts ----------------------------------------------------------------------
@dataclass
class Windows:
    """Token windows of texts: one per text, or several when long texts are chunked."""

    ids: list[list[int]]
    owner: np.ndarray  # text index of each window
    truncated: int  # texts that did not fit whole


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The tokens a tokenizer puts before and after one sequence (e.g. [CLS] ... [SEP])."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise FewlabelError("cannot tell where this tokenizer puts its special tokens")


def windows(tokenizer, texts: Sequence[str], max_tokens: int, mode: str, head_fraction: float) -> Windows:
    """Token ids with special tokens, at most ``max_tokens`` per window."""
    prefix, suffix = _special_tokens(tokenizer)
    body = max_tokens - len(prefix) - len(suffix)
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    out, owner, truncated = [], [], 0
    for i, ids in enumerate(encoded):
        if len(ids) > body:
            truncated += 1
            if mode == "chunks":
                for start in range(0, len(ids), body):
                    out.append(prefix + ids[start : start + body] + suffix)
                    owner.append(i)
                continue
            if mode == "head_tail":
                head = int(body * head_fraction)
                ids = ids[:head] + ids[len(ids) - (body - head) :]
            else:
                ids = ids[:body]
        out.append(prefix + ids + suffix)
        owner.append(i)
    return Windows(out, np.array(owner, dtype=np.int64), truncated)


def length_batches(
    lengths: Sequence[int] | np.ndarray, batch_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Batches of windows of similar length (little padding); shuffled in order when ``rng`` is given."""
    lengths = np.asarray(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        # Sort within random pools of 8 batches: similar lengths, but not the same batches each epoch.
        pools = np.array_split(
            rng.permutation(len(lengths)), max(1, math.ceil(len(lengths) / (batch_size * 8)))
        )
        order = np.concatenate([pool[np.argsort(lengths[pool], kind="stable")] for pool in pools])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _pad(sequences: list, pad_value: float, device=None):
    """Token ids (lists) or cached states (tensors) padded into one batch on ``device``, with its mask."""
    torch = torch_module()
    # Lengths rounded up to a multiple of 16: a few pad tokens buy far fewer distinct tensor shapes,
    # which the CPU kernels (oneDNN) and the allocator handle much better than hundreds of them.
    longest = -(-max(len(s) for s in sequences) // PAD_MULTIPLE) * PAD_MULTIPLE
    if isinstance(sequences[0], list):
        ids = torch.full((len(sequences), longest), int(pad_value), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    else:
        ids = torch.zeros(
            (len(sequences), longest, sequences[0].shape[-1]), dtype=torch.float32, device=sequences[0].device
        )
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = seq.float()
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        mask[row, : len(seq)] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


PAD_MULTIPLE = 16


class Pooler:
    """Mean of token states over all windows of each text (equal to plain mean pooling for one window)."""

    def __init__(self, owner: np.ndarray):
        self.owner = owner

    def __call__(self, states, mask, window_index: np.ndarray):
        torch = torch_module()
        states = states.float()  # sums over hundreds of tokens need float32
        m = mask.unsqueeze(-1).to(states.dtype)
        sums = (states * m).sum(dim=1)
        counts = m.sum(dim=1)
        # Windows of one text in a batch are summed together before dividing.
        texts, inverse = np.unique(self.owner[window_index], return_inverse=True)
        inv = torch.as_tensor(inverse, device=sums.device)
        zeros = dict(dtype=sums.dtype, device=sums.device)
        pooled = torch.zeros((len(texts), sums.shape[1]), **zeros).index_add(0, inv, sums)
        total = torch.zeros((len(texts), 1), **zeros).index_add(0, inv, counts)
        return pooled / total.clamp(min=1.0), texts


# -- the training loop --------------------------------------------------------------------------
class FineTuner:
    """Fits an :class:`EncoderClassifier` with a :class:`Recipe`; predicts with the restored best."""

    def __init__(self, location: str, n_classes: int, recipe: Recipe):
        self.location = location
        self.n_classes = n_classes
        self.recipe = recipe
        self.net: EncoderClassifier | None = None

    def new_net(self) -> EncoderClassifier:
        """A fresh network from the backbone, as the recipe builds it (untrained head)."""
        return EncoderClassifier(
            self.location,
            self.n_classes,
            self.recipe.freeze_layers,
            self.recipe.dropout,
            resolve_device(self.recipe.device),
        )

    def fit(
        self,
        texts: Sequence[str],
        y: np.ndarray,
        on_step: Callable[[int, int, str], None] | None = None,
        extra_texts: Sequence[str] = (),
        extra_y: np.ndarray | None = None,
    ) -> RunReport:
        """Train with a validation split of ``texts``; ``extra_texts`` (e.g. pseudo-labelled) only train.

        The split depends on ``texts``, ``y`` and the seed alone, so runs with and without extra texts
        are validated on the same rows, and validation never sees a label that was not given.
        """
        from sklearn.model_selection import train_test_split

        r = self.recipe
        start = time.perf_counter()
        deadline = start + r.time_budget_s if r.time_budget_s else None
        if not r.val_fraction:
            return self._fit_every_row(texts, y, on_step, extra_texts, extra_y, deadline)
        idx = np.arange(len(texts))
        counts = np.bincount(y, minlength=self.n_classes)
        stratify = y if counts[counts > 0].min() >= 2 else None
        train_idx, val_idx = train_test_split(
            idx, test_size=r.val_fraction, random_state=r.seed, stratify=stratify
        )
        if len(extra_texts):
            train_idx = np.concatenate([train_idx, np.arange(len(texts), len(texts) + len(extra_texts))])
        texts, y, soft = self._with_extra(texts, y, extra_texts, extra_y)
        val_counts = np.bincount(y[val_idx], minlength=self.n_classes).tolist()
        majority = max(val_counts) / len(val_idx)
        restarts: list[str] = []
        seed = r.seed
        while True:
            report = self._fit_once(texts, y, train_idx, val_idx, seed, deadline, on_step, soft=soft)
            report.majority = majority
            collapsed = at_chance(report.val_balanced_accuracy, val_counts)
            remaining = deadline is None or time.perf_counter() < deadline - 60
            if collapsed and len(restarts) < r.max_restarts and remaining:
                restarts.append(
                    f"seed {seed}: validation balanced accuracy {report.val_balanced_accuracy:.1%} not clearly "
                    f"above chance ({1 / np.count_nonzero(val_counts):.1%}; {min(c for c in val_counts if c)} "
                    f"validation rows in the rarest class); restarted with seed {seed + 1}"
                )
                seed += 1
                continue
            break
        report.restarts = restarts
        report.n_extra = len(extra_texts)
        report.flags = failure_flags(
            report.train_accuracy, report.val_accuracy, report.val_balanced_accuracy, val_counts
        )
        report.seconds = time.perf_counter() - start
        report.val_index = sorted(int(i) for i in val_idx)
        return report

    def _fit_every_row(
        self,
        texts: Sequence[str],
        y: np.ndarray,
        on_step: Callable[[int, int, str], None] | None,
        extra_texts: Sequence[str],
        extra_y: np.ndarray | None,
        deadline: float | None,
    ) -> RunReport:
        """Train on every row to the epoch cap, without a validation split (``val_fraction`` 0): no
        early stopping, no checkpoint choice, no collapse test; the last step is kept. For a caller
        that scores the recipe itself, by cross-validation over runs like this one."""
        start = time.perf_counter()
        all_texts, all_y, soft = self._with_extra(texts, y, extra_texts, extra_y)
        report = self._fit_once(
            all_texts, all_y, np.arange(len(all_texts)), np.array([], dtype=np.int64), self.recipe.seed,
            deadline, on_step, soft=soft,
        )  # fmt: skip
        report.n_extra = len(extra_texts)
        report.seconds = time.perf_counter() - start
        report.val_index = []
        return report

    def _with_extra(
        self, texts: Sequence[str], y: np.ndarray, extra_texts: Sequence[str], extra_y: np.ndarray | None
    ) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """Every text and its class index, and soft targets (texts x classes) when ``extra_y`` holds
        class probabilities (distillation) rather than labels: one-hot for ``texts``, ``extra_y``
        for the extra texts, whose class index is then their most probable class."""
        y = np.asarray(y, dtype=np.int64)
        if not len(extra_texts):
            return list(texts), y, None
        extra = np.asarray(extra_y)
        if len(extra) != len(extra_texts):
            raise FewlabelError(f"{len(extra_texts)} extra texts but {len(extra)} labels")
        soft = None
        if extra.ndim == 2:
            soft = np.vstack([np.eye(self.n_classes)[y], extra]).astype(np.float32)
            extra = extra.argmax(axis=1)
        return [*texts, *extra_texts], np.concatenate([y, extra.astype(np.int64)]), soft

    def _fit_once(
        self,
        texts,
        y,
        train_idx,
        val_idx,
        seed,
        deadline,
        on_step,
        stop_epoch: float | None = None,
        soft=None,
    ) -> RunReport:
        """One training run. With ``stop_epoch`` (a refit: no validation rows) it trains to that point
        of the schedule and stops; otherwise it evaluates, stops early and keeps the best checkpoint.
        With ``soft`` (texts x classes) the loss is the cross-entropy against those targets."""
        run = TrainingRun(self, texts, y, train_idx, val_idx, seed, on_step, soft)
        return run.run(deadline, stop_epoch)

    def resolved_recipe(self) -> Recipe:
        """The recipe as the network runs it: the settings left to the backbone filled in, and the
        frozen layers, device and matrix precision decided."""
        net = self.net
        if net is None:
            raise FewlabelError("this fine-tuned model has no weights yet")
        r = self.recipe.scaled(net.hidden_size)
        precision = "bf16" if uses_bf16(r.precision, net.device) else "fp32"
        return replace(r, freeze_layers=net.freeze, device=str(net.device), precision=precision)

    def refit(
        self,
        texts: Sequence[str],
        y: np.ndarray,
        report: RunReport,
        on_step: Callable[[int, int, str], None] | None = None,
        extra_texts: Sequence[str] = (),
        extra_y: np.ndarray | None = None,
        deadline: float | None = None,
    ) -> RunReport:
        """Train a fresh network on every row, to the point of the schedule the hold-out run kept.

        ``report`` is the hold-out run's (from :meth:`fit`); it is updated in place and returned. The
        new network replaces the hold-out one unless the refit cannot finish before ``deadline``
        (judged from the hold-out run's own speed) or ends at chance on its own training rows; then
        the hold-out network stays and ``report.refit`` says why. The estimate, the validation
        probabilities and the calibration stay the hold-out run's: the refit has no unseen rows, and
        a model trained on 25% more rows is, if anything, better than that estimate.
        """
        held = self.net
        start = time.perf_counter()
        n = len(texts) + len(extra_texts)
        seed = self.recipe.seed + len(report.restarts)  # the seed of the run that was kept
        blocked = self._refit_blocked(report, start, n, deadline)
        if blocked:
            report.refit = blocked
            return report
        all_texts, all_y, soft = self._with_extra(texts, y, extra_texts, extra_y)
        run = self._fit_once(
            all_texts, all_y, np.arange(n), np.array([], dtype=np.int64), seed, deadline, on_step,
            stop_epoch=report.best_epoch, soft=soft,
        )  # fmt: skip
        counts = np.bincount(all_y, minlength=self.n_classes).tolist()
        report.refit_rows, report.refit_steps = n, run.best_step
        report.refit_seconds = time.perf_counter() - start
        report.refit_train_accuracy = run.train_accuracy
        report.refit = self._refit_verdict(run, held, n, counts, report.best_epoch)
        return report

    def _refit_blocked(self, report: RunReport, start: float, n: int, deadline: float | None) -> str | None:
        """Why the refit is not attempted: no checkpoint was kept, or it would not finish in time."""
        if report.best_epoch <= 0 or self.net is None:
            return "not done: the hold-out run kept no checkpoint"
        if deadline is not None and report.history:
            last = report.history[-1]
            per_epoch = (last["seconds"] - report.cache_seconds) / max(last["epoch"], 1e-9)
            needed = report.cache_seconds + per_epoch * report.best_epoch * n / max(1, report.n_train)
            if start + needed > deadline:
                return (
                    f"not done: about {needed:.0f} s needed and the time budget ends in "
                    f"{max(0.0, deadline - start):.0f} s; the model is the hold-out run's"
                )
        return None

    def _refit_verdict(
        self, run: RunReport, held: EncoderClassifier | None, n: int, counts: list[int], best_epoch: float
    ) -> str:
        """Keep the refitted network, or put the hold-out one back (``held``) and say why."""
        if at_chance(run.train_balanced_accuracy, counts):
            self.net = held
            return (
                f"discarded: the refit on all {n} rows ended at chance on its own training rows "
                f"(balanced accuracy {run.train_balanced_accuracy:.1%}); the model is the hold-out run's"
            )
        if run.stopped.startswith("time budget"):
            self.net = held
            return "discarded: the time budget ran out before the refit's stopping point"
        return (
            f"refitted on all {n} rows for {run.best_step} steps ({best_epoch:.2f} epochs, "
            f"the hold-out run's best checkpoint)"
        )

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        torch = torch_module()
        net = self.net
        if net is None:
            raise FewlabelError("this fine-tuned model has no weights yet")
        r = self.recipe
        win = windows(net.tokenizer, texts, r.max_tokens, r.long_texts, r.head_fraction)
        pooler = Pooler(win.owner)
        net.model.eval()
        net.head.eval()
        out = np.zeros((len(texts), self.n_classes))
        with torch.inference_mode():
            for batch in whole_text_batches(
                win.owner, np.arange(len(win.ids)), batch_size, [len(w) for w in win.ids]
            ):
                ids, mask = _pad([win.ids[i] for i in batch], net.tokenizer.pad_token_id or 0, net.device)
                with autocast(r.precision, net.device):
                    states = (
                        net.top(net.bottom(ids, mask), mask) if net.freeze else net.forward_tokens(ids, mask)
                    )
                vec, text_ids = pooler(states, mask, batch)
                out[text_ids] = _softmax(net.head(vec).float().cpu().numpy())
        return out


class TrainingRun:
    """One training run of a :class:`FineTuner`, from a fresh network to the checkpoint it keeps.

    Built ready to train: the network seeded, texts cut into windows, the frozen layers' outputs
    cached, the head started from a linear probe, the optimiser and schedule set. :meth:`run` drives
    :meth:`train_while_improving` (one step per item, evaluating at set points, as spaCy's loop of
    that name) until a stopping rule fires, then restores the best checkpoint and scores the result.
    """

    def __init__(
        self,
        tuner: FineTuner,
        texts: Sequence[str],
        y: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        seed: int,
        on_step: Callable[[int, int, str], None] | None = None,
        soft: np.ndarray | None = None,
    ):
        torch = torch_module()
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)  # batch order: the only other randomness
        self.tuner, self.y, self.train_idx, self.on_step = tuner, y, train_idx, on_step
        self.soft = soft  # class probabilities per text to train towards (distillation); None: y
        tuner.net = self.net = net = tuner.new_net()
        self.r = r = tuner.recipe.scaled(net.hidden_size)
        assert r.epochs is not None and r.patience is not None  # scaled() fills them in
        self.epochs, self.patience = r.epochs, r.patience
        if r.reinit_layers:
            for layer in net.layers[net.n_layers - r.reinit_layers :]:
                layer.apply(net.model._init_weights)
        self.report = RunReport(
            frozen_layers=net.freeze,
            trained_layers=net.n_layers - net.freeze,
            max_tokens=r.max_tokens,
            long_texts=r.long_texts,
        )
        self.win = win = windows(net.tokenizer, texts, r.max_tokens, r.long_texts, r.head_fraction)
        self.report.truncated = win.truncated
        self.report.n_train, self.report.n_val = len(train_idx), len(val_idx)
        in_train = np.isin(win.owner, train_idx)
        self.train_w, self.val_w = np.flatnonzero(in_train), np.flatnonzero(~in_train)
        self.pooler = Pooler(win.owner)
        self.lengths = [len(w) for w in win.ids]
        self.cached = self._cache_frozen()
        self._set_up_training()
        self.step, self.running = (
            0,
            [0, 0, 0.0],
        )  # steps so far; correct, seen and loss since the last evaluation
        self.best_state: dict[str, Any] | None = None
        self.best, self.since_best = (
            (-1.0, float("inf")),
            0,
        )  # (balanced accuracy, loss) of the best checkpoint

    def _cache_frozen(self) -> list | None:
        """The frozen layers' output for every window, computed once (epochs reuse it); None without."""
        torch = torch_module()
        net, win = self.net, self.win
        start = time.perf_counter()
        cached: list | None = None
        if net.freeze:
            net.model.eval()
            cached = [None] * len(win.ids)
            with torch.inference_mode():
                for batch in length_batches([len(s) for s in win.ids], 32, None):
                    ids, mask = _pad([win.ids[i] for i in batch], net.tokenizer.pad_token_id or 0, net.device)
                    with autocast(self.r.precision, net.device):
                        states = net.bottom(ids, mask)
                    for row, i in enumerate(batch):
                        cached[i] = states[row, : int(mask[row].sum())].to(torch.float16).clone()
                    if self.on_step:
                        self.on_step(0, 0, "caching frozen layers")
        self.report.cache_seconds = time.perf_counter() - start
        log.info(
            "%d windows, %d frozen layers cached in %.1fs",
            len(win.ids),
            net.freeze,
            self.report.cache_seconds,
        )
        return cached

    def _set_up_training(self) -> None:
        """The head's start (a linear probe), the loss, the optimiser, the schedule and evaluation points."""
        torch = torch_module()
        r, net, n_classes = self.r, self.net, self.tuner.n_classes
        if r.linear_probe_init:
            self._linear_probe()
        weights = None
        if r.class_weights:
            c = np.bincount(self.y[self.train_idx], minlength=n_classes).astype(float)
            weights = torch.tensor(
                len(self.train_idx) / (n_classes * np.maximum(c, 1)), dtype=torch.float32, device=net.device
            )
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
        self.optimizer = torch.optim.AdamW(self._param_groups(), weight_decay=r.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.train_w) / r.batch_size)
        self.epochs = max(self.epochs, math.ceil(r.min_steps / self.steps_per_epoch))
        self.total = self.steps_per_epoch * self.epochs
        schedule = functools.partial(_warmup_then_decay, warmup=int(r.warmup * self.total), total=self.total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        # Evaluate at the end of each epoch and, with evals_per_epoch > 1, at even points within it.
        per_epoch = r.evals_per_epoch
        self.eval_at = {round(self.steps_per_epoch * k / per_epoch) for k in range(1, per_epoch + 1)}
        if not len(self.val_w):
            self.eval_at = set()

    def _pooled(self, batch: np.ndarray):
        """Pooled vectors of these windows' texts (through the trained layers only when some are cached)."""
        net = self.net
        with autocast(self.r.precision, net.device):
            if self.cached is not None:
                hidden, mask = _pad([self.cached[i] for i in batch], 0.0, net.device)
                states = net.top(hidden, mask)
            else:
                ids, mask = _pad(
                    [self.win.ids[i] for i in batch], net.tokenizer.pad_token_id or 0, net.device
                )
                states = net.forward_tokens(ids, mask)
            return self.pooler(states, mask, batch)

    def evaluate(self, which: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Logits of the texts of windows ``which``, and those texts' indices."""
        torch = torch_module()
        net = self.net
        net.model.eval()
        net.head.eval()
        logits, owners = [], []
        with torch.inference_mode():
            for batch in whole_text_batches(self.win.owner, which, batch_size, self.lengths):
                vec, text_ids = self._pooled(batch)
                logits.append(net.head(vec).float().cpu().numpy())
                owners.append(text_ids)
        return np.concatenate(logits), np.concatenate(owners)

    def train_while_improving(self) -> Iterator[bool]:
        """Train one batch per step, epoch after epoch; after each step, yield whether it was evaluated."""
        for epoch in range(self.epochs):
            for batch in length_batches(
                [len(self.win.ids[i]) for i in self.train_w], self.r.batch_size, self.rng
            ):
                self._train_step(self.train_w[batch])
                if self.on_step:
                    self.on_step(self.step, self.total, f"epoch {epoch + 1}/{self.epochs}")
                evaluated = self.step - epoch * self.steps_per_epoch in self.eval_at
                if evaluated:
                    self._evaluate()
                yield evaluated

    def _train_step(self, batch: np.ndarray) -> None:
        torch = torch_module()
        net, r = self.net, self.r
        net.model.train()
        net.head.train()
        vec, text_ids = self._pooled(batch)
        logits = net.head(vec)
        target = torch.as_tensor(self.y[text_ids], device=net.device)
        if r.objective == "contrastive":
            loss = _pair_loss(vec, target)
        elif self.soft is not None:  # CrossEntropyLoss takes class probabilities as targets too
            soft = torch.as_tensor(self.soft[text_ids], device=net.device, dtype=logits.dtype)
            loss = self.loss_fn(logits, soft)
        else:
            loss = self.loss_fn(logits, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.trainable_parameters(), r.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.running[0] += int((logits.argmax(1) == target).sum())
        self.running[1] += len(target)
        self.running[2] += loss.item() * len(target)

    def _evaluate(self) -> None:
        """Score the validation rows, record the point, and keep the weights when they are the best yet."""
        if self.r.objective == "contrastive":  # the head follows the embeddings: refit it
            self._linear_probe()
        val_bal, val_loss, val_acc = _scores(*self.evaluate(self.val_w), self.y)
        self.report.history.append(
            {
                "step": self.step,
                "epoch": round(self.step / self.steps_per_epoch, 3),
                "train_loss": self.running[2] / max(1, self.running[1]),
                "train_accuracy": self.running[0] / max(1, self.running[1]),
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "val_balanced_accuracy": val_bal,
                "lr": float(self.scheduler.get_last_lr()[0]),
                "seconds": round(time.perf_counter() - self.run_start + self.report.cache_seconds, 2),
            }
        )
        log.info("evaluation %s", self.report.history[-1])
        self.running = [0, 0, 0.0]
        if (val_bal, -val_loss) > (self.best[0], -self.best[1]):
            self._checkpoint(val_bal, val_loss)
        else:
            self.since_best += 1

    def _checkpoint(self, val_bal: float, val_loss: float) -> None:
        self.best = (val_bal, val_loss)
        self.best_state = self.net.trained_state()
        self.report.best_step, self.report.best_epoch = self.step, self.step / self.steps_per_epoch
        self.since_best = 0

    def _stop_reason(self, evaluated: bool, stop_after: int | None, deadline: float | None) -> str | None:
        """Why training stops after this step, if it does (of several reasons, the last one given)."""
        reason = None
        if evaluated and self.r.early_stopping and self.since_best >= self.patience:
            reason = f"early stopping: no better validation balanced accuracy in {self.patience} evaluations"
        if stop_after is not None and self.step >= stop_after:
            reason = f"refit: stopped at step {self.step}, epoch {self.step / self.steps_per_epoch:.2f}"
        if deadline is not None and time.perf_counter() > deadline:
            reason = "time budget reached; kept the best checkpoint so far"
        return reason

    def run(self, deadline: float | None, stop_epoch: float | None = None) -> RunReport:
        """Train until a stopping rule fires (or the epoch cap), keep the best checkpoint, score it."""
        stop_after = max(1, round(stop_epoch * self.steps_per_epoch)) if stop_epoch is not None else None
        self.run_start = time.perf_counter()
        stopped = f"epoch cap ({self.epochs})"
        for evaluated in self.train_while_improving():
            reason = self._stop_reason(evaluated, stop_after, deadline)
            if reason:
                stopped = reason
                break
        self._restore_best()
        self.report.stopped = stopped
        self._score_final()
        return self.report

    def _restore_best(self) -> None:
        """Back to the best checkpoint; without one (or when not asked to), the last step is the one kept."""
        if self.r.restore_best and self.best_state is not None:
            self.net.load_trained_state(self.best_state)
        else:
            self.report.best_step, self.report.best_epoch = self.step, self.step / self.steps_per_epoch

    def _score_final(self) -> None:
        """The kept network's scores on its validation rows (with their probabilities) and training rows."""
        report, y = self.report, self.y
        if self.r.objective == "contrastive" and not len(self.val_w):  # no evaluation refitted the head: now
            self._linear_probe()
        if len(self.val_w):
            val_logits, val_texts = self.evaluate(self.val_w)
            report.val_balanced_accuracy, report.val_loss, report.val_accuracy = _scores(
                val_logits, val_texts, y
            )
            order = np.argsort(val_texts)
            report.val_proba = _softmax(val_logits)[order].tolist()
        train_logits, train_texts = self.evaluate(self.train_w)
        report.train_accuracy = float((train_logits.argmax(1) == y[train_texts]).mean())
        report.train_balanced_accuracy = _scores(train_logits, train_texts, y)[0]

    def _param_groups(self) -> list[dict[str, Any]]:
        """The head at a higher rate; encoder layers at rates decaying with depth when asked."""
        r, net, lr = self.r, self.net, self.r.lr
        assert lr is not None  # scaled() fills it in
        groups: list[dict[str, Any]] = [
            {"params": list(net.head.parameters()), "lr": lr * HEAD_LR_MULTIPLIER}
        ]
        stack = net._stack[2] + "." if net._stack else None
        by_depth: dict[int, list] = {}
        for name, p in net.model.named_parameters():
            if not p.requires_grad:
                continue
            if stack and name.startswith(stack):
                depth = int(name[len(stack) :].split(".")[0])
            else:  # embeddings sit below the first layer; anything else (final norms) at the top
                depth = -1 if name.startswith("embeddings.") else net.n_layers - 1
            by_depth.setdefault(depth, []).append(p)
        for depth, params in sorted(by_depth.items()):
            groups.append({"params": params, "lr": lr * r.layer_decay ** (net.n_layers - 1 - depth)})
        return groups

    def _linear_probe(self) -> None:
        """Start the head from a logistic regression on the untrained top's pooled features."""
        torch = torch_module()
        from sklearn.linear_model import LogisticRegression

        net, n_classes = self.net, self.tuner.n_classes
        captured: dict[str, Any] = {}
        linear = net.head[1]
        hook = linear.register_forward_hook(
            lambda m, inp, out: captured.setdefault("x", []).append(inp[0].float().cpu().numpy())
        )
        try:
            _, owners = self.evaluate(self.train_w)
        finally:
            hook.remove()
        x = np.concatenate(captured["x"])
        target = self.y[owners]
        coef = np.zeros((n_classes, x.shape[1]))
        intercept = np.full(n_classes, -10.0)  # classes absent from training stay unlikely
        present = np.unique(target)
        if len(present) > 1:
            weight = "balanced" if self.r.class_weights else None
            probe = LogisticRegression(C=1.0, max_iter=2000, class_weight=weight).fit(x, target)
            if len(present) == 2:  # one weight vector for two classes: split it symmetrically
                coef[present] = np.vstack([-probe.coef_[0] / 2, probe.coef_[0] / 2])
                intercept[present] = [-probe.intercept_[0] / 2, probe.intercept_[0] / 2]
            else:
                coef[present], intercept[present] = probe.coef_, probe.intercept_
        else:
            intercept[present] = 0.0
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))


def _scores(logits: np.ndarray, texts: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Balanced accuracy (what the run is steered by), log loss and accuracy on these texts."""
    proba = _softmax(logits)
    truth = y[texts]
    pred = proba.argmax(1)
    acc = float((pred == truth).mean())
    balanced = float(np.mean([(pred[truth == c] == c).mean() for c in np.unique(truth)]))
    loss = float(-np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-7, 1)).mean())
    return balanced, loss, acc


def _warmup_then_decay(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at ``step``: linear warmup over ``warmup`` steps, then linear decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _pair_loss(vec, target):
    """SetFit's cosine-similarity loss over every pair in the batch: 1 for same label, 0 otherwise."""
    torch = torch_module()
    z = torch.nn.functional.normalize(vec, dim=1)
    sim = z @ z.T
    same = (target[:, None] == target[None, :]).to(sim.dtype)
    upper = torch.triu(torch.ones_like(sim, dtype=torch.bool), diagonal=1)
    return ((sim - same)[upper] ** 2).mean()


def whole_text_batches(
    owner: np.ndarray, which: np.ndarray, batch_size: int, lengths
) -> Iterator[np.ndarray]:
    """Batches of windows ordered by text length, never splitting one text's windows across batches."""
    groups: dict[int, list[int]] = {}
    for w in which:
        groups.setdefault(int(owner[w]), []).append(int(w))
    ordered = sorted(groups.values(), key=lambda ws: max(lengths[w] for w in ws))
    batch: list[int] = []
    for ws in ordered:
        batch.extend(ws)
        if len(batch) >= batch_size:
            yield np.array(batch)
            batch = []
    if batch:
        yield np.array(batch)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# Training steps cost about three forward passes (forward, backward through activations and weights).
TRAIN_COST_PER_TOKEN = 3.0
# Where early stopping typically ends with the robust preset: mpnet's best came after epoch 2 and it
# stopped 1.5 epochs later; minilm's best came after epochs 1.5-7.5 and it stops 3 epochs later.
EXPECTED_EPOCHS = {"small": 7.0, "base": 3.0}
# Where the best checkpoint typically is (the refit on every row trains to it): epoch 2 for mpnet.
EXPECTED_BEST_EPOCH = {"small": 4.0, "base": 2.0}
# mpnet epochs on blitzer_books took 42 s with bfloat16 matmuls and about 160 s without (on a busier
# machine): 2.5 is the cautious end of that.
BF16_SPEEDUP = 2.5


# On a GPU: minilm runs on 500 Blitzer reviews took 2-24 s on one H100 shared by 8-13 runs at once
# (benchmarks/results/finetune-gpu-sweep*.log) against 136-336 s on this 2-core CPU: 10x is cautious.
GPU_SPEEDUP = 10.0


def estimated_seconds(texts: Sequence[str], backbone: str, recipe: Recipe | None = None) -> float:
    """Rough time of a robust fine-tuning run here, from word counts (for budget decisions)."""
    from fewlabel.encoders.backbones import TOKENS_PER_SECOND

    recipe = recipe or Recipe()
    per_second: float = TOKENS_PER_SECOND.get(backbone, TOKENS_PER_SECOND["mpnet"])
    device = resolve_device(recipe.device)
    if device.type == "cuda":
        per_second *= GPU_SPEEDUP
    elif uses_bf16(recipe.precision, device):
        per_second *= BF16_SPEEDUP
    tokens = sum(min(recipe.max_tokens, 1.35 * len(t.split()) + 2) for t in texts)
    # Half the layers train on 12-layer encoders by default; minilm (6 layers) trains whole.
    trained = 0.5 if recipe.freeze_layers is None and backbone != "minilm" else 1.0
    cache = tokens * (1 - trained) / per_second
    epoch = tokens * (1 - recipe.val_fraction) * trained * TRAIN_COST_PER_TOKEN / per_second
    evals = tokens * recipe.val_fraction * trained * recipe.evals_per_epoch / per_second
    expected = EXPECTED_EPOCHS["small" if backbone == "minilm" else "base"]
    if recipe.epochs is not None:
        # Without a validation split nothing stops early: every epoch runs.
        expected = recipe.epochs if not recipe.val_fraction else min(expected, recipe.epochs)
    refit = 0.0
    if recipe.refit:  # every row, no evaluations, up to the best checkpoint
        best = EXPECTED_BEST_EPOCH["small" if backbone == "minilm" else "base"]
        refit = cache + best * epoch / (1 - recipe.val_fraction)
    return cache + expected * (epoch + evals) + refit
