"""Sizes of what train.py writes besides the checkpoints' variables (graph.pbtxt, each
model.ckpt-N.meta, the training events file) and its peak memory, on 25,000 generated
reviews with --train-samples all. Run by hand, never in tests.

    python bench/graph_size.py                       # this checkout
    python bench/graph_size.py --repo /tmp/old-main  # another checkout of the project

The features' size in the graph does not depend on the model, so a tiny random BERT (2
layers, hidden 32) and a few training steps are enough.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from demo_material import generated_reviews, random_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


PEAK_OF_CHILD = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def megabytes(size):
    return "%.1f MB" % (size / 1e6)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=ROOT, help="the checkout whose train.py runs")
    p.add_argument("--reviews", type=int, default=25000, help="training reviews (all)")
    p.add_argument("--max-seq-length", type=int, default=128)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        module = random_module(tmp, layers=2, hidden=32)
        data_dir = generated_reviews(tmp, args.reviews, 100)
        output_dir = os.path.join(tmp, "OUTPUT_Bert")
        batches = 8  # --epochs is set so that training takes about this many steps of 32
        command = [sys.executable, os.path.join(args.repo, "train.py"), "--bert-hub", module,
                   "--data-dir", data_dir, "--output-dir", output_dir,
                   "--train-samples", "all", "--test-samples", "100",
                   "--max-seq-length", str(args.max_seq_length),
                   "--epochs", str(batches * 32 / args.reviews),
                   "--save-checkpoints-steps", "4"]
        start = time.time()
        # Through a wrapper process whose only child is train.py, so the peak memory
        # is train.py's, not the module exporter's.
        result = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *command],
                                cwd=args.repo, capture_output=True, text=True)
        seconds = time.time() - start
        if result.returncode != 0:
            sys.exit("train.py failed:\n" + result.stderr[-3000:])
        peak = int(result.stdout.split()[-1]) * 1024
        names = sorted(os.listdir(output_dir))
        print("checkout: %s (%s)" % (args.repo, subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=args.repo, capture_output=True,
            text=True).stdout.strip()))
        print("training reviews: %d, max_seq_length %d, %d cores"
              % (args.reviews, args.max_seq_length, os.cpu_count()))
        for name in names:
            if name == "graph.pbtxt" or name.endswith(".meta") or name.startswith("events."):
                print("%-45s %s" % (name, megabytes(os.path.getsize(
                    os.path.join(output_dir, name)))))
        print("peak memory of train.py: %s; whole run %.0f s" % (megabytes(peak), seconds))


if __name__ == "__main__":
    main()
