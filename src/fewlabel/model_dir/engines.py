"""Prediction engines: how a model's encoder runs when it predicts, and the one training records.

``torch`` runs the encoder in float32, exactly as the model was evaluated. ``torch-bf16`` runs its
matrix products in bfloat16 (float32 weights and sums): on a CPU with AVX512-BF16, ``minilm``
predicted 935 against 547 short texts/s and 161 against 57 long reviews/s, with the same test
accuracy (BENCHMARKS.md, "Prediction and the HTTP service"); without native bfloat16 it is slower.
Nobody should have to know that to get it, so training measures both on a sample of its own texts
and records the faster one when they answer alike (:func:`choose_engine`); loading with ``auto``
runs what was recorded (:func:`fewlabel.inference.loading.load_model`).

Only strategies that embed with a frozen backbone (``embed``, ``ensemble``) are measured: fine-tuned
encoders (``finetune``, ``setfit``) predict with the precision their recipe trained and validated
with (``auto``: bfloat16 where the hardware has it natively), whichever PyTorch engine loads them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import numpy as np

from fewlabel.model_dir.records import Manifest, PredictionEntry
from fewlabel.model_dir.store import TrainedModel
from fewlabel.strategies.base import HoldoutStrategy, Strategy

TORCH_ENGINES = ("torch", "torch-bf16")
# Training texts predicted with both engines, from the shortest to the longest: a minilm model on
# long reviews measures them in a few seconds. With 64 texts, answering 99% alike allows no
# difference at all, except on near ties.
SAMPLE = 64
SAME_ANSWERS = 0.99
# A slow backbone (embeddinggemma: about 0.5 s a long review on 2 cores) gets fewer texts, so that
# one float32 pass takes about this long; never fewer than MIN_SAMPLE.
SAMPLE_SECONDS = 10.0
MIN_SAMPLE = 16
# When loading the encoder and one float32 pass take longer than this, measuring stops there: the
# three passes left would cost minutes (seen with embeddinggemma while other work held the CPU).
GIVE_UP_SECONDS = 60.0
# A text float32 puts within this (in probability) of changing its answer is a near tie: bfloat16
# moves calibrated probabilities by about 0.01 on new texts, so either engine's answer there is a coin
# toss, and a flip says nothing about the engine (the demo set had one such text at 0.501 / 0.4996).
TIE = 0.01
# Texts per call while measuring: the sample runs from the shortest text to the longest, so small
# groups pad little. One call with all of them pads every text to the longest: with embeddinggemma,
# which reads up to 2,048 tokens, 22 long reviews took 92 s in float32 that way.
GROUP = 8


def run_with(strategy: Strategy, engine: str, backbone_ref: str | None) -> None:
    """Run ``strategy``'s encoder with PyTorch in float32 (``torch``) or bfloat16 (``torch-bf16``).

    An embedding strategy gets an encoder of its pinned backbone (found now, in the backbone store
    or packaged; loaded on first use) that keeps no cache: memory stays flat over millions of texts,
    and every text is encoded by the engine asked for.
    """
    bf16 = engine == "torch-bf16"
    if bf16:
        strategy.use_precision("bf16")
    if backbone_ref:
        from fewlabel.encoders.backbones import find
        from fewlabel.encoders.sentence import Encoder

        precision = "bf16" if bf16 else "fp32"
        strategy.attach_encoder(Encoder(find(backbone_ref), cache=False, precision=precision))


def bf16_native_here() -> bool:
    """Whether the device models predict on multiplies bfloat16 natively: a GPU that does, or a CPU
    with AMX or AVX512-BF16."""
    from fewlabel.encoders.device import resolve_device, uses_bf16

    return uses_bf16("auto", resolve_device("auto"))


def recorded_engine(manifest: Manifest) -> str:
    """The PyTorch engine ``auto`` runs: the one training recorded, when it is bfloat16 and this
    hardware has it natively too (elsewhere bfloat16 is slower); otherwise float32."""
    entry = manifest.prediction
    if entry is None or entry.engine != "torch-bf16":
        return (
            "torch"  # none recorded (an older model, tfidf), float32, or a name this fewlabel does not know
        )
    return "torch-bf16" if bf16_native_here() else "torch"


def choose_engine(model: TrainedModel, texts: Sequence[str]) -> PredictionEntry | None:
    """Float32 or bfloat16 for predicting with ``model``, measured on a sample of its training
    ``texts``: bfloat16 when the hardware has it natively, it gives the same answers (labels after
    calibration and any threshold) on at least 99% of the sample, and it is faster there.

    None for a model that embeds nothing with a frozen backbone (the engine changes nothing there).
    """
    strategy = model.strategy
    if not strategy.uses_backbone or isinstance(strategy, HoldoutStrategy):
        return None
    if not bf16_native_here():
        return PredictionEntry(
            engine="torch",
            reason="this machine has no native bfloat16 matrix products, so bfloat16 is slower",
        )
    start = time.perf_counter()
    sample = length_spread(texts, _sample_size(model.backbone_ref, texts))
    exact, fast = _with_engine(model, "torch"), _with_engine(model, "torch-bf16")
    # The first pass of each also warms it up (bfloat16 kernels are built for each new shape), so
    # the timed passes come second.
    p32 = _predict_grouped(exact, sample)
    if time.perf_counter() - start > GIVE_UP_SECONDS:  # a slow backbone on a busy machine: not worth it
        return PredictionEntry(
            engine="torch",
            reason=f"not measured: one float32 pass over {len(sample)} training texts took "
            f"{time.perf_counter() - start:.0f}s (`--engine torch-bf16` tries bfloat16)",
            sample=len(sample),
            seconds=time.perf_counter() - start,
        )
    p16 = _predict_grouped(fast, sample)
    differs = ~_same_answers(model, p32, p16)
    ties = int(np.sum(differs & _near_tie(model, p32)))
    differ = int(np.sum(differs)) - ties
    measured = PredictionEntry(
        engine="torch",
        reason=f"bfloat16 answered {differ} of {len(sample)} training texts otherwise than float32"
        + (f" (and {ties} near ties)" if ties else ""),
        sample=len(sample),
        agreement=1 - (differ + ties) / len(sample),
        near_ties=ties,
        max_abs_diff=float(np.abs(p32 - p16).max()),
    )
    if differ / len(sample) > 1 - SAME_ANSWERS:
        return measured.model_copy(update={"seconds": time.perf_counter() - start})
    speedup = _seconds(exact, sample) / _seconds(fast, sample)
    if speedup > 1:
        engine = "torch-bf16"
        same = "same answers" + (f" but for {ties} near tie{'s' if ties > 1 else ''}" if ties else "")
        reason = f"{speedup:.1f}x faster than float32 on {len(sample)} training texts, {same}"
    else:
        engine, reason = "torch", f"bfloat16 was not faster on {len(sample)} training texts ({speedup:.2f}x)"
    return measured.model_copy(
        update={
            "engine": engine,
            "reason": reason,
            "speedup": speedup,
            "seconds": time.perf_counter() - start,
        }
    )


def _sample_size(backbone_ref: str | None, texts: Sequence[str]) -> int:
    """:data:`SAMPLE` texts, or fewer (at least :data:`MIN_SAMPLE`) when a slow backbone would need
    more than :data:`SAMPLE_SECONDS` to encode them once in float32 (each is encoded four times)."""
    from fewlabel.encoders.backbones import TOKENS_PER_SECOND, estimated_encode_seconds

    name = (backbone_ref or "").split("@")[0]
    if name not in TOKENS_PER_SECOND or not texts:
        return SAMPLE
    per_text = estimated_encode_seconds(name, length_spread(texts, SAMPLE)) / min(SAMPLE, len(texts))
    return max(MIN_SAMPLE, min(SAMPLE, int(SAMPLE_SECONDS / max(per_text, 1e-9))))


def length_spread(texts: Sequence[str], n: int) -> list[str]:
    """``n`` of ``texts`` evenly spread from the shortest to the longest (all of them when fewer)."""
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    if len(order) > n:
        # Steps of at least one position: n distinct texts.
        order = [order[round(float(x))] for x in np.linspace(0, len(order) - 1, n)]
    return [texts[i] for i in order]


def _with_engine(model: TrainedModel, engine: str) -> TrainedModel:
    """A copy of ``model`` whose encoder runs with ``engine`` (the model itself is left as it was)."""
    strategy = copy.deepcopy(model.strategy)
    run_with(strategy, engine, model.backbone_ref)
    return TrainedModel(strategy, model.labels, model.manifest)


def _same_answers(model: TrainedModel, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each text, whether the two rows of probabilities give the same answer (label, or label set)."""
    if model.multi_label:
        thresholds = model.label_thresholds
        return np.all((a >= thresholds) == (b >= thresholds), axis=1)
    return model.decide(a) == model.decide(b)


def _near_tie(model: TrainedModel, p: np.ndarray) -> np.ndarray:
    """For each text, whether moving its float32 probabilities by :data:`TIE` could change the answer."""
    if model.multi_label:
        return np.any(np.abs(p - model.label_thresholds) < TIE, axis=1)
    if p.shape[1] == 2:  # the answer may come from a threshold on the second class: move along it
        shift = np.array([-TIE, TIE])
        return model.decide(np.clip(p + shift, 0, 1)) != model.decide(np.clip(p - shift, 0, 1))
    top = np.sort(p, axis=1)
    return top[:, -1] - top[:, -2] < 2 * TIE


def _predict_grouped(model: TrainedModel, texts: list[str]) -> np.ndarray:
    """Probabilities for ``texts`` (sorted by length), predicted :data:`GROUP` at a time."""
    return np.vstack([model.predict_proba(texts[i : i + GROUP]) for i in range(0, len(texts), GROUP)])


def _seconds(model: TrainedModel, texts: list[str]) -> float:
    start = time.perf_counter()
    _predict_grouped(model, texts)
    return time.perf_counter() - start
