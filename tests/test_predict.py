"""predict.py restores what train.py wrote and classifies sentences."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from imdb_bert.tools import make_hub_module
from conftest import ROOT

NOTEBOOK_SENTENCES = ["That movie was absolutely awful", "The acting was a bit lacking",
                      "The film was creative and surprising", "Absolutely fantastic!"]
PLAIN_LINE = re.compile(r"^(Positive|Negative)\t(\d\.\d{4})\t\[(-?\d+\.\d{4}), (-?\d+\.\d{4})\]\t(.*)$")


def run_predict(*args, stdin=None, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, input=stdin,
                          env=env)


# TensorFlow's paths compared with ONNX Runtime's (CPU) run on the CPU too: on Ampere and
# newer GPUs TensorFlow's float32 matmuls use TF32 by default (TF 2.15 docs,
# tf.config.experimental.enable_tensor_float_32_execution), beyond these tolerances.
ON_THE_CPU = dict(os.environ, CUDA_VISIBLE_DEVICES="")


def predict_json(*args, env=None):
    result = run_predict("--json", *args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def notebook_dir(trained, tmp_path_factory):
    """An output dir as the notebook left it: checkpoints only, no settings, no export."""
    folder = tmp_path_factory.mktemp("notebook") / "OUTPUT_Bert"
    folder.mkdir()
    for name in os.listdir(trained[0]):
        if name.startswith("model.ckpt-125") or name == "checkpoint":
            shutil.copy(os.path.join(trained[0], name), folder)
    return str(folder)


def test_notebook_sentences_plain(trained):
    result = run_predict("--output-dir", trained[0], *NOTEBOOK_SENTENCES)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    for line, sentence in zip(lines, NOTEBOOK_SENTENCES):
        label, probability, lp_neg, lp_pos, echoed = PLAIN_LINE.match(line).groups()
        assert echoed == sentence
        log_probs = [float(lp_neg), float(lp_pos)]
        assert label == ["Negative", "Positive"][int(np.argmax(log_probs))]
        assert float(probability) == pytest.approx(np.exp(max(log_probs)), abs=1e-3)
    assert lines[0].startswith("Negative\t")  # "awful" is one of the planted words
    assert "Restoring" not in result.stderr  # the export was used


def test_json_schema_and_planted_classes(trained):
    sentences = ["great wonderful film", "the plot was awful and boring",
                 "superb acting , loved it", "terrible script , worst movie"]
    output, _ = predict_json("--output-dir", trained[0], *sentences)
    assert [item["sentence"] for item in output] == sentences
    assert [item["label"] for item in output] == ["Positive", "Negative", "Positive", "Negative"]
    for item in output:
        assert set(item) == {"sentence", "label", "probabilities", "log_probabilities",
                             "label_names"}
        assert item["label_names"] == ["Negative", "Positive"]
        assert len(item["probabilities"]) == len(item["log_probabilities"]) == 2
        assert sum(item["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(np.exp(item["log_probabilities"]), item["probabilities"],
                                   rtol=1e-5)


MESSY_SENTENCES = ["a great\x85film <br /><br />loved it \U0001F600",
                   "awful\x07 film \uf0b7 caf\u00e9",  # \uf0b7: the tokenizer's fallback
                   "\u4e2d\u6587 boring"]


def test_onnx_savedmodel_and_checkpoint_agree_and_repeat(trained, tmp_path):
    """The ONNX path runs without TensorFlow and bert (a stand-in package that fails on
    import comes first on the path) and gives the SavedModel's probabilities within 1e-4;
    the SavedModel gives the checkpoint's within 1e-5."""
    sentences = (NOTEBOOK_SENTENCES + NOTEBOOK_SENTENCES[:1] + [" ".join(["great"] * 100)]
                 + MESSY_SENTENCES)
    for package in ("tensorflow", "tensorflow_hub", "bert"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(
            "raise ImportError('%s was imported on the ONNX path')\n" % package)
    result = run_predict("--json", "--output-dir", trained[0], *sentences,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert result.returncode == 0, result.stderr[-3000:]
    [export] = os.listdir(os.path.join(trained[0], "export"))
    assert result.stderr == "Predicting with ONNX Runtime on the CPU: %s\n" % os.path.join(
        trained[0], "export", export, "model.onnx")
    from_onnx = json.loads(result.stdout)
    from_export, stderr = predict_json("--output-dir", trained[0], "--no-onnx", *sentences,
                                       env=ON_THE_CPU)
    assert "Predicting with the SavedModel %s (--no-onnx)." % os.path.join(
        trained[0], "export", export) in stderr
    from_checkpoint, stderr = predict_json("--output-dir", trained[0], "--from-checkpoint",
                                           *sentences, env=ON_THE_CPU)
    assert "Restoring" in stderr and "model.ckpt-125" in stderr
    assert ([i["label"] for i in from_onnx] == [i["label"] for i in from_export]
            == [i["label"] for i in from_checkpoint])
    np.testing.assert_allclose([i["probabilities"] for i in from_onnx],
                               [i["probabilities"] for i in from_export], atol=1e-4)
    np.testing.assert_allclose([i["probabilities"] for i in from_export],
                               [i["probabilities"] for i in from_checkpoint], atol=1e-5)
    assert from_onnx[0] == from_onnx[4]  # the same sentence twice, the same numbers


def test_latest_checkpoint_reads_the_checkpoint_file_as_tensorflow_does(trained, tmp_path):
    from imdb_bert.compat import tf
    from imdb_bert.output.files import latest_checkpoint
    from tensorflow.python.training.checkpoint_management import update_checkpoint_state
    folder = tmp_path / "caf\u00e9 \"quoted\" OUTPUT"
    folder.mkdir()
    assert latest_checkpoint(str(folder)) is None  # no checkpoint file
    for name in os.listdir(trained[0]):
        if name.startswith("model.ckpt-125"):
            shutil.copy(os.path.join(trained[0], name), folder)
    for path in ("model.ckpt-125", str(folder / "model.ckpt-125"), "model.ckpt-999"):
        update_checkpoint_state(str(folder), path)
        assert latest_checkpoint(str(folder)) == tf.train.latest_checkpoint(str(folder)), path
    assert latest_checkpoint(str(folder)) is None  # model.ckpt-999 has no files
    assert latest_checkpoint(trained[0]) == os.path.join(trained[0], "model.ckpt-125")


def test_an_nvidia_gpu_takes_large_inputs_from_onnx(monkeypatch, tmp_path):
    """The choice of path, with the GPU's presence faked (no GPU here)."""
    sys.path.insert(0, ROOT)
    import config
    import predict
    from imdb_bert.serving import onnx_model
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not onnx_model.nvidia_driver_present()  # every GPU hidden: no GPU to prefer
    args = predict.parse_args(["--output-dir", str(tmp_path)])
    assert predict.onnx_unusable(args, str(tmp_path), 1) == "no model.onnx in it"
    (tmp_path / "model.onnx").write_bytes(b"")
    limit = config.ONNX_MAX_SENTENCES_WITH_GPU
    for gpu, count, onnx in [(False, 10 ** 6, True), (True, limit, True),
                             (True, limit + 1, False)]:
        monkeypatch.setattr(onnx_model, "nvidia_driver_present", lambda: gpu)
        said = predict.onnx_unusable(args, str(tmp_path), count)
        assert (said is None) == onnx, (gpu, count, said)
    assert said == "%d sentences with an NVIDIA GPU here" % (limit + 1)
    bf16 = predict.parse_args(["--output-dir", str(tmp_path), "--bf16"])
    assert predict.onnx_unusable(bf16, str(tmp_path), 1) == "--bf16 runs in TensorFlow"


def test_file_and_stdin_skip_blank_lines(trained, tmp_path):
    sentences_file = tmp_path / "reviews.txt"
    sentences_file.write_text("great film\n\n   \nawful film\n", encoding="utf-8")
    output, stderr = predict_json("--output-dir", trained[0], "--file", str(sentences_file),
                                  "--batch-size", "1")
    assert [i["sentence"] for i in output] == ["great film", "awful film"]
    assert "Skipped 2 blank lines" in stderr
    result = run_predict("--output-dir", trained[0], "--file", "-", stdin="awful\ngreat\n")
    assert [line.split("\t")[3] for line in result.stdout.splitlines()] == ["awful", "great"]


def test_notebook_folder_restores_with_bert_hub(notebook_dir, trained, tiny_module):
    expected, _ = predict_json("--output-dir", trained[0], *NOTEBOOK_SENTENCES)
    output, stderr = predict_json("--output-dir", notebook_dir, "--bert-hub", tiny_module,
                                  "--max-seq-length", "32", *NOTEBOOK_SENTENCES,
                                  env=ON_THE_CPU)
    assert "no export" in stderr
    np.testing.assert_allclose([i["probabilities"] for i in output],
                               [i["probabilities"] for i in expected], atol=1e-5)


def test_errors_exit_2_with_a_message(trained, notebook_dir, tmp_path):
    cases = [
        (["--output-dir", str(tmp_path), "hello"], "run train.py first"),
        (["--output-dir", trained[0]], "No sentences"),
        (["--output-dir", trained[0], "--file", str(tmp_path / "missing.txt")], "missing.txt"),
        (["--output-dir", trained[0], "--max-seq-length", "64", "hi"], "does not match"),
        (["--output-dir", notebook_dir, "hi"], "--bert-hub"),
    ]
    for args, message in cases:
        result = run_predict(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_checkpoint_of_another_model_is_refused(notebook_dir, tmp_path):
    other = str(tmp_path / "other_module")
    make_hub_module.export_random(other, layers=1, hidden=16, heads=2)
    result = run_predict("--output-dir", notebook_dir, "--bert-hub", other,
                         "--max-seq-length", "32", "hi")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "does not fit" in result.stderr and "Traceback" not in result.stderr


def test_file_lines_split_at_newlines_only(trained, tmp_path):
    """Real reviews hold U+0085 and the like, at which str.splitlines() would split: one
    output per line of the file all the same, in order, for \\n and \\r\\n files."""
    breakers = ["\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r"]
    sentences = ["great film %s loved it" % c for c in breakers] + ["awful film"]
    for ending in ("\n", "\r\n"):
        reviews = tmp_path / "reviews.txt"
        reviews.write_bytes(ending.join(sentences + [""]).encode("utf-8"))
        output, _ = predict_json("--output-dir", trained[0], "--file", str(reviews))
        assert [item["sentence"] for item in output] == sentences
    plain = run_predict("--output-dir", trained[0], "--file", "-",
                        stdin="\n".join(sentences) + "\n")
    assert plain.returncode == 0, plain.stderr[-2000:]
    lines = plain.stdout.split("\n")[:-1]
    assert len(lines) == len(sentences) == len(plain.stdout.splitlines())
    assert lines[0].endswith("\tgreat film \\u0085 loved it")
    assert [PLAIN_LINE.match(line).group(1) for line in lines][-1] == "Negative"


def test_too_little_memory_for_tf2onnx_is_said(tmp_path):
    from imdb_bert.serving import onnx_model
    (tmp_path / "variables").mkdir()
    (tmp_path / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 10 ** 6)
    needed = 2 * 2 ** 30 + 34 * 10 ** 6
    assert onnx_model.memory_shortfall(str(tmp_path), available=needed) is None
    said = onnx_model.memory_shortfall(str(tmp_path), available=needed - 1)
    assert said.startswith("tf2onnx needs about 2 GB of memory for this model and 2.2 GB")
    assert onnx_model.available_memory() > 0  # this machine's /proc/meminfo
