"""Converted features kept as TFRecord files in the output dir (the format of
run_classifier's file-based path), so a rerun or a resume skips the conversion, and
training and evaluation read them from there instead of holding them in the graph.

The file name holds a key over everything that changes the features: the vocab file's
bytes, the casing, max_seq_length, the label list, --truncate, and every example's text and
label (so the data selection and seed are in it too). Another key never reads a stale file. Beside
each file, <file>.json records its record count and SHA-256: a truncated or damaged file
is converted again, never read.
"""
import hashlib
import json
import os

import numpy as np

from imdb_bert.compat import run_classifier, tf
from imdb_bert.features import conversion, padding
from imdb_bert.features.truncation import HEAD
from imdb_bert.output.files import features_file, write_json
from imdb_bert.tasks import SINGLE_LABEL

FORMAT = b"features-v1"
FIELDS = ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example")
SHUFFLE_BUFFER = 100  # run_classifier.input_fn_builder's


def cache_key(examples, label_list, max_seq_length, vocab_file, do_lower_case,
              truncate=HEAD, task=SINGLE_LABEL):
    digest = hashlib.sha256(FORMAT)
    with tf.io.gfile.GFile(vocab_file, "rb") as f:
        digest.update(f.read())
    digest.update(repr((do_lower_case, max_seq_length, list(label_list))).encode())
    # The keys of single-label runs on single texts with --truncate head stay as they were
    # before these options: their old caches stay valid.
    if truncate != HEAD:
        digest.update(repr(truncate).encode())
    if task != SINGLE_LABEL:
        digest.update(repr(task).encode())
    pairs = any(example.text_b is not None for example in examples)
    if pairs:
        digest.update(b"text_b")
    for example in examples:
        digest.update(repr(example.label).encode() + b"\0")
        digest.update(example.text_a.encode("utf-8", "surrogatepass") + b"\0")
        if pairs:
            digest.update(example.text_b.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:16]


def load_or_convert(output_dir, split, examples, label_list, max_seq_length, tokenizer,
                    vocab_file, do_lower_case, truncate=HEAD, task=SINGLE_LABEL):
    """The TFRecord file of the InputFeatures of `examples`: the cached one when its key
    matches and it is whole; else converted and written."""
    key = cache_key(examples, label_list, max_seq_length, vocab_file, do_lower_case,
                    truncate, task)
    path = features_file(output_dir, split, key)
    if tf.io.gfile.exists(path):
        problem = damage(path, len(examples))
        if problem is None:
            print("Using the cached %s features in %s" % (split, path))
            return path
        print("The cached %s features in %s are damaged (%s); converting them again."
              % (split, path, problem))
    converted = conversion.convert_examples(
        examples, label_list, max_seq_length, tokenizer, desc="Converting %s reviews" % split,
        truncate=truncate, task=task)
    # Other keys' files of this split, with their .json (and a damaged file of this key).
    for stale in tf.io.gfile.glob(features_file(output_dir, split, "*") + "*"):
        tf.io.gfile.remove(stale)
    write_features(path, converted)
    return path


