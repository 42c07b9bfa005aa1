"""The parts of train.py and predict.py: one job per module (docs/layout.md)."""
