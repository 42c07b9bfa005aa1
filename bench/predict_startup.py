"""Whole-process time of a one-sentence `python predict.py`, from the export and from the
checkpoint, next to the time of `import tensorflow` alone. Run by hand, never in tests.

    python bench/predict_startup.py --output-dir OUTPUT_Bert     # a model train.py wrote
    python bench/predict_startup.py --demo                       # trains a random BERT
                                                                 # (6 layers, hidden 384) first
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from demo_material import generated_reviews, random_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCE = "The film was creative and surprising"


def seconds(command):
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def make_demo_model(folder, layers, hidden):
    """A random BERT trained for a few steps on generated reviews, as train.py writes it."""
    module = random_module(folder, layers, hidden)
    output_dir = os.path.join(folder, "OUTPUT_Bert")
    subprocess.run([sys.executable, "train.py", "--data-dir",
                    generated_reviews(folder, 200, 100), "--bert-hub", module,
                    "--output-dir", output_dir, "--train-samples", "64", "--test-samples", "32",
                    "--epochs", "1", "--max-seq-length", "128"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return output_dir


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", help="a folder train.py wrote")
    p.add_argument("--demo", action="store_true", help="train a random BERT to measure")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; the median counts")
    args = p.parse_args()
    if not args.output_dir and not args.demo:
        p.error("pass --output-dir or --demo")
    with tempfile.TemporaryDirectory() as tmp:
        output_dir = args.output_dir or make_demo_model(tmp, args.layers, args.hidden)
        predict = [sys.executable, "predict.py", "--output-dir", output_dir]
        figures = {
            "import tensorflow": [sys.executable, "-c", "import tensorflow"],
            "predict.py from the export": predict + [SENTENCE],
            "predict.py from the checkpoint": predict + ["--from-checkpoint", SENTENCE],
        }
        print("Whole-process seconds, median of %d runs (%s):" % (args.repeat, output_dir))
        for name, command in figures.items():
            times = [seconds(command) for _ in range(args.repeat)]
            print("  %-32s %6.2f s" % (name, statistics.median(times)))


if __name__ == "__main__":
    main()
