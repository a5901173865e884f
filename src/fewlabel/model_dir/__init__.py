"""The model directory: its manifest, checksum verification, atomic save and load, and the engine it
predicts with."""
