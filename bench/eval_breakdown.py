"""Where the time of train.py's evaluations (and training segments) goes, phase by phase,
against the bare step. Run by hand, never in tests.

    python bench/eval_breakdown.py            # float32, random 6-layer, hidden-384 BERT
    python bench/eval_breakdown.py --bf16

A child process runs train.py (a few training steps with validation after each
--eval-every-steps, then the calibration and the test evaluation, as train.py does) with
timers wrapped around the phases of Estimator.evaluate and Estimator.train, then times the
bare step (bench/profile_step.py's graph, steady state) in the same process. Prints a
Markdown table, wall and CPU seconds (CPU: all threads of the process; on 2 cores a wall
second holds up to 2 CPU seconds), per evaluation kind:

  graph build       from the call to the session: input_fn, model_fn, Hub module, metrics
  session           session creation: variables restored, local init, readiness checks
  first step        the first batch (grappler rewrites the graph, oneDNN makes its kernels)
  steps             the other full steps, and their rate against the bare step's
  last input read   the run that finds the input ended
  end               final metric values, hooks' end, session closed
  after             after the session: the evaluation's summaries (events file)
  report            test only: train.evaluate's work after estimator.evaluate (CSV, plots,
                    eval_results.json)

"span" is what bench/vs_pytorch.py divides the examples by: the Estimator's "Inference
Time" (session to end).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
SMALL_RUN_SECONDS = 0.005
LATER = {"training": "later training segments", "validation": "later validations"}
ROOT = os.path.dirname(BENCH)


def clocks():
    return time.perf_counter(), time.process_time()


def since(start):
    wall, cpu = clocks()
    return [wall - start[0], cpu - start[1]]


class Recorder:
    """Phase timers of the evaluations and training segments, one record per call. A run
    counts as a step only outside every other phase (a session's own runs while it
    restores, or the hooks' at the end, are their phase's)."""

    def __init__(self):
        self.records = []
        self.current = None
        self.depth = 0  # phases under way

    def wrap(self, owner, name, phase):
        """Time owner.name into the current record's `phase` ("runs": a list of steps)."""
        original = getattr(owner, name)
        recorder = self

        def timed(*args, **kwargs):
            counted = recorder.current is not None and not (phase == "runs" and
                                                            recorder.depth)
            start = clocks()
            ok = False
            recorder.depth += 1
            try:
                result = original(*args, **kwargs)
                ok = True
                return result
            finally:
                recorder.depth -= 1
                if counted:
                    recorder.add(phase, start, ok)
        setattr(owner, name, timed)

    def add(self, phase, start, ok):
        spent = since(start)
        if phase == "runs":
            self.current["runs"].append(spent + [ok])
            return
        self.current.setdefault("starts", {}).setdefault(
            phase, [start[0] - self.current["start"][0], start[1] - self.current["start"][1]])
        old = self.current.get(phase, [0.0, 0.0])
        self.current[phase] = [old[0] + spent[0], old[1] + spent[1]]

    def wrap_call(self, owner, name, kind):
        """A new record for each call of owner.name (an evaluation, a training segment)."""
        original = getattr(owner, name)
        recorder = self

        def recorded(*args, **kwargs):
            record = {"kind": kind(kwargs), "start": clocks(), "runs": []}
            recorder.current = record
            try:
                return original(*args, **kwargs)
            finally:
                record["total"] = since(record["start"])
                del record["start"]
                recorder.records.append(record)
                recorder.current = None
        setattr(owner, name, recorded)


