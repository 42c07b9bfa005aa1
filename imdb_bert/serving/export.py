"""The SavedModel that train.py exports at the end of training, for predict.py, and its
ONNX copy, checked against it.

<output-dir>/export/<timestamp>/ holds signature "serving_default" (inputs input_ids,
input_mask, segment_ids; outputs probabilities, log_probabilities, labels), the vocab in
assets/, assets.extra/export_info.json with the exported global_step, and model.onnx.
"""
import json
import os
import shlex
import tempfile
import time

import numpy as np

from imdb_bert import device
from imdb_bert.errors import FULL_DISK
from imdb_bert.features import conversion
from imdb_bert.features.fast_tokenizer import encode_inputs
from imdb_bert.model.classifier import serving_input_receiver_fn_builder
from imdb_bert.output.files import EXPORT_INFO, checkpoint_step, export_root, newest_export, \
    remove_old_exports
from imdb_bert.serving import onnx_model
from imdb_bert.serving.inference import saved_model_outputs
from imdb_bert.tasks import SERVING_OUTPUT, SINGLE_LABEL, task_of


def export_for_prediction(estimator, checkpoint, output_dir, max_seq_length):
    """Export `checkpoint` unless the newest export holds its step already (a rerun), then
    keep the two newest exports only; (the export folder, whether it is new)."""
    folder, info = newest_export(output_dir)
    if info == {"global_step": checkpoint_step(checkpoint), "max_seq_length": max_seq_length}:
        return folder, False
    with tempfile.TemporaryDirectory() as tmp:
        info_path = os.path.join(tmp, EXPORT_INFO)
        with open(info_path, "w") as f:
            json.dump({"global_step": checkpoint_step(checkpoint),
                       "max_seq_length": max_seq_length}, f)
        path = estimator.export_saved_model(
            export_root(output_dir), serving_input_receiver_fn_builder(),
            assets_extra={EXPORT_INFO: info_path}, checkpoint_path=checkpoint)
    remove_old_exports(output_dir, keep=2)
    return (path.decode() if isinstance(path, bytes) else path), True


# What a new ONNX copy must classify as the SavedModel does: the notebook's sentences and
# the kinds of text real reviews hold (HTML, U+0085, emoji, a control character).
CHECK_SENTENCES = ["That movie was absolutely awful", "The acting was a bit lacking",
                   "The film was creative and surprising", "Absolutely fantastic!",
                   "Great<br /><br />film\x85 loved it \U0001F600", "awful\x07 caf\u00e9 plot",
                   " ".join(["a long review"] * 200)]


def add_onnx_copy(export_dir, settings):
    """model.onnx beside the SavedModel (onnx_model.py), unless it is there already; a new
    copy is kept only if its probabilities match the SavedModel's on CHECK_SENTENCES.
    Without it predict.py uses the SavedModel, so a failure is said, not raised: returns
    why the conversion failed, else None."""
    if os.path.exists(onnx_model.model_path(export_dir)):
        return None
    missing = onnx_model.missing("tf2onnx", "onnx", "onnxruntime")
    if missing:
        print("ONNX is unavailable (%s not installed; tf2onnx needs Python 3.10+): no "
              "model.onnx, predict.py will use the SavedModel." % ", ".join(missing))
        return None
    start = time.perf_counter()
    # Named before tf2onnx runs, so that a conversion that fails midway (a full disk)
    # leaves no half-written file behind.
    temporary = onnx_model.temporary_path(export_dir)
    serving_command = "python -m imdb_bert.serving %s" % shlex.quote(
        os.path.abspath(os.path.dirname(os.path.dirname(export_dir))))
    try:
        shortfall = onnx_model.memory_shortfall(export_dir)
        if shortfall:
            raise onnx_model.ConversionFailed("%s; once train.py has ended, %s adds it"
                                              % (shortfall, serving_command))
        onnx_model.convert(export_dir, temporary)
        difference = onnx_difference(export_dir, temporary, settings)
        if not difference <= onnx_model.TOLERANCE:
            raise onnx_model.ConversionFailed(
                "its probabilities differ from the SavedModel's by up to %.1e" % difference)
        os.replace(temporary, onnx_model.model_path(export_dir))
    except onnx_model.ConversionFailed as e:
        later = ("; once there is space, %s adds it" % serving_command
                 if FULL_DISK in str(e) else "")
        print("No ONNX copy of %s (%s): predict.py will use the SavedModel%s."
              % (export_dir, e, later))
        return str(e)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    print("Wrote its ONNX copy for predict.py in %.0f s: %s (probabilities within %.0e of "
          "the SavedModel's on %d sentences)"
          % (time.perf_counter() - start, onnx_model.model_path(export_dir),
             max(difference, 1e-9), len(CHECK_SENTENCES)))
    return None


def onnx_difference(export_dir, onnx_file, settings):
    """The largest difference in probability (regression: in value) between the SavedModel
    (float32, on the CPU: a GPU's TF32 matmuls would differ by more than the tolerance) and
    the ONNX file. A model of sentence pairs gets the sentences as pairs with themselves."""
    tokenizer = conversion.create_tokenizer(os.path.join(export_dir, "assets", "vocab.txt"),
                                            settings["do_lower_case"], fast=True)
    pairs = CHECK_SENTENCES if settings.get("text_pair_column") else None
    inputs = encode_inputs(CHECK_SENTENCES, pairs, settings["max_seq_length"], tokenizer)
    config = device.base_session_config()
    config.device_count["GPU"] = 0
    task = task_of(settings)
    expected = saved_model_outputs(export_dir, inputs, len(CHECK_SENTENCES), config,
                                   SERVING_OUTPUT[task])
    actual = onnx_model.outputs(onnx_model.session(onnx_file), inputs, len(CHECK_SENTENCES),
                                SERVING_OUTPUT[task])
    if task == SINGLE_LABEL:  # log-probabilities
        expected, actual = np.exp(expected), np.exp(actual)
    return float(np.abs(actual - expected).max())
