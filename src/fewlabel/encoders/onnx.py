"""An encoder that runs an exported ONNX graph with ``tokenizers`` and ONNX Runtime only.

The graph (written by :mod:`fewlabel.inference.export`) takes token ids and returns the pooled,
L2-normalised sentence embedding, so prediction needs no PyTorch and no Transformers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

BATCH = 32


class OnnxEncoder:
    """Sentence embeddings from an exported encoder, with ``tokenizers`` and ONNX Runtime only."""

    def __init__(self, onnx_dir: str | Path, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx_dir = Path(onnx_dir)
        self.settings = json.loads((onnx_dir / "encoder.json").read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(self.settings["max_tokens"]))
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_dir / "encoder.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        del show_progress  # predict shows its own bar
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        out: np.ndarray | None = None
        for start in range(0, len(texts), BATCH):
            idx = order[start : start + BATCH]
            encodings = self.tokenizer.encode_batch([texts[i] for i in idx])
            width = max(len(e.ids) for e in encodings)
            arrays = {name: np.zeros((len(idx), width), dtype=np.int64) for name in self.inputs}
            for row, enc in enumerate(encodings):
                n = len(enc.ids)
                arrays["input_ids"][row, :n] = enc.ids
                arrays["attention_mask"][row, :n] = 1
                if "token_type_ids" in arrays:
                    arrays["token_type_ids"][row, :n] = enc.type_ids
            vectors = self.session.run(None, arrays)[0]
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
        assert out is not None
        return out
