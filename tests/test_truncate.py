"""--truncate head|tail|head+tail: the pieces a text longer than the window keeps, the same
in bert's conversion, the fast path and predict.py's, and learnt by train.py."""
import json
import logging
import os
import random
import subprocess
import sys

import pytest

import config
from conftest import ROOT, run_train
from imdb_bert.compat import run_classifier, tf, tokenization
from imdb_bert.errors import UserError
from imdb_bert.features import conversion, fast_tokenizer, feature_cache, truncation
from imdb_bert.output import files, run_settings
from imdb_bert.serving import inference
from imdb_bert.tools.synthetic_reviews import FILLER_WORDS, NEGATIVE_WORDS, POSITIVE_WORDS

MODES = ["head", "tail", "head+tail"]

# Real reviews' mess: HTML, emoji, accents, U+0085, control characters, a 250-character
# word ([UNK]), a private-use character (the fast path's fallback), CJK, long and short.
MESSY_PARTS = ["Great<br /><br />film", "\U0001F600\U0001F44D", "caf\u00e9 na\u00efve \u00c9COLE",
               "line\x85break", "bell\x07and\x1b[0m esc", "x" * 250, "\uf0b7 bullet",
               "\u4e2d\u6587", "awful , boring !", "10/10", "\u201cquoted\u201d \u2014 dash",
               "tab\tnew\nline", "zero\u200bwidth", "loved it", "the plot was dull"]


def messy_texts(count, seed=0):
    rng = random.Random(seed)
    long = [" ".join(rng.choice(MESSY_PARTS) for _ in range(rng.randint(30, 120)))
            for _ in range(count)]
    short = ["Great<br />film \U0001F600 caf\u00e9\x85!", "awful\x07 \uf0b7", "", "x" * 250,
             "loved it"]
    return long + short


def expected_pieces(pieces, mode, room):
    """The spec, written out: head the first `room`, tail the last `room`, head+tail the
    first room // 4 and the last room - room // 4; a text that fits is kept whole."""
    if len(pieces) <= room:
        return pieces
    if mode == "head":
        return pieces[:room]
    if mode == "tail":
        return pieces[-room:]
    first = room // 4
    return pieces[:first] + pieces[len(pieces) - (room - first):]


def test_keep_at_the_notebooks_length():
    pieces = list(range(300))
    assert truncation.keep(pieces, "head", 126) == list(range(126))
    assert truncation.keep(pieces, "tail", 126) == list(range(174, 300))
    kept = truncation.keep(pieces, "head+tail", 126)
    assert kept == list(range(31)) + list(range(205, 300))  # 31 + 95 at 128
    for mode in MODES:
        assert truncation.keep(pieces[:126], mode, 126) == list(range(126))
        assert truncation.keep([], mode, 126) == []
        assert truncation.keep(pieces, mode, 1) == ([0] if mode == "head" else [299])


def ids_of(feature_list):
    return [(f.input_ids, f.input_mask, f.segment_ids) for f in feature_list]


@pytest.mark.parametrize("max_seq_length", [16, 128])
@pytest.mark.parametrize("mode", MODES)
def test_every_path_gives_the_ids_of_the_kept_pieces(tokenizers, mode, max_seq_length):
    """bert's conversion (its own convert_examples_to_features, and ours with its first
    examples converted by bert), the fast path, predict.py's ONNX encoding and its
    SavedModel/checkpoint features all give [CLS] + the kept pieces + [SEP]."""
    bert, fast = tokenizers
    texts = messy_texts(40)
    labels = [i % 2 for i in range(len(texts))]
    examples = conversion.make_examples(texts, labels)
    room = max_seq_length - 2
    expected = []
    for text in texts:
        pieces = ["[CLS]"] + expected_pieces(bert.tokenize(text), mode, room) + ["[SEP]"]
        ids = bert.convert_tokens_to_ids(pieces)
        padding = [0] * (max_seq_length - len(ids))
        expected.append((ids + padding, [1] * len(ids) + padding, [0] * max_seq_length))
    assert sum(len(bert.tokenize(text)) > 126 for text in texts) >= 20  # longer than 128

    berts = run_classifier.convert_examples_to_features(
        examples, config.label_list, max_seq_length,
        truncation.truncating(bert, mode, max_seq_length))
    assert ids_of(berts) == expected
    reference = conversion.convert_examples(examples, config.label_list, max_seq_length, bert,
                                            truncate=mode)
    assert ids_of(reference) == expected
    fast.fallbacks = 0
    fast_path = conversion.convert_examples(examples, config.label_list, max_seq_length, fast,
                                            truncate=mode)
    assert ids_of(fast_path) == expected
    assert 0 < fast.fallbacks < len(texts)  # both tokenizers of the fast path were used
    onnx = fast_tokenizer.encode(texts, max_seq_length, fast, mode)
    assert [(ids, mask, [0] * max_seq_length) for ids, mask in onnx] == expected
    settings = {"label_list": config.label_list, "max_seq_length": max_seq_length,
                "truncate": mode}
    assert ids_of(inference.sentence_features(texts, settings, fast)) == expected
    assert [f.label_id for f in fast_path] == labels


