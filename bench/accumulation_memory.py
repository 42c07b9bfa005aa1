"""Peak memory and time of training at --max-seq-length 512: batch 32 in one run per step
against 8 x 4 with --gradient-accumulation-steps 4 (the same optimizer steps), on a random
BERT-Mini-shaped module (4 layers, hidden 256, 4 heads, BERT's 30,522-piece vocab). Run by
hand, never in tests; prints a table.

    python bench/accumulation_memory.py
    python bench/accumulation_memory.py --steps 5 --layers 12 --hidden 768   # BERT-Base shape

The peak is the resident-memory high-water mark of the train.py process (a wrapper whose
only child is train.py reads it), so it covers the whole run: training, then a short
evaluation and the export, which need less than training at these batch sizes.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

from demo_material import generated_reviews, random_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK_OF_CHILD = ("import resource, subprocess, sys; "
                 "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
                 "sys.stderr.write(r.stderr); sys.stdout.write(r.stdout); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
                 "sys.exit(r.returncode)")
PROGRESS = re.compile(r"^step (\d+)/\d+  loss [\d.]+  ([\d.]+) examples/s", re.M)
TRAINING_TIME = re.compile(r"Training took time  (\d+):(\d+):([\d.]+)")


def train(module, data_dir, output_dir, batch_size, accumulation_steps, steps, seq_length):
    """(peak resident MB, training seconds, examples/s of the last step) of one run."""
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--bert-hub", module,
               "--data-dir", data_dir, "--output-dir", output_dir,
               "--train-samples", str(32 * steps), "--test-samples", "8", "--epochs", "1",
               "--max-seq-length", str(seq_length), "--batch-size", str(batch_size),
               "--gradient-accumulation-steps", str(accumulation_steps),
               "--save-summary-steps", "1", "--no-onnx"]
    result = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *command], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("train.py failed:\n" + result.stderr[-3000:])
    hours, minutes, seconds = TRAINING_TIME.search(result.stdout).groups()
    progress = PROGRESS.findall(result.stdout)
    return (int(result.stdout.split()[-1]) / 1024,
            int(hours) * 3600 + int(minutes) * 60 + float(seconds), float(progress[-1][1]))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3, help="optimizer steps of 32 reviews")
    p.add_argument("--max-seq-length", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        module = random_module(tmp, layers=args.layers, hidden=args.hidden, vocab_size=30522)
        data_dir = generated_reviews(tmp, 32 * args.steps + 100, 100)
        rows = []
        for batch_size, accumulation_steps in ((32, 1), (8, 4)):
            output_dir = os.path.join(tmp, "OUTPUT_%dx%d" % (batch_size, accumulation_steps))
            rows.append((batch_size, accumulation_steps) + train(
                module, data_dir, output_dir, batch_size, accumulation_steps, args.steps,
                args.max_seq_length))
    print("random BERT %d layers, hidden %d, vocab 30,522; max_seq_length %d; %d optimizer "
          "steps of 32 reviews; %d cores; load average %s"
          % (args.layers, args.hidden, args.max_seq_length, args.steps, os.cpu_count(),
             " ".join("%.2f" % load for load in os.getloadavg())))
    print("%-28s %16s %12s %12s" % ("batch x accumulation", "peak memory", "training",
                                    "examples/s"))
    for batch_size, accumulation_steps, peak, seconds, speed in rows:
        print("%-28s %13.0f MB %10.1f s %12.1f" % (
            "%d x %d" % (batch_size, accumulation_steps), peak, seconds, speed))


if __name__ == "__main__":
    main()
