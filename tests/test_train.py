"""python train.py end to end, in a subprocess, on the fixture data and tiny module."""
import json
import os
import shutil

import pandas as pd
import pytest

from conftest import SAME_KERNELS_ENV, assert_same_results, quick_args, run_train

from imdb_bert import device

CONTRACT_FLAGS = ["--data-dir", "--data-url", "--data-md5", "--bert-hub", "--output-dir",
                  "--do-delete", "--bucket", "--train-samples", "--test-samples",
                  "--max-seq-length", "--batch-size", "--learning-rate", "--epochs",
                  "--warmup-proportion", "--save-checkpoints-steps", "--save-summary-steps",
                  "--seed", "--save-checkpoints-secs", "--eval-only", "--verbose",
                  "--validation-samples", "--eval-every-steps", "--keep-best",
                  "--early-stopping-patience", "--truncate"]
EVAL_KEYS = {"eval_accuracy", "f1_score", "auc", "precision", "recall", "true_positives",
             "true_negatives", "false_positives", "false_negatives", "loss", "global_step"}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_help_documents_every_flag():
    result = run_train("--help")
    assert result.returncode == 0
    for flag in CONTRACT_FLAGS:
        assert flag in result.stdout


def test_train_writes_the_outputs(trained, imdb_dir, tiny_module):
    output_dir, result = trained
    assert "***** Model output directory: %s *****" % output_dir in result.stdout
    assert "Beginning Training!" in result.stdout
    assert "Training took time" in result.stdout
    assert "Training on %s" % device.training_device() in result.stdout

    settings = read_json(os.path.join(output_dir, "model_settings.json"))
    assert settings == {
        "bert_hub": tiny_module, "max_seq_length": 32, "truncate": "head", "label_list": [0, 1],
        "label_names": ["Negative", "Positive"], "do_lower_case": True, "seed": 42,
        "data_dir": imdb_dir, "train_samples": None, "test_samples": None,
        "validation_samples": 0, "eval_every_steps": None, "keep_best": False,
        "early_stopping_patience": None, "epochs": 10.0, "batch_size": 16,
        "learning_rate": 7e-4, "warmup_proportion": 0.1, "use_amp": False, "processes": 1,
        "gradient_accumulation_steps": 1, "group_by_length": False,
        "num_train_steps": 125}

    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert set(results) == EVAL_KEYS | {"roc_auc", "classification_report"}
    assert results["global_step"] == 125  # int(200 / 16 * 10)
    for key in ("true_positives", "true_negatives", "false_positives", "false_negatives",
                "global_step"):
        assert type(results[key]) is int
    assert results["true_positives"] + results["false_negatives"] == 50
    assert results["true_negatives"] + results["false_positives"] == 50
    assert "'eval_accuracy': " in result.stdout  # the notebook's printed dict

    with open(os.path.join(output_dir, "checkpoint")) as f:
        assert 'model_checkpoint_path: "model.ckpt-125"' in f.read()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(output_dir))

    [stamp] = os.listdir(os.path.join(output_dir, "export"))
    export_dir = os.path.join(output_dir, "export", stamp)
    assert read_json(os.path.join(export_dir, "assets.extra", "export_info.json")) == {
        "global_step": 125, "max_seq_length": 32}
    assert os.path.exists(os.path.join(export_dir, "assets", "vocab.txt"))
    assert "Exported the model for prediction to %s" % export_dir in result.stdout


