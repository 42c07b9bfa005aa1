"""Beside the pipeline: the Hub module exporter, make quick, make gpu-check, generated
reviews."""
