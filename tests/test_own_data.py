"""train.py and predict.py on the user's own files (issue 24): a 3-class run that learns,
from CSV, JSON Lines and TSV files with messy text, and a binary run with string labels,
custom columns and --positive-label; exit codes of train.py on bad input."""
import csv
import json
import os
import random
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import quick_args, run_train
from imdb_bert.tools.synthetic_reviews import FILLER_WORDS, NEGATIVE_WORDS, POSITIVE_WORDS
from test_predict import run_predict

# Three classes, each with its words of the tiny vocab and its rating, as conftest's
# reviews have two. With ten words per class (conftest's), the tiny model at 7e-4 merged two
# of the classes (2/3 accuracy, seeds 1 and 42); three words each at 1.5e-3 for 15 epochs
# learned all three with both seeds.
THREE_CLASSES = {"n\u00e9gatif": (["awful", "terrible", "boring"], "1/10"),
                 "positif": (["great", "excellent", "wonderful"], "8/10"),
                 "\u00e9mouvant": (["charming", "moving", "masterpiece"], "5/10")}
BINARY = {"pos": (POSITIVE_WORDS, "10/10"), "neg": (NEGATIVE_WORDS, "1/10")}
# What real texts hold, put after the words that carry the class (max_seq_length 32).
MESSY_ENDINGS = [', he said "wow, just wow".', "\nA second line,\r\nand a third.",
                 " \U0001F600\U0001F3AC", " caf\u00e9 na\u00efve \u00c9t\u00e9",
                 "\x85next line <br /><br />", " tab\there \u2028", " 10/10; a bell\x07"]


def labelled_text(rng, signal, rating):
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(8, 14))]
    for _ in range(3):
        words.insert(rng.randrange(len(words) + 1), rng.choice(signal))
    text = " ".join(words) + " " + rating
    return text[0].upper() + text[1:] + rng.choice(MESSY_ENDINGS)


def rows(seed, per_class, classes):
    rng = random.Random(seed)
    made = [(labelled_text(rng, words, rating), label)
            for label, (words, rating) in classes.items() for _ in range(per_class)]
    return sorted(made, key=lambda row: row[1])  # sorted by label: train.py must shuffle


def write_table(path, table, header, delimiter=","):
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(table)
    return str(path)


def write_jsonl(path, table, keys):
    with open(path, "w", encoding="utf-8") as f:
        for text, label in table:
            f.write(json.dumps({keys[0]: text, keys[1]: label, "id": len(text)},
                               ensure_ascii=False) + "\n")
    return str(path)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def training_flags(output_dir, tiny_module, *extra, onnx=False, learning_rate="7e-4",
                   epochs="10"):
    """conftest.quick_args' training (the tiny module, 10 epochs at batch 16) on files."""
    return ["--bert-hub", tiny_module, "--output-dir", output_dir, "--max-seq-length", "32",
            "--batch-size", "16", "--learning-rate", learning_rate, "--epochs", epochs,
            *extra, *([] if onnx else ["--no-onnx"])]


@pytest.fixture(scope="module")
def three_classes(tiny_module, tmp_path_factory):
    """(output dir, process, test rows, file paths) of a 3-class run: train.csv (sorted by
    label), test.jsonl, valid.tsv with --keep-best, and the ONNX copy."""
    folder = tmp_path_factory.mktemp("three")
    files = {"train": write_table(folder / "train.csv", rows(1, 80, THREE_CLASSES),
                                  ("sentence", "polarity")),
             "test": write_jsonl(folder / "test.jsonl", rows(2, 30, THREE_CLASSES),
                                 ("sentence", "polarity")),
             "validation": write_table(folder / "valid.tsv", rows(3, 20, THREE_CLASSES),
                                       ("sentence", "polarity"), delimiter="\t")}
    output_dir = str(folder / "OUTPUT_Bert")
    result = run_train(*training_flags(
        output_dir, tiny_module, "--train-file", files["train"], "--test-file", files["test"],
        "--validation-file", files["validation"], "--keep-best", "--eval-every-steps", "75",
        "--allow-multiline-fields",  # MESSY_ENDINGS: a quoted text with a line break and ","
        onnx=True, learning_rate="1.5e-3", epochs="15"))
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result, rows(2, 30, THREE_CLASSES), files


