"""Converted features kept as TFRecord files in the output dir (the format of
run_classifier's file-based path), so a rerun or a resume skips the conversion.

The file name holds a key over everything that changes the features: the vocab file's
bytes, the casing, max_seq_length, the label list, and every example's text and label (so
the data selection and seed are in it too). Another key never reads a stale file.
"""
import hashlib
import os

from imdb_bert import features
from imdb_bert.compat import run_classifier, tf
from imdb_bert.output_folder import features_file

FORMAT = b"features-v1"
FIELDS = ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example")


def cache_key(examples, label_list, max_seq_length, vocab_file, do_lower_case):
    digest = hashlib.sha256(FORMAT)
    with tf.io.gfile.GFile(vocab_file, "rb") as f:
        digest.update(f.read())
    digest.update(repr((do_lower_case, max_seq_length, list(label_list))).encode())
    for example in examples:
        digest.update(repr(example.label).encode() + b"\0")
        digest.update(example.text_a.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:16]


def load_or_convert(output_dir, split, examples, label_list, max_seq_length, tokenizer,
                    vocab_file, do_lower_case, write=True):
    """The InputFeatures of `examples`, from the cache when its key matches; converted
    and (with `write`) cached otherwise."""
    key = cache_key(examples, label_list, max_seq_length, vocab_file, do_lower_case)
    path = features_file(output_dir, split, key)
    if tf.io.gfile.exists(path):
        print("Using the cached %s features in %s" % (split, path))
        return read_features(path)
    converted = features.convert_examples(
        examples, label_list, max_seq_length, tokenizer, desc="Converting %s reviews" % split)
    if not write:
        return converted
    for stale in tf.io.gfile.glob(features_file(output_dir, split, "*")):
        tf.io.gfile.remove(stale)
    write_features(path, converted)
    return converted


def write_features(path, feature_list):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with tf.io.TFRecordWriter(tmp) as writer:
        for feature in feature_list:
            values = (feature.input_ids, feature.input_mask, feature.segment_ids,
                      [feature.label_id], [int(feature.is_real_example)])
            example = tf.train.Example(features=tf.train.Features(feature={
                name: tf.train.Feature(int64_list=tf.train.Int64List(value=list(value)))
                for name, value in zip(FIELDS, values)}))
            writer.write(example.SerializeToString())
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read_features(path):
    feature_list = []
    for record in tf.io.tf_record_iterator(path):
        fields = tf.train.Example.FromString(record).features.feature
        input_ids, input_mask, segment_ids, label_ids, is_real = (
            list(fields[name].int64_list.value) for name in FIELDS)
        feature_list.append(run_classifier.InputFeatures(
            input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids,
            label_id=label_ids[0], is_real_example=bool(is_real[0])))
    return feature_list
