"""Where a one-sentence `python predict.py` on the ONNX path spends its time: each step
timed in a child process that takes the steps predict.py takes, in its order, before and
after the optimized copy (the bench-only switch IMDB_BERT_BENCH_PLAIN_ONNX=1 loads
model.onnx as before); median of --repeat runs. Run by hand, never in tests.

    python bench/predict_breakdown.py OUTPUT_DIR        # a folder train.py wrote, e.g. the
                                                        # one bench/predict_startup.py
                                                        # --demo --demo-dir DIR trained
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCE = "The film was creative and surprising"

# predict.py's steps for one sentence on the ONNX path, each timed; prints the times as
# JSON. The lock read is timed on its own: predict.py reads /proc/locks only for a
# checkpoint short of its planned step.
CHILD = """
import time
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import numpy
mark("import numpy")
import onnxruntime
mark("import onnxruntime")
import tokenizers
mark("import tokenizers")
import json, os, sys
sys.argv = ["predict.py", "--output-dir", sys.argv[1], sys.argv[2]]
import predict
mark("import predict.py and its modules")
from imdb_bert.output import files, run_state
args = predict.parse_args()
checkpoint = files.best_checkpoint(args.output_dir) or files.latest_checkpoint(args.output_dir)
settings = predict.model_settings(args)
mark("checkpoint, model_settings.json")
run_state.check_trained(args.output_dir, checkpoint, settings, False)
mark("step-0 check (check_trained)")
run_state.lock_holder(args.output_dir)
mark("lock read (unfinished runs only)")
predict.temperature(args, checkpoint, settings)
export_dir, _ = files.newest_export(args.output_dir)
mark("calibration.json, export_info.json")
from imdb_bert.features.fast_tokenizer import FastTokenizer, encode_inputs
from imdb_bert.serving import onnx_model
tokenizer = FastTokenizer(os.path.join(export_dir, "assets", "vocab.txt"), True)
mark("tokenizer (vocab.txt)")
model = onnx_model.load(export_dir, 1)
mark("ONNX Runtime session")
inputs = encode_inputs([args.sentences[0]], None, settings["max_seq_length"], tokenizer)
onnx_model.outputs(model, inputs, 32)
mark("classifying the sentence")
print(json.dumps([(name, end - begin) for (_, begin), (name, end) in zip(marks, marks[1:])]))
"""


def breakdown(output_dir, env):
    """(whole-process seconds, [(step, seconds)]) of one run of CHILD."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, output_dir, SENTENCE], cwd=ROOT,
                            env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, json.loads(result.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output_dir")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print("Load average %.1f when started, %d cores" % (os.getloadavg()[0], os.cpu_count()))
    breakdown(args.output_dir, None)  # writes the optimized copy if it is not there
    columns = {"before": dict(os.environ, IMDB_BERT_BENCH_PLAIN_ONNX="1"), "after": None}
    runs = {name: [breakdown(args.output_dir, env) for _ in range(args.repeat)]
            for name, env in columns.items()}
    print("| step (median of %d, seconds) | before | after |" % args.repeat)
    print("| --- | --- | --- |")
    steps = [name for name, _ in runs["after"][0][1]]
    for i, step in enumerate(steps):
        print("| %s | %s |" % (step, " | ".join(
            "%.3f" % statistics.median(steps_[i][1] for _, steps_ in runs[name])
            for name in columns)))
    print("| Python's own start and exit (the rest) | %s |" % " | ".join(
        "%.3f" % statistics.median(whole - sum(s for _, s in steps_)
                                   for whole, steps_ in runs[name]) for name in columns))
    print("| whole process | %s |" % " | ".join(
        "%.3f" % statistics.median(whole for whole, _ in runs[name]) for name in columns))
    print("Load average when done: %.1f" % os.getloadavg()[0])


if __name__ == "__main__":
    main()
