"""Steps 6-7: the Hub module, the classifier on top of it with its metrics, the optimizer."""
