"""Step 2: aclImdb's reviews and the user's files as DataFrames, and their labels."""
