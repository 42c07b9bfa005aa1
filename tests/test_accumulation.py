"""--gradient-accumulation-steps N: N micro-batches of --batch-size make one optimizer step
that equals a step at a batch N times larger.

The runs go through tests/horovod_train.py: train.py with the head's dropout off (so the
two batchings compute the same losses) and a clip norm of 0.01 that the tiny model's
gradients exceed, so clipping binds and must be that of the larger batch (its norm over the
embeddings' slices included). Applying each micro-batch on its own, or clipping each, or
dividing the sum by the wrong count changes the weights by far more than the tolerance.
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, latest_step

from imdb_bert.compat import tf
from imdb_bert.model import optimizer

TRAIN = os.path.join(ROOT, "tests", "horovod_train.py")
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
PROGRESS = re.compile(r"^(?:\[0\]<stdout>:)?step (\d+)/(\d+)  loss ([\d.]+) ", re.M)


def args_for(imdb_dir, tiny_module, output_dir, batch_size, accumulation_steps,
             train_samples=96, epochs=1, *extra):
    # 96 reviews at 32 per optimizer step: 3 steps, the first of warm-up (rate 0).
    return ["--data-dir", imdb_dir, "--bert-hub", tiny_module, "--output-dir", output_dir,
            "--train-samples", str(train_samples), "--test-samples", "20",
            "--max-seq-length", "32", "--batch-size", str(batch_size),
            "--gradient-accumulation-steps", str(accumulation_steps),
            "--learning-rate", "1e-3", "--warmup-proportion", "0.34",
            "--epochs", str(epochs), "--save-summary-steps", "1", "--no-onnx", *extra]


# Validation after every optimizer step: training runs in segments of one step each.
VALIDATION = ("--validation-samples", "16", "--eval-every-steps", "1")


def run(args, timeout=600):
    result = subprocess.run([sys.executable, TRAIN, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0, result.stderr[-5000:]
    return result


def losses(output):
    return [(int(step), float(loss)) for step, _, loss in PROGRESS.findall(output)]


def checkpoint_values(output_dir):
    """{name: value} of the latest checkpoint's variables."""
    reader = tf.train.load_checkpoint(output_dir)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def learning_rates(output_dir):
    """{step: learning rate} of the training summaries."""
    rates = {}
    for path in glob.glob(os.path.join(output_dir, "events.out.tfevents.*")):
        for event in tf.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "learning_rate":
                    rates[event.step] = value.simple_value
    return rates


def assert_same_weights(actual_dir, expected_dir, atol=1e-5):
    actual, expected = checkpoint_values(actual_dir), checkpoint_values(expected_dir)
    assert set(actual) == set(expected)  # no accumulator in the checkpoints
    assert not any("gradient_accumulation" in name for name in actual)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-4, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def batch_32(imdb_dir, tiny_module, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("batch32") / "OUTPUT_Bert")
    return output_dir, run(args_for(imdb_dir, tiny_module, output_dir, 32, 1, 96, 1,
                                    *VALIDATION))


def test_batch_8_times_4_trains_as_batch_32(batch_32, imdb_dir, tiny_module, tmp_path):
    big_dir, big = batch_32
    output_dir = str(tmp_path / "OUTPUT_Bert")
    small = run(args_for(imdb_dir, tiny_module, output_dir, 8, 4, 96, 1, *VALIDATION))
    # The same plan, in optimizer steps: 3, one of warm-up; a checkpoint at the last.
    assert latest_step(output_dir) == latest_step(big_dir) == 3
    assert checkpoint_values(output_dir)["global_step"] == 3
    assert [step for step, _ in losses(small.stdout)] == [1, 2, 3]
    # The progress lines report each step's loss over its 32 reviews.
    for (step, loss), (_, expected) in zip(losses(small.stdout), losses(big.stdout)):
        assert loss == pytest.approx(expected, rel=1e-4), "step %d" % step
    values = [loss for _, loss in losses(big.stdout)]
    assert abs(values[-1] - values[0]) / values[0] > 1e-3  # training moved the loss
    rates = learning_rates(output_dir)
    assert rates == pytest.approx(learning_rates(big_dir), rel=1e-6)
    # Written after each step, of the rate it used: warm-up from 0, then decay over 3 steps.
    assert rates == pytest.approx({1: 0.0, 2: 1e-3 * 2 / 3, 3: 1e-3 / 3}, rel=1e-6)
    assert_same_weights(output_dir, big_dir)
    assert_same_validations(output_dir, big_dir)


