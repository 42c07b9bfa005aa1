"""make quick: one of Google's small BERT checkpoints (a zip, either layout, or its folder)
made into a Hub module once, trained on a sample of the reviews, then a prediction. The
tests give a tiny checkpoint in Google's form and the fixture's reviews: no network."""
import os
import shutil
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import ROOT, write_google_checkpoint
from imdb_bert.compat import tf
from imdb_bert.tools import quick

# Tiny sizes through ARGS, which come after make quick's own flags and win over them.
TINY_RUN = ("--train-samples 64 --test-samples 32 --max-seq-length 32 --batch-size 16 "
            "--epochs 1 --no-onnx")
CHECKPOINT_FILES = ("bert_config.json", "vocab.txt", "bert_model.ckpt.index",
                    "bert_model.ckpt.data-00000-of-00001")


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    """A folder like Google's unzipped checkpoints (bert_config.json, bert_model.ckpt.*,
    vocab.txt), with a tiny BERT."""
    folder = tmp_path_factory.mktemp("ckpt") / "uncased_L-2_H-32_A-2"
    folder.mkdir()
    write_google_checkpoint(str(folder), seed=3)
    return folder


def zip_checkpoint(folder, path, inside_a_folder):
    """The checkpoint as a zip: its files at the top (the small BERTs' zips) or inside one
    folder (BERT-Base's zip)."""
    prefix = folder.name + "/" if inside_a_folder else ""
    with zipfile.ZipFile(path, "w") as archive:
        for name in CHECKPOINT_FILES:
            archive.write(folder / name, prefix + name)
    return path


def make_quick(tmp_path, model, imdb_dir):
    """make quick as a user runs it, on the tiny checkpoint and the fixture's reviews.
    INSTALLED= : the test runs in an installed .venv, and must not install anything."""
    return subprocess.run(
        [shutil.which("make"), "--no-print-directory", "quick", "INSTALLED=",
         "PY=%s" % sys.executable, "QUICK_MODEL=%s" % model,
         "QUICK_HUB=%s" % (tmp_path / "hub"), "QUICK_OUTPUT=%s" % (tmp_path / "out"),
         "ARGS=--data-dir %s %s" % (imdb_dir, TINY_RUN)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def assert_module_holds_the_checkpoints_weights(module, folder):
    name = "bert/encoder/layer_1/attention/self/query/kernel"
    exported = tf.train.load_checkpoint(os.path.join(module, "variables", "variables"))
    original = tf.train.load_checkpoint(str(folder / "bert_model.ckpt"))
    np.testing.assert_array_equal(exported.get_tensor(name), original.get_tensor(name))


def test_make_quick_trains_predicts_and_makes_the_module_once(tmp_path, checkpoint_folder,
                                                              imdb_dir):
    model = zip_checkpoint(checkpoint_folder, tmp_path / "uncased_L-2_H-32_A-2.zip", False)
    first = make_quick(tmp_path, model, imdb_dir)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert "Exporting %s" % model in first.stdout
    assert "'eval_accuracy': " in first.stdout  # the metrics, as train.py prints them
    assert "Train reviews: 64, test reviews: 32" in first.stdout  # ARGS won
    assert "predict.py --output-dir %s" % (tmp_path / "out") in first.stdout
    verdicts = [line.split("\t")[0] for line in first.stdout.splitlines()
                if line.endswith("\tThat movie was absolutely awful")
                or line.endswith("\tThe film was creative and surprising")]
    assert len(verdicts) == 2 and set(verdicts) <= {"Positive", "Negative"}
    assert_module_holds_the_checkpoints_weights(str(tmp_path / "hub"), checkpoint_folder)

    exported_at = os.path.getmtime(tmp_path / "hub" / "saved_model.pb")
    os.remove(model)  # the second run must not need the checkpoint at all
    again = make_quick(tmp_path, model, imdb_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Using the Hub module made earlier in %s" % (tmp_path / "hub") in again.stdout
    assert "Exporting" not in again.stdout
    assert os.path.getmtime(tmp_path / "hub" / "saved_model.pb") == exported_at
    assert "nothing left to train" in again.stdout and "'eval_accuracy': " in again.stdout


@pytest.mark.parametrize("layout", ["zip, files at the top", "zip, files in one folder",
                                    "folder", "folder holding the unzipped folder"])
def test_quick_takes_either_zip_layout_or_the_unzipped_folder(tmp_path, checkpoint_folder,
                                                              layout):
    sources = {
        "zip, files at the top": lambda: zip_checkpoint(checkpoint_folder, tmp_path / "a.zip",
                                                        False),
        "zip, files in one folder": lambda: zip_checkpoint(checkpoint_folder,
                                                           tmp_path / "b.zip", True),
        "folder": lambda: checkpoint_folder,
        "folder holding the unzipped folder": lambda: checkpoint_folder.parent,
    }
    module = tmp_path / "hub" / "module"
    assert quick.main([str(sources[layout]()), str(module)]) == 0
    assert_module_holds_the_checkpoints_weights(str(module), checkpoint_folder)


def test_a_failed_download_names_the_url_and_quick_model(tmp_path):
    """A URL on this machine where nothing listens: the download fails without any network."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d/uncased_L-4_H-256_A-4.zip" % unused.getsockname()[1]
    result = subprocess.run([sys.executable, "-m", "imdb_bert.tools.quick", url,
                             str(tmp_path / "hub")], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "Traceback" not in result.stderr
    assert error[0].startswith("error: cannot download %s (" % url)
    assert "make quick QUICK_MODEL=PATH" in error[0]
    assert not os.path.exists(tmp_path / "hub") and os.listdir(tmp_path) == []


def test_a_zip_without_a_checkpoint_is_refused_saying_what_is_missing(tmp_path, capsys):
    not_a_checkpoint = tmp_path / "photos.zip"
    with zipfile.ZipFile(not_a_checkpoint, "w") as archive:
        archive.writestr("photo.jpg", "not BERT")
    assert quick.main([str(not_a_checkpoint), str(tmp_path / "hub")]) == 2
    error = capsys.readouterr().err
    assert "%s is not a Google BERT checkpoint: missing bert_config.json" % not_a_checkpoint \
        in error
    assert not os.path.exists(tmp_path / "hub")


def test_a_module_folder_holding_something_else_is_left_alone(tmp_path, checkpoint_folder,
                                                              capsys):
    module = tmp_path / "hub"
    module.mkdir()
    (module / "notes.txt").write_text("mine")
    assert quick.main([str(checkpoint_folder), str(module)]) == 2
    assert "%s holds files but no Hub module" % module in capsys.readouterr().err
    assert os.listdir(module) == ["notes.txt"]


def test_make_quick_defaults_to_bert_mini_from_googles_url():
    dry_run = subprocess.run(
        [shutil.which("make"), "--no-print-directory", "-n", "quick", "INSTALLED="],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    url = "https://storage.googleapis.com/bert_models/2020_02_20/uncased_L-4_H-256_A-4.zip"
    assert "-m imdb_bert.tools.quick %s data/hub/uncased_L-4_H-256_A-4\n" % url in dry_run
    assert ("train.py --bert-hub data/hub/uncased_L-4_H-256_A-4 --output-dir "
            "OUTPUT_Bert_quick --train-samples 2000 --test-samples 1000 "
            "--learning-rate 1e-4 --epochs 2") in dry_run
