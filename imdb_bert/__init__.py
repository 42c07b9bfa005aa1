"""The parts of train.py and predict.py: one job per module (README, "Layout")."""
