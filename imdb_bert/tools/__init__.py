"""Beside the pipeline: the Hub module exporter, make gpu-check, generated reviews."""
