"""Log-probabilities from the trained model, for predict.py: from the SavedModel that
train.py exported (serving/export.py) or from a checkpoint, through the Estimator."""
import os
import sys

import numpy as np
from google.protobuf.message import DecodeError
from tqdm import tqdm

from imdb_bert.compat import run_classifier, tf
from imdb_bert.errors import UserError
from imdb_bert.features import conversion
from imdb_bert.features.truncation import HEAD
from imdb_bert.model import hub_module
from imdb_bert.model.classifier import model_fn_builder
from imdb_bert.output import files


class DamagedExport(Exception):
    """An export that cannot be loaded: a missing or damaged file."""


class CheckpointGone(Exception):
    """The checkpoint was deleted before it was restored: a training run that writes the
    same folder keeps only its newest checkpoints."""


def sentence_features(sentences, settings, tokenizer):
    """The notebook's getPrediction features: dummy label, the model's max_seq_length."""
    examples = conversion.make_examples(sentences, [settings["label_list"][0]] * len(sentences))
    return conversion.convert_examples(examples, settings["label_list"],
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
        tokenizer = conversion.create_tokenizer(
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


def predict_from_checkpoint(output_dir, checkpoint, settings, sentences, batch_size,
                            session_config, on_batch=None):
    """Log-probabilities [n, 2] from `checkpoint`, through the Estimator and model_fn; those
    of each `batch_size` sentences also passed to `on_batch` as soon as they are computed."""
    bert_hub = hub_module.resolve(settings["bert_hub"])
    tokenizer = conversion.create_tokenizer_from_hub_module(bert_hub, fast=True)
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
        if not files.exists(checkpoint + ".index"):
            raise CheckpointGone(checkpoint) from e
        if isinstance(e, ValueError):
            raise
        raise UserError("The checkpoint %s does not fit the model built from %s with "
                        "max_seq_length %d: %s. Pass the --bert-hub it was trained with."
                        % (checkpoint, settings["bert_hub"], settings["max_seq_length"],
                           e.message.splitlines()[0]))
    return np.stack(predictions)