def test_evaluation_leaves_pictures_predictions_and_run_info(trained):
    output_dir = trained[0]
    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert 0.9 <= results["roc_auc"] <= 1.0
    report = results["classification_report"]
    assert report["accuracy"] == pytest.approx(results["eval_accuracy"], abs=1e-6)
    assert report["Positive"]["support"] == report["Negative"]["support"] == 50
    for picture in ("confusion_matrix.png", "roc_curve.png"):
        with open(os.path.join(output_dir, picture), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(os.path.join(output_dir, "test_predictions.csv"))
    assert list(table.columns) == ["sentence", "polarity", "predicted_label",
                                   "probability_positive"]
    assert len(table) == 100
    correct = (table["predicted_label"] == table["polarity"]).mean()
    assert correct == pytest.approx(results["eval_accuracy"], abs=1e-6)
    assert ((table["probability_positive"] > 0.5) == (table["predicted_label"] == 1)).all()

    info = read_json(os.path.join(output_dir, "run_info.json"))
    assert info["outcome"] == "completed"
    assert info["flags"]["seed"] == info["seed"] == 42
    assert info["packages"]["tensorflow"] == "2.15.1"
    assert info["device"].startswith("Training on %s" % device.training_device())
    assert info["start_time"] <= info["end_time"]
    assert "step 125/125  loss " in trained[1].stdout and "examples/s  ETA" in trained[1].stdout


def test_eval_only_evaluates_the_latest_checkpoint(trained, imdb_dir, tiny_module, tmp_path):
    output_dir = str(tmp_path / "copy")
    shutil.copytree(trained[0], output_dir)
    os.remove(os.path.join(output_dir, "eval_results.json"))
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir, "--eval-only"),
                       env=SAME_KERNELS_ENV)  # the kernels `trained` ran with
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Beginning Training!" not in result.stdout
    assert "Using the cached test features" in result.stdout
    assert_same_results(read_json(os.path.join(output_dir, "eval_results.json")),
                        read_json(os.path.join(trained[0], "eval_results.json")))
    empty = run_train(*quick_args(imdb_dir, tiny_module, str(tmp_path / "none"), "--eval-only"))
    assert empty.returncode == 2 and "no checkpoint" in empty.stderr


def without_variable(checkpoint, left_out):
    """Rewrite `checkpoint` (a prefix) with every variable but `left_out`."""
    from imdb_bert.compat import tf
    values = {name: tf.train.load_variable(checkpoint, name)
              for name, _ in tf.train.list_variables(checkpoint) if name != left_out}
    with tf.Graph().as_default():
        kept = {name: tf.Variable(value) for name, value in values.items()}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver(kept).save(sess, checkpoint, write_meta_graph=False,
                                      write_state=False)


def test_eval_only_refuses_a_checkpoint_without_a_weight(trained, imdb_dir, tiny_module,
                                                         tmp_path):
    """Sessions skip the Scaffold's readiness checks (model/classifier.py,
    scaffold_without_readiness_checks): the restore itself must fail on a missing weight,
    never evaluate a freshly initialized one."""
    output_dir = str(tmp_path / "copy")
    shutil.copytree(trained[0], output_dir)
    os.remove(os.path.join(output_dir, "eval_results.json"))
    from imdb_bert.compat import tf
    without_variable(tf.train.latest_checkpoint(output_dir), "output_bias")
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir, "--eval-only"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.endswith(
        "error: the checkpoint in %s has no weight output_bias of this model: it was "
        "written by another model (another --bert-hub, task or label set) or cut short. Run "
        "with the settings it was trained with, or train this model in another "
        "--output-dir.\n" % output_dir)
    assert not os.path.exists(os.path.join(output_dir, "eval_results.json"))


def test_a_resume_refuses_a_checkpoint_without_an_optimizer_slot(trained, imdb_dir,
                                                                  tiny_module, tmp_path):
    """The same for training: resumed from an earlier checkpoint that lacks one of Adam's
    moments (which only training restores), train.py stops with the one line, and the
    checkpoints stay."""
    from imdb_bert.compat import tf
    output_dir = str(tmp_path / "copy")
    shutil.copytree(trained[0], output_dir)
    state = tf.train.get_checkpoint_state(output_dir)
    earlier = state.all_model_checkpoint_paths[0]
    assert earlier != state.model_checkpoint_path
    without_variable(earlier, "output_bias/adam_m")
    tf.train.update_checkpoint_state(output_dir, earlier, [earlier])
    kept = sorted(os.listdir(output_dir))
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Beginning Training!" in result.stdout  # the training's restore, not an evaluation's
    assert result.stderr.endswith("has no weight output_bias/adam_m of this model: it was "
                                  "written by another model (another --bert-hub, task or "
                                  "label set) or cut short. Run with the settings it was "
                                  "trained with, or train this model in another "
                                  "--output-dir.\n")
    assert set(kept) <= set(os.listdir(output_dir))


def test_training_skips_the_readiness_checks(trained):
    """The training graph as saved (graph.pbtxt, written after the session started) holds
    the empty check and no report of uninitialized variables (model/classifier.py,
    scaffold_without_readiness_checks)."""
    with open(os.path.join(trained[0], "graph.pbtxt")) as f:
        graph = f.read()
    assert 'name: "nothing_uninitialized"' in graph
    assert "report_uninitialized_variables" not in graph


