"""Serving a multi-label model, the estimator's refusal of a label matrix, and the other refusals."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import BACKBONE
from fewlabel.errors import FewlabelError
from fewlabel.serve import create_app


def test_serve_answers_a_list_of_labels_and_per_label_probabilities(multi_model_dir):
    with TestClient(create_app(multi_model_dir)) as client:
        response = client.post("/predict", json={"texts": ["the pasta and the goal", "a quiet day"]})
        assert response.status_code == 200, response.text
        first, second = response.json()["predictions"]
        assert first["labels"] == ["food", "sports"] and second["labels"] == []
        assert set(first) == {"labels", "probabilities"}
        assert set(first["probabilities"]) == {"food", "sports", "tech"}
        assert first["probabilities"]["food"] > 0.5 > first["probabilities"]["tech"]


def test_single_label_responses_are_unchanged(tfidf_model_dir):
    with TestClient(create_app(tfidf_model_dir)) as client:
        prediction = client.post("/predict", json={"text": "I love it"}).json()["predictions"][0]
        assert set(prediction) == {"label", "confidence", "probabilities"}


def test_the_estimator_refuses_a_label_matrix(reviews):
    from fewlabel.estimator import FewlabelClassifier

    texts, _ = reviews
    y = np.zeros((len(texts), 2), dtype=int)
    with pytest.raises(ValueError, match="one label per text.*train_multilabel"):
        FewlabelClassifier(strategy="tfidf", backbone=BACKBONE).fit(texts, y)


def test_suggest_and_export_refuse_a_multi_label_model(multi_model_dir, tmp_path):
    from fewlabel.inference.export import export_onnx
    from fewlabel.inference.suggest import suggest_file

    source = tmp_path / "pool.csv"
    source.write_text("text\nthe pasta\nthe goal\n")
    with pytest.raises(FewlabelError, match="single-label models only"):
        suggest_file(multi_model_dir, str(source), "-")
    with pytest.raises(FewlabelError, match="single-label models only"):
        export_onnx(multi_model_dir)
