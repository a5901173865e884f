"""Calibration: make ``confidence`` mean what it says.

A temperature (one number, so the predicted label never changes) is fitted on out-of-fold
probabilities, where the model had not seen the texts, and stored in the saved model.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``log(proba) / temperature``: T > 1 softens over-confident probabilities."""
    if temperature == 1.0 or len(proba) == 0:
        return proba
    logits = np.log(np.clip(proba, EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the log loss of ``proba`` against ``y`` (searched in [0.05, 20])."""

    def nll(log_t: float) -> float:
        p = apply_temperature(proba, float(np.exp(log_t)))
        return float(-np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0)).mean())

    from scipy.optimize import minimize_scalar  # here: predicting never imports SciPy's optimisers

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def reliability(proba: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error of the top-label confidence, and the per-bin table behind it."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        conf, acc, n = float(confidence[mask].mean()), float(correct[mask].mean()), int(mask.sum())
        ece += n / len(y) * abs(acc - conf)
        table.append(
            {"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": conf, "accuracy": acc, "n": n}
        )
    return {"ece": float(ece), "bins": table}
