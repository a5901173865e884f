"""Serving a multi-label model, loading it into the estimator, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

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


def test_the_estimator_loads_a_multi_label_model(multi_model_dir):
    from fewlabel.estimator import FewlabelClassifier
    from fewlabel.inference.loading import load_model

    texts = ["the pasta and the goal", "the laptop", "nothing at all"]
    clf = FewlabelClassifier.load(multi_model_dir)
    model = load_model(multi_model_dir)
    assert clf.multilabel_ and list(clf.classes_) == model.labels
    sets, proba = model.predict_label_sets(texts)
    expected = np.array([[int(label in s) for label in model.labels] for s in sets])
    np.testing.assert_array_equal(clf.predict(texts), expected)
    np.testing.assert_allclose(clf.predict_proba(texts), proba)
    assert clf.estimate_.metric == "micro_f1" and clf.estimate_.value > 0.9


def test_suggest_and_export_refuse_a_multi_label_model(multi_model_dir, tmp_path):
    from fewlabel.inference.export import export_onnx
    from fewlabel.inference.suggest import suggest_file

    source = tmp_path / "pool.csv"
    source.write_text("text\nthe pasta\nthe goal\n")
    with pytest.raises(FewlabelError, match="single-label models only"):
        suggest_file(multi_model_dir, str(source), "-")
    with pytest.raises(FewlabelError, match="single-label models only"):
        export_onnx(multi_model_dir)
