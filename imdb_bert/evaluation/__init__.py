"""Step 11: the report beyond the notebook's metrics (plots, predictions, ROC AUC)."""