def child(train_argv, bf16, batch_sizes, seq_length, bert_hub, out_path):
    """Run train.py's main with the timers, then time the bare steps; write the records."""
    sys.path[:0] = [ROOT, BENCH]
    import train
    from imdb_bert.compat import tf
    from tensorflow.python.training import monitored_session
    from tensorflow_estimator.python.estimator import estimator as estimator_lib
    from imdb_bert.training import validation
    recorder = Recorder()
    estimator_class = tf.estimator.Estimator
    recorder.wrap_call(estimator_class, "_actual_eval",
                       lambda kwargs: kwargs.get("name") or "test")
    recorder.wrap_call(estimator_class, "_train_model", lambda kwargs: "training")
    recorder.wrap_call(validation.Validation, "evaluate", lambda kwargs: "validation")
    # The Estimator's sessions: created and restored, then the hooks' after_create_session.
    recorder.wrap(monitored_session._MonitoredSession._CoordinatedSessionCreator,
                  "create_session", "session")
    recorder.wrap(monitored_session.ChiefSessionCreator, "create_session", "restore")
    recorder.wrap(monitored_session._MonitoredSession, "__exit__", "end")
    recorder.wrap(estimator_lib, "_write_dict_to_summary", "summaries")
    # The validations' kept graph and session (training/validation.py).
    recorder.wrap(validation.KeptEvaluation, "__init__", "graph")
    recorder.wrap(validation.KeptEvaluation, "restore", "session")
    recorder.wrap(validation.KeptEvaluation, "results", "end")
    recorder.wrap(tf.Session, "run", "runs")
    report = {}
    evaluate = train.evaluate

    def timed_evaluate(*args, **kwargs):
        start = clocks()
        evaluate(*args, **kwargs)
        report["test"] = since(start)
    train.evaluate = timed_evaluate
    code = train.main(train_argv)
    if code:
        sys.exit("train.py exited with %s" % code)
    bare = {name: bare_step_seconds(bert_hub, name == "training", bf16, batch_sizes[name],
                                    seq_length) for name in ("evaluation", "training")}
    with open(out_path, "w") as f:
        json.dump({"records": recorder.records, "report": report, "bare": bare}, f)


def bare_step_seconds(bert_hub, training, bf16, batch_size, seq_length, steps=6):
    """Seconds of one steady-state step of bench/profile_step.py's graph, with the session
    config train.py gives training or evaluations."""
    from profile_step import build
    from imdb_bert import device
    from imdb_bert.compat import tf
    session_config = device.session_config(bf16=bf16)[0]
    if not training:
        session_config = device.evaluation_session_config(session_config)
    with tf.Graph().as_default():
        fetch, feed = build(bert_hub, training, batch_size, seq_length)
        with tf.Session(config=session_config) as sess:
            sess.run([tf.global_variables_initializer(), tf.tables_initializer()])
            for _ in range(2):
                sess.run(fetch, feed)
            start = time.perf_counter()
            for _ in range(steps):
                sess.run(fetch, feed)
            return (time.perf_counter() - start) / steps


def phases(record):
    """[(phase, [wall, cpu])] of one record; the end holds its last input read apart."""
    # Runs of a few milliseconds outside the loop (the Estimator reading the global step)
    # are no steps: they count in "after".
    runs = [run for run in record["runs"] if run[0] >= SMALL_RUN_SECONDS or not run[2]]
    zero = [0.0, 0.0]
    first = runs[0][:2] if runs else zero
    full = [run for run in runs[1:] if run[2]]
    ended = [run for run in runs[1:] if not run[2]]
    steps = [sum(run[0] for run in full), sum(run[1] for run in full)]
    last = [sum(run[0] for run in ended), sum(run[1] for run in ended)]
    session = record.get("session", zero)
    restore = record.get("restore", session)
    hooks = [session[0] - restore[0], session[1] - restore[1]]
    end = record.get("end", zero)
    if "graph" in record:  # the kept evaluation's graph and session, built once
        build = record["graph"]
    else:  # the Estimator's: from its call to the session
        build = record.get("starts", {}).get("session", [0.0, 0.0])
    rows = [("graph build", build), ("session and restore", restore),
            ("hooks' set-up", hooks), ("first step", first),
            ("steps (%d)" % len(full), steps), ("last input read", last), ("end", end)]
    rows.append(("after", [record["total"][i] - sum(row[1][i] for row in rows)
                           for i in (0, 1)]))
    return rows, len(full), steps[0]


