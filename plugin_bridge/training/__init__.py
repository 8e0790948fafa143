"""Corpus labels, on-the-fly mixtures and the training loop for the embedded default model."""
