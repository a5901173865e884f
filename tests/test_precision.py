"""bfloat16 prediction (engine torch-bf16) agrees with the float32 model it was evaluated as."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BACKBONE
from fewlabel.encoders.sentence import Encoder
from fewlabel.errors import FewlabelError
from fewlabel.inference.loading import load_model


@pytest.fixture(scope="module")
def demo(demo_data):
    return demo_data, demo_data.texts


def test_bf16_embeddings_are_close_to_float32(demo):
    _, texts = demo
    fp32 = Encoder(BACKBONE, cache=False).encode(texts[:40])
    bf16 = Encoder(BACKBONE, cache=False, precision="bf16").encode(texts[:40])
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99
    assert not np.array_equal(fp32, bf16)  # bfloat16 did run: the vectors are close, not identical


def test_torch_engine_agrees_with_float32(demo, demo_embed_model):
    _, texts = demo
    fast = load_model(demo_embed_model, engine="torch-bf16").predict_proba(texts)
    exact = load_model(demo_embed_model, engine="torch").predict_proba(texts)
    assert (fast.argmax(1) == exact.argmax(1)).mean() >= 0.98
    assert np.abs(fast - exact).max() <= 0.1


def test_precision_settings_are_checked():
    with pytest.raises(FewlabelError, match="precision must be"):
        Encoder(BACKBONE, cache=False, precision="fp8")
    with pytest.raises(FewlabelError, match="cached embeddings are float32"):
        Encoder(BACKBONE, cache=True, precision="bf16")
    with pytest.raises(FewlabelError, match="unknown engine"):
        load_model(".", engine="tensorrt")
