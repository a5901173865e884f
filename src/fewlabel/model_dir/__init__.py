"""The model directory: its manifest, checksum verification, and atomic save and load."""
