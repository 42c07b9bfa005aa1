"""The parts of train.py and predict.py: one room per stage of the pipeline, in the order a
run goes through them (docs/layout.md)."""