def mean_records(records):
    """One record averaging `records` of a kind (same number of runs each)."""
    if len(records) == 1:
        return records[0]
    count = len(records)

    def average(key):
        values = [record.get(key, [0.0, 0.0]) for record in records]
        return [sum(v[0] for v in values) / count, sum(v[1] for v in values) / count]
    mean = {key: average(key) for key in ("total", "session", "restore", "end", "graph")
            if key in records[0]}
    starts = [record.get("starts", {}).get("session", [0.0, 0.0]) for record in records]
    mean["starts"] = {"session": [sum(start[0] for start in starts) / count,
                                  sum(start[1] for start in starts) / count]}
    runs = min(len(record["runs"]) for record in records)
    mean["runs"] = [[sum(r["runs"][i][0] for r in records) / count,
                     sum(r["runs"][i][1] for r in records) / count,
                     all(r["runs"][i][2] for r in records)] for i in range(runs)]
    return mean


def table(results, batch_sizes, examples):
    """Markdown rows: phase, then wall / CPU seconds (and % of the call's wall) per kind."""
    bare = results["bare"]
    kinds = {}
    for record in results["records"]:
        kind = record["kind"]
        if kind in ("training", "validation") and kind in kinds:
            kind = LATER[kind]  # the first segment saves step 0, the first validation
        kinds.setdefault(kind, []).append(record)  # builds the graph and session it keeps
    columns = [kind for kind in ("training", LATER["training"], "validation",
                                 LATER["validation"], "calibration", "test") if kind in kinds]
    computed = {}
    for kind in columns:
        record = mean_records(kinds[kind])
        bare_seconds = bare["training" if "training" in kind else "evaluation"]
        rows, steps, steps_wall = phases(record)
        if kind == "test" and "test" in results["report"]:
            rows.append(("report", [results["report"]["test"][i] - record["total"][i]
                                    for i in (0, 1)]))
        computed[kind] = (record, rows, steps, steps_wall, bare_seconds, len(kinds[kind]))
    lines = ["| phase | " + " | ".join(
        "%s%s: wall s (%% of it) | CPU s" % (kind, " (mean of %d)" % computed[kind][5]
                                            if computed[kind][5] > 1 else "")
        for kind in columns) + " |", "| --- |" + " --- | --- |" * len(columns)]
    names = []
    for kind in columns:
        for name, _ in computed[kind][1]:
            key = name.split(" (")[0]
            if key not in names:
                names.append(key)
    for key in names:
        cells = []
        for kind in columns:
            record, rows, *_ = computed[kind]
            found = [value for name, value in rows if name.split(" (")[0] == key]
            if not found:
                cells += ["", ""]
                continue
            wall, cpu = found[0]
            total = record["total"][0] + (rows[-1][1][0] if rows[-1][0] == "report" else 0)
            cells += ["%.2f (%.0f %%)" % (wall, 100 * wall / total),
                      "" if cpu is None else "%.2f" % cpu]
        label = key if key != "steps" else "steps after the first"
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    lines.append("| whole call | " + " | ".join(
        "%.2f | %.2f" % tuple(computed[kind][0]["total"]) for kind in columns) + " |")
    notes, spans = [], {}
    for kind in columns:
        record, rows, steps, steps_wall, bare_seconds, _ = computed[kind]
        if steps:
            notes.append("%s: steps after the first at %.1f examples/s, the bare step %.1f "
                         "(%.2fx)" % (kind, steps * batch_sizes[kind] / steps_wall,
                                      batch_sizes[kind] / bare_seconds,
                                      bare_seconds * steps / steps_wall))
        if "training" not in kind:
            span = sum(value[0] for name, value in rows
                       if name.split(" (")[0] in ("first step", "steps",
                                                  "last input read", "end",
                                                  "session and restore", "hooks' set-up"))
            count = examples[kind]
            spans[kind] = count / span
            notes.append("%s: span (session to end) %.2f s, %d examples: %.1f examples/s"
                         % (kind, span, count, count / span))
    return "\n".join(lines), notes, spans


