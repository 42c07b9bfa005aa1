"""Whole-process time and peak memory of a one-sentence `python predict.py` on each of its
paths (the export's ONNX copy, the SavedModel, the checkpoint), next to `import tensorflow`
alone, and the throughput of `predict.py --file` on each path. Run by hand, never in tests.

    python bench/predict_startup.py --output-dir OUTPUT_Bert     # a model train.py wrote
    python bench/predict_startup.py --demo                       # trains a random BERT
                                                                 # (6 layers, hidden 384) first
    python bench/predict_startup.py --demo --layers 12 --hidden 768   # BERT-Base's shape
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from demo_material import generated_reviews, random_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCE = "The film was creative and surprising"


def run(command, stdin=None):
    """(seconds, peak resident MiB) of one run of `command`, a child process of its own."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdin=stdin, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("failed: %s\n%s" % (" ".join(command), process.stderr.read().decode()[-2000:]))
    process.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def make_demo_model(folder, layers, hidden):
    """A random BERT trained for a few steps on generated reviews, as train.py writes it;
    prints the time of its ONNX copy."""
    module = random_module(folder, layers, hidden, vocab_size=30522)
    output_dir = os.path.join(folder, "OUTPUT_Bert")
    result = subprocess.run(
        [sys.executable, "train.py", "--data-dir", generated_reviews(folder, 200, 100),
         "--bert-hub", module, "--output-dir", output_dir, "--train-samples", "64",
         "--test-samples", "32", "--epochs", "1", "--max-seq-length", "128"],
        check=True, cwd=ROOT, capture_output=True, text=True)
    said = re.search(r"^(Wrote its ONNX copy for predict.py in \d+ s|No ONNX copy .*|ONNX is "
                     r"unavailable .*)", result.stdout, re.M)
    print("train.py on its ONNX copy: %s" % (said.group(1) if said else "nothing said"))
    return output_dir


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", help="a folder train.py wrote")
    p.add_argument("--demo", action="store_true", help="train a random BERT to measure")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; the median counts")
    p.add_argument("--file-sentences", type=int, default=512,
                   help="reviews in the --file throughput run (0: skip it)")
    args = p.parse_args()
    if not args.output_dir and not args.demo:
        p.error("pass --output-dir or --demo")
    with tempfile.TemporaryDirectory() as tmp:
        output_dir = args.output_dir or make_demo_model(tmp, args.layers, args.hidden)
        predict = [sys.executable, "predict.py", "--output-dir", output_dir]
        paths = {"ONNX copy": [], "SavedModel": ["--no-onnx"],
                 "checkpoint": ["--from-checkpoint"]}
        print("One sentence, whole process, median of %d runs (%s, %d cores):"
              % (args.repeat, output_dir, os.cpu_count()))
        commands = {"import tensorflow": [sys.executable, "-c", "import tensorflow"]}
        commands.update(("predict.py, " + name, predict + flags + [SENTENCE])
                        for name, flags in paths.items())
        for name, command in commands.items():
            runs = [run(command) for _ in range(args.repeat)]
            print("  %-28s %6.2f s  peak %5.0f MiB" % (
                name, statistics.median(s for s, _ in runs), max(m for _, m in runs)))
        if args.file_sentences:
            file_throughput(predict, paths, args.file_sentences, tmp)


def file_throughput(predict, paths, count, folder):
    """Sentences per second of predict.py --file with `count` generated reviews, whole
    process and without the one-sentence run's time (start-up)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import random
    from conftest import synthetic_review
    rng = random.Random(0)
    reviews = os.path.join(folder, "reviews.txt")
    with open(reviews, "w", encoding="utf-8") as f:
        f.writelines(synthetic_review(rng, i % 2).replace("\n", " ") + "\n"
                     for i in range(count))
    print("predict.py --file with %d generated reviews (sequence 128, batch 32):" % count)
    for name, flags in paths.items():
        whole, peak = run(predict + flags + ["--file", reviews])
        one, _ = run(predict + flags + [SENTENCE])
        print("  %-28s %6.1f sentences/s whole process, %6.1f after start-up, peak %5.0f MiB"
              % ("predict.py, " + name, count / whole, count / max(whole - one, 1e-9), peak))


if __name__ == "__main__":
    main()