def test_texts_that_fit_are_the_same_in_every_mode(tokenizers):
    bert, fast = tokenizers
    texts = [t for t in messy_texts(40) if len(bert.tokenize(t)) <= 126]
    assert len(texts) >= 5
    encoded = [fast_tokenizer.encode(texts, 128, fast, mode) for mode in MODES]
    assert encoded[0] == encoded[1] == encoded[2]


def test_bert_logs_the_kept_pieces(tokenizers):
    """The first examples, which bert's conversion logs, show the pieces the mode kept."""
    bert, fast = tokenizers
    text = " ".join(["the"] * 40 + ["great", "film"])
    examples = conversion.make_examples([text], [1])
    # A handler on TensorFlow's own logger: other tests may have stopped it propagating.
    logged_lines = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: logged_lines.append(record.getMessage())
    tf_logger = logging.getLogger("tensorflow")
    verbosity = tf.logging.get_verbosity()
    tf.logging.set_verbosity(tf.logging.INFO)
    tf_logger.addHandler(handler)
    try:
        for mode, logged in (("head", "the " * 14), ("tail", "the " * 12 + "great film"),
                             ("head+tail", "the " * 12 + "great film")):
            logged_lines.clear()
            conversion.convert_examples(examples, config.label_list, 16, fast, truncate=mode)
            assert "tokens: [CLS] %s [SEP]" % logged.strip() in "\n".join(logged_lines), mode
    finally:
        tf_logger.removeHandler(handler)
        tf.logging.set_verbosity(verbosity)


def write_vocab(path):
    with open(path, "w", encoding="utf-8") as f:
        f.write("[PAD]\n[UNK]\n[CLS]\n[SEP]\ngreat\nfilm\ncaf\u00e9\n")
    return str(path)


def test_cache_key_covers_the_mode_and_keeps_heads(tmp_path):
    """head's key is the one of before --truncate (recorded with main at aff6728), so the
    feature files of existing runs stay valid; the other modes have keys of their own."""
    vocab_file = write_vocab(tmp_path / "vocab.txt")
    examples = conversion.make_examples(["great film", "caf\u00e9\x85 <br />film \U0001F600"],
                                        [1, 0])
    keys = [feature_cache.cache_key(examples, [0, 1], 128, vocab_file, True, mode)
            for mode in MODES]
    assert keys[0] == "05341b67bda2b635"
    assert feature_cache.cache_key(examples, [0, 1], 128, vocab_file, True) == keys[0]
    assert len(set(keys)) == 3


def test_cached_features_are_those_of_the_mode(tmp_path, tiny_module):
    vocab_file, do_lower_case = conversion.tokenization_info(tiny_module)
    fast = conversion.create_tokenizer(vocab_file, do_lower_case, fast=True)
    examples = conversion.make_examples(["the film " * 20 + "great", "great"], [1, 1])
    kept = {}
    for mode in MODES:
        path = feature_cache.load_or_convert(str(tmp_path), "test", examples,
                                             config.label_list, 8, fast, vocab_file,
                                             do_lower_case, mode)
        kept[mode] = [f.input_ids for f in feature_cache.read_features(path)]
    great = fast.reference.vocab["great"]
    assert kept["head"][0][6] != great and kept["tail"][0][6] == great
    assert kept["head+tail"][0][6] == great
    assert kept["head"][1] == kept["tail"][1] == kept["head+tail"][1]  # it fits


def test_a_settings_file_without_the_key_was_head(tmp_path):
    """A folder trained before --truncate existed was trained with head: resuming it with
    another mode stops, as any other changed setting; with head it goes on."""
    with open(tmp_path / files.MODEL_SETTINGS, "w") as f:
        json.dump({"max_seq_length": 128, "seed": 42}, f)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-10"\n')
    run_settings.check_settings(str(tmp_path), {"max_seq_length": 128, "truncate": "head"})
    with pytest.raises(UserError, match="truncate: 'head' now 'tail'"):
        run_settings.check_settings(str(tmp_path), {"max_seq_length": 128,
                                                    "truncate": "tail"})


