"""Inference: loading a saved model with a prediction engine, predicting files and streams (locally or
on Ray), exporting to ONNX, and suggesting texts to label next."""
