"""An encoder that runs an exported ONNX graph with ``tokenizers`` and ONNX Runtime only.

The graph (written by :mod:`fewlabel.inference.export`) takes token ids and returns the pooled,
L2-normalised sentence embedding, so prediction needs no PyTorch and no Transformers.

The three files are read here, once, as untrusted input: the graph may hold no external data (a
tensor stored in another file, which ONNX Runtime would read from a path the graph names), and the
session is built from the bytes read, so ONNX Runtime opens no file itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from fewlabel.errors import ModelDirError

BATCH = 32
_MAX_GRAPH_BYTES = 2 << 30  # protobuf's own limit


def _tensors(nodes, initializers=(), sparse=()) -> Iterator:
    """Every tensor of a graph: initializers, sparse ones, and those in node attributes and subgraphs."""
    yield from initializers
    for tensor in sparse:
        yield from (tensor.values, tensor.indices)
    for node in nodes:
        for attr in node.attribute:
            yield attr.t
            yield from attr.tensors
            yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            for graph in [attr.g, *attr.graphs]:
                yield from _tensors(graph.node, graph.initializer, graph.sparse_initializer)


def _external_tensors(graph_bytes: bytes) -> list[str]:
    """Names of the graph's tensors whose data lives in other files (none in what fewlabel exports)."""
    import onnx

    model = onnx.load_model_from_string(graph_bytes)
    graph = model.graph
    tensors = [*_tensors(graph.node, graph.initializer, graph.sparse_initializer)]
    for function in model.functions:
        tensors += _tensors(function.node)
    return [t.name for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]


class OnnxEncoder:
    """Sentence embeddings from an exported encoder, with ``tokenizers`` and ONNX Runtime only."""

    def __init__(self, onnx_dir: str | Path, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx_dir = Path(onnx_dir)
        try:
            settings = json.loads((onnx_dir / "encoder.json").read_text(encoding="utf-8"))
            max_tokens = settings["max_tokens"] if isinstance(settings, dict) else None
            if (
                not isinstance(max_tokens, int)
                or isinstance(max_tokens, bool)
                or not 1 <= max_tokens <= 100_000
            ):
                raise ValueError("max_tokens is not a whole number of tokens")
            tokenizer_text = (onnx_dir / "tokenizer.json").read_text(encoding="utf-8")
            with (onnx_dir / "encoder.onnx").open("rb") as f:
                graph = f.read(_MAX_GRAPH_BYTES + 1)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
            raise ModelDirError(f"{onnx_dir}: cannot read the ONNX encoder ({err})") from None
        if len(graph) > _MAX_GRAPH_BYTES:
            raise ModelDirError(f"{onnx_dir / 'encoder.onnx'}: larger than an ONNX graph can be")
        prompt = settings.get("prompt", "")
        if not isinstance(prompt, str) or len(prompt) > 1000:
            raise ModelDirError(f"{onnx_dir / 'encoder.json'}: prompt must be a short string")
        if "prompt" not in settings and settings.get("backbone") == "embeddinggemma":
            # Before fewlabel exported the whole pipeline, its graph left out EmbeddingGemma's dense
            # layers and prompt: every embedding was wrong.
            raise ModelDirError(
                f"{onnx_dir}: exported by an older fewlabel that left out parts of embeddinggemma; "
                f"export it again: `fewlabel export {onnx_dir.parent} --force`"
            )
        self.prompt = prompt
        self.settings = settings
        try:
            external = _external_tensors(graph)
        except ImportError:
            raise
        except Exception as err:  # onnx raises DecodeError and others on a damaged graph
            raise ModelDirError(f"{onnx_dir / 'encoder.onnx'}: not an ONNX graph ({err})") from None
        if external:
            raise ModelDirError(
                f"{onnx_dir / 'encoder.onnx'}: tensor {external[0]!r} keeps its data in another file; "
                "fewlabel exports self-contained graphs and reads no file a graph names"
            )
        try:
            self.tokenizer = Tokenizer.from_str(tokenizer_text)
            self.tokenizer.enable_truncation(max_tokens)
            self.tokenizer.no_padding()
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or os.cpu_count() or 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # tokenizers and ONNX Runtime raise their own exception types
            raise ModelDirError(f"{onnx_dir}: cannot load the ONNX encoder ({err})") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        if "input_ids" not in self.inputs or "attention_mask" not in self.inputs:
            raise ModelDirError(
                f"{onnx_dir / 'encoder.onnx'}: the graph does not take input_ids and attention_mask"
            )

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        del show_progress  # predict shows its own bar
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        out: np.ndarray | None = None
        for start in range(0, len(texts), BATCH):
            idx = order[start : start + BATCH]
            encodings = self.tokenizer.encode_batch([self.prompt + texts[i] for i in idx])
            width = max(len(e.ids) for e in encodings)
            arrays = {name: np.zeros((len(idx), width), dtype=np.int64) for name in self.inputs}
            for row, enc in enumerate(encodings):
                n = len(enc.ids)
                arrays["input_ids"][row, :n] = enc.ids
                arrays["attention_mask"][row, :n] = 1
                if "token_type_ids" in arrays:
                    arrays["token_type_ids"][row, :n] = enc.type_ids
            try:
                vectors = np.asarray(self.session.run(None, arrays)[0], dtype=np.float32)
            except Exception as err:  # ONNX Runtime's own exception types
                raise ModelDirError(f"the model's ONNX encoder failed ({err})") from None
            if (
                vectors.ndim != 2
                or len(vectors) != len(idx)
                or (out is not None and vectors.shape[1] != out.shape[1])
            ):
                raise ModelDirError(f"the model's ONNX encoder gave vectors of shape {vectors.shape}")
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
        assert out is not None
        return out
