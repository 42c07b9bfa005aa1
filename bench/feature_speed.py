"""Feature conversion speed: bert's run_classifier.convert_examples_to_features with its
FullTokenizer against this project's fast path, on the same reviews in one run, with a
check that the ids are identical. Run by hand, never in tests.

    python bench/feature_speed.py --data-dir data --bert-hub DIR   # real reviews and vocab
    python bench/feature_speed.py                                  # generated review-like
                                                                   # text and vocab
"""
import argparse
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import config  # noqa: E402
from imdb_bert.data import aclimdb  # noqa: E402
from imdb_bert.features import conversion  # noqa: E402
from imdb_bert.compat import quiet_tf_logging, run_classifier, tf  # noqa: E402
from imdb_bert.tools.make_hub_module import SPECIAL_TOKENS  # noqa: E402
from imdb_bert.features.fast_tokenizer import SAFE  # noqa: E402
from imdb_bert.features.truncation import MODES, truncating  # noqa: E402

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "de", "fa", "gu", "ho", "ji",
             "ble", "tion", "ment", "er", "ing", "ous", "ly", "st", "an", "re", "in"]
EXTRAS = ["caf\u00e9", "na\u00efve", "\u00e9cole", "\u4e2d\u6587", "\U0001F600", "\u2014",
          "\u201cquoted\u201d", "10/10", "(really)", "it's", "don't", "!!!", "..."]


def generated_vocab_and_reviews(count, non_ascii_share=0.5, seed=0):
    """A 30,000-entry vocab (Google's special ids, single characters, ##pieces, words) and
    `count` reviews of about IMDB's length with HTML breaks and punctuation; a share
    `non_ascii_share` of them also holds accents, CJK, emoji and typographic quotes."""
    rng = random.Random(seed)
    words = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))
                    for _ in range(40000)})
    chars = [chr(c) for c in range(33, 127)] + ["\u00e9", "\u00ef", "\u4e2d", "\u6587"]
    pieces = ["##" + c for c in chars] + ["##" + s for s in SYLLABLES]
    vocab = list(dict.fromkeys(SPECIAL_TOKENS + chars + pieces + words))[:30000]
    ascii_extras = [extra for extra in EXTRAS if extra.isascii()]
    reviews = []
    for _ in range(count):
        extras = EXTRAS if rng.random() < non_ascii_share else ascii_extras
        tokens = []
        for _ in range(rng.randint(25, 255)):  # about IMDB's mean of 1,300 characters
            roll = rng.random()
            if roll < 0.85:
                tokens.append(rng.choice(words))
            elif roll < 0.93:
                tokens.append(rng.choice(words) + rng.choice(words))  # split into pieces
            elif roll < 0.97:
                tokens.append(rng.choice(extras))
            else:
                tokens.append(rng.choice([".", ",", "<br /><br />", "!"]))
        reviews.append(" ".join(tokens).capitalize())
    return vocab, reviews


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="folder holding aclImdb/ (its train split is used)")
    p.add_argument("--bert-hub", help="Hub module whose vocab and casing to use")
    p.add_argument("--reviews", type=int, default=25000)
    p.add_argument("--non-ascii-share", type=float, default=0.5,
                   help="generated reviews: share holding non-ASCII characters")
    p.add_argument("--max-seq-length", type=int, default=config.MAX_SEQ_LENGTH)
    p.add_argument("--truncate", choices=MODES, default="head",
                   help="train.py's --truncate (tail and head+tail tokenize whole reviews)")
    args = p.parse_args()
    quiet_tf_logging()
    tf.logging.set_verbosity(tf.logging.WARN)
    with tempfile.TemporaryDirectory() as tmp:
        vocab, reviews = generated_vocab_and_reviews(0 if args.data_dir else args.reviews,
                                                     args.non_ascii_share)
        if args.data_dir:
            train = aclimdb.load_dataset(os.path.join(args.data_dir, "aclImdb", "train"), seed=0)
            reviews = list(train[config.DATA_COLUMN][:args.reviews])
        if args.bert_hub:
            vocab_file, do_lower_case = conversion.tokenization_info(args.bert_hub)
        else:
            vocab_file, do_lower_case = os.path.join(tmp, "vocab.txt"), True
            with open(vocab_file, "w", encoding="utf-8") as f:
                f.write("\n".join(vocab) + "\n")
        examples = conversion.make_examples(reviews, [0] * len(reviews))
        ascii_share = sum(SAFE.issuperset(review) for review in reviews) / len(reviews)
        print("%d reviews, mean %d characters, %.0f%% printable ASCII only (the fast path "
              "gains most on those), max_seq_length %d, --truncate %s"
              % (len(reviews), sum(map(len, reviews)) / len(reviews), 100 * ascii_share,
                 args.max_seq_length, args.truncate))

        reference = conversion.create_tokenizer(vocab_file, do_lower_case)
        start = time.perf_counter()
        expected = run_classifier.convert_examples_to_features(
            examples, config.label_list, args.max_seq_length,
            truncating(reference, args.truncate, args.max_seq_length))
        reference_seconds = time.perf_counter() - start

        fast = conversion.create_tokenizer(vocab_file, do_lower_case, fast=True)
        start = time.perf_counter()
        got = conversion.convert_examples(
            examples, config.label_list, args.max_seq_length, fast, truncate=args.truncate)
        fast_seconds = time.perf_counter() - start

    same = all(a.input_ids == b.input_ids and a.input_mask == b.input_mask
               and a.segment_ids == b.segment_ids for a, b in zip(got, expected))
    print("run_classifier + FullTokenizer: %8.1f reviews/s (%.1f s)"
          % (len(reviews) / reference_seconds, reference_seconds))
    print("fast path:                      %8.1f reviews/s (%.1f s, %d texts fell back)"
          % (len(reviews) / fast_seconds, fast_seconds, fast.fallbacks))
    print("speed-up: %.1fx; identical input_ids, input_mask, segment_ids: %s"
          % (reference_seconds / fast_seconds, same))


if __name__ == "__main__":
    main()
