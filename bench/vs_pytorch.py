"""Training and evaluation speed of this project against its PyTorch peer (Hugging Face
BertForSequenceClassification, bench/peer_hf.py), same CPU, model shape, sequence length,
batch and generated reviews, float32 and bf16, back to back in one run. This project runs
twice: as it is, and "before", with IMDB_BERT_FUSION=off (evaluations without the oneDNN
fusion of imdb_bert/model/onednn_fusion.py, training with bert's element-wise update instead
of the fused one of imdb_bert/model/optimizer.py). Run by hand, never in tests; the peer lives in
a virtualenv of its own: make bench-peer.

    python bench/vs_pytorch.py                     # random 6-layer, hidden-384 BERT
    python bench/vs_pytorch.py --layers 12 --hidden 768 --train-steps 20

bf16 is measured only on CPUs with AVX512_BF16 or AMX (else float32 only, said so).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from demo_material import generated_reviews, random_module
from train_speed import run_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PYTHON = os.path.join(ROOT, ".venv-peer", "bin", "python")


def machine():
    """'N cores, <CPU model>, flags: ...' from /proc/cpuinfo."""
    model, flags = "unknown CPU", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    shown = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    return "%d cores, %s, flags: %s" % (os.cpu_count(), model, " ".join(shown)), flags


def run_peer(args, vocab_file, data_dir, bf16):
    command = [PEER_PYTHON, os.path.join(ROOT, "bench", "peer_hf.py"),
               "--vocab-file", vocab_file, "--data-dir", data_dir,
               "--layers", str(args.layers), "--hidden", str(args.hidden),
               "--heads", str(max(1, args.hidden // 64)),
               "--intermediate-size", str(4 * args.hidden),
               "--max-position-embeddings", "512", "--train-steps", str(args.train_steps),
               "--eval-examples", str(args.test_samples), "--batch-size", str(args.batch_size),
               "--max-seq-length", str(args.max_seq_length)] + (["--bf16"] if bf16 else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("the PyTorch peer failed:\n" + result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--train-steps", type=int, default=40)
    p.add_argument("--test-samples", type=int, default=512, help="evaluated examples")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    args = p.parse_args()
    if not os.path.exists(PEER_PYTHON):
        sys.exit("The PyTorch peer's virtualenv is missing: run make bench-peer first.")
    description, flags = machine()
    precisions = ["float32"] + (["bf16"] if flags & {"avx512_bf16", "amx_bf16"} else [])
    args.learning_rate = 2e-5
    args.train_samples = args.train_steps * args.batch_size  # one epoch of train_steps
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        args.bert_hub = random_module(tmp, args.layers, args.hidden, vocab_size=30522)
        args.data_dir = generated_reviews(tmp, args.train_samples, args.test_samples)
        for precision in precisions:
            bf16 = precision == "bf16"
            switch = ["--bf16"] if bf16 else []
            before = run_train(args, os.path.join(tmp, precision + "-before"), switch,
                               dict(os.environ, IMDB_BERT_FUSION="off"))
            ours = run_train(args, os.path.join(tmp, precision), switch)
            peer = run_peer(args, os.path.join(tmp, "vocab.txt"), args.data_dir, bf16)
            rows["training, " + precision] = (before[0], ours[0], peer["train"])
            rows["evaluation, " + precision] = (before[1], ours[1], peer["eval"])
    print("Machine: %s" % description)
    print("Model: random BERT, %d layers, hidden %d, vocab 30,522; sequence %d, batch %d, "
          "%d training steps, %d examples evaluated; peer: torch %s, %d threads"
          % (args.layers, args.hidden, args.max_seq_length, args.batch_size,
             args.train_steps, args.test_samples, peer["torch"], peer["threads"]))
    if len(precisions) == 1:
        print("No AVX512_BF16/AMX on this CPU: float32 only.")
    print("| figure | before: IMDB_BERT_FUSION=off (examples/s) | this project | PyTorch peer "
          "| ratio before | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for figure, (before, ours, theirs) in rows.items():
        print("| %s | %.1f | %.1f | %.1f | %.2fx | %.2fx |"
              % (figure, before, ours, theirs, before / theirs, ours / theirs))


if __name__ == "__main__":
    main()
