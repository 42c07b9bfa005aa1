"""Log-probabilities from the trained model, for predict.py: from the SavedModel that
train.py exported (serving/export.py) or from a checkpoint, through the Estimator."""
import os
import sys

import numpy as np
from google.protobuf.message import DecodeError
from tqdm import tqdm

from imdb_bert.compat import run_classifier, tf
from imdb_bert.errors import UserError
from imdb_bert.features import conversion, padding
from imdb_bert.features.truncation import HEAD
from imdb_bert.model import hub_module
from imdb_bert.model.classifier import model_fn_builder
from imdb_bert.output import files
from imdb_bert.serving.onnx_model import INPUTS
from imdb_bert.tasks import CHECKPOINT_OUTPUT, SERVING_OUTPUT, output_count, task_of


class DamagedExport(Exception):
    """An export that cannot be loaded: a missing or damaged file."""


class CheckpointGone(Exception):
    """The checkpoint was deleted before it was restored: a training run that writes the
    same folder keeps only its newest checkpoints."""


def sentence_features(sentences, settings, tokenizer, pairs=None):
    """The notebook's getPrediction features: dummy label, the model's max_seq_length;
    with `pairs`, each sentence's second text."""
    examples = conversion.make_examples(sentences, [0] * len(sentences), pairs)
    return conversion.convert_examples(examples, [0], settings["max_seq_length"], tokenizer,
                                       desc="Converting sentences",
                                       truncate=settings.get("truncate", HEAD))


def batches(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


# What loading a damaged export raises: a file missing or unreadable, a bad protobuf, a
# graph or signature without the expected parts.
LOAD_ERRORS = (tf.errors.OpError, OSError, ValueError, KeyError, DecodeError)


def predict_from_export(export_dir, settings, sentences, batch_size, session_config,
                        on_batch=None, pairs=None):
    """The task's outputs (tasks.SERVING_OUTPUT: log-probabilities [n, labels] for
    single-label) from the exported SavedModel, each window's (padding.WINDOW_BATCHES
    batches) also passed to `on_batch` as soon as they are computed; DamagedExport if it cannot be loaded."""
    try:
        tokenizer = conversion.create_tokenizer(
            os.path.join(export_dir, "assets", "vocab.txt"), settings["do_lower_case"],
            fast=True)
    except LOAD_ERRORS as e:
        raise DamagedExport("%s: %s" % (type(e).__name__, e)) from e
    feats = sentence_features(sentences, settings, tokenizer, pairs)
    progress = tqdm(total=len(batches(feats, batch_size)), desc="Predicting", unit=" batches",
                    disable=len(feats) <= batch_size, file=sys.stderr)
    inputs = ([f.input_ids for f in feats], [f.input_mask for f in feats],
              [f.segment_ids for f in feats])
    with progress:
        return saved_model_outputs(export_dir, inputs, batch_size, session_config,
                                   SERVING_OUTPUT[task_of(settings)], progress.update,
                                   on_batch)


def saved_model_outputs(export_dir, inputs, batch_size, session_config,
                        output_name="log_probabilities", progress=None, on_batch=None):
    """The output `output_name` of the SavedModel in `export_dir` for `inputs`, the lists
    (input_ids, input_mask, segment_ids) of the encoded sentences, each batch padded to
    its longest sentence and grouped by length (padding.grouped_outputs), or at the
    export's fixed length (an export made before that took [batch, max_seq_length])."""
    with tf.Graph().as_default(), tf.Session(config=session_config) as sess:
        try:
            meta_graph = tf.saved_model.loader.load(sess, ["serve"], export_dir)
            signature = meta_graph.signature_def["serving_default"]
            output = signature.outputs[output_name].name
        except LOAD_ERRORS as e:
            message = e.message if isinstance(e, tf.errors.OpError) else str(e)
            raise DamagedExport("%s: %s" % (type(e).__name__, message.splitlines()[0])) from e
        feeds = [signature.inputs[name].name for name in INPUTS]

        def run_batch(columns):
            return sess.run(output, dict(zip(feeds, columns)))

        fixed = signature.inputs["input_ids"].tensor_shape.dim[1].size  # -1: any length
        return padding.grouped_outputs(
            inputs, batch_size, run_batch,
            padding.padding_mode(fixed_length=max(fixed, 0)) == padding.BATCH,
            progress, on_batch)


def predict_from_checkpoint(output_dir, checkpoint, settings, sentences, batch_size,
                            session_config, on_batch=None, pairs=None):
    """The task's outputs (log-probabilities for single-label) from `checkpoint`, through
    the Estimator and model_fn, each batch padded to its longest sentence and grouped by
    length (padding.py) unless the module takes a fixed length; those of each window of
    padding.WINDOW_BATCHES batches also passed to `on_batch`, in input order, as soon as
    they are computed."""
    bert_hub = hub_module.resolve(settings["bert_hub"])
    tokenizer = conversion.create_tokenizer_from_hub_module(bert_hub, fast=True)
    feats = sentence_features(sentences, settings, tokenizer, pairs)
    task = task_of(settings)
    estimator = tf.estimator.Estimator(
        model_fn=model_fn_builder(num_labels=output_count(task, settings["label_list"]),
                                  learning_rate=0.0, num_train_steps=1, num_warmup_steps=0,
                                  bert_hub=bert_hub, task=task,
                                  threshold=settings.get("threshold")),
        config=tf.estimator.RunConfig(model_dir=output_dir, session_config=session_config),
        params={"batch_size": batch_size})
    pad_to_batch = padding.padding_mode(
        fixed_length=hub_module.fixed_length(bert_hub)) == padding.BATCH
    order = (padding.grouped_order([sum(f.input_mask) for f in feats], batch_size)
             if pad_to_batch else np.arange(len(feats)))
    input_fn = run_classifier.input_fn_builder(
        features=[feats[i] for i in order], seq_length=settings["max_seq_length"],
        is_training=False, drop_remainder=False)
    if pad_to_batch:
        input_fn = trimmed(input_fn)
    window = padding.WINDOW_BATCHES * batch_size
    predictions, in_order = [], []
    try:
        for prediction in tqdm(estimator.predict(input_fn, checkpoint_path=checkpoint),
                               total=len(feats), desc="Predicting", unit=" sentences",
                               disable=len(feats) <= batch_size, file=sys.stderr):
            predictions.append(prediction[CHECKPOINT_OUTPUT[task]])
            if len(predictions) % window == 0 or len(predictions) == len(feats):
                start = (len(predictions) - 1) // window * window
                in_order.append(padding.restored(np.stack(predictions[start:]),
                                                 order[start:len(predictions)] - start))
                if on_batch:
                    on_batch(in_order[-1])
    except (ValueError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
        if not files.exists(checkpoint + ".index"):
            raise CheckpointGone(checkpoint) from e
        if isinstance(e, ValueError):
            raise
        raise UserError("The checkpoint %s does not fit the model built from %s with "
                        "max_seq_length %d: %s. Pass the --bert-hub it was trained with."
                        % (checkpoint, settings["bert_hub"], settings["max_seq_length"],
                           e.message.splitlines()[0]))
    return np.concatenate(in_order)


def trimmed(input_fn):
    """`input_fn` whose batches are cut to their longest member (padding.py)."""
    return lambda params: input_fn(params).map(padding.trim_batch)
