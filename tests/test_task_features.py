"""Issue 31 without training: sentence pairs get bert's ids on the fast path and in
predict.py's encoding, the feature cache keys tell the tasks' inputs apart (and keep the
single-text keys), and the in-graph metrics of multi-label and regression are
scikit-learn's and scipy's."""
import random

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from imdb_bert.compat import run_classifier, tf
from imdb_bert.features import conversion, fast_tokenizer, feature_cache, truncation
from imdb_bert.model import task_metrics
from imdb_bert.model import heads
from test_fast_features import VARIED_TEXTS, random_texts
from test_truncate import messy_texts


def pair_texts():
    """(first texts, second texts): ordinary, empty, spaces only (bert then drops the pair),
    long and messy (HTML, emoji, U+0085, control characters, private use) in both places."""
    firsts = VARIED_TEXTS + random_texts(120, seed=1) + messy_texts(30, seed=2)
    rng = random.Random(3)
    seconds = [rng.choice(firsts) for _ in firsts]
    return firsts, seconds


def as_tuples(feature_list):
    return [(f.input_ids, f.input_mask, f.segment_ids, f.label_id) for f in feature_list]


@pytest.mark.parametrize("max_seq_length", [8, 32, 128])
def test_pairs_get_run_classifiers_ids_on_every_path(tokenizers, max_seq_length):
    bert, fast = tokenizers
    firsts, seconds = pair_texts()
    examples = conversion.make_examples(firsts, [i % 2 for i in range(len(firsts))], seconds)
    expected = as_tuples(run_classifier.convert_examples_to_features(
        examples, [0, 1], max_seq_length, bert))
    fast.fallbacks = 0
    paths = {"fast": conversion.fast_convert_examples(examples, [0, 1], max_seq_length, fast),
             "ours, bert's tokenizer": conversion.convert_examples(
                 examples, [0, 1], max_seq_length, bert),
             "ours, fast": conversion.convert_examples(examples, [0, 1], max_seq_length, fast)}
    for name, feature_list in paths.items():
        for first, second, mine, theirs in zip(firsts, seconds, as_tuples(feature_list),
                                               expected):
            assert mine == theirs, (name, first, second)
    assert fast.fallbacks > 0  # the private-use texts went to bert's tokenizer
    ids, mask, segments = fast_tokenizer.encode_inputs(firsts, seconds, max_seq_length, fast)
    assert [(i, m, s) for i, m, s in zip(ids, mask, segments)] == [e[:3] for e in expected]
    assert any(1 in e[2] for e in expected)  # text_b's segment ids


def test_truncate_pair_is_berts():
    rng = random.Random(0)
    for _ in range(500):
        a, b = list(range(rng.randint(0, 40))), list(range(100, 100 + rng.randint(0, 40)))
        room = rng.randint(1, 50)
        mine_a, mine_b, bert_a, bert_b = list(a), list(b), list(a), list(b)
        truncation.truncate_pair(mine_a, mine_b, room)
        run_classifier._truncate_seq_pair(bert_a, bert_b, room)
        assert (mine_a, mine_b) == (bert_a, bert_b)


def test_cache_keys_keep_single_texts_and_tell_tasks_and_pairs_apart(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\ngreat\nfilm\n")
    texts = ["great film", "caf\u00e9\x85 <br />film \U0001F600"]
    single = conversion.make_examples(texts, [1, 0])

    def key(examples, *options):
        return feature_cache.cache_key(examples, [0, 1], 128, str(vocab), True, *options)
    # The keys of the commit before issue 31, for the same vocab and texts.
    assert key(single) == "490b39f771a4502e"
    assert feature_cache.cache_key(single, ["neg", "pos"], 32, str(vocab), False,
                                   "tail") == "7c54ab72b7198fa3"
    keys = {key(single), key(conversion.make_examples(texts, [1, 0], ["a", "b"])),
            key(conversion.make_examples(texts, [1, 0], ["a", "c"])),
            key(conversion.make_examples(texts, [(1, 0), (0, 0)]), "head", "multi-label"),
            key(conversion.make_examples(texts, [1.0, 0.0]), "head", "regression")}
    assert len(keys) == 5


def test_in_graph_metrics_are_sklearns_and_scipys():
    rng = np.random.RandomState(0)
    true = rng.randint(0, 2, (16, 3))
    predicted = np.where(rng.rand(16, 3) < 0.8, true, 1 - true)
    streamed = metric_values_streamed("multi-label", true, predicted)
    assert streamed["micro_f1"] == pytest.approx(metrics.f1_score(true, predicted,
                                                                  average="micro"))
    assert streamed["macro_f1"] == pytest.approx(metrics.f1_score(true, predicted,
                                                                  average="macro"))
    assert streamed["subset_accuracy"] == pytest.approx(metrics.accuracy_score(true, predicted))
    assert streamed["hamming_loss"] == pytest.approx(metrics.hamming_loss(true, predicted))
    values = rng.rand(16) * 5
    guesses = values + rng.randn(16)
    streamed = metric_values_streamed("regression", values[:, None], guesses)
    assert streamed["mse"] == pytest.approx(metrics.mean_squared_error(values, guesses))
    assert streamed["mae"] == pytest.approx(metrics.mean_absolute_error(values, guesses))
    assert streamed["pearson"] == pytest.approx(stats.pearsonr(values, guesses)[0])
    assert streamed["spearman"] == pytest.approx(stats.spearmanr(values, guesses)[0])
    assert streamed["r2"] == pytest.approx(metrics.r2_score(values, guesses))
    assert task_metrics.regression_scores([1.0, 1.0], [2.0, 3.0])["pearson"] == 0.0


def metric_values_streamed(task, true, predicted):
    """The metric ops' values after four batches of `true` and `predicted`."""
    with tf.Graph().as_default():
        true_input = tf.placeholder(tf.float32, [None] + list(np.shape(true)[1:]))
        predicted_input = tf.placeholder(tf.float32, [None] + list(np.shape(predicted)[1:]))
        ops = heads.metric_fn(task, true_input, predicted_input)
        with tf.Session(config=tf.ConfigProto()) as sess:
            sess.run(tf.local_variables_initializer())
            for start in range(0, len(true), 4):
                sess.run({k: update for k, (_, update) in ops.items()},
                         {true_input: true[start:start + 4],
                          predicted_input: predicted[start:start + 4]})
            return sess.run({k: value for k, (value, _) in ops.items()})
