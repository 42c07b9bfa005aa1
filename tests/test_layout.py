"""The house (issue 12): the user's top level, one package for the parts, TensorFlow
imported in one module only, short functions, and the same results as before the move."""
import ast
import glob
import json
import os
import subprocess
import sys

import pytest

import config
import train
from conftest import ROOT, SAME_KERNELS_ENV, on_gpu

SOURCES = [os.path.join(ROOT, name) for name in ("train.py", "predict.py", "config.py")] + \
    sorted(glob.glob(os.path.join(ROOT, "imdb_bert", "*.py")))


def test_the_root_holds_only_the_users_scripts():
    assert sorted(name for name in os.listdir(ROOT) if name.endswith(".py")) == [
        "config.py", "predict.py", "train.py"]


def imported_modules(path):
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_only_compat_imports_tensorflow_hub_and_bert():
    importers = {os.path.relpath(path, ROOT) for path in SOURCES
                 for module in imported_modules(path)
                 if module.split(".")[0] in ("tensorflow", "tensorflow_hub", "bert")}
    assert importers == {os.path.join("imdb_bert", "compat.py")}


def test_every_training_or_prediction_session_gets_a_config():
    """A TF session opened without a config initialises every GPU of the machine and
    takes nearly all of GPU 0's memory (which breaks Horovod's one-GPU-per-process
    pinning, and starves the train.py that make gpu-check or a test starts next): the
    exporter of Hub modules too, as make gpu-check and the tests' fixtures run it in
    their own process. The tests' own sessions run in a process that sees no GPU
    (conftest.py)."""
    configless = []
    for path in SOURCES:
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "Session"
                    and not any(keyword.arg == "config" for keyword in node.keywords)):
                configless.append("%s:%d" % (os.path.relpath(path, ROOT), node.lineno))
    assert configless == []


def functions(path):
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_functions_are_short_and_train_main_reads_as_the_notebook():
    lengths = {(os.path.relpath(path, ROOT), name): length
               for path in SOURCES for name, length in functions(path)}
    assert lengths[("train.py", "main")] <= 80
    too_long = {key: length for key, length in lengths.items()
                if length > 60 and key != ("train.py", "main")}
    assert too_long == {}


def test_train_py_leaves_processes_to_the_runtime():
    with open(os.path.join(ROOT, "train.py")) as f:
        tree = ast.parse(f.read())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
    assert names & {"hvd", "rank", "local_rank", "is_chief", "processes", "size"} == set()


def test_the_notebooks_step_1_constants_are_the_flag_defaults(monkeypatch):
    assert (config.DO_DELETE, config.USE_BUCKET) == (False, False)
    defaults = train.parse_args([])
    assert defaults.do_delete is False and defaults.bucket is None
    monkeypatch.setattr(config, "DO_DELETE", True)
    monkeypatch.setattr(config, "USE_BUCKET", True)
    monkeypatch.setattr(config, "BUCKET", "my-bucket")
    changed = train.parse_args([])
    assert changed.do_delete is True and changed.bucket == "my-bucket"


def test_output_folder_settings_and_export_lookup_need_no_tensorflow(trained):
    script = ("import sys; from imdb_bert import output_folder as o; "
              "folder, info = o.newest_export(sys.argv[1]); "
              "print(info['global_step'], o.read_settings(sys.argv[1])['max_seq_length'], "
              "'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, trained[0]], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["125", "32", "False"]


@pytest.mark.skipif(SAME_KERNELS_ENV is None or on_gpu(),
                    reason="the recorded results need the CPU's AVX2 kernels")
def test_results_equal_the_recorded_ones(trained):
    """tests/reference_eval_results.json is the `trained` fixture's eval_results.json
    (AVX2 kernels, seed 42), recorded before the package refactor, again when training
    began to read the TFRecord files (another shuffle order) and again when the exporter
    began to write Google's MatMul graph (the loss moved by 4e-7): a change of the results
    shows here."""
    with open(os.path.join(ROOT, "tests", "reference_eval_results.json")) as f:
        recorded = json.load(f)
    with open(os.path.join(trained[0], "eval_results.json")) as f:
        assert json.load(f) == recorded


def test_make_installs_the_cuda_build_where_a_driver_is_and_says_so(tmp_path):
    """make -n (a dry run: nothing is installed) on this machine, then with a working
    nvidia-smi on PATH: the stamp of the CPU build no longer counts."""
    here = subprocess.run(["make", "-n", "venv"], cwd=ROOT, capture_output=True, text=True)
    assert '"tensorflow[and-cuda]==2.15.1"' not in here.stdout  # pip's argument
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=str(tmp_path) + os.pathsep + os.environ["PATH"])
    gpu = subprocess.run(["make", "-n", "venv"], cwd=ROOT, capture_output=True, text=True,
                         env=env)
    assert gpu.returncode == 0, gpu.stderr
    assert '"tensorflow[and-cuda]==2.15.1"' in gpu.stdout
    assert "rm -f .venv/.installed .venv/.installed-*" in gpu.stdout
    assert "an NVIDIA driver is present" in gpu.stdout
