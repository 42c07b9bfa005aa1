"""Steps 9-10: the training run (one process or Horovod's), its hooks, and validation."""
