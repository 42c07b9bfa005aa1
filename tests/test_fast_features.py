"""The fast conversion gives exactly run_classifier's input_ids, input_mask, segment_ids."""
import random

import pytest

import config
from imdb_bert.compat import run_classifier
from imdb_bert.features import conversion, fast_tokenizer

VARIED_TEXTS = [
    "",
    "   ",
    "Great film!<br /><br />I loved it.",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c9COLE \u00fcber stra\u00dfe Se\u00f1or \u00c5ngstr\u00f6m",
    "\u4e2d\u6587\u7535\u5f71 good \u65e5\u672c\u8a9e\u306e\u6620\u753b \ud55c\uad6d\uc5b4",
    "Loved it \U0001F600\U0001F44D\U0001F3AC!! \u2764\ufe0f",
    "x \uf0b7 y private \ue000use",
    "control\x00chars\x07and\x1b[0m \x0bvertical\x0cfeed\x7f",
    "good\u2e45film and \u2e4e newer \u2e5d punctuation",
    "good \u0afd film, comb\u0301ining a\u0308 marks \u1ab0x \u1dc0y",
    "zero\u200bwidth\u200d joiner\ufeff bom \u00ad soft",
    "full\uff57\uff49\uff44\uff54\uff48 \uff26\uff29\uff2c\uff2d",
    "a" * 150 + " and " + "b" * 250 + " end",
    "tab\tnew\nline\r\nwindows  double  spaces",
    "numbers 1,234.56 and 10/10 and -5% ... !!! ???",
    "\u201cquoted\u201d \u2018single\u2019 \u2014 em dash \u2026 ellipsis \u00ab\u00bb",
    "\u0627\u0644\u0641\u064a\u0644\u0645 \u05e1\u05e8\u05d8 \u0444\u0438\u043b\u044c\u043c \u0395\u03bb\u03bb\u03ac\u03b4\u03b1",
    "\ud83c\udde9\ud83c\uddea".encode("utf-16", "surrogatepass").decode("utf-16") + " flags",
    " ".join(["word"] * 400),  # a very long review
    "\n\n\n " * 50 + "late start",  # words without pieces before the text begins
    ("great " * 60) + "\ue000 private use late",
]

POOL = (list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,!?'\"-()<>/\t\n")
        + ["\u00e9", "\u00c9", "\u00df", "\u4e2d", "\U0001F600", "\uf0b7", "\u2e45", "\u0afd",
           "\u0301", "\u200b", "\x00", "\x85", "\u00a0", "\u3000", "\u2028", "\ufffd", "\u0e01",
           "\u0e31", "\u1f00", "\u02b0", "\u2e3a", "\ua9c1", "\U0001e900", "\u0600"])


def random_texts(count, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(0, 400))) for _ in range(count)]


def as_dicts(feats):
    return [(f.input_ids, f.input_mask, f.segment_ids, f.label_id) for f in feats]


@pytest.mark.parametrize("max_seq_length", [8, 128])
def test_same_features_as_run_classifier(tokenizers, max_seq_length):
    texts = VARIED_TEXTS + random_texts(300)
    examples = conversion.make_examples(texts, [i % 2 for i in range(len(texts))])
    berts, tokenizer = tokenizers
    tokenizer.fallbacks = 0
    fast = conversion.fast_convert_examples(examples, config.label_list, max_seq_length,
                                            tokenizer)
    reference = run_classifier.convert_examples_to_features(
        examples, config.label_list, max_seq_length, berts)
    for text, mine, theirs in zip(texts, as_dicts(fast), as_dicts(reference)):
        assert mine == theirs, repr(text)
    # Both paths were used: texts with a disagreeing character went to bert's tokenizer.
    assert 0 < tokenizer.fallbacks < len(texts)
    assert tokenizer.agrees["\u00e9"] and not tokenizer.agrees["\uf0b7"]


def test_ordinary_reviews_take_the_fast_path(tokenizers):
    texts = VARIED_TEXTS[2:5] + VARIED_TEXTS[12:17]
    _, tokenizer = tokenizers
    tokenizer.fallbacks = 0
    tokenizer.ids(texts, 126)
    assert tokenizer.fallbacks == 0


def test_head_ends_before_a_space_and_keeps_enough_words():
    assert fast_tokenizer.head("a b c d e", 2) == "a b c"
    assert fast_tokenizer.head("a b", 5) == "a b"
    text = "w " * 1000
    assert text.startswith(fast_tokenizer.head(text, 126))
    assert len(fast_tokenizer.head(text, 126).split(" ")) == 127