def assert_same_validations(actual_dir, expected_dir):
    """validation_history.json: evaluations at the same optimizer steps and epochs, with the
    same results."""
    def history(output_dir):
        with open(os.path.join(output_dir, "validation_history.json")) as f:
            return json.load(f)
    actual, expected = history(actual_dir), history(expected_dir)
    assert [(entry["global_step"], entry["epoch"]) for entry in actual] == \
        [(1, 0.3333), (2, 0.6667), (3, 1.0)]
    for entry, reference in zip(actual, expected):
        assert (entry["global_step"], entry["epoch"]) == \
            (reference["global_step"], reference["epoch"])
        assert entry["loss"] == pytest.approx(reference["loss"], rel=1e-4)


def test_the_plan_counts_optimizer_steps(capsys):
    """The notebook's 5,000 reviews x 3 epochs: batch 8 x 4 plans batch 32's 468 steps (46
    of warm-up), silently; 32 x 4 is a global batch of 128, named as such."""
    import train
    from imdb_bert.training import runtime
    one = runtime.SingleProcess()
    args = train.parse_args(["--batch-size", "8", "--gradient-accumulation-steps", "4"])
    assert train.plan_steps(5000, args, one) == (468, 46)
    assert capsys.readouterr().out == ""
    args = train.parse_args(["--gradient-accumulation-steps", "4"])
    assert train.plan_steps(5000, args, one) == (117, 11)
    assert capsys.readouterr().out.startswith(
        "Global batch 128 (--batch-size 32 x --gradient-accumulation-steps 4): 117 training "
        "steps, 11 of warm-up, against the notebook's 468 at batch 32;")


def test_a_resume_with_another_accumulation_is_refused(batch_32, imdb_dir, tiny_module):
    big_dir, _ = batch_32
    before = sorted(os.listdir(big_dir))
    result = subprocess.run(
        [sys.executable, TRAIN, *args_for(imdb_dir, tiny_module, big_dir, 16, 2, 96, 1,
                                          *VALIDATION)], cwd=ROOT,
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "gradient_accumulation_steps: 1 now 2" in result.stderr
    assert "Pass another --output-dir, rerun with the old values, or add --do-delete" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(big_dir)) == before


