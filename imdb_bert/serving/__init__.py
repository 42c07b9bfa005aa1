"""Step 12 and predict.py: the export, its ONNX copy, and predictions from them."""
