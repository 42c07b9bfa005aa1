"""Loading the user's files (imdb_bert/data/text_files.py): time and peak memory for 1,000,000
rows of CSV and of JSON Lines, texts of generated review-like words with the messy parts
real texts hold (quotes, commas, newlines inside quotes, accents, emoji, U+0085). Each load
runs in a child process of its own, whose peak resident memory is its ru_maxrss. Run by
hand, never in tests.

    python bench/load_files.py                       # 1,000,000 rows of ~600 characters
    python bench/load_files.py --rows 100000 --words 20
"""
import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ["the", "movie", "film", "story", "plot", "acting", "was", "great", "awful", "and",
         "caf\u00e9", "na\u00efve", "\U0001F600", "it's", "10/10", "<br />", "really"]
MESSY = ['"quoted, with a comma"', "a line\nbreak", "next\x85line", "tab\there"]
# The load runs in a grandchild; its parent prints the grandchild's peak (ru_maxrss, KiB),
# so each file's figure is its own.
PEAK_OF_CHILD = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
LOAD = ("import sys, time; sys.path.insert(0, %r); from imdb_bert.data import text_files; "
        "start = time.perf_counter(); df = text_files.read_file(sys.argv[1], 'sentence', "
        "'polarity'); print(time.perf_counter() - start, len(df))" % ROOT)


def write_files(folder, rows, words, seed=0):
    """data.csv and data.jsonl with the same `rows` rows; returns their paths."""
    rng = random.Random(seed)
    paths = [os.path.join(folder, "data.csv"), os.path.join(folder, "data.jsonl")]
    with open(paths[0], "w", encoding="utf-8", newline="") as table, \
            open(paths[1], "w", encoding="utf-8") as lines:
        writer = csv.writer(table)
        writer.writerow(["sentence", "polarity"])
        for _ in range(rows):
            text = " ".join(rng.choice(WORDS) for _ in range(words)) + " " + rng.choice(MESSY)
            label = rng.choice(["pos", "neg", "neutral"])
            writer.writerow([text, label])
            lines.write(json.dumps({"sentence": text, "polarity": label},
                                   ensure_ascii=False) + "\n")
    return paths


def measure(path):
    """(seconds, rows, peak MiB) of read_file(path) in a process of its own."""
    result = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, sys.executable, "-c", LOAD,
                             path], capture_output=True, text=True, check=True)
    seconds, rows, peak = result.stdout.split()
    return float(seconds), int(rows), int(peak) / 1024


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000000)
    parser.add_argument("--words", type=int, default=100, help="words per text")
    args = parser.parse_args()
    print("Machine: %s, %d cores (nproc), Python %s"
          % (cpu_model(), os.cpu_count(), platform.python_version()))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        paths = write_files(folder, args.rows, args.words)
        print("Wrote %d rows in %.0f s" % (args.rows, time.perf_counter() - start))
        for path in paths:
            seconds, rows, peak = measure(path)
            print("%s: %.0f MB, %d rows loaded in %.1f s (%.0f rows/s), peak memory %.0f MiB"
                  % (os.path.basename(path), os.path.getsize(path) / 1e6, rows, seconds,
                     rows / seconds, peak))


if __name__ == "__main__":
    main()
