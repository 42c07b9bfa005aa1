"""Sentence pairs, multi-label and regression (issue 31): train.py learns each from files
with the tiny BERT, predict.py answers on its three paths (ONNX Runtime, SavedModel,
checkpoint), and bad input stops with one line and exit code 2."""
import json
import os
import random

import numpy as np
import pandas as pd
import pytest

from conftest import run_train
from imdb_bert.tools.synthetic_reviews import FILLER_WORDS, NEGATIVE_WORDS, POSITIVE_WORDS
from test_own_data import read_json, training_flags, write_jsonl, write_table
from test_predict import run_predict

# Pairs: is the first word of both texts the same? Each text alone says nothing.
FIRST_WORDS = ["great", "awful"]
# Multi-label: each label shows in its words; a text has any number of labels.
TOPICS = {"praise": ["great", "excellent", "wonderful"],
          "complaint": ["awful", "terrible", "boring"],
          "charm": ["charming", "moving", "masterpiece"]}
# Regression: the number of positive words (0 to 3) against negative ones, as a score.


def filler(rng, count):
    return " ".join(rng.choice(FILLER_WORDS) for _ in range(count))


def pair_rows(seed, count):
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        first, second = rng.choice(FIRST_WORDS), rng.choice(FIRST_WORDS)
        rows.append((first + " " + filler(rng, rng.randint(3, 8)),
                     second + " " + filler(rng, rng.randint(3, 8)),
                     "same" if first == second else "different"))
    return rows


def multi_label_rows(seed, count):
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        labels = sorted(label for label in TOPICS if rng.random() < 0.4)
        words = filler(rng, rng.randint(5, 10)).split()
        for label in labels:
            for _ in range(2):
                words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[label]))
        rows.append((" ".join(words), labels))
    return rows


def regression_rows(seed, count):
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        positives = rng.randint(0, 3)
        words = filler(rng, rng.randint(5, 10)).split()
        for i in range(3):
            signal = POSITIVE_WORDS if i < positives else NEGATIVE_WORDS
            words.insert(rng.randrange(len(words) + 1), rng.choice(signal))
        rows.append((" ".join(words), round(positives * 5 / 3 + rng.uniform(-0.2, 0.2), 2)))
    return rows
