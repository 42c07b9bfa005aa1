"""Steps 3-5: texts to bert's InputFeatures (word-piece ids), in two equal ways, cached."""
