"""Prediction with the trained model: the SavedModel that train.py exports at the end of
training, and log-probabilities from it or from a checkpoint (through the Estimator).

<output-dir>/export/<timestamp>/ holds signature "serving_default" (inputs input_ids,
input_mask, segment_ids; outputs probabilities, log_probabilities, labels), the vocab in
assets/, and assets.extra/export_info.json with the exported global_step.
"""
import json
import os
import sys
import tempfile

import numpy as np
from google.protobuf.message import DecodeError
from tqdm import tqdm

from imdb_bert import features, hub_module
from imdb_bert.compat import run_classifier, tf
from imdb_bert.errors import UserError
from imdb_bert.model import model_fn_builder, serving_input_receiver_fn_builder
from imdb_bert.output_folder import (EXPORT_INFO, checkpoint_step, export_root,
                                     newest_export, remove_old_exports)


class DamagedExport(Exception):
    """An export that cannot be loaded: a missing or damaged file."""


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
                                     desc="Converting sentences")


def batches(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


# What loading a damaged export raises: a file missing or unreadable, a bad protobuf, a
# graph or signature without the expected parts.
LOAD_ERRORS = (tf.errors.OpError, OSError, ValueError, KeyError, DecodeError)


def predict_from_export(export_dir, settings, sentences, batch_size, session_config):
    """Log-probabilities [n, 2] from the exported SavedModel; DamagedExport if it cannot be
    loaded."""
    try:
        tokenizer = features.create_tokenizer(
            os.path.join(export_dir, "assets", "vocab.txt"), settings["do_lower_case"],
            fast=True)
    except LOAD_ERRORS as e:
        raise DamagedExport("%s: %s" % (type(e).__name__, e)) from e
    feats = sentence_features(sentences, settings, tokenizer)
    with tf.Graph().as_default(), tf.Session(config=session_config) as sess:
        try:
            meta_graph = tf.saved_model.loader.load(sess, ["serve"], export_dir)
            signature = meta_graph.signature_def["serving_default"]
            output = signature.outputs["log_probabilities"].name
        except LOAD_ERRORS as e:
            message = e.message if isinstance(e, tf.errors.OpError) else str(e)
            raise DamagedExport("%s: %s" % (type(e).__name__, message.splitlines()[0])) from e
        log_probs = []
        for batch in tqdm(batches(feats, batch_size), desc="Predicting", unit=" batches",
                          disable=len(feats) <= batch_size, file=sys.stderr):
            feed = {signature.inputs[name].name: [getattr(f, name) for f in batch]
                    for name in ("input_ids", "input_mask", "segment_ids")}
            log_probs.append(sess.run(output, feed))
    return np.concatenate(log_probs)


def predict_from_checkpoint(output_dir, checkpoint, settings, sentences, batch_size,
                            session_config):
    """Log-probabilities [n, 2] from `checkpoint`, through the Estimator and model_fn."""
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
    try:
        predictions = list(tqdm(estimator.predict(input_fn, checkpoint_path=checkpoint),
                                total=len(feats), desc="Predicting", unit=" sentences",
                                disable=len(feats) <= batch_size, file=sys.stderr))
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
        raise UserError("The checkpoint %s does not fit the model built from %s with "
                        "max_seq_length %d: %s. Pass the --bert-hub it was trained with."
                        % (checkpoint, settings["bert_hub"], settings["max_seq_length"],
                           e.message.splitlines()[0]))
    return np.stack([p["probabilities"] for p in predictions])
