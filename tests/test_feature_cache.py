"""Converted features are cached under a key of everything that changes them."""
import os

import numpy as np
import pytest

import config
from imdb_bert.compat import run_classifier, tf
from imdb_bert.features import conversion, feature_cache


@pytest.fixture(scope="module")
def vocab(tiny_module):
    return conversion.tokenization_info(tiny_module)


def convert(tmp_path, vocab, sentences, max_seq_length=16):
    vocab_file, do_lower_case = vocab
    tokenizer = conversion.create_tokenizer(vocab_file, do_lower_case, fast=True)
    examples = conversion.make_examples(sentences, [i % 2 for i in range(len(sentences))])
    path = feature_cache.load_or_convert(str(tmp_path), "train", examples, config.label_list,
                                         max_seq_length, tokenizer, vocab_file, do_lower_case)
    return feature_cache.read_features(path)


def cache_files(tmp_path):
    return sorted(name for name in os.listdir(tmp_path)
                  if name.startswith("features-train-") and name.endswith(".tf_record"))


def test_second_run_reads_the_same_features(tmp_path, vocab, capsys):
    sentences = ["great film", "awful , boring movie", "caf\u00e9 \uf0b7 loved it"]
    first = convert(tmp_path, vocab, sentences)
    assert "cached" not in capsys.readouterr().out
    assert len(cache_files(tmp_path)) == 1
    second = convert(tmp_path, vocab, sentences)
    assert "Using the cached train features" in capsys.readouterr().out
    assert [vars(f) for f in second] == [vars(f) for f in first]


@pytest.mark.parametrize("change", ["text", "label order", "max_seq_length"])
def test_any_change_makes_a_new_cache(tmp_path, vocab, capsys, change):
    sentences = ["great film", "awful movie"]
    convert(tmp_path, vocab, sentences)
    [old] = cache_files(tmp_path)
    if change == "text":
        new = convert(tmp_path, vocab, ["great film", "awful movie!"])
        assert new[1].input_ids[3] != 0  # the "!" is there, not a stale copy
    elif change == "label order":
        new = convert(tmp_path, vocab, sentences[::-1])
        assert new[0].input_ids[1] == conversion.tokenization.load_vocab(vocab[0])["awful"]
    else:
        new = convert(tmp_path, vocab, sentences, max_seq_length=8)
        assert len(new[0].input_ids) == 8
    assert "cached" not in capsys.readouterr().out
    assert cache_files(tmp_path) != [old] and len(cache_files(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path)) == [cache_files(tmp_path)[0],
                                            cache_files(tmp_path)[0] + ".json"]


REVIEWS = ["great film", "awful , boring movie", "caf\u00e9 \uf0b7 loved it",
           "Bad.\x85Really bad \U0001F4A9", "<br /><br />fine\u2028ok", "\x07odd\x0c text"]


def damage_by_truncation(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) * 2 // 3)


def damage_by_flipping_a_byte(path):
    with open(path, "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))


def damage_by_losing_the_record(path):
    os.remove(path + ".json")


@pytest.mark.parametrize("damage", [damage_by_truncation, damage_by_flipping_a_byte,
                                    damage_by_losing_the_record])
def test_a_damaged_cache_file_is_converted_again(tmp_path, vocab, capsys, damage):
    first = convert(tmp_path, vocab, REVIEWS)
    [name] = cache_files(tmp_path)
    damage(str(tmp_path / name))
    capsys.readouterr()
    second = convert(tmp_path, vocab, REVIEWS)
    out = capsys.readouterr().out
    assert "are damaged (" in out and "converting them again" in out
    assert len(out.splitlines()) == 1  # one line says so
    assert [vars(f) for f in second] == [vars(f) for f in first]
    assert cache_files(tmp_path) == [name]
    convert(tmp_path, vocab, REVIEWS)
    assert "Using the cached train features" in capsys.readouterr().out


def cached_features(tmp_path, vocab, count, max_seq_length=16):
    """(path of a cache file of `count` distinct reviews, their InputFeatures)."""
    vocab_file, do_lower_case = vocab
    tokenizer = conversion.create_tokenizer(vocab_file, do_lower_case, fast=True)
    sentences = [REVIEWS[i % len(REVIEWS)] + " " + "movie " * (i % 7) + str(i)
                 for i in range(count)]
    examples = conversion.make_examples(sentences, [i % 2 for i in range(count)])
    path = feature_cache.load_or_convert(str(tmp_path), "test", examples, config.label_list,
                                         max_seq_length, tokenizer, vocab_file, do_lower_case)
    return path, feature_cache.read_features(path)


def batches_of(input_fn, batch_size, count, seed=42):
    with tf.Graph().as_default():
        tf.set_random_seed(seed)  # as the Estimator does with RunConfig's tf_random_seed
        dataset = input_fn({"batch_size": batch_size})
        batch = tf.data.make_one_shot_iterator(dataset).get_next()
        constants = [op for op in tf.get_default_graph().get_operations()
                     if op.type == "Const"]
        with tf.Session() as session:
            return [session.run(batch) for _ in range(count)], constants


def test_evaluation_batches_equal_those_of_bert_input_fn_builder(tmp_path, vocab):
    path, feature_list = cached_features(tmp_path, vocab, 23)
    ours, _ = batches_of(feature_cache.input_fn_builder(path, 16, False, False), 5, 5)
    theirs, _ = batches_of(run_classifier.input_fn_builder(feature_list, 16, False, False),
                           5, 5)
    assert [len(batch["label_ids"]) for batch in ours] == [5, 5, 5, 5, 3]
    for mine, bert in zip(ours, theirs):
        assert list(mine) == list(bert)
        for name in bert:
            assert mine[name].dtype == bert[name].dtype == np.int32
            np.testing.assert_array_equal(mine[name], bert[name])


def test_each_training_epoch_holds_every_feature_once(tmp_path, vocab):
    path, feature_list = cached_features(tmp_path, vocab, 240)
    input_fn = feature_cache.input_fn_builder(path, 16, True, False, seed=42)
    batches, constants = batches_of(input_fn, 8, 60)  # two epochs
    rows = [tuple(ids) for batch in batches for ids in batch["input_ids"]]
    every = sorted(tuple(f.input_ids) for f in feature_list)
    assert sorted(rows[:240]) == every and sorted(rows[240:]) == every
    assert rows[:240] != [tuple(f.input_ids) for f in feature_list]  # shuffled
    assert rows[:240] != rows[240:]  # and shuffled anew each epoch
    assert batches_of(input_fn, 8, 60)[0][-1]["input_ids"].tolist() == \
        batches[-1]["input_ids"].tolist()  # one seed, one order
    assert max(op.outputs[0].shape.num_elements() or 0 for op in constants) < 1000


@pytest.mark.parametrize("is_training", [True, False])
def test_the_input_runs_without_tf_data_autotuning(tmp_path, vocab, is_training):
    # Its thread made evaluation sessions' close wait seconds, idle (docs/speed.md).
    path, _ = cached_features(tmp_path, vocab, 4)
    input_fn = feature_cache.input_fn_builder(path, 16, is_training, False, seed=1)
    with tf.Graph().as_default():
        assert input_fn({"batch_size": 2}).options().autotune.enabled is False
