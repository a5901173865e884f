"""Evaluation: scores with intervals, cross-validation, calibration and diagnostics."""
