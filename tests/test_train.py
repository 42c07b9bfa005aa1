"""python train.py end to end, in a subprocess, on the fixture data and tiny module."""
import json
import os

from conftest import quick_args, run_train

CONTRACT_FLAGS = ["--data-dir", "--data-url", "--data-md5", "--bert-hub", "--output-dir",
                  "--do-delete", "--bucket", "--train-samples", "--test-samples",
                  "--max-seq-length", "--batch-size", "--learning-rate", "--epochs",
                  "--warmup-proportion", "--save-checkpoints-steps", "--save-summary-steps",
                  "--seed"]
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
    assert "Training on CPU" in result.stdout

    settings = read_json(os.path.join(output_dir, "model_settings.json"))
    assert settings == {
        "bert_hub": tiny_module, "max_seq_length": 32, "label_list": [0, 1],
        "label_names": ["Negative", "Positive"], "do_lower_case": True, "seed": 42,
        "data_dir": imdb_dir, "train_samples": None, "test_samples": None}

    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert set(results) == EVAL_KEYS
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


def test_tiny_model_learns_the_planted_signal(trained):
    results = read_json(os.path.join(trained[0], "eval_results.json"))
    assert results["eval_accuracy"] >= 0.9
    assert results["loss"] < 0.3


def test_same_seed_gives_identical_results(trained, imdb_dir, tiny_module, tmp_path):
    output_dir = str(tmp_path / "again")
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_json(os.path.join(output_dir, "eval_results.json")) == read_json(
        os.path.join(trained[0], "eval_results.json"))


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
