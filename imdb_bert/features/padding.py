"""Batches padded to their longest member instead of to --max-seq-length, and texts grouped
by length, as Hugging Face's DataCollatorWithPadding and group_by_length do.

The features (and their cache) stay padded to max_seq_length; each batch is cut to the
longest sequence in it when read. The cut columns are zeros of the input mask, which BERT's
attention adds -10000 to before its softmax (exp(-10000) is 0 in float32), and the
classifier reads [CLS] only: the logits are the same within float rounding (one sum has
fewer zeros in it). BERT's position embeddings are sliced to the batch's length
(bert/modeling.py, embedding_postprocessor), so a module whose "tokens" signature takes
[None, None] accepts any length up to its positions.

Grouping puts texts of like length into the same batches: each window of WINDOW_BATCHES
batches (in input order) is sorted by length, so short texts are not padded to a long
neighbour. Only where the order does not matter or is restored: evaluation (the example
index is carried through and the predictions sorted back), predict.py (outputs returned in
input order) and, with --group-by-length, training (it changes which reviews share a batch).

IMDB_BERT_PADDING=window pads every batch to max_seq_length without grouping, as before:
for the benchmarks' "before" figures and the tests that need full-length batches only.
"""
import os

import numpy as np

WINDOW_BATCHES = 8  # batches sorted together; a window's outputs are written together
INPUTS = ("input_ids", "input_mask", "segment_ids")
EXAMPLE_INDEX = "example_index"  # the feature that carries an evaluated example's position
WINDOW = "window"
BATCH = "batch"


def padding_mode(use_xla=False, fixed_length=None):
    """BATCH (pad each batch to its longest member) or WINDOW (to max_seq_length): WINDOW
    under XLA, for a model that takes a fixed length only (`fixed_length`, its length), and
    with IMDB_BERT_PADDING=window (the benchmarks' "before")."""
    # XLA compiles each cluster for the static shapes it is given and compiles again for
    # every new one (TensorFlow's XLA guide, tensorflow.org/xla; "XLA handles static shape
    # only ... recompiles when input shape changes", PyTorch/XLA's recompilation guide): a
    # length per batch would mean up to max_seq_length compilations.
    if use_xla or fixed_length or os.environ.get("IMDB_BERT_PADDING") == WINDOW:
        return WINDOW
    return BATCH


# In the tf.data pipeline (training and evaluation).

def trim_batch(batch):
    """The batch (a dict of [batch, max_seq_length] columns and others) with its INPUTS cut
    to its longest sequence, which the input mask tells."""
    from imdb_bert.compat import tf  # here: predict.py's ONNX path runs without TensorFlow
    length = tf.reduce_max(tf.reduce_sum(batch["input_mask"], axis=1))
    return {name: column[:, :length] if name in INPUTS else column
            for name, column in batch.items()}


def sort_window(window, batch_size):
    """A window of records (a dict of columns) with its whole batches' records sorted by
    length (stable): the records after the window's last whole batch stay where they are,
    so an evaluation's last, short batch holds the same records as without grouping (the
    Estimator's loss is a mean of batch means). The same order as grouped_order."""
    from imdb_bert.compat import tf  # here: predict.py's ONNX path runs without TensorFlow
    size = tf.shape(window["input_mask"])[0]
    whole = size // batch_size * batch_size
    lengths = tf.reduce_sum(window["input_mask"], axis=1)
    order = tf.concat([tf.argsort(lengths[:whole], stable=True), tf.range(whole, size)], 0)
    return {name: tf.gather(column, order) for name, column in window.items()}


def batched(records, batch_size, drop_remainder, decode, pad_to_batch, group):
    """`records` (a tf.data Dataset of serialized examples) in batches of `batch_size`,
    decoded by `decode`; cut to their longest member with `pad_to_batch`; with `group`,
    grouped by length in windows of WINDOW_BATCHES batches."""
    if group:
        window = records.batch(WINDOW_BATCHES * batch_size).map(decode).map(
            lambda columns: sort_window(columns, batch_size))
        batches = window.unbatch().batch(batch_size, drop_remainder=drop_remainder)
    else:
        batches = records.batch(batch_size, drop_remainder=drop_remainder).map(decode)
    return batches.map(trim_batch) if pad_to_batch else batches


# In numpy (predict.py's ONNX, SavedModel and checkpoint paths).

def grouped_order(lengths, batch_size, window_batches=WINDOW_BATCHES):
    """The rows' indices grouped by length: sort_window's order over windows of
    window_batches x batch_size rows."""
    lengths = np.asarray(lengths)
    order = []
    window = window_batches * batch_size
    for start in range(0, len(lengths), window):
        end = min(start + window, len(lengths))
        whole = start + (end - start) // batch_size * batch_size
        order.append(start + np.argsort(lengths[start:whole], kind="stable"))
        order.append(np.arange(whole, end))
    return np.concatenate(order).astype(int) if order else np.zeros(0, int)


def trim(columns):
    """The arrays (input_ids, input_mask, segment_ids) of a batch cut to its longest
    sequence."""
    length = int(columns[1].sum(axis=1).max())
    return [column[:, :length] for column in columns]


def grouped_outputs(inputs, batch_size, run_batch, pad_to_batch=True, progress=None,
                    on_window=None):
    """The outputs of `run_batch` (a function of the arrays (input_ids, input_mask,
    segment_ids) of one batch) for every row of `inputs` (those three lists, padded to
    max_seq_length), in input order. With `pad_to_batch` each window's rows are grouped by
    length and each batch cut to its longest; without, the batches are the rows in order,
    at full length. Each window's outputs go to `on_window` in input order once its
    batches have run; `progress(1)` after each batch."""
    inputs = [np.asarray(values, dtype=np.int32) for values in inputs]
    count = len(inputs[0])
    order = (grouped_order(inputs[1].sum(axis=1), batch_size) if pad_to_batch
             else np.arange(count))
    window = WINDOW_BATCHES * batch_size
    outputs = []
    for start in range(0, count, window):
        rows = order[start:start + window]
        window_outputs = []
        for first in range(0, len(rows), batch_size):
            columns = [values[rows[first:first + batch_size]] for values in inputs]
            window_outputs.append(run_batch(trim(columns) if pad_to_batch else columns))
            if progress:
                progress(1)
        in_order = restored(np.concatenate(window_outputs), rows - start)
        if on_window:
            on_window(in_order)
        outputs.append(in_order)
    return np.concatenate(outputs)


def restored(outputs, positions):
    """`outputs` of rows taken in the order `positions` (a permutation of 0..n-1), put
    back in the rows' order."""
    in_order = np.empty_like(outputs)
    in_order[positions] = outputs
    return in_order


def in_input_order(batches):
    """The dicts of columns that an evaluation collected batch by batch, each with an
    EXAMPLE_INDEX column, as one dict of columns in the examples' input order (without
    the index)."""
    index = np.concatenate([batch[EXAMPLE_INDEX] for batch in batches])
    order = np.argsort(index, kind="stable")
    return {name: np.concatenate([batch[name] for batch in batches])[order]
            for name in batches[0] if name != EXAMPLE_INDEX}
