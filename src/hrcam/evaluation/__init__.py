"""Evaluation loops: classification accuracy, localization of CAMs, and method comparison tables."""
