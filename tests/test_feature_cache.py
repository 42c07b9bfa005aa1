"""Converted features are cached under a key of everything that changes them."""
import os

import pytest

import config
from imdb_bert import feature_cache, features


@pytest.fixture(scope="module")
def vocab(tiny_module):
    return features.tokenization_info(tiny_module)


def convert(tmp_path, vocab, sentences, max_seq_length=16):
    vocab_file, do_lower_case = vocab
    tokenizer = features.create_tokenizer(vocab_file, do_lower_case, fast=True)
    examples = features.make_examples(sentences, [i % 2 for i in range(len(sentences))])
    return feature_cache.load_or_convert(str(tmp_path), "train", examples, config.label_list,
                                         max_seq_length, tokenizer, vocab_file, do_lower_case)


def cache_files(tmp_path):
    return sorted(name for name in os.listdir(tmp_path) if name.startswith("features-train-"))


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
        assert new[0].input_ids[1] == features.tokenization.load_vocab(vocab[0])["awful"]
    else:
        new = convert(tmp_path, vocab, sentences, max_seq_length=8)
        assert len(new[0].input_ids) == 8
    assert "cached" not in capsys.readouterr().out
    assert cache_files(tmp_path) != [old] and len(cache_files(tmp_path)) == 1