def test_tiny_model_learns_the_planted_signal(trained):
    results = read_json(os.path.join(trained[0], "eval_results.json"))
    assert results["eval_accuracy"] >= 0.9
    assert results["loss"] < 0.3


def test_same_seed_gives_identical_results(trained, imdb_dir, tiny_module, tmp_path):
    output_dir = str(tmp_path / "again")
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir), env=SAME_KERNELS_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_results(read_json(os.path.join(output_dir, "eval_results.json")),
                        read_json(os.path.join(trained[0], "eval_results.json")))


def test_other_settings_do_not_touch_the_checkpoints(trained, imdb_dir, tiny_module):
    output_dir = trained[0]
    before = sorted(os.listdir(output_dir))
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir, "--seed", "7"))
    assert result.returncode == 2
    assert "seed: 42 now 7" in result.stderr
    assert "Train reviews" not in result.stdout  # stopped before the slow steps
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(output_dir)) == before


def test_do_delete_refuses_a_folder_with_foreign_files(imdb_dir, tiny_module, tmp_path):
    output_dir = tmp_path / "mixed"
    output_dir.mkdir()
    (output_dir / "thesis.docx").write_text("precious")
    result = run_train(*quick_args(imdb_dir, tiny_module, str(output_dir), "--do-delete"))
    assert result.returncode == 2
    assert "thesis.docx" in result.stderr
    assert (output_dir / "thesis.docx").read_text() == "precious"


def test_bad_flag_values_are_refused(imdb_dir, tiny_module, tmp_path):
    result = run_train(*quick_args(imdb_dir, tiny_module, str(tmp_path / "o"),
                                   "--batch-size", "0"))
    assert result.returncode == 2
    assert "--batch-size" in result.stderr and "must be positive" in result.stderr


def test_tensorboard_gets_loss_and_learning_rate(trained):
    from imdb_bert.compat import tf
    output_dir = trained[0]
    tags = set()
    for name in os.listdir(output_dir):
        if name.startswith("events.out.tfevents"):
            for event in tf.train.summary_iterator(os.path.join(output_dir, name)):
                tags.update(value.tag for value in event.summary.value)
    assert "learning_rate" in tags
    # The Estimator's "loss" summary is tagged loss_1: the notebook's model has a scope "loss".
    assert "loss_1" in tags
    assert "deprecat" not in trained[1].stderr.lower()  # the TF 1 API warnings stay quiet


def graph_files(output_dir):
    """{kind: size in bytes} of graph.pbtxt, each .meta and the training events file."""
    names = os.listdir(output_dir)
    sizes = {"graph.pbtxt": os.path.getsize(os.path.join(output_dir, "graph.pbtxt"))}
    for name in names:
        if name.endswith(".meta") or name.startswith("events.out.tfevents."):
            kind = "events" if name.startswith("events") else name
            sizes[kind] = os.path.getsize(os.path.join(output_dir, name))
    return sizes


def largest_constant(output_dir):
    from google.protobuf import text_format
    from imdb_bert.compat import tf
    with open(os.path.join(output_dir, "graph.pbtxt")) as f:
        graph = text_format.Parse(f.read(), tf.GraphDef())
    return max(node.attr["value"].tensor.ByteSize() for node in graph.node
               if node.op == "Const")


def test_the_graph_does_not_grow_with_the_sample(imdb_dir, tiny_module, tmp_path):
    """Features are read from the TFRecord files, not held in the graph as constants."""
    sizes = []
    for reviews, epochs in (("40", "2"), ("200", "0.4")):  # 10 steps of 8 reviews each
        output_dir = str(tmp_path / reviews)
        # At sequence 128, 200 reviews' features held as constants would take 100 KB each.
        result = run_train(*quick_args(imdb_dir, tiny_module, output_dir),
                           "--train-samples", reviews, "--test-samples", "20",
                           "--max-seq-length", "128",
                           "--batch-size", "8", "--epochs", epochs,
                           "--save-checkpoints-steps", "5", "--save-summary-steps", "5")
        assert result.returncode == 0, result.stderr[-3000:]
        sizes.append(graph_files(output_dir))
        assert largest_constant(output_dir) < 64 * 1024
    assert sorted(sizes[0]) == sorted(sizes[1]) == sorted(
        ["graph.pbtxt", "events", "model.ckpt-0.meta", "model.ckpt-5.meta",
         "model.ckpt-10.meta"])
    for kind, size in sizes[0].items():
        assert abs(sizes[1][kind] - size) <= 0.01 * size, (kind, sizes)
