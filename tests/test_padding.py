"""Batches padded to their longest member and grouped by length (imdb_bert/features/
padding.py): the same logits as batches padded to --max-seq-length on every predict.py path,
the same evaluation, outputs in input order, and feature caches written before still read."""
import json
import os
import random

import numpy as np
import pytest

from conftest import quick_args, run_train
from imdb_bert.features import padding

# Texts of many lengths, long and short mixed, so that grouping reorders them.
WORDS = "the movie was great awful boring fun and the acting plot story music".split()
TEXTS = [" ".join(random.Random(i).choice(WORDS) for _ in range(random.Random(i).randint(1, 60)))
         for i in range(37)]
MAX_SEQ_LENGTH = 128


@pytest.fixture(scope="module")
def short_run(imdb_dir, tiny_module, tmp_path_factory):
    """A run at --max-seq-length 128 (the reviews fill a third of it), exported
    with its ONNX copy."""
    output_dir = str(tmp_path_factory.mktemp("padding") / "OUTPUT_Bert")
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir,
                                   "--max-seq-length", str(MAX_SEQ_LENGTH), onnx=True))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(output_dir, "model_settings.json")) as f:
        return output_dir, json.load(f)


def both_ways(monkeypatch, predict):
    """predict() padded to the batch (grouped), then padded to the window as before."""
    monkeypatch.delenv("IMDB_BERT_PADDING", raising=False)
    to_batch = predict()
    monkeypatch.setenv("IMDB_BERT_PADDING", padding.WINDOW)
    return to_batch, predict()


def test_onnx_logits_padded_to_the_batch_equal_padded_to_128(short_run, monkeypatch):
    from imdb_bert.output.files import newest_export
    from imdb_bert.serving import onnx_model
    output_dir, settings = short_run
    export_dir, _ = newest_export(output_dir)
    assert onnx_model.fixed_length(onnx_model.session(onnx_model.model_path(export_dir))) \
        is None  # a dynamic sequence axis
    windows = []
    to_batch, to_window = both_ways(monkeypatch, lambda: onnx_model.predict(
        export_dir, settings, TEXTS, 4, on_batch=windows.append))
    np.testing.assert_allclose(to_batch, to_window, atol=1e-5)
    # Written window by window (8 batches of 4), each in input order.
    assert [len(w) for w in windows[:2]] == [32, 5]
    np.testing.assert_array_equal(np.concatenate(windows[:2]), to_batch)


def test_saved_model_logits_padded_to_the_batch_equal_padded_to_128(short_run, monkeypatch):
    from imdb_bert.output.files import newest_export
    from imdb_bert.serving.inference import predict_from_export
    output_dir, settings = short_run
    export_dir, _ = newest_export(output_dir)
    to_batch, to_window = both_ways(monkeypatch, lambda: predict_from_export(
        export_dir, settings, TEXTS, 4, None))
    np.testing.assert_allclose(to_batch, to_window, atol=1e-5)


def test_checkpoint_logits_padded_to_the_batch_equal_padded_to_128(short_run, monkeypatch):
    from imdb_bert.output.files import latest_checkpoint
    from imdb_bert.serving.inference import predict_from_checkpoint
    output_dir, settings = short_run
    checkpoint = latest_checkpoint(output_dir)
    to_batch, to_window = both_ways(monkeypatch, lambda: predict_from_checkpoint(
        output_dir, checkpoint, settings, TEXTS, 4, None))
    np.testing.assert_allclose(to_batch, to_window, atol=1e-5)


