"""No traceback at any step of train.py (issue 23, section 2): each fault, made for real,
stops with exit code 2 (130/143 for a signal) and a message that names the culprit."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

import train
from conftest import ROOT, quick_args, run_train
from test_reliability import wait_for_line


@pytest.mark.parametrize("flag, value, message", [
    ("--max-seq-length", "1", "must be at least 3 ([CLS], one word piece, [SEP]), not 1"),
    ("--max-seq-length", "2", "must be at least 3"),
    ("--warmup-proportion", "-0.1", "must be between 0 and 1, not -0.1"),
    ("--warmup-proportion", "1.5", "must be between 0 and 1, not 1.5")])
def test_a_sequence_below_3_and_a_warmup_outside_0_1_are_refused(capsys, flag, value,
                                                                 message):
    with pytest.raises(SystemExit) as stopped:
        train.parse_args([flag, value])
    assert stopped.value.code == 2
    assert "argument %s: %s" % (flag, message) in capsys.readouterr().err


def remove_vocab(module):
    os.remove(os.path.join(module, "assets", "vocab.txt"))


def garble_module_def(module):
    with open(os.path.join(module, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03garbled\xff")


@pytest.mark.parametrize("damage, what", [
    (remove_vocab, "assets/vocab.txt, its vocab, is missing."),
    (garble_module_def, "its tfhub_module.pb cannot be read (Error parsing message).")],
    ids=["vocab missing", "garbled tfhub_module.pb"])
def test_a_broken_hub_module_is_named_and_settings_without_checkpoints_are_replaced(
        imdb_dir, tiny_module, tmp_path, damage, what):
    """The folder holds the model_settings.json of a run that stopped before its first
    checkpoint (as --max-seq-length 1 did): the rerun replaces it, and stops at the
    broken module."""
    module = str(tmp_path / "broken_bert")
    shutil.copytree(tiny_module, module)
    damage(module)
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    settings = output_dir / "model_settings.json"
    settings.write_text(json.dumps({"bert_hub": tiny_module, "max_seq_length": 1}))
    result = run_train(*quick_args(imdb_dir, module, str(output_dir), "--train-samples", "32",
                                   "--test-samples", "16"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert ("Replacing %s: it was written for other settings (bert_hub, max_seq_length), but "
            "no checkpoint was saved beside it." % settings) in result.stdout
    assert result.stderr.splitlines()[-1].startswith(
        "error: The Hub module %s is broken: %s" % (module, what))
    assert "Traceback" not in result.stderr
    assert not settings.exists()  # the rerun with a whole module writes its own


@pytest.mark.parametrize("do_delete", [[], ["--do-delete"]], ids=["plain", "--do-delete"])
def test_an_output_dir_that_is_a_file_is_refused_and_left_alone(imdb_dir, tiny_module,
                                                                tmp_path, do_delete):
    a_file = tmp_path / "results.txt"
    a_file.write_text("my notes\n")
    result = run_train(*quick_args(imdb_dir, tiny_module, str(a_file), *do_delete))
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (
        "error: --output-dir %s is a file, not a folder. Pass the folder train.py should "
        "write (it is created if missing)." % a_file)
    assert "Traceback" not in result.stderr and a_file.read_text() == "my notes\n"


def test_an_output_dir_on_a_read_only_file_system_is_refused(imdb_dir, tiny_module,
                                                             tmp_path):
    """A read-only tmpfs in a user and mount namespace of its own (unshare -rm): the run's
    old output in it stays as it was, --do-delete or not."""
    mount_point = tmp_path / "readonly"
    mount_point.mkdir()
    output_dir = mount_point / "OUTPUT_Bert"
    args = " ".join(quick_args(imdb_dir, tiny_module, str(output_dir), "--do-delete"))
    script = ("mount -t tmpfs tmpfs {m} && mkdir {o} && echo '{{}}' > {o}/run_info.json && "
              "mount -o remount,ro {m} || exit 99\n"
              "{python} train.py {args}; echo \"exit $?\"; cat {o}/run_info.json; true").format(
        m=mount_point, o=output_dir, python=sys.executable, args=args)
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                            text=True, cwd=ROOT, timeout=600)
    if not result.stdout.startswith("exit ") and "\nexit " not in result.stdout:
        pytest.skip("no read-only mount here (unshare -rm, then mount): %s"
                    % result.stderr.strip()[-500:])
    assert result.stdout.splitlines()[-2:] == ["exit 2", "{}"], result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (
        "error: --output-dir %s cannot be written: %s is on a read-only file system. Pass an "
        "--output-dir on a writable disk." % (output_dir, output_dir))
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_reviews_are_prepared_stops_in_one_line(imdb_dir, tiny_module,
                                                                   tmp_path, signum):
    """Ctrl-C or SIGTERM before the run record exists (loading the Hub module's tokenizer,
    converting the reviews): exit 130/143, one line, no traceback."""
    output_dir = tmp_path / "OUTPUT_Bert"
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"),
         *quick_args(imdb_dir, tiny_module, str(output_dir))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_for_line(process.stdout, "Train reviews: 200, test reviews: 100", process)
    process.send_signal(signum)
    output = process.communicate(timeout=120)[0]  # with stderr
    assert process.returncode == 128 + signum, output[-3000:]
    assert not (output_dir / "run_info.json").exists()  # it stopped before the run record
    assert [line for line in output.splitlines() if "stopped" in line] == [
        "%s during the preparation, before training: stopped. Run the same command again."
        % signal.Signals(signum).name]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
