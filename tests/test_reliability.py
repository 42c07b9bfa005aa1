"""No lost work: resume after a kill, save on SIGINT, a careful --do-delete, and clear
errors (exit code 2, no traceback) for bad input."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, latest_step, quick_args, run_train


def start_train(args):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def wait_for_checkpoint_past_zero(process, output_dir, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        step = latest_step(output_dir)
        if step:
            return step
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.1)
    process.kill()
    pytest.fail("no checkpoint past step 0 within %d s" % timeout)


def long_run_args(imdb_dir, tiny_module, output_dir, *extra):
    # 40 epochs of 200 reviews at batch 16: 500 steps, long enough to interrupt.
    return quick_args(imdb_dir, tiny_module, output_dir, "--epochs", "40", *extra)


def test_rerun_after_sigkill_resumes_and_ends_at_the_planned_step(imdb_dir, tiny_module,
                                                                 tmp_path):
    output_dir = str(tmp_path / "killed")
    args = long_run_args(imdb_dir, tiny_module, output_dir, "--save-checkpoints-steps", "20")
    process = start_train(args)
    wait_for_checkpoint_past_zero(process, output_dir)
    process.send_signal(signal.SIGKILL)
    process.wait()
    reached = latest_step(output_dir)  # read after the kill: what really is on disk
    assert 0 < reached < 500

    rerun = run_train(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Restoring parameters from %s/model.ckpt-%d" % (output_dir, reached) in rerun.stderr
    first_progress = re.search(r"^step (\d+)/500 ", rerun.stdout, re.M)
    assert first_progress and int(first_progress.group(1)) > reached
    assert latest_step(output_dir) == 500
    with open(os.path.join(output_dir, "eval_results.json")) as f:
        assert '"global_step": 500' in f.read()


def test_sigint_saves_a_checkpoint_within_seconds_and_stops(imdb_dir, tiny_module, tmp_path):
    output_dir = str(tmp_path / "interrupted")
    # No step-based save before the end: the first checkpoint past 0 comes from the timer.
    process = start_train(long_run_args(imdb_dir, tiny_module, output_dir,
                                        "--save-checkpoints-steps", "100000",
                                        "--save-checkpoints-secs", "1"))
    assert wait_for_checkpoint_past_zero(process, output_dir) < 500
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
    step = int(re.search(r"Interrupted at step (\d+) of 500", stderr).group(1))
    assert latest_step(output_dir) == step  # the signal's own save
    assert "Traceback" not in stderr
    assert not os.path.exists(os.path.join(output_dir, "eval_results.json"))


def test_do_delete_removes_only_this_projects_output(trained, imdb_dir, tiny_module, tmp_path):
    import shutil
    output_dir = tmp_path / "OUTPUT_Bert"
    shutil.copytree(trained[0], output_dir)
    (output_dir / ".gitkeep").write_text("")
    result = run_train(*quick_args(imdb_dir, tiny_module, str(output_dir), "--do-delete",
                                   "--seed", "7", "--epochs", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (output_dir / ".gitkeep").exists()
    assert '"seed": 7' in (output_dir / "model_settings.json").read_text()
    assert latest_step(str(output_dir)) == 12  # a fresh run, not the old 125 steps


@pytest.mark.parametrize("which", ["data", "repo"])
def test_do_delete_refuses_the_data_dir_and_the_repository(imdb_dir, tiny_module, which):
    target = imdb_dir if which == "data" else ROOT
    before = sorted(os.listdir(target))
    result = run_train(*quick_args(imdb_dir, tiny_module, target, "--do-delete"))
    assert result.returncode == 2
    assert "Refusing --do-delete of %s" % target in result.stderr
    assert sorted(os.listdir(target)) == before


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "http://127.0.0.1:%d/aclImdb_v1.tar.gz" % s.getsockname()[1]


def test_bad_input_stops_with_a_message(imdb_dir, tiny_module, tmp_path):
    out = str(tmp_path / "out")
    cases = [
        (["--data-dir", str(tmp_path / "nodata"), "--data-url", closed_port_url(),
          "--bert-hub", tiny_module, "--output-dir", out],
         "Could not download the IMDB dataset"),
        (quick_args(imdb_dir, tiny_module, out, "--train-samples", "500"),
         "only 200 reviews"),
        (quick_args(imdb_dir, str(tmp_path), out), "not a TF1 Hub module"),
        (quick_args(imdb_dir, tiny_module, out, "--max-seq-length", "129"),
         "more than the 128 positions"),
        (quick_args(imdb_dir, tiny_module, out, "--epochs", "0"), "must be positive"),
        (quick_args(imdb_dir, tiny_module, out, "--test-samples", "0"), "must be a positive"),
    ]
    for args, message in cases:
        result = run_train(*args)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert message in result.stderr, (message, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
