"""Whole-process time and peak memory of a one-sentence `python predict.py` on each of its
paths (the export's ONNX copy, the SavedModel, the checkpoint), next to `import tensorflow`
alone, and the throughput of `predict.py --file` on each path. Run by hand, never in tests.

    python bench/predict_startup.py --output-dir OUTPUT_Bert     # a model train.py wrote
    python bench/predict_startup.py --demo                       # trains a random BERT
                                                                 # (6 layers, hidden 384) first
    python bench/predict_startup.py --demo --layers 12 --hidden 768   # BERT-Base's shape
    python bench/predict_startup.py --demo --file-sentences 3000 --real-length \
        --paths onnx,savedmodel         # --file throughput on reviews of IMDB's mean length
    python bench/predict_startup.py --demo --demo-dir /tmp/base --layers 12 --hidden 768 \
        --paths onnx --file-sentences 0 --onnx-grid   # the ONNX path only, before and after
                                        # its optimized copy; threads and spinning on an
                                        # idle and a busy machine; the model kept for reruns

The ONNX path is measured twice: "before" loads model.onnx as predict.py did before it
saved an optimized copy (the bench-only switch IMDB_BERT_BENCH_PLAIN_ONNX=1), "after" is
predict.py as it is (the copy written by one run first, not counted).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from demo_material import generated_reviews, random_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCE = "The film was creative and surprising"


def run(command, stdin=None, env=None):
    """(seconds, peak resident MiB) of one run of `command`, a child process of its own."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdin=stdin, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("failed: %s\n%s" % (" ".join(command), process.stderr.read().decode()[-2000:]))
    process.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def machine():
    """The machine's cores, CPU model and load: figures are only comparable with those."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    return ("Machine: %d cores (os.cpu_count), %s; load average %.1f when started"
            % (os.cpu_count(), model, os.getloadavg()[0]))


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
    p.add_argument("--real-length", action="store_true",
                   help="--file reviews of IMDB's length (mean about 1,300 characters) "
                        "instead of one generated sentence each")
    p.add_argument("--paths", default="onnx,savedmodel,checkpoint",
                   help="the paths of predict.py to measure (default %(default)s)")
    p.add_argument("--demo-dir", help="with --demo: train into this folder, or reuse the "
                                      "model a --demo run trained there")
    p.add_argument("--onnx-grid", action="store_true",
                   help="also the ONNX session's threads and spinning, one sentence and "
                        "--grid-sentences, on an idle machine and with both cores busy")
    p.add_argument("--grid-sentences", type=int, default=96,
                   help="the large work of --onnx-grid (default %(default)s)")
    args = p.parse_args()
    if not args.output_dir and not args.demo:
        p.error("pass --output-dir or --demo")
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        output_dir = args.output_dir or demo_model(args.demo_dir or tmp, args.layers,
                                                   args.hidden)
        predict = [sys.executable, "predict.py", "--output-dir", output_dir]
        paths = {"ONNX copy": [], "SavedModel": ["--no-onnx"],
                 "checkpoint": ["--from-checkpoint"]}
        names = dict(zip(("onnx", "savedmodel", "checkpoint"), paths))
        paths = {names[key]: paths[names[key]] for key in args.paths.split(",")}
        print("One sentence, whole process, median of %d runs (%s, %d cores):"
              % (args.repeat, output_dir, os.cpu_count()))
        commands = {"import tensorflow": ([sys.executable, "-c", "import tensorflow"], None)}
        for name, flags in paths.items():
            if name == "ONNX copy":
                commands["predict.py, ONNX, before"] = (predict + [SENTENCE], PLAIN_ONNX)
                run(predict + [SENTENCE])  # writes the optimized copy if it is not there
                name = "ONNX, after"
            commands["predict.py, " + name] = (predict + flags + [SENTENCE], None)
        for name, (command, env) in commands.items():
            runs = [run(command, env=env) for _ in range(args.repeat)]
            print("  %-28s %6.2f s  (min %.2f)  peak %5.0f MiB" % (
                name, statistics.median(s for s, _ in runs), min(s for s, _ in runs),
                max(m for _, m in runs)))
        if args.file_sentences:
            file_throughput(predict, paths, args.file_sentences, tmp, args.real_length)
        if args.onnx_grid:
            onnx_grid(output_dir, args.grid_sentences, args.repeat)
        print("Load average when done: %.1f" % os.getloadavg()[0])


# predict.py's ONNX path as it was before the optimized copy (onnx_model.PLAIN_ONNX_SWITCH).
PLAIN_ONNX = dict(os.environ, IMDB_BERT_BENCH_PLAIN_ONNX="1")


def demo_model(folder, layers, hidden):
    """The output dir of the --demo model in `folder`: trained there unless a run did."""
    output_dir = os.path.join(folder, "OUTPUT_Bert")
    if os.path.exists(os.path.join(output_dir, "model_settings.json")):
        print("Reusing the demo model %s" % output_dir)
        return output_dir
    return make_demo_model(folder, layers, hidden)


# One ONNX session of the export's optimized copy (written by predict.py first), with the
# threads and spinning given, classifying `count` generated reviews: prints the seconds of
# the session and of the classification, and the CPU seconds of both.
GRID_CHILD = """
import json, random, sys, time
from imdb_bert.features.fast_tokenizer import FastTokenizer, encode_inputs
from imdb_bert.output.files import newest_export
from imdb_bert.serving import onnx_model
from imdb_bert.tools.synthetic_reviews import synthetic_review
output_dir, count, work = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
export_dir, _ = newest_export(output_dir)
rng = random.Random(0)
tokenizer = FastTokenizer(export_dir + "/assets/vocab.txt", True)
inputs = encode_inputs([synthetic_review(rng, i % 2) for i in range(count)], None, 128,
                       tokenizer)
