"""train.py --horovod: two processes on the CPU (gloo) against one, on the tiny module.

tests/horovod_train.py turns the head's dropout off and clips at a norm of 0.01, which the
tiny model's gradients exceed, so that the two runs compute the same losses only if the
gradients are averaged across the processes before clipping, and each process reads its
own half of every global batch. A wrong variant (no all-reduce, both processes reading the
same half, or clipping before averaging) changes the loss of step 3 by more than 1e-2.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from conftest import ROOT, latest_step
from test_own_data import BINARY, rows, write_jsonl, write_table

from imdb_bert.compat import run_classifier, tf
from imdb_bert.features import feature_cache
from imdb_bert.training import runtime

HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
HOROVOD_TRAIN = os.path.join(ROOT, "tests", "horovod_train.py")
PROGRESS = re.compile(r"step (\d+)/(\d+)  loss ([\d.]+) ")
DIGEST = re.compile(r"Horovod process (\d) of (\d): global step (\d+), weights sha256 (\w+)")


def args_for(imdb_dir, tiny_module, output_dir, batch_size, epochs="1"):
    # 40 reviews at a global batch of 8: 5 steps an epoch; a progress line every step.
    return ["--horovod", "--data-dir", imdb_dir, "--bert-hub", tiny_module,
            "--output-dir", output_dir, "--train-samples", "40", "--test-samples", "20",
            "--max-seq-length", "32", "--batch-size", str(batch_size),
            "--learning-rate", "1e-3", "--warmup-proportion", "0", "--epochs", epochs,
            "--save-summary-steps", "1", "--no-onnx"]  # no ONNX copy: not tested here


def horovodrun_command(args):
    return [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
            sys.executable, HOROVOD_TRAIN, *args]


def environment(tmp_dir):
    # The workers' temporary model dirs go here, so the tests can see they are removed.
    # The processes train on the CPU even on a GPU machine (which may have one GPU only),
    # where the tests' exact comparisons hold.
    return dict(os.environ, TMPDIR=tmp_dir, CUDA_VISIBLE_DEVICES="")


def losses(output):
    return [(int(step), float(loss)) for step, _, loss in PROGRESS.findall(output)]


def digests(output):
    return sorted(DIGEST.findall(output))


@pytest.fixture(scope="module")
def two_processes(imdb_dir, tiny_module, tmp_path_factory):
    """(output dir, temp dir, completed horovodrun) of a 2-process run, batch 4 each."""
    output_dir = str(tmp_path_factory.mktemp("horovod") / "OUTPUT_Bert")
    tmp_dir = str(tmp_path_factory.mktemp("tmp"))
    result = subprocess.run(
        horovodrun_command(args_for(imdb_dir, tiny_module, output_dir, 4)), cwd=ROOT,
        env=environment(tmp_dir), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return output_dir, tmp_dir, result


def test_two_processes_end_at_the_planned_step_with_identical_weights(two_processes):
    output_dir, _, result = two_processes
    output = result.stdout + result.stderr
    with open(os.path.join(output_dir, "eval_results.json")) as f:
        assert json.load(f)["global_step"] == 5  # 40 reviews / (4 x 2 processes)
    reports = digests(output)
    assert [(rank, size, step) for rank, size, step, _ in reports] == [
        ("0", "2", "5"), ("1", "2", "5")]
    assert reports[0][3] == reports[1][3]


def test_only_process_0_writes_and_reports(two_processes):
    output_dir, tmp_dir, result = two_processes
    names = os.listdir(output_dir)
    assert len([name for name in names if name.startswith("events.out.tfevents")]) == 1
    assert {"model.ckpt-5.index", "eval_results.json", "test_predictions.csv",
            "roc_curve.png", "export"} <= set(names)
    assert not [name for name in names if ".tmp-" in name]
    assert os.listdir(tmp_dir) == []  # process 1's model dir is gone
    assert "[1]<stdout>" not in result.stdout  # process 0 reports for both
    assert re.search(r"\[0\]<stdout>:Horovod: 2 processes, 4 reviews each of every global "
                     r"batch of 8", result.stdout)
    with open(os.path.join(output_dir, "run_info.json")) as f:
        assert json.load(f)["processes"] == 2


def test_two_processes_compute_the_losses_of_one_on_the_same_global_batches(
        two_processes, imdb_dir, tiny_module, tmp_path):
    one = subprocess.run(  # on the CPU, as the two processes (environment())
        [sys.executable, HOROVOD_TRAIN,
         *args_for(imdb_dir, tiny_module, str(tmp_path / "one"), 8)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert one.returncode == 0, one.stderr[-5000:]
    assert [report[:3] for report in digests(one.stderr)] == [("0", "1", "5")]
    one_losses = losses(one.stdout)
    two_losses = losses(two_processes[2].stdout)
    assert [step for step, _ in one_losses] == [1, 2, 3, 4, 5]
    assert [step for step, _ in two_losses] == [1, 2, 3, 4, 5]
    values = [loss for _, loss in one_losses]
    assert (max(values) - min(values)) / values[0] > 1e-2  # training moves the loss
    for (step, loss_one), (_, loss_two) in zip(one_losses, two_losses):
        assert loss_two == pytest.approx(loss_one, rel=1e-4), "step %d" % step


def test_reruns_resume_from_process_0s_checkpoint(two_processes, imdb_dir, tiny_module,
                                                  tmp_path):
    output_dir = str(tmp_path / "OUTPUT_Bert")
    shutil.copytree(two_processes[0], output_dir)
    done = subprocess.run(
        horovodrun_command(args_for(imdb_dir, tiny_module, output_dir, 4)), cwd=ROOT,
        env=environment(str(tmp_path)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert "is at step 5 of 5: nothing left to train" in done.stdout
    assert "'global_step': 5" in done.stdout

    # A second epoch: process 0 restores step 5, process 1 (no checkpoint of its own)
    # gets the same variables by the broadcast. Another --epochs is refused on resume,
    # except for a folder written before epochs were recorded, as here.
    settings_path = os.path.join(output_dir, "model_settings.json")
    with open(settings_path) as f:
        settings = json.load(f)
    assert settings.pop("epochs") == 1.0 and settings["processes"] == 2
    with open(settings_path, "w") as f:
        json.dump(settings, f)
    more = subprocess.run(
        horovodrun_command(args_for(imdb_dir, tiny_module, output_dir, 4, epochs="2")),
        cwd=ROOT, env=environment(str(tmp_path)), capture_output=True, text=True,
        timeout=300)
    assert more.returncode == 0, (more.stdout + more.stderr)[-5000:]
    assert re.search(r"\[0\]<stdout>:step 6/10 ", more.stdout)
    reports = digests(more.stderr)
    assert [report[2] for report in reports] == ["10", "10"]
    assert reports[0][3] == reports[1][3]


def test_sigterm_to_process_0_stops_both_after_the_same_step_and_saves_it(
        imdb_dir, tiny_module, tmp_path):
    output_dir = str(tmp_path / "OUTPUT_Bert")
    # 200 epochs: 1000 steps, far more than run before the signal.
    command = horovodrun_command(args_for(imdb_dir, tiny_module, output_dir, 4, "200")
                                 + ["--save-summary-steps", "100",
                                    "--save-checkpoints-steps", "20"])
    launcher = subprocess.Popen(command, cwd=ROOT, env=environment(str(tmp_path)),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not latest_step(output_dir):  # training is under way
            assert launcher.poll() is None and time.time() < deadline, launcher.communicate()[0]
            time.sleep(0.1)
        process_0 = next(p for p in psutil.Process(launcher.pid).children(recursive=True)
                         if HOROVOD_TRAIN in p.cmdline()
                         and p.environ().get("HOROVOD_RANK") == "0")
        process_0.send_signal(signal.SIGTERM)
        output = launcher.communicate(timeout=300)[0]
    finally:
        launcher.kill()  # if still running; horovodrun's helpers then end the processes
    step = int(re.search(r"Interrupted at step (\d+) of 1000", output).group(1))
    assert 0 < step < 1000
    assert latest_step(output_dir) == step  # the signal's own save
    assert [report[2] for report in digests(output)] == [str(step), str(step)]
    assert digests(output)[0][3] == digests(output)[1][3]
    assert "Horovod has been shut down" not in output


def first_batches(input_fn, batch_size, count=4):
    with tf.Graph().as_default():
        tf.set_random_seed(42)  # as the Estimator does with RunConfig's tf_random_seed
        batch = tf.data.make_one_shot_iterator(input_fn({"batch_size": batch_size})).get_next()
        with tf.Session() as session:
            return [session.run(batch) for _ in range(count)]


def test_each_process_reads_its_own_rows_of_the_same_global_batches(tmp_path):
    feature_list = [run_classifier.InputFeatures(input_ids=[i, i + 1], input_mask=[1, 1],
                                                 segment_ids=[0, 0], label_id=i % 2)
                    for i in range(20)]
    path = str(tmp_path / "features.tf_record")
    feature_cache.write_features(path, feature_list)

    def sharded(rank, processes):
        global_input_fn = feature_cache.input_fn_builder(path, 2, is_training=True,
                                                         drop_remainder=True, seed=42)
        return runtime.sharded_input_fn_builder(global_input_fn, rank, processes)

    whole = first_batches(sharded(0, 1), 6)
    halves = [first_batches(sharded(rank, 2), 3) for rank in (0, 1)]
    for step, batch in enumerate(whole):
        for name in ("input_ids", "input_mask", "segment_ids", "label_ids"):
            assert halves[0][step][name].shape[0] == 3
            np.testing.assert_array_equal(
                np.concatenate([halves[0][step][name], halves[1][step][name]]), batch[name])
    assert len({tuple(batch["label_ids"]) for batch in whole}) > 1  # shuffled, not repeated


def test_without_horovod_the_flag_says_how_to_install_it(imdb_dir, tiny_module, tmp_path):
    hide_horovod = ("import sys; sys.modules['horovod'] = None; sys.argv[0] = 'train.py'; "
                    "import train; from imdb_bert import errors; errors.run_script(train.main)")
    result = subprocess.run(
        [sys.executable, "-c", hide_horovod,
         *args_for(imdb_dir, tiny_module, str(tmp_path / "out"), 4)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--horovod needs Horovod" in result.stderr and "make horovod" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_horovodrun_without_the_flag_is_refused(imdb_dir, tiny_module, tmp_path):
    arguments = args_for(imdb_dir, tiny_module, str(tmp_path / "out"), 4)[1:]  # no --horovod
    result = subprocess.run(
        [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable,
         os.path.join(ROOT, "train.py"), *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "--horovod is not set" in result.stdout + result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_process_0_evaluates_and_every_process_follows_its_early_stop(
        imdb_dir, tiny_module, tmp_path):
    """On the user's files (every process reads the same ones): CSV training texts with
    string labels, a JSON Lines test file and a TSV validation file."""
    output_dir = str(tmp_path / "OUTPUT_Bert")
    files = ["--train-file", write_table(tmp_path / "train.csv", rows(1, 40, BINARY),
                                         ["sentence", "polarity"]),
             "--test-file", write_jsonl(tmp_path / "test.jsonl", rows(2, 10, BINARY),
                                        ["sentence", "polarity"]),
             "--validation-file", write_table(tmp_path / "dev.tsv", rows(3, 15, BINARY),
                                              ["sentence", "polarity"], delimiter="\t")]
    # 40 training texts at a global batch of 8 for 20 epochs: 100 steps, evaluated every 5;
    # a patience of 1 stops at the first evaluation that does not improve.
    args = args_for(imdb_dir, tiny_module, output_dir, 4, epochs="20") + files + [
        "--validation-samples", "20", "--eval-every-steps", "5",
        "--early-stopping-patience", "1", "--keep-best", "--save-summary-steps", "100",
        "--allow-multiline-fields"]  # train.csv's texts hold line breaks and commas
    result = subprocess.run(horovodrun_command(args), cwd=ROOT, env=environment(str(tmp_path)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    with open(os.path.join(output_dir, "validation_history.json")) as f:
        history = json.load(f)
    last = history[-1]["global_step"]
    assert last < 100
    assert "[1]<stdout>:Validation" not in result.stdout  # process 0 evaluates
    final = {}  # each process's digest after its last training segment
    for rank, _, step, digest in DIGEST.findall(result.stderr):
        final[rank] = (step, digest)
    assert final["0"] == final["1"] and final["0"][0] == str(last)
    with open(os.path.join(output_dir, "eval_results.json")) as f:
        best = json.load(f)["global_step"]
    with open(os.path.join(output_dir, "best_checkpoint.json")) as f:
        assert json.load(f)["global_step"] == best <= last
    with open(os.path.join(output_dir, "model_settings.json")) as f:
        assert json.load(f)["label_names"] == ["neg", "pos"]


def test_horovod_averages_dense_gradients_in_a_group_and_sparse_ones_by_allgather():
    calls = []

    class Recording:
        Average = "average"

        def grouped_allreduce(self, tensors, op):
            calls.append(("grouped", len(tensors), op))
            return ["mean of dense %d" % i for i in range(len(tensors))]

        def allreduce(self, tensor, op):
            calls.append(("allreduce", type(tensor).__name__, op))
            return "mean of slices"

    process = runtime.HorovodProcess.__new__(runtime.HorovodProcess)
    process.hvd = Recording()
    slices = tf.IndexedSlices(tf.constant([[1.0]]), tf.constant([0]))
    means = process.average([tf.constant(1.0), slices, tf.constant(2.0)])
    assert means == ["mean of dense 0", "mean of slices", "mean of dense 1"]
    assert calls == [("grouped", 2, "average"), ("allreduce", "IndexedSlices", "average")]


def test_a_global_batch_over_the_notebooks_makes_process_0_say_so(capsys):
    """16 processes at --batch-size 32: 29 steps (2 of warm-up) for the notebook's 5,000
    reviews x 3 epochs, against its 468. One line, from process 0 only."""
    import train
    args = train.parse_args([])  # the notebook's flags
    for rank in (0, 1):
        process = runtime.HorovodProcess.__new__(runtime.HorovodProcess)
        process.processes, process.leads = 16, rank == 0
        assert train.plan_steps(5000, args, process) == (29, 2)
    assert capsys.readouterr().out == (
        "Global batch 512 (16 processes x --batch-size 32): 29 training steps, 2 of warm-up, "
        "against the notebook's 468 at batch 32; the model may be undertrained. To train "
        "more: a smaller per-process --batch-size, more --epochs, or a learning rate scaled "
        "by the number of processes (--learning-rate 0.00032 = 2e-05 x 16, as Horovod's "
        "guide suggests).\n")
    assert train.plan_steps(5000, args, runtime.SingleProcess()) == (468, 46)
    two = runtime.HorovodProcess.__new__(runtime.HorovodProcess)
    two.processes, two.leads = 2, True
    train.plan_steps(5000, train.parse_args(["--batch-size", "16"]), two)  # global 32
    assert capsys.readouterr().out == ""
    assert "Global batch 64: 234 training steps" in runtime.undertraining_note(
        234, 23, 64, 1, 2e-5)
