"""Training examples/s of train.py --horovod with 1 and with 2 processes (horovodrun, Gloo),
each process at the same --batch-size, so 2 processes train global batches twice as large.
Run by hand, never in tests; needs Horovod (make horovod).

    python bench/horovod_speed.py                       # random 6-layer, hidden-384 BERT
                                                        # on generated reviews
    python bench/horovod_speed.py --bert-hub DIR --data-dir data --processes 1 4

On a GPU machine each process gets a GPU of its own, and the ratio is the multi-GPU
speed-up. On a CPU machine the processes share the same cores, so the ratio shows what the
all-reduce and the sharing cost, not a speed-up.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

from demo_material import generated_reviews, random_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def run_train(args, processes, output_dir, embedding_allreduce):
    command = [HOROVODRUN, "-np", str(processes), "-H", "localhost:%d" % processes, "--gloo",
               sys.executable, "train.py", "--horovod", "--bert-hub", args.bert_hub,
               "--data-dir", args.data_dir, "--output-dir", output_dir,
               "--train-samples", str(args.train_samples), "--test-samples", "32",
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--max-seq-length", str(args.max_seq_length), "--save-summary-steps", "5"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=dict(
        os.environ, IMDB_BERT_EMBEDDING_ALLREDUCE=embedding_allreduce))
    if result.returncode != 0:
        sys.exit("horovodrun -np %d failed:\n%s" % (processes, result.stderr[-3000:]))
    # The last progress line's rate covers the whole run after the first step's set-up;
    # it counts the global batch (all processes).
    lines = re.findall(r"step (\d+)/\d+  loss [\d.]+  ([\d.]+) examples/s", result.stdout)
    step, rate = lines[-1]
    device = re.search(r"<stdout>:(Training on .*)", result.stdout).group(1)
    return int(step), float(rate), device


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bert-hub", help="Hub module; default a random 6-layer, hidden-384 BERT")
    p.add_argument("--data-dir", help="folder holding aclImdb/; default generated reviews")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--train-samples", type=int, default=1024)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16, help="per process")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=30522,
                   help="of the random module (BERT-Base's); its embedding gradient is what "
                        "--embedding-allreduce compares")
    p.add_argument("--embedding-allreduce", nargs="+", default=["sparse", "dense"],
                   help="how the embedding gradient crosses processes (optimizer.py); each "
                        "is measured with the largest number of processes")
    args = p.parse_args()
    if not os.path.exists(HOROVODRUN):
        sys.exit("horovodrun is not installed next to %s; run make horovod first."
                 % sys.executable)
    with tempfile.TemporaryDirectory() as tmp:
        args.bert_hub = args.bert_hub or random_module(tmp, vocab_size=args.vocab_size)
        args.data_dir = args.data_dir or generated_reviews(tmp, args.train_samples, 32)
        most = max(args.processes)
        runs = [(n, args.embedding_allreduce[0]) for n in args.processes] + [
            (most, mode) for mode in args.embedding_allreduce[1:]]
        results = {(n, mode): run_train(args, n, os.path.join(tmp, "run-%d-%s" % (n, mode)),
                                        mode) for n, mode in runs}
    print("Device: %s; %d cores" % (next(iter(results.values()))[2], os.cpu_count()))
    print("%-10s %-10s %12s %8s %14s" % ("processes", "embedding", "global batch", "steps",
                                         "examples/s"))
    for (n, mode), (steps, rate, _) in results.items():
        print("%-10d %-10s %12d %8d %14.1f" % (n, mode, n * args.batch_size, steps, rate))
    first = runs[0]
    for run in runs[1:]:
        print("%d processes (%s) / %d (%s): %.2fx examples/s"
              % (run + first + (results[run][1] / results[first][1],)))


if __name__ == "__main__":
    main()
