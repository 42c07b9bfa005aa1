"""The optimized copy of model.onnx that predict.py writes once per export and loads after
(imdb_bert/serving/onnx_model.py): it answers as model.onnx does, a stale or truncated copy
is written again, and a folder where nothing can be written still predicts."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

SENTENCES = ["That movie was absolutely awful", "Absolutely fantastic!",
             "Great<br /><br />film\x85 loved it \U0001F600", " ".join(["a long review"] * 60)]


@pytest.fixture
def output_dir(trained, tmp_path):
    """A copy of the trained run without any optimized copy in its export."""
    copy = str(tmp_path / "OUTPUT_Bert")
    shutil.copytree(trained[0], copy)
    for name in os.listdir(export_of(copy)):
        if name.startswith("ort-"):
            shutil.rmtree(os.path.join(export_of(copy), name))
    return copy


def export_of(output_dir):
    [stamp] = os.listdir(os.path.join(output_dir, "export"))
    return os.path.join(output_dir, "export", stamp)


def encoded(export_dir):
    from imdb_bert.features.fast_tokenizer import FastTokenizer, encode_inputs
    tokenizer = FastTokenizer(os.path.join(export_dir, "assets", "vocab.txt"), True)
    return encode_inputs(SENTENCES, None, 32, tokenizer)


def predict_json(output_dir):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--json",
                             "--output-dir", output_dir, *SENTENCES], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return [item["probabilities"] for item in json.loads(result.stdout)]


def test_the_optimized_copy_answers_as_model_onnx(output_dir):
    """Small work (one thread, no repacking, no spinning) and large work, from the copy,
    give model.onnx's probabilities within 1e-5; the second load reads the copy."""
    from imdb_bert.serving import onnx_model
    export_dir = export_of(output_dir)
    inputs = encoded(export_dir)
    plain = np.exp(onnx_model.outputs(onnx_model.session(onnx_model.model_path(export_dir)),
                                      inputs, 2))
    folder = onnx_model.optimized_folder(export_dir)
    for count in (1, onnx_model.SMALL_WORK + 1, 1):
        writes = not os.path.exists(folder)
        model = onnx_model.load(export_dir, count)
        assert onnx_model.is_whole(folder, export_dir)
        if not writes:  # the session is of the copy, not of model.onnx
            assert model._model_path == os.path.join(folder, onnx_model.MODEL_FILE)
        np.testing.assert_allclose(np.exp(onnx_model.outputs(model, inputs, 2)), plain,
                                   atol=1e-5)
    assert sorted(os.listdir(folder)) == [onnx_model.MODEL_FILE, onnx_model.RECORD,
                                          onnx_model.WEIGHTS]


def truncate_weights(folder, export_dir):
    path = os.path.join(folder, "weights.bin")
    os.truncate(path, os.path.getsize(path) // 2)


def truncate_graph(folder, export_dir):
    path = os.path.join(folder, "model.onnx")
    os.truncate(path, os.path.getsize(path) - 100)


def of_another_version(folder, export_dir):
    os.rename(folder, os.path.join(export_dir, "ort-0.9.0-cpu-basic"))


def touch_model_onnx(folder, export_dir):
    """model.onnx put there again (another file, or a copy of the folder with new times)."""
    path = os.path.join(export_dir, "model.onnx")
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10 ** 9))


@pytest.mark.parametrize("damage", [truncate_weights, truncate_graph, of_another_version,
                                    touch_model_onnx])
def test_a_stale_or_damaged_copy_is_written_again(output_dir, damage):
    """predict.py writes the copy on first use; damaged for real (truncated), left by
    another ONNX Runtime version, or older than model.onnx, it is written again, the
    answers stay model.onnx's, and model.onnx is untouched."""
    from imdb_bert.serving import onnx_model
    export_dir = export_of(output_dir)
    model_onnx = os.path.join(export_dir, "model.onnx")
    with open(model_onnx, "rb") as f:
        original = f.read()
    first = predict_json(output_dir)
    folder = onnx_model.optimized_folder(export_dir)
    assert onnx_model.is_whole(folder, export_dir)
    damage(folder, export_dir)
    assert not onnx_model.is_whole(folder, export_dir)
    np.testing.assert_allclose(predict_json(output_dir), first, atol=1e-5)
    assert onnx_model.is_whole(folder, export_dir)
    assert [name for name in os.listdir(export_dir) if name.startswith("ort-")] == [
        os.path.basename(folder)]  # the other version's copy and every temporary one gone
    with open(model_onnx, "rb") as f:
        assert f.read() == original


def test_a_leftover_of_a_killed_writer_is_removed(output_dir):
    """A temporary folder of a process that no longer runs goes; a running one's stays."""
    from imdb_bert.serving import onnx_model
    export_dir = export_of(output_dir)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True).stdout.strip()
    dead = os.path.join(export_dir, "ort-1.0.0-cpu-basic.tmp-%s" % ended)
    alive = os.path.join(export_dir, "ort-1.0.0-cpu-basic.tmp-%d" % os.getpid())
    for folder in (dead, alive):
        os.mkdir(folder)
    onnx_model.load(export_dir, 1)
    assert not os.path.exists(dead) and os.path.exists(alive)


def test_a_read_only_folder_still_predicts(output_dir, tmp_path):
    """The run on a tmpfs remounted read-only in a user and mount namespace of its own
    (unshare -rm; root ignores file permissions): no copy can be written, model.onnx
    answers."""
    expected = predict_json(output_dir)
    from imdb_bert.serving import onnx_model
    shutil.rmtree(onnx_model.optimized_folder(export_of(output_dir)))
    mount_point = tmp_path / "readonly"
    mount_point.mkdir()
    script = ("mount -t tmpfs tmpfs {m} && cp -r {o} {m}/ && mount -o remount,ro {m} || "
              "exit 99\n{python} predict.py --json --output-dir {m}/OUTPUT_Bert {sentences}"
              "; echo \"exit $?\"; ls {m}/OUTPUT_Bert/export/*/").format(
        m=mount_point, o=output_dir, python=sys.executable,
        sentences=" ".join("'%s'" % s for s in SENTENCES))
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    if "\nexit " not in "\n" + result.stdout:
        pytest.skip("no read-only mount here (unshare -rm, then mount): %s"
                    % result.stderr.strip()[-500:])
    lines = result.stdout.split("\n")  # not splitlines(): a sentence holds U+0085
    exit_line = lines.index("exit 0")
    assert not [name for name in lines[exit_line + 1:] if name.startswith("ort-")]
    answers = json.loads("\n".join(lines[:exit_line]))
    np.testing.assert_allclose([item["probabilities"] for item in answers], expected,
                               atol=1e-5)
    assert "Traceback" not in result.stderr
