"""No lost work: resume after a kill, save on SIGINT, a careful --do-delete, and clear
errors (exit code 2, no traceback) for bad input."""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, latest_step, quick_args, run_train

from imdb_bert.output import cleanup, files


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


def test_one_train_py_per_output_folder(imdb_dir, tiny_module, tmp_path):
    output_dir = str(tmp_path / "shared")
    first = start_train(long_run_args(imdb_dir, tiny_module, output_dir,
                                      "--epochs", "400", "--save-checkpoints-steps", "20"))
    try:
        wait_for_checkpoint_past_zero(first, output_dir)
        with open(os.path.join(output_dir, "train.lock")) as f:
            assert f.read().strip() == str(first.pid)
        for extra in ([], ["--do-delete"]):
            started = time.time()
            second = run_train(*long_run_args(imdb_dir, tiny_module, output_dir, *extra))
            assert second.returncode == 2, second.stderr[-3000:]
            assert ("%s is in use by another train.py (PID %d)" % (output_dir, first.pid)
                    in second.stderr)
            assert "Traceback" not in second.stderr and "Beginning" not in second.stdout
            assert time.time() - started < 60
        # predict.py may read while training runs: the latest complete checkpoint.
        predicted = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"),
                                    "--output-dir", output_dir, "great film", "awful film"],
                                   capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        assert len(predicted.stdout.splitlines()) == 2
        assert re.search(r"^Warning: .*/model\.ckpt-\d+ is step \d+ of 5000 planned, an "
                         r"unfinished model: its run is still running \(train\.py PID %d "
                         r"holds train\.lock\)" % first.pid, predicted.stderr, re.M)
        assert first.poll() is None and latest_step(output_dir) > 0  # still training
    finally:
        first.kill()  # SIGKILL: the lock goes with the process
        first.communicate()
    third = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"),
                              *quick_args(imdb_dir, tiny_module, output_dir, "--do-delete",
                                          "--epochs", "1")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    stdout, stderr = third.communicate(timeout=600)
    assert third.returncode == 0, stderr[-3000:]
    assert latest_step(output_dir) == 12  # a fresh run, not the killed one's steps
    with open(os.path.join(output_dir, "train.lock")) as f:
        assert f.read().strip() == str(third.pid)