def test_three_classes_learn_and_report_per_class(three_classes):
    output_dir, result, test_rows, files = three_classes
    assert "Train reviews: 240, test reviews: 90" in result.stdout
    assert "Validation reviews: 60, from %s" % files["validation"] in result.stdout
    names = ["n\u00e9gatif", "positif", "\u00e9mouvant"]  # sorted as text
    settings = read_json(os.path.join(output_dir, "model_settings.json"))
    assert settings["label_list"] == settings["label_names"] == names
    assert settings["positive_label"] is None
    assert settings["train_samples"] is None and settings["test_samples"] is None  # all
    from imdb_bert.data.text_files import file_sha256
    for split, path in files.items():
        assert settings["%s_file_sha256" % split] == file_sha256(path)

    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert set(results) == {"eval_accuracy", "loss", "global_step", "macro_f1", "weighted_f1",
                            "per_class", "classification_report"}
    best = read_json(os.path.join(output_dir, "best_checkpoint.json"))["global_step"]
    history = read_json(os.path.join(output_dir, "validation_history.json"))
    assert [entry["global_step"] for entry in history] == [75, 150, 225]  # 240 / 16 * 15
    assert results["global_step"] == best  # --keep-best
    assert results["eval_accuracy"] >= 0.85 and results["macro_f1"] >= 0.85
    assert list(results["per_class"]) == names
    assert [row["support"] for row in results["per_class"].values()] == [30, 30, 30]
    assert "macro F1 %.4f" % results["macro_f1"] in result.stdout
    assert os.path.exists(os.path.join(output_dir, "confusion_matrix.png"))
    assert not os.path.exists(os.path.join(output_dir, "roc_curve.png"))

    table = pd.read_csv(os.path.join(output_dir, "test_predictions.csv"), keep_default_na=False)
    assert list(table.columns) == ["sentence", "polarity", "predicted_label"] + [
        "probability_" + name for name in names]
    assert list(table["sentence"]) == [text for text, _ in test_rows]  # the file's order
    assert list(table["polarity"]) == [label for _, label in test_rows]
    probabilities = table[["probability_" + name for name in names]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (np.array(names)[probabilities.argmax(axis=1)] == table["predicted_label"]).all()
    assert (table["predicted_label"] == table["polarity"]).mean() == pytest.approx(
        results["eval_accuracy"], abs=1e-6)


CLASS_SENTENCES = ["great wonderful film , loved it", "awful boring plot , the worst",
                   "a charming and moving masterpiece \U0001F600"]


def test_predict_names_three_classes_from_onnx_and_savedmodel(three_classes):
    output_dir = three_classes[0]
    names = ["n\u00e9gatif", "positif", "\u00e9mouvant"]
    outputs = []
    for flags in ([], ["--no-onnx"]):
        result = run_predict("--json", "--output-dir", output_dir, *flags, *CLASS_SENTENCES)
        assert result.returncode == 0, result.stderr[-3000:]
        assert ("ONNX Runtime" in result.stderr) == (not flags)
        output = json.loads(result.stdout)
        assert [item["label"] for item in output] == ["positif", "n\u00e9gatif",
                                                      "\u00e9mouvant"]
        for item in output:
            assert set(item) == {"sentence", "label", "probabilities", "log_probabilities",
                                 "label_names"}
            assert item["label_names"] == names
            assert len(item["probabilities"]) == len(item["log_probabilities"]) == 3
            assert names[int(np.argmax(item["probabilities"]))] == item["label"]
        outputs.append(output)
    np.testing.assert_allclose([i["probabilities"] for i in outputs[0]],
                               [i["probabilities"] for i in outputs[1]], atol=1e-4)
    plain = run_predict("--output-dir", output_dir, CLASS_SENTENCES[0])
    label, probability, log_probs, sentence = plain.stdout.rstrip("\n").split("\t")
    assert label == "positif" and sentence == CLASS_SENTENCES[0]
    assert len(log_probs.strip("[]").split(", ")) == 3


def test_predict_refuses_settings_of_another_label_count(three_classes, tmp_path):
    output_dir = str(tmp_path / "mixed")
    shutil.copytree(three_classes[0], output_dir)
    settings_path = os.path.join(output_dir, "model_settings.json")
    settings = read_json(settings_path)
    settings["label_list"] = settings["label_names"] = ["a", "b"]
    with open(settings_path, "w", encoding="utf-8") as f:
        json.dump(settings, f)
    result = run_predict("--output-dir", output_dir, "great film")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has 3 outputs but its model_settings.json names 2 labels (a, b)" in result.stderr



@pytest.fixture(scope="module")
def binary(tiny_module, tmp_path_factory):
    """A binary run on string labels in other columns, the first label (pos) positive."""
    folder = tmp_path_factory.mktemp("binary")
    files = {"train": write_jsonl(folder / "train.jsonl", rows(4, 100, BINARY),
                                  ("review", "sentiment")),
             "test": write_table(folder / "test.csv", rows(5, 50, BINARY),
                                 ("review", "sentiment"))}
    args = training_flags(str(folder / "OUTPUT_Bert"), tiny_module, "--train-file",
                          files["train"], "--test-file", files["test"], "--text-column",
                          "review", "--label-column", "sentiment", "--labels", "pos,neg",
                          "--positive-label", "pos", "--test-samples", "60",
                          "--allow-multiline-fields")  # test.csv: see three_classes
    result = run_train(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return str(folder / "OUTPUT_Bert"), result, files, args


def test_binary_string_labels_keep_the_notebooks_metrics(binary):
    output_dir, result, files, _ = binary
    assert "Train reviews: 200, test reviews: 60" in result.stdout
    settings = read_json(os.path.join(output_dir, "model_settings.json"))
    assert settings["label_list"] == ["pos", "neg"] and settings["positive_label"] == "pos"
    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert set(results) == {"eval_accuracy", "f1_score", "auc", "precision", "recall",
                            "true_positives", "true_negatives", "false_positives",
                            "false_negatives", "loss", "global_step", "roc_auc",
                            "classification_report"}
    assert results["eval_accuracy"] >= 0.9
    table = pd.read_csv(os.path.join(output_dir, "test_predictions.csv"), keep_default_na=False)
    assert list(table.columns) == ["review", "sentiment", "predicted_label",
                                   "probability_positive"]
    # The positive class is "pos", the first label: the counts and P are about it.
    positives = int((table["sentiment"] == "pos").sum())
    assert results["true_positives"] + results["false_negatives"] == positives
    assert results["true_positives"] == int(((table["sentiment"] == "pos")
                                             & (table["predicted_label"] == "pos")).sum())
    assert ((table["probability_positive"] > 0.5) == (table["predicted_label"] == "pos")).all()
    assert os.path.exists(os.path.join(output_dir, "roc_curve.png"))


def test_a_changed_file_or_label_list_stops_before_restoring(binary, tmp_path):
    output_dir, _, files, args = binary
    before = sorted(os.listdir(output_dir))
    changed = str(tmp_path / "train.jsonl")
    shutil.copy(files["train"], changed)
    with open(changed, "a", encoding="utf-8") as f:
        f.write(json.dumps({"review": "one more great film", "sentiment": "pos"}) + "\n")
    result = run_train(*[changed if arg == files["train"] else arg for arg in args])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "train_file_sha256" in result.stderr and "Traceback" not in result.stderr
    assert sorted(os.listdir(output_dir)) == before
    again = run_train(*args, "--eval-only")  # the same files and labels: evaluates again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Using the cached test features" in again.stdout
    before = sorted(os.listdir(output_dir))
    swapped = [arg if arg != "pos,neg" else "neg,pos" for arg in args]  # --labels
    result = run_train(*swapped, "--eval-only")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "label_list: ['pos', 'neg'] now ['neg', 'pos']" in result.stderr, result.stderr
    assert "--do-delete" not in result.stderr  # --eval-only keeps the model
    assert sorted(os.listdir(output_dir)) == before


def test_train_py_exits_2_on_bad_files(tiny_module, tmp_path):
    train = write_table(tmp_path / "train.csv", rows(6, 5, BINARY), ("sentence", "polarity"))
    test = write_table(tmp_path / "test.csv", [("a maybe film", "maybe"),
                                               ("an unsure film", "unsure")],
                       ("sentence", "polarity"))
    # The other bad inputs: tests/test_text_files.py, without train.py's start-up.
    cases = [(["--train-file", train], "--train-file and --test-file go together"),
             (["--train-file", train, "--test-file", test],
              "test.csv holds labels that the training file %s lacks: 'maybe', 'unsure'"
              % train)]
    for flags, message in cases:
        result = run_train(*training_flags(str(tmp_path / "out"), tiny_module, *flags))
        assert result.returncode == 2, result.stderr[-2000:]
        assert message in result.stderr and "Traceback" not in result.stderr


def metric_values(label_ids, predicted, num_labels, positive_index):
    from imdb_bert.compat import tf
    from imdb_bert.model.classifier import metric_fn
    with tf.Graph().as_default():
        metrics = metric_fn(tf.constant(label_ids), tf.constant(predicted), num_labels,
                            positive_index)
        with tf.Session(config=tf.ConfigProto()) as sess:
            sess.run(tf.local_variables_initializer())
            sess.run({k: update for k, (_, update) in metrics.items()})
            return sess.run({k: value for k, (value, _) in metrics.items()})


def test_binary_metrics_follow_the_positive_label_and_n_classes_keep_accuracy():
    labels, predicted = [1, 0, 1, 1, 0, 1], [1, 0, 0, 1, 1, 1]
    second = metric_values(labels, predicted, 2, 1)
    first = metric_values(labels, predicted, 2, 0)  # label 0 is the positive one
    assert (second["true_positives"], second["false_negatives"]) == (3, 1)
    assert (first["true_positives"], first["true_negatives"], first["false_positives"],
            first["false_negatives"]) == (1, 3, 1, 1)
    assert first["eval_accuracy"] == second["eval_accuracy"] == pytest.approx(4 / 6)
    assert first["precision"] == pytest.approx(0.5) and first["recall"] == pytest.approx(0.5)
    three = metric_values([0, 1, 2, 2], [0, 2, 2, 2], 3, 1)
    assert set(three) == {"eval_accuracy"} and three["eval_accuracy"] == pytest.approx(0.75)


def folder_state(folder):
    """{name: (size, mtime)} of every file in `folder`, to tell that nothing was touched."""
    return {os.path.relpath(os.path.join(root, name), folder):
            (os.path.getsize(os.path.join(root, name)),
             os.path.getmtime(os.path.join(root, name)))
            for root, _, names in os.walk(folder) for name in names}


def test_eval_only_with_do_delete_is_refused_before_anything_is_touched(binary, tmp_path):
    output_dir = str(tmp_path / "OUTPUT_Bert")
    shutil.copytree(binary[0], output_dir)
    before = folder_state(output_dir)
    args = [output_dir if arg == binary[0] else arg for arg in binary[3]]
    result = run_train(*args, "--eval-only", "--do-delete")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr == ("error: --eval-only evaluates the checkpoints in the output "
                             "dir, which --do-delete would delete first: leave out "
                             "--do-delete.\n")
    assert folder_state(output_dir) == before


def test_no_message_that_eval_only_reaches_advises_do_delete(tmp_path, monkeypatch):
    """In-process: a changed setting and running out of memory, under --eval-only and not."""
    from imdb_bert import errors
    from imdb_bert.errors import UserError
    from imdb_bert.output import run_settings
    (tmp_path / "model_settings.json").write_text(json.dumps({"max_seq_length": 32}))
    (tmp_path / "checkpoint").write_text("")
    for eval_only in (True, False):
        with pytest.raises(UserError) as refused:
            run_settings.check_settings(str(tmp_path), {"max_seq_length": 64}, eval_only)
        assert ("--do-delete" in str(refused.value)) is not eval_only
        monkeypatch.setitem(errors.CONTEXT, "eval_only", eval_only)
        monkeypatch.setitem(errors.CONTEXT, "batch_size", 32)
        said = errors.out_of_memory_message(RuntimeError("OOM when allocating tensor"))
        assert ("--do-delete" in said) is not eval_only and "--batch-size (e.g. 16)" in said


RUN_RESULTS = ("eval_results.json", "test_predictions.csv", "confusion_matrix.png",
               "roc_curve.png", "model_settings.json")


def test_eval_only_on_a_new_test_file_writes_results_named_for_it(binary, tmp_path):
    """A new labelled file of one of the two labels (messy text, a space in its name):
    evaluated, its results in files named for it, the run's own results and settings
    untouched; a file with a label the model lacks is refused; --do-delete accepts the
    new files."""
    output_dir = str(tmp_path / "OUTPUT_Bert")
    shutil.copytree(binary[0], output_dir)
    own = {name: open(os.path.join(output_dir, name), "rb").read() for name in RUN_RESULTS}
    new_file = write_table(tmp_path / "critics 2024.tsv", rows(7, 25, {"pos": BINARY["pos"]}),
                           ("review", "sentiment"), delimiter="\t")
    args = [output_dir if arg == binary[0] else arg for arg in binary[3]]
    args = [new_file if arg == binary[2]["test"] else arg for arg in args]
    args.remove("--test-samples")
    args.remove("60")
    result = run_train(*args, "--eval-only")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Train reviews: 200, test reviews: 25" in result.stdout
    assert ("Note: the test sample holds one label only (pos), so its auc is undefined: "
            "recorded as null.") in result.stdout
    assert ("Plots, test_predictions-critics 2024.csv and eval_results-critics 2024.json are "
            "in %s" % output_dir) in result.stdout
    for name in RUN_RESULTS:  # the run's own record, byte for byte
        with open(os.path.join(output_dir, name), "rb") as f:
            assert f.read() == own[name], name
    results = read_json(os.path.join(output_dir, "eval_results-critics 2024.json"))
    assert results["auc"] is None and results["roc_auc"] is None
    assert results["true_positives"] + results["false_negatives"] == 25
    assert results["true_negatives"] + results["false_positives"] == 0
    table = pd.read_csv(os.path.join(output_dir, "test_predictions-critics 2024.csv"),
                        keep_default_na=False)
    assert list(table["review"]) == [text for text, _ in rows(7, 25, {"pos": BINARY["pos"]})]
    assert os.path.exists(os.path.join(output_dir, "confusion_matrix-critics 2024.png"))
    assert not os.path.exists(os.path.join(output_dir, "roc_curve-critics 2024.png"))
    from imdb_bert.output import cleanup
    cleanup.check_deletable(output_dir, "data")  # the new files are this project's

    unknown = write_jsonl(tmp_path / "other.jsonl", [("a great film \U0001F600", "pos"),
                                                     ("so-so<br />film\x85", "meh")],
                          ("review", "sentiment"))
    refused = run_train(*[unknown if arg == new_file else arg for arg in args], "--eval-only")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert ("other.jsonl holds labels that the training file %s lacks: 'meh'"
            % binary[2]["train"]) in refused.stderr
    assert "Traceback" not in refused.stderr


def test_eval_only_on_another_aclimdb_sample_keeps_the_runs_results(trained, imdb_dir,
                                                                   tiny_module, tmp_path):
    output_dir = str(tmp_path / "OUTPUT_Bert")
    shutil.copytree(trained[0], output_dir)
    own = {name: open(os.path.join(output_dir, name), "rb").read() for name in RUN_RESULTS}
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir, "--test-samples", "40",
                                   "--eval-only"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test reviews: 40" in result.stdout
    results = read_json(os.path.join(output_dir, "eval_results-aclImdb_test-40.json"))
    assert results["global_step"] == 125 and 0 <= results["roc_auc"] <= 1
    for name in ("test_predictions-aclImdb_test-40.csv", "confusion_matrix-aclImdb_test-40.png",
                 "roc_curve-aclImdb_test-40.png"):
        assert os.path.exists(os.path.join(output_dir, name)), name
    for name in RUN_RESULTS:
        with open(os.path.join(output_dir, name), "rb") as f:
            assert f.read() == own[name], name


def test_merged_rows_stop_train_py_and_a_one_label_validation_sample_has_no_auc(
        tiny_module, tmp_path):
    """A hand-edited TSV: a stray quote at the start of one row's text and one before the
    tab of the next merge the two rows. train.py names them; with the flag that says the
    file is meant so it trains, and a validation file of one label gets a null auc."""
    train = write_table(tmp_path / "train.tsv", rows(8, 40, BINARY), ("sentence", "polarity"),
                        delimiter="\t")
    with open(train, "a", encoding="utf-8", newline="") as f:
        f.write('"Stray quote, a great film \U0001F600\tpos\r\nan awful<br />film"\tneg\r\n')
    with open(train, encoding="utf-8-sig", newline="") as f:
        lines = len(f.read().split("\n")) - 1
    test = write_jsonl(tmp_path / "test.jsonl", rows(9, 10, BINARY), ("sentence", "polarity"))
    valid = write_jsonl(tmp_path / "valid.jsonl", rows(10, 12, {"pos": BINARY["pos"]}),
                        ("sentence", "polarity"))
    args = training_flags(str(tmp_path / "out"), tiny_module, "--train-file", train,
                          "--test-file", test, "--validation-file", valid, epochs="1")
    refused = run_train(*args)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert refused.stderr.splitlines()[-1] == (
        "error: %s: 1 row holds a quoted field that spans lines and holds the delimiter (tab), "
        "at lines %d-%d: 81 rows read from %d lines below the header. A quote out of place "
        "merges rows so: fix it; if the file is meant so, pass --allow-multiline-fields."
        % (train, lines - 1, lines, lines - 1))
    trained = run_train(*args, "--allow-multiline-fields")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Train reviews: 81, test reviews: 20" in trained.stdout
    assert ("Note: the validation sample holds one label only (pos), so its auc is undefined: "
            "recorded as null.") in trained.stdout
    history = read_json(str(tmp_path / "out" / "validation_history.json"))
    assert history and all(entry["auc"] is None for entry in history)
