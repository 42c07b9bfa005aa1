"""predict.py never serves an unfinished run as the result (issue 23, section 1): a step-0
checkpoint is refused, one short of the planned step is said in one line, with whether its
train.py still runs (it holds the folder's lock) or was interrupted (kill -9 included)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, latest_step
from test_reliability import long_run_args, start_train, wait_for_checkpoint_past_zero


def run_predict(output_dir, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--output-dir",
                           output_dir, *args, "great film"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def wait_for_step_0(process, output_dir, timeout=240):
    deadline = time.time() + timeout
    while latest_step(output_dir) != 0:
        assert process.poll() is None, process.communicate()[1][-3000:]
        if time.time() > deadline:
            pytest.fail("no step-0 checkpoint within %d s" % timeout)
        time.sleep(0.05)


def kill_9(process):
    process.send_signal(signal.SIGKILL)
    process.communicate()


def test_step_0_is_refused_and_a_short_run_is_named_running_or_killed(imdb_dir, tiny_module,
                                                                      tmp_path):
    output_dir = str(tmp_path / "run")
    # 400 epochs (5000 steps), saved only at step 0 until the rerun below saves every second.
    args = long_run_args(imdb_dir, tiny_module, output_dir, "--epochs", "400",
                         "--save-checkpoints-steps", "100000")
    checkpoint_0 = os.path.join(output_dir, "model.ckpt-0")
    first = start_train([*args, "--save-checkpoints-secs", "3600"])
    try:
        wait_for_step_0(first, output_dir)
        running = run_predict(output_dir)
    finally:
        kill_9(first)
    killed = run_predict(output_dir)
    for result, state in ((running, "its run is still running (train.py PID %d holds "
                                     "train.lock). For a trained model, wait" % first.pid),
                          (killed, "its run was interrupted (no train.py holds train.lock). "
                                   "For a trained model, run train.py with the same flags")):
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.startswith("error: %s is step 0 of 5000 planned: the model is "
                                        "untrained; %s" % (checkpoint_0, state))
        assert "or pass --allow-untrained to predict with it anyway." in result.stderr
        assert result.stdout == ""
    allowed = run_predict(output_dir, "--allow-untrained")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert ("Warning: %s is step 0 of 5000 planned, an unfinished model: its run was "
            "interrupted" % checkpoint_0) in allowed.stderr
    assert allowed.stdout.count("\tgreat film\n") == 1

    # The same command resumes; checkpoints past step 0, then kill -9 again.
    second = start_train([*args, "--save-checkpoints-secs", "1"])
    try:
        wait_for_checkpoint_past_zero(second, output_dir)
    finally:
        kill_9(second)
    step = latest_step(output_dir)
    short = run_predict(output_dir)
    assert short.returncode == 0, short.stderr[-3000:]
    warnings = [line for line in short.stderr.splitlines() if line.startswith("Warning")]
    assert warnings == [
        "Warning: %s/model.ckpt-%d is step %d of 5000 planned, an unfinished model: its run "
        "was interrupted (no train.py holds train.lock); for the trained one, run train.py "
        "with the same flags again to finish it (it resumes)." % (output_dir, step, step)]
    assert short.stdout.count("\tgreat film\n") == 1 and "Traceback" not in short.stderr


def test_a_finished_run_is_served_without_a_word_and_without_tensorflow(trained):
    """The check reads model_settings.json and /proc/locks: the ONNX path still does not
    import TensorFlow."""
    script = ("import runpy, sys; sys.argv = ['predict.py', '--output-dir', sys.argv[1], "
              "'great film']\ntry:\n    runpy.run_path('predict.py', run_name='__main__')\n"
              "finally:\n    print('tensorflow' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", script, trained[0]], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Predicting with ONNX Runtime" in result.stderr
    assert result.stderr.splitlines()[-1] == "False"
    assert "unfinished" not in result.stderr and "step 0" not in result.stderr