path = onnx_model.optimized_folder(export_dir) + "/" + onnx_model.MODEL_FILE
start, cpu = time.perf_counter(), time.process_time()
model = onnx_model.session(path, work, "none")
loaded = time.perf_counter()
onnx_model.outputs(model, inputs, 32)
print(json.dumps([loaded - start, time.perf_counter() - loaded, time.process_time() - cpu]))
"""


def onnx_grid(output_dir, large, repeat):
    """Session and classification seconds of the ONNX copy for one sentence and `large`
    sentences, with 1 or all intra-op threads and spinning on or off, on an idle machine
    and with a busy loop on every core."""
    print("ONNX session of the optimized copy, median of %d (session s + classifying s, "
          "CPU s), prepacking as predict.py chooses for the size:" % repeat)
    for busy in (False, True):
        with busy_cores(busy):
            print("  %s (load average %.1f)" % ("every core busy with a Python loop" if busy
                                                else "idle but for this bench",
                                                os.getloadavg()[0]))
            for count in (1, large):
                for threads in (1, 0):
                    for spinning in (False, True):
                        work = {"threads": threads, "spinning": spinning,
                                "prepacking": count > 32}
                        runs = [grid_run(output_dir, count, work) for _ in range(repeat)]
                        session, classify, cpu = (statistics.median(r[i] for r in runs)
                                                  for i in range(3))
                        print("    %3d sentences, threads %-3s, spinning %-3s  %6.2f + "
                              "%6.2f s  (CPU %5.1f s)" % (
                                  count, threads or "all", "on" if spinning else "off",
                                  session, classify, cpu))


def grid_run(output_dir, count, work):
    import json
    result = subprocess.run([sys.executable, "-c", GRID_CHILD, output_dir, str(count),
                             json.dumps(work)], cwd=ROOT, check=True, capture_output=True,
                            text=True)
    return json.loads(result.stdout)


@contextmanager
def busy_cores(busy):
    """With `busy`, one Python busy loop per core for the duration (a machine that other
    work shares); they are ended by their PIDs."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(os.cpu_count() if busy else 0)]
    try:
        if loops:
            time.sleep(2)  # the loops running, the load average on its way up
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def file_throughput(predict, paths, count, folder, real_length=False):
    """Sentences per second of predict.py --file with `count` generated reviews, whole
    process and without the one-sentence run's time (start-up); and when its first line
    came (predict.py writes 8 batches at a time)."""
    sys.path.insert(0, ROOT)
    import random
    from imdb_bert.tools.synthetic_reviews import synthetic_review
    rng = random.Random(0)
    reviews = os.path.join(folder, "reviews.txt")
    with open(reviews, "w", encoding="utf-8") as f:
        f.writelines((real_length_review(rng, i % 2) if real_length
                      else synthetic_review(rng, i % 2)).replace("\n", " ") + "\n"
                     for i in range(count))
    with open(reviews, encoding="utf-8") as f:
        mean = statistics.mean(len(line) - 1 for line in f)
    print("predict.py --file with %d generated reviews of %.0f characters on average "
          "(sequence 128, batch 32):" % (count, mean))
    for name, flags in paths.items():
        whole, first_line, cpu, peak = run_streaming(predict + flags + ["--file", reviews])
        one, _ = run(predict + flags + [SENTENCE])
        print("  %-28s %6.1f sentences/s whole process, %6.1f after start-up, first line "
              "after %.1f s, %.0f CPU seconds, peak %5.0f MiB"
              % ("predict.py, " + name, count / whole, count / max(whole - one, 1e-9),
                 first_line, cpu, peak))


def real_length_review(rng, polarity):
    """A review of about IMDB's length (1,300 characters on average, from 250 to 2,350):
    generated sentences joined, the tests' generator (imdb_bert/tools/synthetic_reviews.py)
    as for the rest."""
    sys.path.insert(0, ROOT)
    from imdb_bert.tools.synthetic_reviews import synthetic_review
    target = rng.randint(250, 2350)
    parts = []
    while sum(len(part) + 1 for part in parts) < target:
        parts.append(synthetic_review(rng, polarity))
    return " ".join(parts)


def run_streaming(command):
    """(seconds, seconds to the first line on stdout, CPU seconds, peak resident MiB) of
    `command`. CPU seconds say more than seconds on a machine that other work shares."""
    with tempfile.TemporaryFile() as stderr:  # progress bars: a pipe could fill
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr)
        process.stdout.readline()
        first_line = time.perf_counter() - start
        for _ in process.stdout:
            pass
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            sys.exit("failed: %s\n%s" % (" ".join(command), stderr.read().decode()[-2000:]))
    return seconds, first_line, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


if __name__ == "__main__":
    main()
