"""An encoder that runs an exported ONNX graph with ``tokenizers`` and ONNX Runtime only.

The graph (written by :mod:`fewlabel.inference.export`) takes token ids and returns the pooled,
L2-normalised sentence embedding, so prediction needs no PyTorch and no Transformers.

The files are read here, once, as untrusted input: the graph may hold no external data (a tensor
stored in another file, which ONNX Runtime would read from a path the graph names), and the session
is built from the bytes read, so the runtime opens no file itself.

Two runtimes run the same graph: ONNX Runtime (``onnxruntime``, float32) and OpenVINO (``openvino``, an
optional extra), which on a CPU that multiplies bfloat16 natively (AVX512-BF16, AMX) runs the matrix
products in bfloat16 with float32 sums: embeddinggemma's embeddings of long reviews came out within
cosine 0.9999 of float32 at about twice ONNX Runtime's speed here (BENCHMARKS.md). Export checks each
runtime against PyTorch (:mod:`fewlabel.inference.export`).
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
RUNTIMES = ("onnxruntime", "openvino")
IR_FILES = ("openvino.xml", "openvino.bin")  # the graph in OpenVINO's format, written by export


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


def read_graph(onnx_dir: Path) -> bytes:
    """The exported ONNX graph's bytes, checked to keep no tensor data in other files."""
    path = onnx_dir / "encoder.onnx"
    try:
        with path.open("rb") as f:
            graph = f.read(_MAX_GRAPH_BYTES + 1)
    except OSError as err:
        raise ModelDirError(f"{onnx_dir}: cannot read the ONNX encoder ({err})") from None
    if len(graph) > _MAX_GRAPH_BYTES:
        raise ModelDirError(f"{path}: larger than an ONNX graph can be")
    try:
        external = _external_tensors(graph)
    except ImportError:
        raise
    except Exception as err:  # onnx raises DecodeError and others on a damaged graph
        raise ModelDirError(f"{path}: not an ONNX graph ({err})") from None
    if external:
        raise ModelDirError(
            f"{path}: tensor {external[0]!r} keeps its data in another file; "
            "fewlabel exports self-contained graphs and reads no file a graph names"
        )
    return graph


class _OrtSession:
    """An ONNX Runtime session on the graph's bytes (float32)."""

    precision = "f32"

    @staticmethod
    def check_installed() -> None:
        import onnxruntime  # noqa: F401  (ImportError: the caller names the extra)

    def __init__(self, onnx_dir: Path, threads: int, settings: dict):
        import onnxruntime as ort

        graph = read_graph(onnx_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, feeds))


class _OpenVinoSession:
    """An OpenVINO model compiled for the CPU. OpenVINO picks the precision: bfloat16 matrix
    products where the CPU has them natively, else float32.

    It reads the OpenVINO IR export wrote beside the graph (``openvino.xml`` and ``openvino.bin``:
    the same network in OpenVINO's own format, data only) when ``encoder.json`` names it: about 1 s
    for embeddinggemma's, against 6 s to convert the ONNX graph at every start. The XML is read and
    the weights mapped here; OpenVINO opens no file itself.
    """

    @staticmethod
    def check_installed() -> None:
        import openvino  # noqa: F401  (ImportError: the caller names the extra)

    def __init__(self, onnx_dir: Path, threads: int, settings: dict):
        import openvino as ov

        core = ov.Core()
        if settings.get("openvino_ir"):
            try:
                xml = (onnx_dir / IR_FILES[0]).read_bytes()
                # Mapped, not copied: the weights are read once, by compiling (1.2 GB for embeddinggemma);
                # copy-on-write, so nothing can change the file.
                self._weights = np.memmap(onnx_dir / IR_FILES[1], dtype=np.uint8, mode="c")
            except (OSError, ValueError) as err:  # ValueError: an empty file cannot be mapped
                raise ModelDirError(f"{onnx_dir}: cannot read the OpenVINO IR ({err})") from None
            network = core.read_model(xml, ov.Tensor(self._weights, shared_memory=True))
        else:
            network = core.read_model(read_graph(onnx_dir))
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        self.compiled = core.compile_model(network, "CPU", config)
        self.inputs = [port.get_any_name() for port in self.compiled.inputs]
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # bf16, f32

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # A request per call: one compiled model serves concurrent callers (the HTTP service).
        request = self.compiled.create_infer_request()
        request.infer(feeds)
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self.compiled.outputs))]


class OnnxEncoder:
    """Sentence embeddings from an exported encoder, with ``tokenizers`` and ONNX Runtime (or
    OpenVINO: ``runtime="openvino"``) only."""

    def __init__(self, onnx_dir: str | Path, threads: int | None = None, runtime: str = "onnxruntime"):
        from tokenizers import Tokenizer

        if runtime not in RUNTIMES:
            raise ModelDirError(f"unknown ONNX runtime {runtime!r}; use {' or '.join(RUNTIMES)}")
        session_class = _OpenVinoSession if runtime == "openvino" else _OrtSession
        session_class.check_installed()

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
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
            raise ModelDirError(f"{onnx_dir}: cannot read the ONNX encoder ({err})") from None
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
            # The graph first: one that names files outside the model is refused before anything else.
            self.session = session_class(onnx_dir, threads or os.cpu_count() or 1, settings)
            self.tokenizer = Tokenizer.from_str(tokenizer_text)
            self.tokenizer.enable_truncation(max_tokens)
            self.tokenizer.no_padding()
        except ModelDirError:
            raise
        except Exception as err:  # tokenizers and the runtimes raise their own exception types
            raise ModelDirError(f"{onnx_dir}: cannot load the ONNX encoder ({err})") from None
        self.runtime = runtime
        self.inputs = self.session.inputs
        if "input_ids" not in self.inputs or "attention_mask" not in self.inputs:
            raise ModelDirError(
                f"{onnx_dir / 'encoder.onnx'}: the graph does not take input_ids and attention_mask"
            )

    def answers(self, texts: Sequence[str]) -> np.ndarray:
        """What an export is checked by: the embeddings (a fine-tuned classifier's: probabilities)."""
        return self.encode(texts)

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
                vectors = np.asarray(self.session.run(arrays)[0], dtype=np.float32)
            except Exception as err:  # the runtime's own exception types
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