def test_predict_answers_in_input_order(short_run):
    """Each text alone (no neighbour to group with) gets the answer it gets among the
    others, grouped: the outputs are in input order."""
    from imdb_bert.output.files import newest_export
    from imdb_bert.serving import onnx_model
    output_dir, settings = short_run
    export_dir, _ = newest_export(output_dir)
    together = onnx_model.predict(export_dir, settings, TEXTS, 4)
    alone = np.concatenate([onnx_model.predict(export_dir, settings, [text], 1)
                            for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert len(set(np.round(together[:, 1], 5))) > 10  # the texts' answers differ


def test_an_evaluation_padded_to_the_batch_equals_one_padded_to_128(short_run, imdb_dir,
                                                                      tiny_module):
    """train.py's evaluation (grouped, each batch at its longest) against --eval-only with
    batches at 128 in input order: the same metrics, the same per-review predictions."""
    output_dir, _ = short_run

    def evaluate(padding_env):
        env = dict(os.environ, IMDB_BERT_PADDING=padding_env)
        result = run_train(*quick_args(imdb_dir, tiny_module, output_dir,
                                       "--max-seq-length", str(MAX_SEQ_LENGTH)),
                           "--eval-only", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        with open(os.path.join(output_dir, "eval_results.json")) as f:
            results = json.load(f)
        with open(os.path.join(output_dir, "test_predictions.csv")) as f:
            return results, f.read().splitlines()

    to_batch, to_window = evaluate(padding.BATCH), evaluate(padding.WINDOW)
    assert to_batch[0].keys() == to_window[0].keys()
    for key, value in to_window[0].items():
        if isinstance(value, float):
            assert to_batch[0][key] == pytest.approx(value, abs=1e-5), key
        elif not isinstance(value, dict):
            assert to_batch[0][key] == value, key
    assert to_batch[1][0] == to_window[1][0]  # the header, then the reviews in order
    for grouped, in_order in zip(to_batch[1][1:], to_window[1][1:]):
        # text, label, predicted label: the same; the probability within float rounding
        grouped, in_order = grouped.rsplit(",", 1), in_order.rsplit(",", 1)
        assert grouped[0] == in_order[0]
        assert float(grouped[1]) == pytest.approx(float(in_order[1]), abs=1e-5)
    assert len(to_batch[1]) == len(to_window[1]) == 101


def test_the_tf_data_grouping_is_the_numpy_one():
    from imdb_bert.compat import tf
    lengths = [random.Random(i).randint(2, 30) for i in range(45)]
    masks = np.array([[1] * n + [0] * (32 - n) for n in lengths], np.int32)
    batch_size = 3  # windows of 24: one whole, one of 21 (7 batches)
    with tf.Graph().as_default(), tf.Session() as session:
        window = tf.data.Dataset.from_tensor_slices({"input_mask": masks, "row": np.arange(45)})
        rows = window.batch(padding.WINDOW_BATCHES * batch_size).map(
            lambda columns: padding.sort_window(columns, batch_size)).unbatch()
        row = tf.data.make_one_shot_iterator(rows).get_next()["row"]
        order = [session.run(row) for _ in lengths]
    np.testing.assert_array_equal(order, padding.grouped_order(lengths, batch_size))
    # Within each whole batch's part of a window the lengths ascend; the tail stays.
    assert list(np.array(lengths)[order][:24]) == sorted(lengths[:24])


def test_grouped_order_keeps_the_last_short_batch(tmp_path):
    """An evaluation's last batch (fewer than batch_size) holds the same rows as without
    grouping: the Estimator's loss is a mean of batch means."""
    lengths = [10, 3, 7, 1, 9, 2, 8]
    order = padding.grouped_order(lengths, 3, window_batches=8)
    assert list(order) == [3, 5, 1, 2, 4, 0, 6]


def test_a_feature_cache_written_before_is_read_and_cut(tmp_path, tiny_module):
    """The cache format is unchanged (records padded to max_seq_length): a file written as
    before this change is read, each batch cut to its longest review, in input order."""
    from imdb_bert.compat import tf
    from imdb_bert.features import conversion, feature_cache
    tokenizer = conversion.create_tokenizer_from_hub_module(tiny_module)
    examples = conversion.make_examples(TEXTS[:10], [0, 1] * 5)
    features = conversion.convert_examples(examples, [0, 1], 64, tokenizer)
    path = str(tmp_path / "features.tf_record")
    feature_cache.write_features(path, features)
    input_fn = feature_cache.input_fn_builder(path, 64, is_training=False,
                                              drop_remainder=False)
    with tf.Graph().as_default(), tf.Session() as session:
        batches = input_fn({"batch_size": 4, "padding": padding.BATCH})
        batch = tf.data.make_one_shot_iterator(batches).get_next()
        read = [session.run(batch) for _ in range(3)]
    assert [b["input_ids"].shape[0] for b in read] == [4, 4, 2]
    rows = np.concatenate([b[padding.EXAMPLE_INDEX] for b in read])
    assert sorted(rows) == list(range(10))
    for b in read:
        length = b["input_ids"].shape[1]
        assert length == b["input_mask"].sum(axis=1).max() < 64
        for row, ids in zip(b[padding.EXAMPLE_INDEX], b["input_ids"]):
            assert list(ids) == features[row].input_ids[:length]


def test_group_by_length_batches_training_reviews_of_like_length(tmp_path, tiny_module):
    """--group-by-length: each 8 batches of the shuffled training reviews come sorted by
    length, each cut to its longest; without it, the batches are the shuffled reviews in
    order, also cut to their longest."""
    from imdb_bert.compat import tf
    from imdb_bert.features import conversion, feature_cache
    tokenizer = conversion.create_tokenizer_from_hub_module(tiny_module)
    examples = conversion.make_examples(TEXTS, [0, 1] * 18 + [0])
    path = str(tmp_path / "features.tf_record")
    feature_cache.write_features(path, conversion.convert_examples(examples, [0, 1], 64,
                                                                   tokenizer))

    def lengths(group):
        input_fn = feature_cache.input_fn_builder(path, 64, is_training=True,
                                                  drop_remainder=False, seed=3)
        with tf.Graph().as_default(), tf.Session() as session:
            batches = input_fn({"batch_size": 2, "padding": padding.BATCH,
                                "group_by_length": group})
            batch = tf.data.make_one_shot_iterator(batches).get_next()
            read = [session.run(batch) for _ in range(8)]
        for b in read:
            assert b["input_ids"].shape[1] == b["input_mask"].sum(axis=1).max()
        return np.concatenate([b["input_mask"].sum(axis=1) for b in read])

    grouped, shuffled = lengths(True), lengths(False)
    assert list(grouped) == sorted(shuffled)  # the same 16 reviews, sorted
    assert list(shuffled) != sorted(shuffled)


def test_group_by_length_is_a_setting_of_the_run(imdb_dir, tiny_module, tmp_path):
    """Recorded in model_settings.json; resuming without it is refused (it changes the
    batches), as for any training setting."""
    output_dir = str(tmp_path / "OUTPUT_Bert")
    args = quick_args(imdb_dir, tiny_module, output_dir, "--epochs", "1",
                      "--save-checkpoints-steps", "5")
    result = run_train(*args, "--group-by-length")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(output_dir, "model_settings.json")) as f:
        assert json.load(f)["group_by_length"] is True
    result = run_train(*args, "--epochs", "2")
    assert result.returncode == 2
    assert "group_by_length: True now False" in result.stderr


def test_an_export_of_one_length_is_fed_at_that_length(short_run, tmp_path):
    """An export made before took [batch, max_seq_length] only: predict.py feeds it whole
    rows and gets what the new export (any length) gives."""
    from imdb_bert.compat import tf
    from imdb_bert.model.classifier import model_fn_builder
    from imdb_bert.output.files import latest_checkpoint, newest_export
    from imdb_bert.serving.inference import predict_from_export
    output_dir, settings = short_run

    def fixed_length_inputs():
        inputs = {name: tf.placeholder(tf.int32, [None, MAX_SEQ_LENGTH], name=name)
                  for name in padding.INPUTS}
        features = dict(inputs, label_ids=tf.zeros_like(inputs["input_ids"][:, 0]))
        return tf.estimator.export.ServingInputReceiver(features, inputs)

    estimator = tf.estimator.Estimator(model_fn_builder(
        num_labels=2, learning_rate=0.0, num_train_steps=1, num_warmup_steps=0,
        bert_hub=settings["bert_hub"]), config=tf.estimator.RunConfig(model_dir=output_dir))
    old_export = estimator.export_saved_model(str(tmp_path), fixed_length_inputs,
                                              checkpoint_path=latest_checkpoint(output_dir))
    old = predict_from_export(old_export.decode(), settings, TEXTS, 4, None)
    new = predict_from_export(newest_export(output_dir)[0], settings, TEXTS, 4, None)
    np.testing.assert_allclose(old, new, atol=1e-5)
