"""Steps 3-5: InputExamples and InputFeatures with the tokenizer from the module."""
import pytest

import config
from imdb_bert.compat import run_classifier, tokenization
from imdb_bert.features import conversion


@pytest.fixture(scope="module")
def tokenizer(tiny_module):
    return conversion.create_tokenizer_from_hub_module(tiny_module)


def convert(tokenizer, sentences, labels, max_seq_length):
    return run_classifier.convert_examples_to_features(
        conversion.make_examples(sentences, labels), config.label_list, max_seq_length, tokenizer)


def test_examples_carry_text_and_label():
    [example] = conversion.make_examples(["Great film"], [1])
    assert (example.guid, example.text_a, example.text_b, example.label) == (
        None, "Great film", None, 1)


def test_features_ids_mask_segments_and_padding(tokenizer):
    [feature] = convert(tokenizer, ["The film was GREAT"], [1], 10)
    vocab = tokenizer.vocab
    expected_ids = [101, vocab["the"], vocab["film"], vocab["was"], vocab["great"], 102]
    assert feature.input_ids == expected_ids + [0] * 4
    assert feature.input_mask == [1] * 6 + [0] * 4
    assert feature.segment_ids == [0] * 10
    assert feature.label_id == 1 and feature.is_real_example


def test_long_reviews_are_truncated_to_max_seq_length(tokenizer):
    long_review = " ".join(["awful"] * 50)
    [feature] = convert(tokenizer, [long_review], [0], 16)
    assert len(feature.input_ids) == len(feature.input_mask) == 16
    assert feature.input_ids == [101] + [tokenizer.vocab["awful"]] * 14 + [102]
    assert feature.input_mask == [1] * 16
    assert feature.label_id == 0


def test_unknown_words_become_unk(tokenizer):
    [feature] = convert(tokenizer, ["great \u4e2d"], [1], 8)
    assert feature.input_ids[:4] == [101, tokenizer.vocab["great"], 100, 102]


def test_progress_conversion_equals_bert(tokenizer):
    sentences = ["great film", "awful , boring movie <br /> really", "", "x" * 300]
    examples = conversion.make_examples(sentences, [1, 0, 1, 0])
    ours = conversion.convert_examples(examples, config.label_list, 12, tokenizer)
    berts = run_classifier.convert_examples_to_features(examples, config.label_list, 12,
                                                        tokenizer)
    assert [vars(f) for f in ours] == [vars(f) for f in berts]


def test_fast_conversion_in_chunks_equals_bert(tiny_module):
    vocab_file, do_lower_case = conversion.tokenization_info(tiny_module)
    fast = conversion.create_tokenizer(vocab_file, do_lower_case, fast=True)
    sentences = ["review %d is great , caf\u00e9 \uf0b7 %s" % (i, "x " * (i % 40))
                 for i in range(2101)]  # more than one chunk; some need the fallback
    examples = conversion.make_examples(sentences, [i % 2 for i in range(len(sentences))])
    ours = conversion.convert_examples(examples, config.label_list, 32, fast)
    berts = run_classifier.convert_examples_to_features(
        examples, config.label_list, 32, tokenization.FullTokenizer(vocab_file, do_lower_case))
    assert [vars(f) for f in ours] == [vars(f) for f in berts]