def peer_eval_rate(args, bert_hub, data_dir):
    """The peer's JSON line (its evaluation of the test reviews; two training steps, the
    least it times), run as bench/vs_pytorch.py runs it."""
    from vs_pytorch import run_peer
    peer_args = argparse.Namespace(**vars(args))
    peer_args.train_steps = 2
    return run_peer(peer_args, os.path.join(os.path.dirname(bert_hub), "vocab.txt"),
                    data_dir, args.bf16)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--train-steps", type=int, default=4)
    p.add_argument("--eval-every-steps", type=int, default=2)
    p.add_argument("--validation-samples", type=int, default=256)
    p.add_argument("--test-samples", type=int, default=512)
    p.add_argument("--peer", action="store_true",
                   help="also run the PyTorch peer (bench/peer_hf.py, make bench-peer) on the "
                        "test reviews and compare each evaluation's span with its rate")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        out_path, bert_hub, *train_argv = args.child
        child(train_argv, args.bf16, {"training": args.batch_size,
                                      "evaluation": args.batch_size},
              args.max_seq_length, bert_hub, out_path)
        return
    sys.path.insert(0, BENCH)
    from demo_material import generated_reviews, random_module
    from vs_pytorch import machine
    train_samples = args.train_steps * args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        bert_hub = random_module(tmp, args.layers, args.hidden, vocab_size=30522)
        data_dir = generated_reviews(tmp, train_samples + args.validation_samples,
                                     args.test_samples)
        out_path = os.path.join(tmp, "phases.json")
        train_argv = ["--bert-hub", bert_hub, "--data-dir", data_dir,
                      "--output-dir", os.path.join(tmp, "out"),
                      "--train-samples", str(train_samples),
                      "--validation-samples", str(args.validation_samples),
                      "--eval-every-steps", str(args.eval_every_steps),
                      "--test-samples", str(args.test_samples), "--epochs", "1",
                      "--batch-size", str(args.batch_size),
                      "--max-seq-length", str(args.max_seq_length), "--no-onnx"]
        if args.bf16:
            train_argv.append("--bf16")
        command = [sys.executable, os.path.abspath(__file__), "--max-seq-length",
                   str(args.max_seq_length), "--batch-size", str(args.batch_size)]
        command += (["--bf16"] if args.bf16 else []) + ["--child", out_path, bert_hub,
                                                        *train_argv]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit("the timed train.py failed:\n" + result.stderr[-3000:])
        with open(out_path) as f:
            results = json.load(f)
        peer = peer_eval_rate(args, bert_hub, data_dir) if args.peer else None
    print("Machine: %s; load average %s" % (machine()[0],
                                             " ".join("%.2f" % x for x in os.getloadavg())))
    print("Model: random BERT, %d layers, hidden %d; sequence %d, batch %d; %s; %d "
          "training steps, validation of %d reviews every %d steps, test %d reviews"
          % (args.layers, args.hidden, args.max_seq_length, args.batch_size,
             "bf16" if args.bf16 else "float32", args.train_steps, args.validation_samples,
             args.eval_every_steps, args.test_samples))
    kinds = ("training", LATER["training"], "validation", "later validations", "calibration",
             "test")
    rows, notes, spans = table(results, dict.fromkeys(kinds, args.batch_size),
                        {"validation": args.validation_samples,
                         "later validations": args.validation_samples,
                         "calibration": args.validation_samples, "test": args.test_samples})
    print(rows)
    for note in notes:
        print("- " + note)
    if peer:
        print("- the PyTorch peer's evaluation (torch %s, %d threads): %.1f examples/s; "
              "ratios: %s" % (peer["torch"], peer["threads"], peer["eval"], ", ".join(
                  "%s %.2fx" % (kind, rate / peer["eval"]) for kind, rate in spans.items())))


if __name__ == "__main__":
    main()