def test_a_folder_from_before_the_flag_resumes_as_one_micro_batch(batch_32, imdb_dir,
                                                                   tiny_module, tmp_path):
    """Its model_settings.json has no gradient_accumulation_steps: it trained with 1."""
    output_dir = str(tmp_path / "old")
    shutil.copytree(batch_32[0], output_dir)
    path = os.path.join(output_dir, "model_settings.json")
    with open(path) as f:
        settings = json.load(f)
    assert settings.pop("gradient_accumulation_steps") == 1
    with open(path, "w") as f:
        json.dump(settings, f)
    refused = subprocess.run(
        [sys.executable, TRAIN, *args_for(imdb_dir, tiny_module, output_dir, 8, 4, 96, 1,
                                          *VALIDATION)], cwd=ROOT,
        capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "gradient_accumulation_steps: 1 now 4" in refused.stderr


def test_a_signal_mid_accumulation_then_a_resume_loses_and_doubles_nothing(
        imdb_dir, tiny_module, tmp_path):
    """32 reviews, 8 micro-batches of 4: every optimizer step sees all of them, whatever the
    shuffled order, so a run interrupted and resumed must end with the weights of one that
    was not. SIGINT comes just after the save of step 4, during the next step (in 7 of its
    8 runs it lands mid-step): that step finishes, is saved, and the resume goes on from
    it. Partial sums applied or kept across the stop would change the weights."""
    def args(output_dir):
        return args_for(imdb_dir, tiny_module, output_dir, 4, 8, 32, 20,
                        "--save-checkpoints-steps", "4")

    interrupted_dir = str(tmp_path / "interrupted")
    process = subprocess.Popen([sys.executable, TRAIN, *args(interrupted_dir)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    deadline = time.time() + 300
    while not latest_step(interrupted_dir):
        assert process.poll() is None and time.time() < deadline, process.communicate()[1]
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
    step = int(re.search(r"Interrupted at step (\d+) of 20", stderr).group(1))
    assert 4 <= step < 20
    assert latest_step(interrupted_dir) == step
    assert losses(stdout)[-1][0] == step  # the progress line of the last whole step

    resumed = run(args(interrupted_dir))
    assert losses(resumed.stdout)[0][0] == step + 1
    assert latest_step(interrupted_dir) == 20

    whole_dir = str(tmp_path / "whole")
    run(args(whole_dir))
    assert_same_weights(interrupted_dir, whole_dir)


def test_bf16_accumulates(imdb_dir, tiny_module, tmp_path):
    """--bf16 is a graph rewrite on this CPU (or ignored without bfloat16 hardware): the
    accumulating graph runs under it to the planned step."""
    output_dir = str(tmp_path / "OUTPUT_Bert")
    result = run(args_for(imdb_dir, tiny_module, output_dir, 8, 4, 64, 1, "--bf16"))
    assert [step for step, _ in losses(result.stdout)] == [1, 2]
    assert latest_step(output_dir) == 2


@pytest.mark.skipif(not os.path.exists(HOROVODRUN), reason="Horovod is not installed")
def test_horovod_accumulates_before_the_all_reduce(batch_32, imdb_dir, tiny_module, tmp_path):
    """2 processes x batch 8 x 2 micro-batches: the steps of one process at batch 32."""
    big_dir, big = batch_32
    output_dir = str(tmp_path / "OUTPUT_Bert")
    result = subprocess.run(
        [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, TRAIN,
         "--horovod", *args_for(imdb_dir, tiny_module, output_dir, 8, 2, 96, 1,
                                *VALIDATION)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TMPDIR=str(tmp_path), CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    # Each process reports its weights at the end of each segment (one step each).
    digests = re.findall(r"global step (\d+), weights sha256 (\w+)", result.stderr)
    assert sorted(step for step, _ in digests) == ["1", "1", "2", "2", "3", "3"]
    assert len(set(digests)) == 3  # both processes hold the same weights at every step
    assert [step for step, _ in losses(result.stdout)] == [1, 2, 3]
    for (step, loss), (_, expected) in zip(losses(result.stdout), losses(big.stdout)):
        assert loss == pytest.approx(expected, rel=1e-4), "step %d" % step
    assert_same_weights(output_dir, big_dir)
    assert_same_validations(output_dir, big_dir)


RNG = np.random.RandomState(0)
INPUTS = RNG.normal(size=(8, 5)).astype(np.float32)
TARGETS = RNG.normal(size=(8, 3)).astype(np.float32)


def linear_model(accumulation_steps, loss_scaling, batches):
    """(weights, global step, loss scale) of a small linear model (no sparse gradient)
    trained on `batches` of (inputs, targets), each cut into `accumulation_steps`
    micro-batches."""
    with tf.Graph().as_default():
        inputs = tf.placeholder(tf.float32, [None, 5])
        targets = tf.placeholder(tf.float32, [None, 3])
        kernel = tf.get_variable("dense/kernel", initializer=INPUTS[:5, :3].copy())
        bias = tf.get_variable("dense/bias", initializer=np.ones(3, np.float32))
        loss = 50.0 * tf.reduce_mean(tf.square(tf.matmul(inputs, kernel) + bias - targets))
        if accumulation_steps == 1:
            train_op = optimizer.create_optimizer(loss, 1e-2, 100, 0, loss_scaling)
        else:
            train_op, _ = optimizer.create_accumulating_optimizer(
                loss, 1e-2, 100, 0, accumulation_steps, loss_scaling)
        scale = next((variable for variable in tf.global_variables()
                      if variable.op.name == "loss_scale"), tf.constant(1.0))
        with tf.Session() as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            for batch_inputs, batch_targets in batches:
                for part in range(accumulation_steps):
                    rows = slice(part * 8 // accumulation_steps,
                                 (part + 1) * 8 // accumulation_steps)
                    sess.run(train_op, {inputs: batch_inputs[rows],
                                        targets: batch_targets[rows]})
            return sess.run([kernel, bias, tf.train.get_global_step(), scale])


@pytest.mark.parametrize("loss_scaling", [False, True], ids=["float32", "loss-scaled"])
def test_dense_gradients_accumulate_to_the_larger_batchs_update(loss_scaling):
    batches = [(INPUTS, TARGETS), (INPUTS[::-1], TARGETS)]
    kernel, bias, step, scale = linear_model(4, loss_scaling, batches)
    expected = linear_model(1, loss_scaling, batches)
    assert step == expected[2] == 2 and scale == expected[3]
    np.testing.assert_allclose(kernel, expected[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bias, expected[1], rtol=1e-5, atol=1e-7)
    assert np.abs(kernel - INPUTS[:5, :3]).max() > 1e-3  # it trained


def test_a_non_finite_micro_batch_skips_the_whole_step_and_halves_the_scale():
    """--use-amp: the unscaled sums are checked once per step, as the larger batch is."""
    poisoned = INPUTS.copy()
    poisoned[5, 0] = np.inf  # in the third of four micro-batches of 2
    first = linear_model(4, True, [(INPUTS, TARGETS)])
    both = linear_model(4, True, [(INPUTS, TARGETS), (poisoned, TARGETS)])
    assert both[2] == 2 and both[3] == first[3] / 2  # counted, skipped, scale halved
    np.testing.assert_array_equal(both[0], first[0])
    np.testing.assert_array_equal(both[1], first[1])