def copy_of(trained, tmp_path, name="OUTPUT_Bert"):
    output_dir = str(tmp_path / name)
    shutil.copytree(trained[0], output_dir)
    return output_dir


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_a_resume_with_other_training_settings_stops_before_restoring(
        trained, imdb_dir, tiny_module, tmp_path):
    output_dir = copy_of(trained, tmp_path)
    settings = read_json(os.path.join(output_dir, "model_settings.json"))
    assert {key: settings[key] for key in ("epochs", "batch_size", "learning_rate",
                                           "warmup_proportion", "use_amp", "processes")} == {
        "epochs": 10.0, "batch_size": 16, "learning_rate": 7e-4, "warmup_proportion": 0.1,
        "use_amp": False, "processes": 1}  # use_amp as it ran: this CPU ignores the flag
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir, "--batch-size", "8",
                                   "--learning-rate", "1e-4"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "batch_size: 16 now 8" in result.stderr
    assert "learning_rate: 0.0007 now 0.0001" in result.stderr
    assert "--do-delete" in result.stderr and "--output-dir" in result.stderr
    assert "Restoring parameters" not in result.stderr and "Traceback" not in result.stderr
    # --eval-only checks what evaluation depends on only: another batch size is fine, and
    # the training settings stay recorded as they were.
    evaluated = run_train(*quick_args(imdb_dir, tiny_module, output_dir, "--batch-size", "8",
                                      "--eval-only"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert read_json(os.path.join(output_dir, "model_settings.json")) == settings


def test_damaged_json_files_stop_with_a_message(trained, imdb_dir, tiny_module, tmp_path):
    output_dir = copy_of(trained, tmp_path)
    # train.py never reads eval_results.json or run_info.json: a rerun writes them anew.
    for name in ("eval_results.json", "run_info.json"):
        with open(os.path.join(output_dir, name), "w") as f:
            f.write('{"eval_accuracy": 0.9')
    settings = os.path.join(output_dir, "model_settings.json")
    with open(settings, "rb") as f:
        good = f.read()
    with open(settings, "wb") as f:
        f.write(good[:len(good) // 2])  # cut short, as by a full disk
    args = quick_args(imdb_dir, tiny_module, output_dir, "--eval-only")
    predict = [sys.executable, os.path.join(ROOT, "predict.py"), "--output-dir", output_dir,
               "great film"]
    predicted = subprocess.run(predict, capture_output=True, text=True, cwd=ROOT, timeout=300)
    for result in (run_train(*args), predicted):
        assert result.returncode == 2, result.stderr[-3000:]
        assert "error: %s is damaged (" % settings in result.stderr
        assert "Move it away and run again" in result.stderr
        assert "Traceback" not in result.stderr
    with open(settings, "wb") as f:
        f.write(good)
    again = run_train(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_json(os.path.join(output_dir, "eval_results.json"))["global_step"] == 125
    assert read_json(os.path.join(output_dir, "run_info.json"))["outcome"] == "completed"


def remove_variables(export):
    os.remove(os.path.join(export, "variables", "variables.index"))


def garble_saved_model(export):
    with open(os.path.join(export, "saved_model.pb"), "wb") as f:
        f.write(b"\x00not a SavedModel")


def garble_export_info(export):
    with open(os.path.join(export, "assets.extra", "export_info.json"), "w") as f:
        f.write('{"global_step": 12')


def garble_onnx_model(export):
    with open(os.path.join(export, "model.onnx"), "r+b") as f:
        f.truncate(os.path.getsize(f.name) // 2)


@pytest.mark.parametrize("damage, fallback", [
    (remove_variables, "through the Estimator"), (garble_saved_model, "through the Estimator"),
    (garble_export_info, "through the Estimator"), (garble_onnx_model, "with the SavedModel")])
def test_predict_falls_back_when_the_export_is_damaged(trained, tmp_path, damage, fallback):
    """A damaged SavedModel (with --no-onnx) or export info: the checkpoint; a damaged ONNX
    copy: the SavedModel."""
    output_dir = copy_of(trained, tmp_path)
    [export] = os.listdir(os.path.join(output_dir, "export"))
    damage(os.path.join(output_dir, "export", export))
    flags = [] if damage is garble_onnx_model else ["--no-onnx"]
    result = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--output-dir",
                             output_dir, *flags, "a great , wonderful film",
                             "awful , boring film"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "damaged" in result.stderr or "cannot be loaded" in result.stderr
    assert fallback in result.stderr
    assert "Traceback" not in result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        "Positive", "Negative"]


def test_leftovers_of_killed_runs_are_removed_at_the_next_start(trained, imdb_dir,
                                                                tiny_module, tmp_path):
    output_dir = copy_of(trained, tmp_path)
    leftovers = ["run_info.json.tmp-4242", "model.ckpt-130_temp/", "export/temp-1795000000/",
                 "best.tmp-4242/", "features-test-0123456789abcdef.tf_record.tmp-4242"]
    for name in leftovers:
        path = os.path.join(output_dir, name)
        if name.endswith("/"):
            os.makedirs(os.path.join(path, "variables"))
            with open(os.path.join(path, "variables", "part-00000"), "wb") as f:
                f.write(b"\0" * 1000)
        else:
            with open(path, "w") as f:
                f.write("{")
    cleanup.check_deletable(output_dir, imdb_dir)  # all of it is this project's
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir, "--eval-only"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Removed what an interrupted run left in %s" % output_dir in result.stdout
    for name in leftovers:
        assert not os.path.exists(os.path.join(output_dir, name)), name
    assert latest_step(output_dir) == 125 and len(os.listdir(
        os.path.join(output_dir, "export"))) == 1


def test_reruns_keep_at_most_two_exports(trained, imdb_dir, tiny_module, tmp_path):
    output_dir = copy_of(trained, tmp_path)
    export_root = os.path.join(output_dir, "export")
    args = quick_args(imdb_dir, tiny_module, output_dir)
    [first] = os.listdir(export_root)
    onnx_file = os.path.join(export_root, first, "model.onnx")
    os.remove(onnx_file)
    # A finished run: evaluates again, the export holds its step. Without tf2onnx (as on
    # Python 3.9) no ONNX copy, said; with it, the copy the export lacked.
    without_tf2onnx = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; sys.modules['tf2onnx'] = None; "
         "sys.argv[0] = 'train.py'; runpy.run_path('train.py', run_name='__main__')",
         *quick_args(imdb_dir, tiny_module, output_dir, onnx=True)],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert without_tf2onnx.returncode == 0, without_tf2onnx.stderr[-3000:]
    assert "ONNX is unavailable (tf2onnx not installed" in without_tf2onnx.stdout
    assert not os.path.exists(onnx_file)
    broken = tmp_path / "broken"  # a tf2onnx that fails in the converting child process
    (broken / "tf2onnx").mkdir(parents=True)
    (broken / "tf2onnx" / "__init__.py").write_text("raise ImportError('tf2onnx is broken')\n")
    # The command that adds the copy after train.py (for want of memory during the run).
    failed = subprocess.run([sys.executable, "-m", "imdb_bert.serving", output_dir],
                            capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env=dict(os.environ, PYTHONPATH=str(broken)))
    assert failed.returncode == 0, failed.stderr[-3000:]
    assert ("No ONNX copy of %s (ImportError: tf2onnx is broken): predict.py will use the "
            "SavedModel." % os.path.join(export_root, first)) in failed.stdout
    empty = subprocess.run([sys.executable, "-m", "imdb_bert.serving", str(tmp_path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert empty.returncode == 2 and "holds no export of train.py" in empty.stderr
    assert not os.path.exists(onnx_file) and not glob.glob(os.path.join(export_root, "*.tmp-*"))
    rerun = run_train(*quick_args(imdb_dir, tiny_module, output_dir, onnx=True))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "%s already holds step 125: no new export." % os.path.join(export_root, first) \
        in rerun.stdout
    assert "Wrote its ONNX copy for predict.py in" in rerun.stdout
    assert os.path.exists(onnx_file) and not glob.glob(os.path.join(export_root, "*.tmp-*"))
    exports = [first]
    for _ in range(2):  # make the newest export an older step's, so a rerun exports anew
        info = os.path.join(export_root, exports[-1], "assets.extra", "export_info.json")
        with open(info, "w") as f:
            json.dump({"global_step": 100, "max_seq_length": 32}, f)
        again = run_train(*args)
        assert again.returncode == 0, again.stderr[-3000:]
        exports.append(re.search(r"Exported the model for prediction to .*/(\d+)$",
                                 again.stdout, re.M).group(1))
    assert sorted(os.listdir(export_root)) == sorted(exports[1:])  # the oldest removed


def wait_for_line(stream, text, process, timeout=240):
    """Read `stream` until a line holding `text`; the lines read."""
    lines = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = stream.readline()
        if not line:
            pytest.fail("%r never came; the process ended with %s:\n%s"
                        % (text, process.wait(), "".join(lines)[-3000:]))
        lines.append(line)
        if text in line:
            return lines
    pytest.fail("%r did not come within %d s" % (text, timeout))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("phase", ["evaluation", "export"])
def test_a_signal_during_evaluation_or_export_stops_cleanly(trained, imdb_dir, tiny_module,
                                                            tmp_path, phase, signum):
    output_dir = copy_of(trained, tmp_path)
    os.remove(os.path.join(output_dir, "eval_results.json"))
    if phase == "evaluation":  # an evaluation that has begun: the model is being built
        args, marker = (quick_args(imdb_dir, tiny_module, output_dir, "--eval-only"),
                        "Calling model_fn.")
    else:  # the export of a finished run, once the test results are written
        shutil.rmtree(os.path.join(output_dir, "export"))
        args, marker = (quick_args(imdb_dir, tiny_module, output_dir),
                        "Plots, test_predictions.csv and eval_results.json are in")
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_for_line(process.stdout, marker, process)
    if phase == "export":  # the export has begun building its graph
        wait_for_line(process.stdout, "Calling model_fn.", process)
    process.send_signal(signum)
    stderr = process.communicate(timeout=120)[0]  # with stdout
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "%s during the %s: stopped." % (signal.Signals(signum).name, phase) in stderr
    assert "Traceback" not in stderr
    info = read_json(os.path.join(output_dir, "run_info.json"))
    assert info["outcome"] == "interrupted during %s" % phase and info["end_time"]
    if phase == "evaluation":
        assert not os.path.exists(os.path.join(output_dir, "eval_results.json"))
    else:  # no complete export; perhaps an export/temp-* folder, removed by the rerun
        export_root = os.path.join(output_dir, "export")
        assert not [name for name in (os.listdir(export_root) if os.path.isdir(export_root)
                                      else []) if name.isdigit()]
    if signum == signal.SIGINT:  # the rerun finishes the job without training again
        rerun = run_train(*args)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "Beginning Training!" not in rerun.stdout and latest_step(output_dir) == 125
        assert read_json(os.path.join(output_dir, "eval_results.json"))["global_step"] == 125
        if phase == "export":
            [export] = os.listdir(os.path.join(output_dir, "export"))
            assert export.isdigit()


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs mounted for the test (needs root), unmounted after it."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % mounted.stderr.strip())
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path, leave=0):
    """Write zeros into `path` until the disk has `leave` bytes free (or none)."""
    with open(path, "wb") as f:
        try:
            while True:
                free = shutil.disk_usage(os.path.dirname(path)).free - leave
                if free <= 0:
                    break
                f.write(b"\0" * min(free, 1 << 20))
                f.flush()
        except OSError:
            pass  # full


def test_a_full_disk_stops_with_a_message_and_keeps_the_checkpoints(
        imdb_dir, tiny_module, small_disk):
    output_dir = str(small_disk / "OUTPUT_Bert")
    ballast = str(small_disk / "ballast")
    args = long_run_args(imdb_dir, tiny_module, output_dir, "--save-checkpoints-steps", "50",
                         "--save-summary-steps", "1000")
    process = start_train(args)
    deadline = time.time() + 240
    while latest_step(output_dir) != 50 and time.time() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)
    fill(ballast)  # the disk fills while training runs: the next checkpoint cannot be written
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 2, stderr[-3000:]
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("error: No space left on device while writing to %s; a "
                            "checkpoint of this model takes about " % output_dir), error
    assert "Traceback" not in stderr
    reached = latest_step(output_dir)
    assert reached >= 50
    # Nearly full: the rerun warns before training, and stops again when the disk is full.
    os.remove(ballast)
    fill(ballast, leave=1 << 20)
    warned = run_train(*args)
    assert warned.returncode == 2, warned.stderr[-3000:]
    assert "Warning: %s has 1 MB free, but the checkpoints" % output_dir in warned.stdout
    assert "error: No space left on device while writing to %s" % output_dir in warned.stderr
    # With the space back, the same command resumes from the last whole checkpoint.
    os.remove(ballast)
    rerun = run_train(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Restoring parameters from %s/model.ckpt-%d" % (output_dir, reached) in rerun.stderr
    assert latest_step(output_dir) == 500


def test_a_full_disk_during_the_onnx_conversion_leaves_no_temporary_file(
        trained, imdb_dir, tiny_module, small_disk):
    """A finished run whose export lacks its ONNX copy, rerun: the disk fills once the
    evaluation is written, while tf2onnx starts. No model.onnx and no temporary file of
    it or of run_info.json stay, and run_info.json says how the run ended."""
    output_dir = copy_of(trained, small_disk)
    export_root = os.path.join(output_dir, "export")
    [export] = os.listdir(export_root)
    os.remove(os.path.join(export_root, export, "model.onnx"))
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"),
         *quick_args(imdb_dir, tiny_module, output_dir, onnx=True)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_for_line(process.stdout, "Plots, test_predictions.csv and eval_results.json", process)
    fill(str(small_disk / "ballast"), leave=16 << 10)  # room for run_info.json, not the copy
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]
    assert "No ONNX copy of %s (" % os.path.join(export_root, export) in output
    assert ("No space left on device): predict.py will use the SavedModel; once there is "
            "space, python -m imdb_bert.serving %s adds it." % output_dir) in output
    leftovers = [os.path.join(root, name) for root, _, names in os.walk(output_dir)
                 for name in names if ".tmp-" in name]
    assert leftovers == []
    assert not os.path.exists(os.path.join(export_root, export, "model.onnx"))
    info = read_json(os.path.join(output_dir, "run_info.json"))
    assert info["outcome"] == "completed without the ONNX copy" and info["end_time"]
    # A JSON file written on the full disk: an error, and no temporary file left.
    fill(str(small_disk / "more_ballast"))
    with pytest.raises(OSError):
        files.write_json(os.path.join(output_dir, "run_info.json"), {"x": "y" * 100000})
    assert [name for name in os.listdir(output_dir) if ".tmp-" in name] == []


# train.py with its address space capped a few GB above what TensorFlow takes at import,
# so that a large batch really runs out of memory (on the CPU here; a GPU's OOM is the
# same ResourceExhaustedError).
CAPPED_TRAIN = """
import resource, sys
sys.path.insert(0, sys.argv.pop(1))
from imdb_bert.compat import tf
with open("/proc/self/status") as f:
    size = int(next(line for line in f if line.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + (3 << 30),) * 2)
sys.argv[0] = "train.py"
import train
from imdb_bert.errors import run_script
run_script(train.main)
"""


def test_out_of_memory_names_the_batch_and_what_to_try(imdb_dir, tiny_module, tmp_path):
    # 4096 reviews of 128 pieces: each attention layer's scores alone take 512 MB.
    args = quick_args(imdb_dir, tiny_module, str(tmp_path / "out"), "--max-seq-length", "128",
                      "--batch-size", "4096", "--epochs", "100")
    result = subprocess.run([sys.executable, "-c", CAPPED_TRAIN, ROOT, *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            # On the CPU, one op at a time: the first allocation to fail is
                            # then the same in every run (in one whole-suite run a oneDNN
                            # primitive of a concurrent op failed first, and oneDNN aborts).
                            # Padded to the window: the fixture's reviews fill a quarter
                            # of 128 pieces, and padded to the batch they would fit.
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES="",
                                     TF_NUM_INTEROP_THREADS="1", IMDB_BERT_PADDING="window"))
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: Out of memory on the CPU at batch size 4096 and "
                            "max_seq_length 128 (OOM when allocating tensor"), error
    assert "--batch-size (e.g. 2048)" in error and "--max-seq-length (e.g. 64)" in error
    assert "Traceback" not in result.stderr


def test_a_session_restored_from_its_step_s_checkpoint_is_not_saved_again(tmp_path):
    """The saver hook saves the starting step (step 0 of a new run) but not a checkpoint
    the session was just restored from (the next training segment, a resume): that file
    stays as it was, and the next save still comes at its step."""
    from imdb_bert.compat import tf
    from imdb_bert.training.hooks import CheckpointSaverHook, StopOnSignalHook
    folder = str(tmp_path)

    def start_session():
        """(session, the global step's increment), as the Estimator starts them."""
        tf.reset_default_graph()
        step = tf.train.get_or_create_global_step()
        tf.Variable(1.0, name="weight")
        increment = tf.assign_add(step, 1)
        hook = CheckpointSaverHook(folder, save_steps=3, save_secs=3600,
                                   stop_hook=StopOnSignalHook())
        session = tf.train.MonitoredSession(
            tf.train.ChiefSessionCreator(checkpoint_dir=folder), hooks=[hook])
        return session, increment

    session, increment = start_session()  # a new run: step 0 is saved
    session.run(increment)
    session.close()  # at the end: step 1 saved
    assert files.checkpoint_step(tf.train.latest_checkpoint(folder)) == 1
    assert os.path.exists(os.path.join(folder, "model.ckpt-0.index"))
    saved = {path: os.stat(path).st_mtime_ns
             for path in glob.glob(os.path.join(folder, "model.ckpt-1.*"))}
    time.sleep(0.01)
    session, increment = start_session()  # restored from step 1: not saved again
    assert {path: os.stat(path).st_mtime_ns for path in saved} == saved
    for _ in range(3):
        session.run(increment)  # step 4: 3 steps after the restored step 1
    assert files.checkpoint_step(tf.train.latest_checkpoint(folder)) == 4
    session.close()
