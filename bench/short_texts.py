"""Padding to the batch on short texts: predict.py --file (ONNX copy and SavedModel) and
train.py's evaluation in sentences/s, with every batch padded to --max-seq-length as before
(IMDB_BERT_PADDING=window, a switch for this benchmark only) and padded to its longest
member, grouped by length (the default); and the PyTorch peer (bench/peer_hf.py
--eval-file, in .venv-peer), whose batches are padded to their longest. Two kinds of
generated text: snippets of 10-40 words, and sentence pairs of 5-20 words each. Run by hand,
never in tests.

    python bench/short_texts.py                    # random 6-layer, hidden-384 BERT
    python bench/short_texts.py --layers 12 --hidden 768 --texts 256

Prints the machine, its load average and one table.
"""
import argparse
import csv
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

from demo_material import random_module
from vs_pytorch import PEER_PYTHON, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from imdb_bert.tools.synthetic_reviews import (FILLER_WORDS, NEGATIVE_WORDS,  # noqa: E402
                                               POSITIVE_WORDS)

SEQUENCE, BATCH = 128, 32
BEFORE = dict(os.environ, IMDB_BERT_PADDING="window")
AFTER = {key: value for key, value in os.environ.items() if key != "IMDB_BERT_PADDING"}


def snippet(rng, label, low, high):
    """`low` to `high` words of filler with one or two of the label's sentiment words."""
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(low, high))]
    for _ in range(rng.randint(1, 2)):
        words[rng.randrange(len(words))] = rng.choice(POSITIVE_WORDS if label
                                                      else NEGATIVE_WORDS)
    return " ".join(words)


def write_texts(path, count, pairs, seed):
    """A CSV of `count` labelled snippets (10-40 words) or pairs (5-20 words each)."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"] + ["text_b"] * pairs)
        for i in range(count):
            label = i % 2
            if pairs:
                writer.writerow([snippet(rng, label, 5, 20), label, snippet(rng, label, 5, 20)])
            else:
                writer.writerow([snippet(rng, label, 10, 40), label])
    return path


def train(folder, module, kind, texts):
    """Train briefly on generated texts of `kind`; (output dir, train.py's flags)."""
    pairs = kind == "pairs"
    flags = ["--bert-hub", module, "--train-file",
             write_texts(os.path.join(folder, kind + "-train.csv"), 4 * BATCH, pairs, 1),
             "--test-file", write_texts(os.path.join(folder, kind + "-test.csv"), texts,
                                        pairs, 2),
             "--output-dir", os.path.join(folder, "OUTPUT_" + kind), "--epochs", "1",
             "--max-seq-length", str(SEQUENCE), "--batch-size", str(BATCH),
             "--text-column", "text", "--label-column", "label"]
    flags += ["--text-pair-column", "text_b"] if pairs else []
    result = subprocess.run([sys.executable, "train.py", *flags], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("train.py failed:\n" + result.stderr[-3000:])
    return flags[flags.index("--output-dir") + 1], flags


def evaluation_rate(flags, texts, env):
    """Sentences/s of train.py --eval-only's evaluation (the Estimator's Inference Time)."""
    result = subprocess.run([sys.executable, "train.py", *flags, "--eval-only"], cwd=ROOT,
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit("train.py --eval-only failed:\n" + result.stderr[-3000:])
    return texts / float(re.findall(r"Inference Time : ([\d.]+)s", result.stderr)[-1])


def predict_rate(output_dir, test_file, texts, flags, env):
    """Sentences/s of predict.py --file after start-up: the whole process's time less the
    median of three runs on the file's first row (None when the difference is lost in the
    noise of a shared machine)."""
    command = [sys.executable, "predict.py", "--output-dir", output_dir] + flags
    one_row = test_file + ".one.csv"
    with open(test_file, encoding="utf-8") as f, open(one_row, "w", encoding="utf-8") as g:
        g.writelines(f.readlines()[:2])
    start_up = statistics.median(seconds(command + ["--file", one_row], env)
                                 for _ in range(3))
    difference = seconds(command + ["--file", test_file], env) - start_up
    return texts / difference if difference > 0 else None


def seconds(command, env):
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(command), result.stderr[-3000:]))
    return time.perf_counter() - start


def peer_rate(args, vocab_file, test_file):
    command = [PEER_PYTHON, os.path.join(ROOT, "bench", "peer_hf.py"),
               "--vocab-file", vocab_file, "--eval-file", test_file,
               "--layers", str(args.layers), "--hidden", str(args.hidden),
               "--heads", str(max(1, args.hidden // 64)),
               "--intermediate-size", str(4 * args.hidden),
               "--max-position-embeddings", "512", "--train-steps", "0",
               "--eval-examples", str(args.texts), "--batch-size", str(BATCH),
               "--max-seq-length", str(SEQUENCE)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("the PyTorch peer failed:\n" + result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])["eval"]


def shown(rate):
    return "-" if rate is None else "%.1f" % rate


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--texts", type=int, default=512, help="texts evaluated and predicted")
    args = p.parse_args()
    print("Machine: %s; load average %.1f when started" % (machine()[0], os.getloadavg()[0]))
    peer = os.path.exists(PEER_PYTHON)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        module = random_module(tmp, args.layers, args.hidden, vocab_size=30522)
        for kind in ("snippets", "pairs"):
            output_dir, flags = train(tmp, module, kind, args.texts)
            test_file = flags[flags.index("--test-file") + 1]
            for figure, measure in (
                    ("predict.py --file, ONNX",
                     lambda env: predict_rate(output_dir, test_file, args.texts, [], env)),
                    ("predict.py --file, SavedModel",
                     lambda env: predict_rate(output_dir, test_file, args.texts,
                                              ["--no-onnx"], env)),
                    ("evaluation (train.py --eval-only)",
                     lambda env: evaluation_rate(flags, args.texts, env))):
                before, after = measure(BEFORE), measure(AFTER)
                peer_figure = (peer_rate(args, os.path.join(tmp, "vocab.txt"), test_file)
                               if peer and figure.startswith("evaluation") else None)
                rows.append((kind, figure, before, after, peer_figure))
    print("Model: random BERT, %d layers, hidden %d; sequence %d, batch %d, %d texts; "
          "snippets of 10-40 words, pairs of 5-20 words each"
          % (args.layers, args.hidden, SEQUENCE, BATCH, args.texts))
    if not peer:
        print("No .venv-peer (make bench-peer): no PyTorch figures.")
    print("| texts | figure | padded to %d (sentences/s) | padded to the batch | speed-up "
          "| PyTorch peer, padded to the batch |" % SEQUENCE)
    print("| --- | --- | --- | --- | --- | --- |")
    for kind, figure, before, after, peer_figure in rows:
        print("| %s | %s | %s | %s | %s | %s |" % (
            kind, figure, shown(before), shown(after),
            "%.1fx" % (after / before) if before and after else "-", shown(peer_figure)))
    print("Load average when done: %.1f" % os.getloadavg()[0])


if __name__ == "__main__":
    main()
