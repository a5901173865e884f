"""bfloat16 prediction (engine torch-bf16) agrees with the float32 model it was evaluated as."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pytest

from conftest import BACKBONE
from fewlabel.config import TrainConfig
from fewlabel.data import load_labelled
from fewlabel.embeddings import Encoder
from fewlabel.errors import FewlabelError
from fewlabel.persistence import load_model
from fewlabel.training import train


@pytest.fixture(scope="module")
def demo():
    with resources.as_file(resources.files("fewlabel") / "demo" / "reviews.csv") as path:
        texts = [row["text"] for row in csv.DictReader(path.open(encoding="utf-8"))]
        return load_labelled(path), texts


def test_bf16_embeddings_are_close_to_float32(demo):
    _, texts = demo
    fp32 = Encoder(BACKBONE, cache=False).encode(texts[:40])
    bf16 = Encoder(BACKBONE, cache=False, precision="bf16").encode(texts[:40])
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99
    assert not np.array_equal(fp32, bf16)  # bfloat16 did run: the vectors are close, not identical


def test_torch_engine_agrees_with_float32(demo, tmp_path):
    data, texts = demo
    train(data, tmp_path / "m", TrainConfig(strategy="embed", model=BACKBONE, folds=3, diagnostics=False))
    fast = load_model(tmp_path / "m", engine="torch-bf16").predict_proba(texts)
    exact = load_model(tmp_path / "m", engine="torch").predict_proba(texts)
    assert (fast.argmax(1) == exact.argmax(1)).mean() >= 0.98
    assert np.abs(fast - exact).max() <= 0.1


def test_precision_settings_are_checked():
    with pytest.raises(FewlabelError, match="precision must be"):
        Encoder(BACKBONE, cache=False, precision="fp8")
    with pytest.raises(FewlabelError, match="cached embeddings are float32"):
        Encoder(BACKBONE, cache=True, precision="bf16")
    with pytest.raises(FewlabelError, match="unknown engine"):
        load_model(".", engine="tensorrt")