def end_labelled_review(rng, polarity):
    """Neutral filler (with real reviews' mess) longer than a 32-piece window, then the
    review's sentiment words, only in its last sentence."""
    filler = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(40, 70))]
    for mess in ("<br /><br />", "caf\u00e9", "\x85", "\U0001F600", "\x07"):
        filler.insert(rng.randrange(len(filler) + 1), mess)
    words = POSITIVE_WORDS if polarity else NEGATIVE_WORDS
    return "%s. All in all : %s !" % (" ".join(filler),
                                      " , ".join(rng.choice(words) for _ in range(4)))


def make_end_labelled_tree(root, seed=0, per_class=None):
    """root/aclImdb in the real layout (what train.py reads) of end-labelled reviews."""
    rng = random.Random(seed)
    for split, count in (per_class or {"train": 100, "test": 50}).items():
        for folder, polarity, rating in (("pos", 1, 9), ("neg", 0, 2)):
            os.makedirs(os.path.join(root, "aclImdb", split, folder))
            for i in range(count):
                name = os.path.join(root, "aclImdb", split, folder, "%d_%d.txt" % (i, rating))
                with open(name, "w", encoding="utf-8") as f:
                    f.write(end_labelled_review(rng, polarity))
    return root


@pytest.fixture(scope="module")
def end_labelled_dir(tmp_path_factory, tiny_module):
    root = make_end_labelled_tree(str(tmp_path_factory.mktemp("end_labelled")))
    # As meant: no sentiment word in the first 30 pieces, four in the last 12.
    vocab_file, _ = conversion.tokenization_info(tiny_module)
    bert = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
    for polarity, words in (("pos", POSITIVE_WORDS), ("neg", NEGATIVE_WORDS)):
        folder = os.path.join(root, "aclImdb", "train", polarity)
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                pieces = bert.tokenize(f.read())
            assert len(pieces) > 40
            assert not set(pieces[:30]) & set(POSITIVE_WORDS + NEGATIVE_WORDS)
            assert len([piece for piece in pieces[-12:] if piece in words]) == 4
    return root


@pytest.fixture(scope="module")
def runs(end_labelled_dir, tiny_module, tmp_path_factory):
    """{mode: output dir} of a train.py run per mode at --max-seq-length 32 (tail's with
    its ONNX copy, for predict.py's three paths)."""
    output_dirs = {}
    for mode in MODES:
        output_dir = str(tmp_path_factory.mktemp("truncate") / "OUTPUT_Bert")
        result = run_train("--data-dir", end_labelled_dir, "--bert-hub", tiny_module,
                           "--output-dir", output_dir, "--train-samples", "all",
                           "--test-samples", "all", "--max-seq-length", "32",
                           "--batch-size", "16", "--learning-rate", "7e-4", "--epochs", "10",
                           "--truncate", mode, *([] if mode == "tail" else ["--no-onnx"]))
        assert result.returncode == 0, result.stderr[-3000:]
        output_dirs[mode] = output_dir
    return output_dirs


def test_tail_and_head_tail_learn_what_only_the_end_says(runs):
    """head sees filler only and guesses; tail and head+tail (7 + 23 pieces at 32) see the
    last sentence and learn it. (Data seeds 0-2 with --seed 42-44: head 0.50-0.51, the
    others 1.0.)"""
    accuracy = {}
    for mode, output_dir in runs.items():
        assert run_settings.read_settings(output_dir)["truncate"] == mode
        with open(os.path.join(output_dir, files.EVAL_RESULTS)) as f:
            accuracy[mode] = json.load(f)["eval_accuracy"]
    assert accuracy["head"] <= 0.7, accuracy
    assert accuracy["tail"] >= 0.9 and accuracy["head+tail"] >= 0.9, accuracy


def test_predict_applies_the_mode_of_the_run_on_every_path(runs, end_labelled_dir, tmp_path):
    """predict.py takes tail from model_settings.json on its ONNX, SavedModel and
    checkpoint paths: with head's pieces the model would see filler only."""
    sentences, labels = [], []
    for polarity, label in (("pos", "Positive"), ("neg", "Negative")):
        folder = os.path.join(end_labelled_dir, "aclImdb", "test", polarity)
        for name in sorted(os.listdir(folder))[:3]:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                sentences.append(f.read())
            labels.append(label)
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    for flags, said in (([], "Predicting with ONNX Runtime"),
                        (["--no-onnx"], "Predicting with the SavedModel"),
                        (["--from-checkpoint"], "Restoring")):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--json",
                                 "--output-dir", runs["tail"], "--file", str(reviews), *flags],
                                capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert said in result.stderr
        output = json.loads(result.stdout)
        assert [item["sentence"] for item in output] == sentences
        assert [item["label"] for item in output] == labels, flags
        assert min(max(item["probabilities"]) for item in output) > 0.8, flags
