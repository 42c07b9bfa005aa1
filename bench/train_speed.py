"""Training and evaluation speed of train.py, float32 against --bf16, measured in one run on
the same data. Run by hand, never in tests.

    python bench/train_speed.py                                # random 6-layer, hidden-384
                                                               # BERT on generated reviews
    python bench/train_speed.py --bert-hub DIR --data-dir data # your module and aclImdb

Prints the device, train and eval examples/s of each run, the bf16/float32 ratio and both
eval accuracies.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from demo_material import generated_reviews, random_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_train(args, output_dir, extra, env=None):
    command = [sys.executable, "train.py", "--bert-hub", args.bert_hub, "--data-dir",
               args.data_dir, "--output-dir", output_dir, "--train-samples",
               str(args.train_samples), "--test-samples", str(args.test_samples),
               "--epochs", "1", "--batch-size", str(args.batch_size),
               "--max-seq-length", str(args.max_seq_length), "--save-summary-steps", "5",
               "--learning-rate", str(args.learning_rate), *extra]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit("train.py failed:\n" + result.stderr[-3000:])
    # The last progress line's rate covers the whole run after the first step's set-up.
    train_rate = float(re.findall(r"([\d.]+) examples/s", result.stdout)[-1])
    inference_seconds = float(re.findall(r"Inference Time : ([\d.]+)s", result.stderr)[-1])
    with open(os.path.join(output_dir, "eval_results.json")) as f:
        accuracy = json.load(f)["eval_accuracy"]
    device = result.stdout.split("\n")[1]
    notes = [line for line in result.stdout.splitlines() if line.startswith("--bf16")]
    return train_rate, args.test_samples / inference_seconds, accuracy, device, notes


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bert-hub", help="Hub module; default a random 6-layer, hidden-384 BERT")
    p.add_argument("--data-dir", help="folder holding aclImdb/; default generated reviews")
    p.add_argument("--train-samples", type=int, default=992, help="31 steps at batch 32")
    p.add_argument("--test-samples", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args.bert_hub = args.bert_hub or random_module(tmp)
        args.data_dir = args.data_dir or generated_reviews(tmp, args.train_samples,
                                                           args.test_samples)
        results = {}
        for name, extra in (("float32", []), ("bf16", ["--bf16"])):
            results[name] = run_train(args, os.path.join(tmp, name), extra)
    print("Device: %s" % results["float32"][3])
    for note in results["bf16"][4]:
        print(note)
    print("%-8s %12s %12s %10s" % ("run", "train ex/s", "eval ex/s", "accuracy"))
    for name, (train_rate, eval_rate, accuracy, _, _) in results.items():
        print("%-8s %12.1f %12.1f %10.4f" % (name, train_rate, eval_rate, accuracy))
    print("bf16 / float32 training speed: %.2fx"
          % (results["bf16"][0] / results["float32"][0]))


if __name__ == "__main__":
    main()
