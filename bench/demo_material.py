"""What the benchmarks run on when given no module or data: a random BERT Hub module from
the project's exporter and generated reviews in aclImdb's layout (the tests' generator)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_module(folder, layers=6, hidden=384, vocab_size=None):
    """A random BERT with `layers` layers of width `hidden` (one head per 64), in
    folder/module; returns its path. With `vocab_size` (BERT's is 30,522) the exporter's
    tiny vocab is padded with [unusedN] pieces to that size, for an embedding matrix of
    real size."""
    path = os.path.join(folder, "module")
    extra = []
    if vocab_size:
        # The tiny vocab comes from a child process: importing the exporter here would load
        # TensorFlow into the benchmark's own process, whose memory its children's peak
        # figures would then start from (Linux keeps the high-water mark across fork+exec).
        pieces = subprocess.run(
            [sys.executable, "-c", "from imdb_bert.tools.make_hub_module import tiny_vocab; "
             "print('\\n'.join(tiny_vocab()))"], cwd=ROOT, check=True, capture_output=True,
            text=True).stdout.splitlines()
        pieces += ["[unused%d]" % i for i in range(vocab_size - len(pieces))]
        extra = ["--vocab-file", os.path.join(folder, "vocab.txt")]
        with open(extra[1], "w") as f:
            f.write("\n".join(pieces) + "\n")
    subprocess.run([sys.executable, "-m", "imdb_bert.tools.make_hub_module", "--random",
                    "--layers", str(layers), "--hidden", str(hidden), "--heads", str(max(1, hidden // 64)),
                    *extra, path], cwd=ROOT, check=True, capture_output=True)
    return path


def generated_reviews(folder, train_reviews, test_reviews):
    """folder/data holding aclImdb/ with about that many reviews per split (half of each
    class); returns folder/data, what --data-dir takes. Each review runs past 512 word
    pieces, so every batch fills --max-seq-length (up to 512) as batches of the real
    reviews nearly always do: padding to the batch then trims nothing, on either side of
    a comparison. Short texts have a benchmark of their own, short_texts.py."""
    sys.path.insert(0, ROOT)
    from imdb_bert.tools.synthetic_reviews import make_imdb_tree
    return make_imdb_tree(os.path.join(folder, "data"), filler_words=(520, 700), per_class={
        "train": (train_reviews + 1) // 2, "test": (test_reviews + 1) // 2})
