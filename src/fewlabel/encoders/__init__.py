"""Encoders: the backbones (and their offline install), device and precision choice, the cached
sentence encoder, and the ONNX encoder used at prediction time."""
