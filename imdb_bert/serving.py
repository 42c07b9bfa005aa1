"""Prediction with the trained model: the SavedModel that train.py exports at the end of
training (and its ONNX copy), and log-probabilities from it or from a checkpoint (through
the Estimator).

<output-dir>/export/<timestamp>/ holds signature "serving_default" (inputs input_ids,
input_mask, segment_ids; outputs probabilities, log_probabilities, labels), the vocab in
assets/, assets.extra/export_info.json with the exported global_step, and model.onnx.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from google.protobuf.message import DecodeError
from tqdm import tqdm

from imdb_bert import device, features, folder_lock, hub_module, onnx_model, output_folder
from imdb_bert.compat import run_classifier, tf
from imdb_bert.errors import UserError, run_script
from imdb_bert.fast_features import encode
from imdb_bert.model import model_fn_builder, serving_input_receiver_fn_builder
from imdb_bert.output_folder import (EXPORT_INFO, checkpoint_step, export_root,
                                     newest_export, remove_old_exports)
from imdb_bert.truncation import HEAD


class DamagedExport(Exception):
    """An export that cannot be loaded: a missing or damaged file."""


class CheckpointGone(Exception):
    """The checkpoint was deleted before it was restored: a training run that writes the
    same folder keeps only its newest checkpoints."""


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
            export_root(output_dir), serving_input_receiver_fn_builder(max_seq_length),
            assets_extra={EXPORT_INFO: info_path}, checkpoint_path=checkpoint)
    remove_old_exports(output_dir, keep=2)
    return (path.decode() if isinstance(path, bytes) else path), True


def sentence_features(sentences, settings, tokenizer):
    """The notebook's getPrediction features: dummy label, the model's max_seq_length."""
    examples = features.make_examples(sentences, [settings["label_list"][0]] * len(sentences))
    return features.convert_examples(examples, settings["label_list"],
                                     settings["max_seq_length"], tokenizer,
                                     desc="Converting sentences",
                                     truncate=settings.get("truncate", HEAD))


def batches(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


# What loading a damaged export raises: a file missing or unreadable, a bad protobuf, a
# graph or signature without the expected parts.
LOAD_ERRORS = (tf.errors.OpError, OSError, ValueError, KeyError, DecodeError)


def predict_from_export(export_dir, settings, sentences, batch_size, session_config,
                        on_batch=None):
    """Log-probabilities [n, 2] from the exported SavedModel, each batch's also passed to
    `on_batch` as soon as they are computed; DamagedExport if it cannot be loaded."""
    try:
        tokenizer = features.create_tokenizer(
            os.path.join(export_dir, "assets", "vocab.txt"), settings["do_lower_case"],
            fast=True)
    except LOAD_ERRORS as e:
        raise DamagedExport("%s: %s" % (type(e).__name__, e)) from e
    feats = sentence_features(sentences, settings, tokenizer)
    progress = tqdm(total=len(batches(feats, batch_size)), desc="Predicting", unit=" batches",
                    disable=len(feats) <= batch_size, file=sys.stderr)
    with progress:
        return saved_model_log_probs(export_dir, [f.input_ids for f in feats],
                                     [f.input_mask for f in feats], batch_size, session_config,
                                     progress.update, on_batch)


def saved_model_log_probs(export_dir, input_ids, input_mask, batch_size, session_config,
                          progress=None, on_batch=None):
    """Log-probabilities [n, 2] of encoded single sentences (segment ids all 0) from the
    SavedModel in `export_dir`."""
    with tf.Graph().as_default(), tf.Session(config=session_config) as sess:
        try:
            meta_graph = tf.saved_model.loader.load(sess, ["serve"], export_dir)
            signature = meta_graph.signature_def["serving_default"]
            output = signature.outputs["log_probabilities"].name
        except LOAD_ERRORS as e:
            message = e.message if isinstance(e, tf.errors.OpError) else str(e)
            raise DamagedExport("%s: %s" % (type(e).__name__, message.splitlines()[0])) from e
        log_probs = []
        for start in range(0, len(input_ids), batch_size):
            ids = np.asarray(input_ids[start:start + batch_size], np.int32)
            feed = {signature.inputs["input_ids"].name: ids,
                    signature.inputs["input_mask"].name: input_mask[start:start + batch_size],
                    signature.inputs["segment_ids"].name: np.zeros_like(ids)}
            log_probs.append(sess.run(output, feed))
            if on_batch:
                on_batch(log_probs[-1])
            if progress:
                progress(1)
    return np.concatenate(log_probs)


# What a new ONNX copy must classify as the SavedModel does: the notebook's sentences and
# the kinds of text real reviews hold (HTML, U+0085, emoji, a control character).
CHECK_SENTENCES = ["That movie was absolutely awful", "The acting was a bit lacking",
                   "The film was creative and surprising", "Absolutely fantastic!",
                   "Great<br /><br />film\x85 loved it \U0001F600", "awful\x07 caf\u00e9 plot",
                   " ".join(["a long review"] * 200)]


def add_onnx_copy(export_dir, settings):
    """model.onnx beside the SavedModel (onnx_model.py), unless it is there already; a new
    copy is kept only if its probabilities match the SavedModel's on CHECK_SENTENCES.
    Without it predict.py uses the SavedModel, so a failure is said, not raised."""
    if os.path.exists(onnx_model.model_path(export_dir)):
        return
    missing = onnx_model.missing("tf2onnx", "onnx", "onnxruntime")
    if missing:
        print("ONNX is unavailable (%s not installed; tf2onnx needs Python 3.10+): no "
              "model.onnx, predict.py will use the SavedModel." % ", ".join(missing))
        return
    start = time.perf_counter()
    temporary = None
    try:
        shortfall = onnx_model.memory_shortfall(export_dir)
        if shortfall:
            output_dir = os.path.dirname(os.path.dirname(export_dir))
            raise onnx_model.ConversionFailed(
                "%s; once train.py has ended, python -m imdb_bert.serving %s adds it"
                % (shortfall, output_dir))
        temporary = onnx_model.convert(export_dir)
        difference = onnx_difference(export_dir, temporary, settings)
        if not difference <= onnx_model.TOLERANCE:
            raise onnx_model.ConversionFailed(
                "its probabilities differ from the SavedModel's by up to %.1e" % difference)
        os.replace(temporary, onnx_model.model_path(export_dir))
    except onnx_model.ConversionFailed as e:
        print("No ONNX copy of %s (%s): predict.py will use the SavedModel." % (export_dir, e))
        return
    finally:
        if temporary and os.path.exists(temporary):
            os.remove(temporary)
    print("Wrote its ONNX copy for predict.py in %.0f s: %s (probabilities within %.0e of "
          "the SavedModel's on %d sentences)"
          % (time.perf_counter() - start, onnx_model.model_path(export_dir),
             max(difference, 1e-9), len(CHECK_SENTENCES)))


def onnx_difference(export_dir, onnx_file, settings):
    """The largest difference in probability between the SavedModel (float32, on the CPU:
    a GPU's TF32 matmuls would differ by more than the tolerance) and the ONNX file."""
    tokenizer = features.create_tokenizer(os.path.join(export_dir, "assets", "vocab.txt"),
                                          settings["do_lower_case"], fast=True)
    encoded = encode(CHECK_SENTENCES, settings["max_seq_length"], tokenizer)
    input_ids, input_mask = [ids for ids, _ in encoded], [mask for _, mask in encoded]
    config = device.base_session_config()
    config.device_count["GPU"] = 0
    expected = saved_model_log_probs(export_dir, input_ids, input_mask, len(encoded), config)
    actual = onnx_model.log_probabilities(onnx_model.session(onnx_file), input_ids,
                                          input_mask, len(encoded))
    return float(np.abs(np.exp(actual) - np.exp(expected)).max())


def predict_from_checkpoint(output_dir, checkpoint, settings, sentences, batch_size,
                            session_config, on_batch=None):
    """Log-probabilities [n, 2] from `checkpoint`, through the Estimator and model_fn; those
    of each `batch_size` sentences also passed to `on_batch` as soon as they are computed."""
    bert_hub = hub_module.resolve(settings["bert_hub"])
    tokenizer = features.create_tokenizer_from_hub_module(bert_hub, fast=True)
    feats = sentence_features(sentences, settings, tokenizer)
    estimator = tf.estimator.Estimator(
        model_fn=model_fn_builder(num_labels=len(settings["label_list"]), learning_rate=0.0,
                                  num_train_steps=1, num_warmup_steps=0, bert_hub=bert_hub),
        config=tf.estimator.RunConfig(model_dir=output_dir, session_config=session_config),
        params={"batch_size": batch_size})
    input_fn = run_classifier.input_fn_builder(
        features=feats, seq_length=settings["max_seq_length"], is_training=False,
        drop_remainder=False)
    predictions = []
    try:
        for prediction in tqdm(estimator.predict(input_fn, checkpoint_path=checkpoint),
                               total=len(feats), desc="Predicting", unit=" sentences",
                               disable=len(feats) <= batch_size, file=sys.stderr):
            predictions.append(prediction["probabilities"])
            if on_batch and (len(predictions) % batch_size == 0
                             or len(predictions) == len(feats)):
                on_batch(np.stack(predictions[(len(predictions) - 1) // batch_size
                                              * batch_size:]))
    except (ValueError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
        if not output_folder.exists(checkpoint + ".index"):
            raise CheckpointGone(checkpoint) from e
        if isinstance(e, ValueError):
            raise
        raise UserError("The checkpoint %s does not fit the model built from %s with "
                        "max_seq_length %d: %s. Pass the --bert-hub it was trained with."
                        % (checkpoint, settings["bert_hub"], settings["max_seq_length"],
                           e.message.splitlines()[0]))
    return np.stack(predictions)


def main(argv=None):
    """python -m imdb_bert.serving OUTPUT_DIR: add the ONNX copy to the newest export of a
    folder train.py wrote, when train.py could not (too little free memory)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output_dir")
    output_dir = parser.parse_args(argv).output_dir
    settings = output_folder.read_settings(output_dir)
    export_dir, _ = newest_export(output_dir)
    if settings is None or export_dir is None:
        raise UserError("%s holds no export of train.py (model_settings.json and export/): "
                        "run train.py first." % output_dir)
    folder_lock.lock_output_dir(output_dir)  # no train.py may write there meanwhile
    if os.path.exists(onnx_model.model_path(export_dir)):
        print("%s has its ONNX copy already." % export_dir)
    else:
        add_onnx_copy(export_dir, settings)
    return 0


if __name__ == "__main__":
    run_script(main)
