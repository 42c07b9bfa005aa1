"""Loose ends of the earlier rounds (issue 23, section 4), each fault made for real: a
parent of tf2onnx killed by SIGKILL, a model.onnx removed by hand, kills at every step of
keeping the best checkpoint, a .DS_Store and bad files in the dataset's class folders."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, quick_args
from imdb_bert.data import aclimdb
from imdb_bert.errors import UserError
from imdb_bert.output import cleanup, files
from imdb_bert.tools.synthetic_reviews import make_imdb_tree
from test_predict import PLAIN_LINE, run_predict


def process_state(pid):
    """The state letter of /proc/<pid>/status (R, S, Z...), or None when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return next(line.split()[1] for line in f if line.startswith("State:"))
    except (OSError, StopIteration):
        return None


# A stand-in for tf2onnx's converter that says its PID and would run for ten minutes.
SLOW_TF2ONNX = """import os, sys, time
with open(os.environ["TF2ONNX_PID_FILE"], "w") as f:
    f.write(str(os.getpid()))
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_tf2onnx_child_dies_with_its_parent_killed_by_sigkill(tmp_path):
    (tmp_path / "tf2onnx").mkdir()
    (tmp_path / "tf2onnx" / "__init__.py").write_text("")
    (tmp_path / "tf2onnx" / "convert.py").write_text(SLOW_TF2ONNX)
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from "
         "imdb_bert.serving import onnx_model; onnx_model.convert(sys.argv[2], "
         "sys.argv[2] + '.onnx')", ROOT, str(tmp_path / "1")],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(tmp_path),
                           TF2ONNX_PID_FILE=str(pid_file)))
    deadline = time.time() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        assert parent.poll() is None and time.time() < deadline, "no converter started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert process_state(child) in ("R", "S")
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while process_state(child) not in (None, "Z") and time.time() < deadline:
        time.sleep(0.05)
    state = process_state(child)
    if state not in (None, "Z"):
        os.kill(child, signal.SIGKILL)
    assert state in (None, "Z"), "tf2onnx outlived its parent"


def test_a_removed_model_onnx_uses_the_savedmodel_and_says_how_to_write_it(trained,
                                                                          tmp_path):
    output_dir = str(tmp_path / "OUTPUT Bert")  # a space: the command must quote it
    shutil.copytree(trained[0], output_dir)
    [export] = os.listdir(os.path.join(output_dir, "export"))
    export = os.path.join(output_dir, "export", export)
    os.remove(os.path.join(export, "model.onnx"))
    sentences = ["a great , wonderful film", "awful , boring film"]
    result = run_predict("--output-dir", output_dir, *sentences)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Predicting with the SavedModel %s (no model.onnx in it)." % export in result.stderr
    command = "python -m imdb_bert.serving %s" % shlex.quote(output_dir)
    assert "The export has no ONNX copy (model.onnx), which answers without loading " \
           "TensorFlow: %s writes it." % command in result.stderr
    assert [PLAIN_LINE.match(line).group(1) for line in result.stdout.splitlines()] == [
        "Positive", "Negative"]
    # The command said writes the copy, and predict.py uses it again.
    written = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert written.returncode == 0, written.stderr[-3000:]
    assert "Wrote its ONNX copy for predict.py" in written.stdout
    again = run_predict("--output-dir", output_dir, *sentences)
    assert again.stderr.startswith("Predicting with ONNX Runtime on the CPU")
    assert again.stdout.split("\t")[0] == "Positive"


def test_an_output_dir_starting_with_a_dash_gets_its_onnx_copy_and_working_commands(
        trained, imdb_dir, tiny_module, tmp_path):
    """--output-dir=-x, relative: tf2onnx and the suggested command get absolute paths, which
    no program reads as an option."""
    shutil.copytree(trained[0], str(tmp_path / "-x"))
    [export] = os.listdir(str(tmp_path / "-x" / "export"))
    onnx_file = tmp_path / "-x" / "export" / export / "model.onnx"
    os.remove(str(onnx_file))
    args = quick_args(imdb_dir, tiny_module, "-x", onnx=True)
    at = args.index("--output-dir")
    args[at:at + 2] = ["--output-dir=-x"]
    rerun = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Wrote its ONNX copy for predict.py" in rerun.stdout, rerun.stdout[-3000:]
    assert onnx_file.exists()
    os.remove(str(onnx_file))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"),
                             "--output-dir=-x", "a great , wonderful film"],
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    command = "python -m imdb_bert.serving %s" % shlex.quote(str(tmp_path / "-x"))
    assert "without loading TensorFlow: %s writes it." % command in result.stderr
    # Run from the repository, as python -m needs: the relative -x would name another folder.
    written = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert written.returncode == 0, written.stderr[-3000:]
    assert "Wrote its ONNX copy for predict.py" in written.stdout and onnx_file.exists()


# Keeps step 10's checkpoint, then step 20's, in a child that SIGKILLs itself just before
# its Nth file-system operation (a copy, rename or removal in best/, or the rename that
# replaces best_checkpoint.json), each N in a process forked from it (TensorFlow is imported
# once). Prints how many operations keeping step 20 made.
KILLED_KEEPS = """
import os, shutil, signal, sys
sys.path.insert(0, sys.argv[1])
from imdb_bert.compat import tf
from imdb_bert.training import validation
work = sys.argv[2]
for point in range(1, 100):
    folder = os.path.join(work, "kill-%d" % point)
    shutil.copytree(os.path.join(work, "source"), folder)
    pid = os.fork()
    if pid == 0:
        validation.keep_checkpoint(folder, os.path.join(folder, "model.ckpt-10"), 10)
        count = [0]
        def armed(operation):
            def run(*args, **kwargs):
                count[0] += 1
                if count[0] == point:
                    os.kill(os.getpid(), signal.SIGKILL)
                return operation(*args, **kwargs)
            return run
        for name in ("copy", "rename", "remove", "rmtree"):
            setattr(tf.io.gfile, name, armed(getattr(tf.io.gfile, name)))
        os.replace = armed(os.replace)
        validation.keep_checkpoint(folder, os.path.join(folder, "model.ckpt-20"), 20)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:  # no operation left to be killed at
        shutil.rmtree(folder)
        print(point - 1)
        break
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL, status
"""
CHECKPOINT_FILES = (".index", ".data-00000-of-00001", ".meta")


def test_a_kill_while_keeping_the_best_checkpoint_leaves_a_whole_one_recorded(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for step in (10, 20):
        for suffix in CHECKPOINT_FILES:
            (source / ("model.ckpt-%d%s" % (step, suffix))).write_bytes(
                os.urandom(1000) + b"step %d" % step)
    result = subprocess.run([sys.executable, "-c", KILLED_KEEPS, ROOT, str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    operations = int(result.stdout.split()[-1])
    assert operations >= len(CHECKPOINT_FILES)  # at least a copy of each file
    recorded_steps = set()
    for point in range(1, operations + 1):
        folder = tmp_path / ("kill-%d" % point)
        with open(folder / "best_checkpoint.json") as f:
            record = json.load(f)
        recorded_steps.add(record["global_step"])
        checkpoint = files.best_checkpoint(str(folder))
        assert checkpoint == str(folder / "best" / ("model.ckpt-%d" % record["global_step"]))
        for suffix in CHECKPOINT_FILES:  # whole: the bytes of the checkpoint it names
            assert (folder / "best" / ("model.ckpt-%d%s" % (record["global_step"], suffix))
                    ).read_bytes() == (source / ("model.ckpt-%d%s" % (
                        record["global_step"], suffix))).read_bytes(), point
        # The next start (under the folder's lock) removes the rest: temporary copies, an
        # earlier best's files.
        cleanup.remove_leftovers(str(folder))
        assert sorted(os.listdir(folder / "best")) == sorted(
            "model.ckpt-%d%s" % (record["global_step"], suffix) for suffix in CHECKPOINT_FILES)
    assert recorded_steps == {10, 20}  # killed before and after the record's replacement


def add_hidden_files(class_folder):
    """What macOS leaves: .DS_Store and an AppleDouble ._ file beside a review."""
    (class_folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00")
    apple_double = "._" + sorted(os.listdir(class_folder))[-1]
    (class_folder / apple_double).write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    return apple_double


def test_names_starting_with_a_dot_are_skipped_and_counted(tmp_path, capsys):
    root = make_imdb_tree(str(tmp_path), per_class={"train": 3, "test": 2})
    apple_double = add_hidden_files(tmp_path / "aclImdb" / "train" / "pos")
    (tmp_path / "aclImdb" / "test" / "neg" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    train, test = aclimdb.download_and_load_datasets(root, "http://unused", "", seed=0)
    assert len(train) == 6 and len(test) == 4
    out = capsys.readouterr().out.splitlines()
    pos = os.path.join(root, "aclImdb", "train", "pos")
    assert out[0] == 'Skipped 2 names starting with "." in %s: .DS_Store, %s' % (
        pos, apple_double)
    assert out[1] == 'Skipped 1 name starting with "." in %s: .DS_Store' % os.path.join(
        root, "aclImdb", "test", "neg")


def test_bad_review_files_are_reported_together(tmp_path):
    folder = tmp_path / "pos"
    folder.mkdir()
    (folder / "0_9.txt").write_text("A fine review.", encoding="utf-8")
    bad = {}
    for i in range(1, 6):
        bad["notes-%d.txt" % i] = (b"not a review", "not named <id>_<rating>.txt")
    for i in range(6, 10):
        bad["%d_9.txt" % i] = (b"\xff\xfe latin-1 \xe9", "not valid UTF-8")
    for i in range(10, 13):
        bad["%d_8.txt" % i] = (b" \n\t", "an empty review")
    for name, (content, _) in bad.items():
        (folder / name).write_bytes(content)
    with pytest.raises(UserError) as error:
        aclimdb.load_directory_data(str(folder))
    lines = str(error.value).splitlines()
    assert lines[0] == ("12 files of %s are not reviews; fix them or move them out of that "
                        "folder:" % folder)
    assert len(lines) == 1 + 10 + 1 and lines[-1] == "  and 2 more"
    for line in lines[1:-1]:
        path, problem = line.strip().split(" is ", 1)
        assert problem.startswith(bad[os.path.basename(path)][1])
