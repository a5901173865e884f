"""Sentence embeddings from a backbone, cached on disk by backbone and text hash.

Cross-validation fits a strategy many times on overlapping texts, and a second ``train`` on the same
data is common; the cache turns all but the first encoding of a text into a lookup.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewlabel import progress
from fewlabel.encoders import backbone_store
from fewlabel.encoders.backbones import Backbone, fewlabel_home, resolve
from fewlabel.errors import BackboneError

_MODELS: dict[str, object] = {}  # loaded SentenceTransformer models, one per backbone location
CHUNK = 128  # texts per progress step; the model batches within it


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_sentence_model(backbone: Backbone):
    """Load (once per process) a sentence-transformers model for a backbone, offline.

    The backbone's directory is checked again first (:func:`backbone_store.backbone_files`): its
    modules.json may name only sentence-transformers' own modules and no config may ask for custom
    code, so no sentence-transformers version imports code from the directory, whatever it holds.
    """
    if backbone.location in _MODELS:
        return _MODELS[backbone.location]
    backbone_store.backbone_files(Path(backbone.location), f"backbone {backbone.name}", packaged=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise BackboneError(
            f"embedding strategies need sentence-transformers and PyTorch ({err}); "
            "install the CPU build: `pip install torch==2.13.0 sentence-transformers`"
        ) from None
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # fewlabel shows its own bars; "Loading weights" is noise
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        # A GPU if there is one; local files only: a backbone is always a checked local directory.
        model = SentenceTransformer(backbone.location, trust_remote_code=False, local_files_only=True)
    except Exception as err:  # transformers raises OSError, ValueError...
        raise BackboneError(
            f"cannot load backbone {backbone.name!r} (directory {backbone.location}): {err}"
        ) from None
    model.eval()
    _MODELS[backbone.location] = model
    return model


class Encoder:
    """Encodes texts with a backbone into L2-normalised float32 vectors, with an on-disk cache.

    Args:
        backbone: ``minilm``, ``mpnet``, a pinned reference (``NAME@sha256:HEX``, what loading
            uses: found in the backbone store only), or when training a local directory or a Hub id.
        batch_size: texts per forward pass.
        cache: keep embeddings in ``$FEWLABEL_HOME/embeddings`` (keyed by backbone weights and text).
        precision: ``fp32``; ``bf16`` (bfloat16 matrix products, float32 sums); ``auto``: bf16 where
            the CPU multiplies bfloat16 natively (AMX, AVX512-BF16), else fp32. Cached embeddings
            (training) are always fp32; prediction is fp32 unless asked (engine ``torch-bf16``).
    """

    def __init__(
        self,
        backbone: str | Backbone = "minilm",
        batch_size: int = 32,
        cache: bool = True,
        precision: str = "fp32",
    ):
        if precision not in ("fp32", "bf16", "auto"):
            raise BackboneError(f"precision must be fp32, bf16 or auto, got {precision!r}")
        if cache and precision != "fp32":
            raise BackboneError("cached embeddings are float32; use precision='fp32' with cache=True")
        self.precision = precision
        self._spec = backbone
        self._backbone: Backbone | None = backbone if isinstance(backbone, Backbone) else None
        self.batch_size = batch_size
        self.cache = cache
        self._memory: dict[str, np.ndarray] = {}
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used from whichever thread predicts

    def __deepcopy__(self, memo: dict) -> Encoder:
        """A fresh encoder with the same settings: a copy of a strategy (measuring engines) must not
        share this one's connection, lock or memory of embeddings."""
        fresh = Encoder(self._backbone or self._spec, self.batch_size, self.cache, self.precision)
        memo[id(self)] = fresh
        return fresh

    @property
    def backbone(self) -> Backbone:
        """Resolved on first use, so a loaded model only needs its backbone when it embeds."""
        if self._backbone is None:
            self._backbone = resolve(str(self._spec))
        return self._backbone

    @property
    def max_tokens(self) -> int:
        return int(getattr(load_sentence_model(self.backbone), "max_seq_length", 256) or 256)

    def _connect(self) -> sqlite3.Connection | None:
        if not self.cache:
            return None
        if self._db is None:
            folder = fewlabel_home() / "embeddings"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{self.backbone.cache_key}.sqlite"
                self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
                self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
            except (OSError, sqlite3.Error):
                self.cache = False  # a read-only home must not stop training; it only costs speed
                return None
        return self._db

    def _lookup(self, keys: list[str]) -> None:
        db = self._connect()
        missing = [k for k in dict.fromkeys(keys) if k not in self._memory]
        if db is None or not missing:
            return
        for start in range(0, len(missing), 500):
            batch = missing[start : start + 500]
            marks = ",".join("?" * len(batch))
            for key, blob in db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", batch):
                self._memory[key] = np.frombuffer(blob, dtype=np.float32)

    def _store(self, keys: list[str], vectors: np.ndarray) -> None:
        for key, vec in zip(keys, vectors, strict=True):
            self._memory[key] = vec
        db = self._connect()
        if db is not None:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)",
                    [(k, v.astype(np.float32).tobytes()) for k, v in zip(keys, vectors, strict=True)],
                )

    def encode(self, texts: Sequence[str], show_progress: bool = True) -> np.ndarray:
        """Embeddings of ``texts`` as an (n, dim) float32 array, rows in the input order.

        Without the cache nothing is kept between calls, so memory stays flat however many texts
        pass through (prediction and serving).
        """
        if not self.cache:
            if not texts:
                return np.zeros((0, 0), dtype=np.float32)
            return self._model_encode(list(texts))
        with self._lock:
            return self._cached_encode(texts, show_progress)

    def _model_encode(self, texts: list[str]) -> np.ndarray:
        import torch

        from fewlabel.encoders.device import uses_bf16

        model = load_sentence_model(self.backbone)
        device = model.device
        bf16 = self.precision != "fp32" and uses_bf16(self.precision, device)
        # Encoders trained with task prompts (EmbeddingGemma) embed for classification when asked to.
        prompt = "Classification" if "Classification" in (getattr(model, "prompts", None) or {}) else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            vectors = model.encode(
                texts,
                prompt_name=prompt,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return vectors.float().cpu().numpy()

    def _cached_encode(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        keys = [_text_key(t) for t in texts]
        self._lookup(keys)
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._memory:
                todo.setdefault(key, text)
        if todo:
            # Longest first: batches of similar length pad less, and the bar's ETA is pessimistic early.
            order = sorted(todo, key=lambda k: -len(todo[k]))
            total = len(order) if show_progress else None
            with progress.bar(f"Encoding with {self.backbone.name}", total) as advance:
                for start in range(0, len(order), CHUNK):
                    chunk = order[start : start + CHUNK]
                    vectors = self._model_encode([todo[k] for k in chunk])
                    self._store(chunk, vectors)
                    advance(len(chunk))
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._memory[k] for k in keys])


_ENCODERS: dict[tuple[str, bool], Encoder] = {}


def get_encoder(backbone: str, cache: bool = True) -> Encoder:
    """A shared :class:`Encoder` per backbone, so repeated fits within a process reuse its memory cache."""
    key = (backbone, cache)
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder(backbone, cache=cache)
    return _ENCODERS[key]
