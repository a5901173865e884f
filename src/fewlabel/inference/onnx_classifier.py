"""A fine-tuned classifier (``finetune``, ``setfit``) exported to ONNX, run with ``tokenizers`` and ONNX
Runtime: long texts cut into windows as the PyTorch model cuts them (:func:`fewlabel.finetuning.windows`),
each window's summed token states from the graph, pooled per text, and the trained head in NumPy.
Written by :func:`fewlabel.inference.export.export_onnx`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.encoders.onnx import BATCH, OnnxEncoder
from fewlabel.errors import ModelDirError
from fewlabel.finetuning import whole_text_batches, windows


class _TokenizerCalls:
    """The calls :func:`fewlabel.finetuning.windows` makes of a Hugging Face tokenizer, answered by a
    ``tokenizers.Tokenizer`` (no Transformers)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, texts, add_special_tokens: bool = True, **_: Any) -> dict[str, Any]:
        one = isinstance(texts, str)
        encodings = self.tokenizer.encode_batch(
            [texts] if one else list(texts), add_special_tokens=add_special_tokens
        )
        ids = [e.ids for e in encodings]
        return {"input_ids": ids[0] if one else ids}


class OnnxFineTuned(OnnxEncoder):
    """A fine-tuned encoder (``finetune``, ``setfit``) exported to ONNX: class probabilities with
    ``tokenizers`` and ONNX Runtime, long texts cut into windows as the PyTorch model cuts them.

    The graph returns each window's sum of token states and its token count; the windows of a text
    are pooled together here and the model's linear head (``head_weight``, ``head_bias``) applied.
    """

    def __init__(
        self,
        onnx_dir: str | Path,
        head_weight: np.ndarray,
        head_bias: np.ndarray,
        threads: int | None = None,
        runtime: str = "onnxruntime",
    ):
        super().__init__(onnx_dir, threads, runtime)
        settings = self.settings
        try:
            self.long_texts = str(settings["long_texts"])
            self.head_fraction = float(settings["head_fraction"])
            self.pad_id = int(settings["pad_id"])
        except (KeyError, TypeError, ValueError) as err:
            raise ModelDirError(
                f"{onnx_dir}: encoder.json lacks the fine-tuned model's settings ({err})"
            ) from None
        self.tokenizer.no_truncation()  # windows() cuts long texts itself
        self.head_weight = np.asarray(head_weight, dtype=np.float64)
        self.head_bias = np.asarray(head_bias, dtype=np.float64)

    def answers(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        n_classes = len(self.head_bias)
        if not texts:
            return np.zeros((0, n_classes))
        max_tokens = int(self.settings["max_tokens"])
        win = windows(_TokenizerCalls(self.tokenizer), texts, max_tokens, self.long_texts, self.head_fraction)
        lengths = [len(w) for w in win.ids]
        sums = np.zeros((len(texts), self.head_weight.shape[1]), dtype=np.float64)
        counts = np.zeros(len(texts), dtype=np.float64)
        for batch in whole_text_batches(win.owner, np.arange(len(win.ids)), BATCH, lengths):
            width = max(lengths[i] for i in batch)
            ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, : lengths[i]] = win.ids[i]
                mask[row, : lengths[i]] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            try:
                window_sums, window_counts = self.session.run(feeds)[:2]
            except Exception as err:  # the runtime's own exception types
                raise ModelDirError(f"the model's ONNX encoder failed ({err})") from None
            np.add.at(sums, win.owner[batch], np.asarray(window_sums, dtype=np.float64))
            np.add.at(counts, win.owner[batch], np.asarray(window_counts, dtype=np.float64).reshape(-1))
        pooled = sums / np.maximum(counts, 1.0)[:, None]
        logits = pooled @ self.head_weight.T + self.head_bias
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)
