"""Evaluation during training (--validation-samples, --eval-every-steps, --keep-best,
--early-stopping-patience) on the tiny module: the history, the best checkpoint, early
stopping, a resume, and the validation reviews kept out of the training sample."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SAME_KERNELS_ENV, quick_args, run_train
from imdb_bert.data import aclimdb
from imdb_bert.output import cleanup, files
from imdb_bert.tools.synthetic_reviews import make_imdb_tree

NOTEBOOK_KEYS = {"eval_accuracy", "f1_score", "auc", "precision", "recall", "true_positives",
                 "true_negatives", "false_positives", "false_negatives", "loss",
                 "global_step"}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def validation_args(imdb_dir, tiny_module, output_dir, *extra):
    # 150 training reviews at batch 16 for 10 epochs: 93 steps; an epoch is 9 steps.
    return quick_args(imdb_dir, tiny_module, output_dir, "--train-samples", "150",
                      "--validation-samples", "50", *extra)


def test_validation_reviews_are_never_in_the_training_sample(imdb_dir):
    split = aclimdb.load_dataset(os.path.join(imdb_dir, "aclImdb", "train"), seed=42)
    for n_train in (150, None):
        train, validation = aclimdb.sample_train_and_validation(split, n_train, 50, seed=42)
        assert len(validation) == 50 and len(train) == (n_train or 150)
        assert not set(train["sentence"]) & set(validation["sentence"])
    without, none = aclimdb.sample_train_and_validation(split, 150, 0, seed=42)
    assert none is None
    assert without.equals(aclimdb.sample(split, 150, seed=42))  # the notebook's sample
    assert without.equals(aclimdb.sample_train_and_validation(split, 150, 50, seed=42)[0])


@pytest.fixture(scope="module")
def best_run(imdb_dir, tiny_module, tmp_path_factory):
    """Keep-best with a patience of 3: accuracy reaches 1.0 and stays there, so the best
    (the earliest of the ties) is not the last step and training stops early."""
    output_dir = str(tmp_path_factory.mktemp("validation") / "OUTPUT_Bert")
    result = run_train(*validation_args(imdb_dir, tiny_module, output_dir, "--keep-best",
                                        "--early-stopping-patience", "3"),
                       env=SAME_KERNELS_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result


def test_history_has_one_entry_per_evaluation_at_the_planned_steps(best_run):
    output_dir, result = best_run
    history = read_json(os.path.join(output_dir, "validation_history.json"))
    steps = [entry["global_step"] for entry in history]
    assert steps == list(range(9, 9 * len(history) + 1, 9))  # every epoch of 9 steps
    for entry in history:
        assert set(entry) == NOTEBOOK_KEYS | {"epoch"}
        assert entry["true_positives"] + entry["true_negatives"] + \
            entry["false_positives"] + entry["false_negatives"] == 50
    assert history[0]["epoch"] == pytest.approx(9 * 16 / 150, abs=1e-4)
    assert "Validation reviews: 50" in result.stdout
    assert os.path.isdir(os.path.join(output_dir, "eval_validation"))  # TensorBoard run
    with open(os.path.join(output_dir, "learning_curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_keep_best_evaluates_and_exports_the_best_step_and_stops_early(best_run):
    output_dir, result = best_run
    history = read_json(os.path.join(output_dir, "validation_history.json"))
    top = max(entry["eval_accuracy"] for entry in history)
    best = min(entry["global_step"] for entry in history if entry["eval_accuracy"] == top)
    last = history[-1]["global_step"]
    assert best < last < 93  # the best is not the last step; stopped before step 93
    assert [e["eval_accuracy"] for e in history].index(top) == len(history) - 4  # patience 3
    assert read_json(os.path.join(output_dir, "best_checkpoint.json"))["global_step"] == best
    assert read_json(os.path.join(output_dir, "eval_results.json"))["global_step"] == best
    export_dir, export_info = files.newest_export(output_dir)
    assert export_info["global_step"] == best
    info = read_json(os.path.join(output_dir, "run_info.json"))
    assert info["best_step"] == best
    assert info["early_stopping"] == {"stopped": True, "at_step": last}
    # The kept checkpoint survives the saver's rotation of old checkpoints.
    assert os.path.exists(os.path.join(output_dir, "best", "model.ckpt-%d.index" % best))


def test_predict_and_eval_only_use_the_recorded_step(best_run, imdb_dir, tiny_module,
                                                     tmp_path):
    output_dir = str(tmp_path / "copy")
    shutil.copytree(best_run[0], output_dir)
    shutil.rmtree(os.path.join(output_dir, "export"))
    best = read_json(os.path.join(output_dir, "best_checkpoint.json"))["global_step"]
    result = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--output-dir",
                             output_dir, "great film"], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best/model.ckpt-%d through the Estimator" % best in result.stderr
    # Early stopping ended the run short of its planned step: it is finished.
    assert read_json(os.path.join(output_dir, "model_settings.json"))[
        "early_stopping_step"] < 93
    assert "Warning" not in result.stderr
    os.remove(os.path.join(output_dir, "eval_results.json"))
    again = run_train(*validation_args(imdb_dir, tiny_module, output_dir, "--keep-best",
                                       "--early-stopping-patience", "3", "--eval-only"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_json(os.path.join(output_dir, "eval_results.json"))["global_step"] == best
    # Every output of a validation run is this project's: --do-delete may remove them.
    cleanup.check_deletable(output_dir, imdb_dir)
    cleanup.delete_contents(output_dir)
    assert os.listdir(output_dir) == ["train.lock"]


def test_unlearnable_reviews_stop_early(tiny_module, tmp_path):
    noise_dir = make_imdb_tree(str(tmp_path / "noise"), learnable=False)
    output_dir = str(tmp_path / "OUTPUT_Bert")
    result = run_train(*validation_args(noise_dir, tiny_module, output_dir,
                                        "--eval-every-steps", "5",
                                        "--early-stopping-patience", "2"),
                       env=SAME_KERNELS_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    history = read_json(os.path.join(output_dir, "validation_history.json"))
    assert history[-1]["global_step"] < 93
    assert read_json(os.path.join(output_dir, "eval_results.json"))["global_step"] == \
        history[-1]["global_step"]  # without --keep-best: the last checkpoint


def test_resume_continues_the_history_and_a_large_patience_does_not_stop(
        imdb_dir, tiny_module, tmp_path):
    output_dir = str(tmp_path / "OUTPUT_Bert")
    args = validation_args(imdb_dir, tiny_module, output_dir, "--eval-every-steps", "20",
                           "--early-stopping-patience", "50")
    history_path = os.path.join(output_dir, "validation_history.json")
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 300
    while not os.path.exists(history_path) or len(read_json(history_path)) < 2:
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = read_json(history_path)
    result = run_train(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    history = read_json(history_path)
    assert [entry["global_step"] for entry in history] == [20, 40, 60, 80, 93]
    assert history[:len(before)] == before  # appended, not rewritten
    assert read_json(os.path.join(output_dir, "run_info.json"))["early_stopping"] == {
        "stopped": False, "at_step": None}


def test_validation_flags_are_checked(imdb_dir, tiny_module, tmp_path):
    out = str(tmp_path / "out")
    for extra, message in ((["--keep-best"], "--keep-best needs --validation-samples"),
                           (["--validation-samples", "all"], "'all' is not allowed"),
                           (["--validation-samples", "500"], "validation reviews but only")):
        result = run_train(*quick_args(imdb_dir, tiny_module, out, *extra))
        assert result.returncode == 2, result.stderr[-2000:]
        assert message in result.stderr and "Traceback" not in result.stderr


def test_kept_evaluation_gives_estimator_evaluate_s_metrics(best_run, tiny_module,
                                                            tmp_path):
    """The validations' one graph and session (validation.KeptEvaluation) compute what
    estimator.evaluate computes: every key equal, for two checkpoints in a row (restored
    into the kept session, metric totals and input started afresh) and the first again;
    the run's history holds the same numbers."""
    import glob
    from imdb_bert.compat import tf
    from imdb_bert.features.feature_cache import input_fn_builder
    from imdb_bert.model.classifier import model_fn_builder
    from imdb_bert.training.validation import KeptEvaluation
    output_dir, _ = best_run
    history = {entry["global_step"]: entry for entry in
               read_json(os.path.join(output_dir, "validation_history.json"))}
    best = read_json(os.path.join(output_dir, "best_checkpoint.json"))
    checkpoints = [os.path.join(output_dir, best["checkpoint"]),
                   tf.train.latest_checkpoint(output_dir)]
    features = glob.glob(os.path.join(output_dir, "*validation-*.tf_record"))[0]
    input_fn = input_fn_builder(features, 32, is_training=False, drop_remainder=False)
    model_fn = model_fn_builder(num_labels=2, learning_rate=7e-4, num_train_steps=93,
                                num_warmup_steps=9, bert_hub=tiny_module)
    estimator = tf.estimator.Estimator(model_fn, model_dir=str(tmp_path / "estimator"),
                                       config=tf.estimator.RunConfig(tf_random_seed=42),
                                       params={"batch_size": 16})
    kept = KeptEvaluation(estimator, input_fn, str(tmp_path / "eval_validation"))
    for checkpoint in checkpoints + checkpoints[:1]:
        expected = estimator.evaluate(input_fn, checkpoint_path=checkpoint, name="check")
        actual = kept.evaluate(checkpoint)
        assert set(actual) == NOTEBOOK_KEYS
        assert {key: float(value) for key, value in actual.items()} == \
            {key: float(value) for key, value in expected.items()}
        recorded = history[int(actual["global_step"])]
        for key in NOTEBOOK_KEYS:  # the run's own process: kernels may differ slightly
            assert recorded[key] == pytest.approx(float(actual[key]), rel=1e-5), key
    assert glob.glob(str(tmp_path / "eval_validation" / "events.out.tfevents.*"))


def test_kept_evaluation_with_fused_matmuls_that_keep_their_first_weights(tmp_path):
    """The test above in a process of its own with TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1
    (train.py --bf16 on the CPU sets it; TensorFlow reads it once a process), where a
    fused MatMul kernel keeps the weights of its first run: KeptEvaluation then restores
    each checkpoint into a new session, and still gives estimator.evaluate's metrics."""
    env = dict(os.environ, TF_ONEDNN_ASSUME_FROZEN_WEIGHTS="1")
    env.pop("IMDB_BERT_FUSION", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "child"),
         __file__ + "::test_kept_evaluation_gives_estimator_evaluate_s_metrics"],
        env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:]
