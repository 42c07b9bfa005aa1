"""What `predict.py --explain` costs per sentence: `predict.py --file` with and without
--explain on short generated sentences and on reviews of IMDB's length, on the ONNX and
SavedModel paths. Run by hand, never in tests.

    python bench/explain_speed.py --demo                  # trains a random BERT (6 layers,
                                                          # hidden 384, sequence 128) first
    python bench/explain_speed.py --output-dir OUTPUT_Bert --paths onnx
"""
import argparse
import os
import random
import sys
import tempfile

from predict_startup import (ROOT, machine, make_demo_model, real_length_review,
                             run_streaming)

sys.path.insert(0, ROOT)
from imdb_bert.serving import explain  # noqa: E402 (needs ROOT on the path)
from imdb_bert.tools.synthetic_reviews import synthetic_review  # noqa: E402

PATHS = {"onnx": [], "savedmodel": ["--no-onnx"], "checkpoint": ["--from-checkpoint"]}


def write_reviews(path, reviews):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(review.replace("\n", " ") + "\n" for review in reviews)
    return path


def model_inputs(reviews):
    """The inputs --explain classifies for `reviews`, at the default --explain-max-words."""
    return len(explain.Occlusion(reviews, explain.MAX_WORDS).inputs)


def measure(predict, reviews_file, reviews, label):
    """Seconds per review of --explain, whole process, and after the plain run's time."""
    plain = run_streaming(predict + ["--file", reviews_file])
    explained = run_streaming(predict + ["--file", reviews_file, "--explain"])
    count = len(reviews)
    print("  %-34s %3d reviews, %5d inputs: plain %6.1f s, --explain %6.1f s "
          "(%.0f CPU s): %.2f s per review, %.2f s beyond the plain run"
          % (label, count, model_inputs(reviews), plain[0], explained[0], explained[2],
             explained[0] / count, (explained[0] - plain[0]) / count))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", help="a folder train.py wrote")
    p.add_argument("--demo", action="store_true", help="train a random BERT to measure")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--short", type=int, default=32, help="short generated sentences")
    p.add_argument("--long", type=int, default=8, help="reviews of IMDB's length")
    p.add_argument("--paths", default="onnx,savedmodel",
                   help="the paths of predict.py to measure (default %(default)s)")
    args = p.parse_args()
    if not args.output_dir and not args.demo:
        p.error("pass --output-dir or --demo")
    print(machine())
    rng = random.Random(0)
    short = [synthetic_review(rng, i % 2) for i in range(args.short)]
    long = [real_length_review(rng, i % 2) for i in range(args.long)]
    with tempfile.TemporaryDirectory() as tmp:
        output_dir = args.output_dir or make_demo_model(tmp, args.layers, args.hidden)
        files = {"short sentences (%.0f words)" % mean_words(short):
                 (write_reviews(os.path.join(tmp, "short.txt"), short), short),
                 "IMDB-length reviews (%.0f words)" % mean_words(long):
                 (write_reviews(os.path.join(tmp, "long.txt"), long), long)}
        for path in args.paths.split(","):
            print("predict.py %s (%s):" % (" ".join(PATHS[path]) or "(ONNX copy)", output_dir))
            predict = [sys.executable, "predict.py", "--output-dir", output_dir] + PATHS[path]
            for label, (reviews_file, reviews) in files.items():
                measure(predict, reviews_file, reviews, label)


def mean_words(reviews):
    return sum(len(review.split()) for review in reviews) / len(reviews)


if __name__ == "__main__":
    main()