def write_features(path, feature_list):
    """Write the file (under a temporary name, renamed when complete), then its
    <path>.json with the record count and SHA-256. A label that is a label's index is an
    int64; the targets of multi-label (0/1 per label) and regression (a number) are
    floats, whose count per record the .json records as "label_width"."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    width = None
    with tf.io.TFRecordWriter(tmp) as writer:
        for feature in feature_list:
            is_index = isinstance(feature.label_id, int)
            values = (feature.input_ids, feature.input_mask, feature.segment_ids,
                      [feature.label_id] if is_index else [], [int(feature.is_real_example)])
            fields = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=list(value)))
                      for name, value in zip(FIELDS, values)}
            if not is_index:
                targets = [float(value) for value in np.ravel(feature.label_id)]
                width = len(targets)
                fields["label_ids"] = tf.train.Feature(
                    float_list=tf.train.FloatList(value=targets))
            example = tf.train.Example(features=tf.train.Features(feature=fields))
            writer.write(example.SerializeToString())
    record = {"records": len(feature_list), "sha256": file_sha256(tmp)}
    if width is not None:
        record["label_width"] = width
    tf.io.gfile.rename(tmp, path, overwrite=True)
    write_json(path + ".json", record)


def damage(path, expected_records):
    """What is wrong with the cache file at `path`, or None when it is whole."""
    try:
        with tf.io.gfile.GFile(path + ".json") as f:
            record = json.load(f)
    except (tf.errors.OpError, ValueError):
        return "no readable %s.json" % os.path.basename(path)
    if record.get("records") != expected_records:
        return "%s records, %d expected" % (record.get("records"), expected_records)
    if record.get("sha256") != file_sha256(path):
        return "its SHA-256 is not the one recorded"
    return None


def label_width(path):
    """The number of float targets per record of the cache file at `path` (multi-label,
    regression), or None for a label index."""
    with tf.io.gfile.GFile(path + ".json") as f:
        return json.load(f).get("label_width")


def file_sha256(path):
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_features(path):
    """The InputFeatures in the file at `path`, in order (the floats of a multi-label or
    regression target as a list)."""
    feature_list = []
    for record in tf.io.tf_record_iterator(path):
        fields = tf.train.Example.FromString(record).features.feature
        input_ids, input_mask, segment_ids, label_ids, is_real = (
            list(fields[name].int64_list.value) for name in FIELDS)
        label_ids = label_ids or [list(fields["label_ids"].float_list.value)]
        feature_list.append(run_classifier.InputFeatures(
            input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids,
            label_id=label_ids[0], is_real_example=bool(is_real[0])))
    return feature_list


def without_autotuning():
    """tf.data options with autotuning off. The pipeline has no AUTOTUNE setting to tune,
    and the autotuning thread made an evaluation session's close wait 0.5-2.5 s, idle, in
    7 of 10 measured runs of train.py (none of 9 with it off; docs/speed.md)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def input_fn_builder(path, seq_length, is_training, drop_remainder, seed=None):
    """run_classifier.input_fn_builder's input_fn (the same columns and types), reading the
    cache file at `path` instead of putting every feature into the graph as a constant
    ("does NOT scale", says bert). Training shuffles with `seed` before repeating, so each
    epoch holds every feature once and a seed gives one order in every process.

    The Estimator's params say how batches are padded (padding.py): params["padding"]
    BATCH cuts each batch to its longest member (the records stay padded to `seq_length`:
    caches written before are read as they are); evaluation groups its reviews by length
    and carries each one's index (padding.EXAMPLE_INDEX) for EvalPredictionsHook to sort
    the predictions back; training groups only with params["group_by_length"]."""
    columns = {name: tf.io.FixedLenFeature([seq_length], tf.int64)
               for name in ("input_ids", "input_mask", "segment_ids")}
    columns["label_ids"] = tf.io.FixedLenFeature([], tf.int64)
    width = label_width(path)
    if width is not None:  # multi-label or regression: float targets [batch, width]
        columns["label_ids"] = tf.io.FixedLenFeature([width], tf.float32)

    def decode(records):
        batch = tf.io.parse_example(records, columns)
        return {name: batch[name] if batch[name].dtype == tf.float32
                else tf.cast(batch[name], tf.int32) for name in columns}

    def decode_with_index(indices, records):
        return dict(decode(records), **{padding.EXAMPLE_INDEX: indices})

    def input_fn(params):
        pad_to_batch = params.get("padding", padding.WINDOW) == padding.BATCH
        records = tf.data.TFRecordDataset(path)
        read = decode
        if is_training:
            records = records.shuffle(SHUFFLE_BUFFER, seed=seed).repeat()
            group = pad_to_batch and params.get("group_by_length", False)
        else:
            group = pad_to_batch
            if group:
                records, read = records.enumerate(), decode_with_index
        dataset = padding.batched(records, params["batch_size"], drop_remainder, read,
                                  pad_to_batch, group).prefetch(1)
        return dataset.with_options(without_autotuning())

    return input_fn
