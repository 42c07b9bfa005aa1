"""Temperature scaling (issue 33): the maths against hand-computed values, in-process; then
one tiny BERT trained to over-confidence (30 epochs on 64 reviews whose labels are 20 %
wrong) with a validation file: the test sample's calibration error falls, train.py records
the temperature, predict.py applies it on its three paths and --uncalibrated does not."""
import csv
import json
import os
import random

import numpy as np
import pytest

from conftest import run_train
from imdb_bert.evaluation import calibration
from imdb_bert.output.files import CALIBRATION
from imdb_bert.tools.synthetic_reviews import FILLER_WORDS, NEGATIVE_WORDS, POSITIVE_WORDS
from imdb_bert.training import validation
from test_own_data import training_flags
from test_predict import predict_json

CALIBRATION_KEYS = {"temperature", "expected_calibration_error",
                    "expected_calibration_error_uncalibrated", "nll", "nll_uncalibrated",
                    "brier", "brier_uncalibrated"}


def log(probabilities):
    return np.log(np.array(probabilities, np.float64))


# Four examples of two labels: confident 0.9 right and wrong, 0.7 right twice.
PROBABILITIES = [[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]]
LABELS = np.array([0, 1, 1, 1])


def test_temperature_divides_the_logits_and_keeps_the_argmax():
    # softmax(log([0.8, 0.2]) / 2) is proportional to [sqrt(0.8), sqrt(0.2)] = [2/3, 1/3].
    np.testing.assert_allclose(np.exp(calibration.calibrated(log([[0.8, 0.2]]), 2.0)),
                               [[2 / 3, 1 / 3]])
    log_probs = log([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    for temperature in (0.5, 3.0):
        scaled = calibration.calibrated(log_probs, temperature)
        np.testing.assert_allclose(np.exp(scaled).sum(axis=1), 1.0)
        assert (scaled.argmax(axis=1) == log_probs.argmax(axis=1)).all()
    assert calibration.calibrated(log_probs, None) is log_probs


def test_ece_nll_and_brier_equal_the_hand_computed_values():
    # Bins of width 1/15: 0.9 falls in (13/15, 14/15], accuracy 1/2; 0.7 in (10/15, 11/15],
    # accuracy 1. ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1 - 0.7| = 0.35.
    assert calibration.expected_calibration_error(log(PROBABILITIES), LABELS) == \
        pytest.approx(0.35)
    assert calibration.negative_log_likelihood(log(PROBABILITIES), LABELS) == \
        pytest.approx(-(np.log(0.9) + np.log(0.1) + 2 * np.log(0.7)) / 4)
    # Per example, the sum over labels of (p - truth)^2: 0.02, 1.62, 0.18, 0.18.
    assert calibration.brier_score(log(PROBABILITIES), LABELS) == pytest.approx(0.5)
    count, accuracy, confidence = calibration.reliability_bins(log(PROBABILITIES), LABELS)
    assert count.tolist() == [0] * 10 + [2, 0, 0, 2, 0]
    assert (accuracy[10], accuracy[13], confidence[10], confidence[13]) == pytest.approx(
        (1.0, 0.5, 0.7, 0.9))


def test_the_fitted_temperature_minimises_the_nll_and_recovers_a_known_one():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3000, 3)) * 4
    # Labels drawn from softmax(logits / 2.5): the logits are 2.5 times too sharp.
    truth = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in truth])
    log_probs = calibration.calibrated(logits, 1.0)
    temperature = calibration.fit_temperature(log_probs, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    nll = [calibration.negative_log_likelihood(calibration.calibrated(log_probs, t), labels)
           for t in (temperature / 1.01, temperature, temperature * 1.01)]
    assert nll[1] < min(nll[0], nll[2])
    results = calibration.metrics(log_probs, labels, temperature)
    assert set(results) == CALIBRATION_KEYS
    assert results["expected_calibration_error"] < \
        results["expected_calibration_error_uncalibrated"]


@pytest.mark.parametrize("log_probs, labels, reason", [
    (log(PROBABILITIES), np.array([1, 1, 1, 1]), "hold one label only"),
    (np.array([[np.nan, np.nan], [-0.1, -2.3]]), np.array([0, 1]), "1 of 2 validation "
     "reviews have NaN or infinite"),
    (log([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1]), "all 2 validation reviews are "
     "classified right"),
])
def test_a_sample_that_cannot_decide_the_temperature_says_why(log_probs, labels, reason):
    with pytest.raises(calibration.CannotCalibrate, match=reason):
        calibration.fit_temperature(log_probs, labels)


def test_train_keeps_a_recorded_temperature_and_says_in_one_line_why_it_fits_none(
        tmp_path, monkeypatch, capsys):
    """validation.temperature without an Estimator: the validation log-probabilities come
    from a stand-in for the evaluation."""
    output_dir = str(tmp_path)
    features = os.path.join(output_dir, "features-validation-abc.tf_record")
    calibration.write_record(output_dir, 1.7, 120, features, LABELS)
    checkpoint = os.path.join(output_dir, "model.ckpt-120")

    def must_not_evaluate(*args):
        raise AssertionError("a kept temperature needs no evaluation")
    monkeypatch.setattr(validation, "validation_log_probs", must_not_evaluate)
    assert validation.temperature(None, checkpoint, features, 32, output_dir) == 1.7
    assert "Temperature 1.7000 from calibration.json" in capsys.readouterr().out

    other = os.path.join(output_dir, "features-validation-def.tf_record")
    for labels, log_probs, reason in (
            (np.array([1, 1, 1, 1]), log(PROBABILITIES), "hold one label only"),
            (LABELS, np.full((4, 2), np.nan), "NaN or infinite")):
        monkeypatch.setattr(validation, "validation_log_probs",
                            lambda *args: (labels, log_probs))
        assert validation.temperature(None, checkpoint, other, 32, output_dir) == 1.7
        [line] = capsys.readouterr().out.splitlines()
        assert line.startswith("No calibration: ") and reason in line
        assert line.endswith("The temperature 1.7000 that calibration.json holds for step "
                             "120 stays.")
    assert calibration.recorded_temperature(output_dir, 120) == 1.7
    assert calibration.recorded_temperature(output_dir, 121) is None
    assert calibration.recorded_temperature(output_dir, 120, other) is None


def one_word_rows(seed, count, noise=0.0, wordless=0.0):
    """(text, label, planted word) rows: 4 to 8 filler words and one of three sentiment
    words per label, which decides the label ("neg" or "pos", in turn); a share `noise` of
    the labels flipped. A share `wordless` of the rows has filler words only and a random
    label (planted word None)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        positive = i % 2 == 1
        word = rng.choice(POSITIVE_WORDS[:3] if positive else NEGATIVE_WORDS[:3])
        words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(4, 8))]
        if wordless and rng.random() < wordless:
            word, positive = None, rng.random() < 0.5
        else:
            words.insert(rng.randrange(len(words) + 1), word)
        if rng.random() < noise:
            positive = not positive
        rows.append((" ".join(words), "pos" if positive else "neg", word))
    return rows


def write_csv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "polarity"])
        writer.writerows(row[:2] for row in rows)
    return str(path)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def overconfident(tiny_module, tmp_path_factory):
    """(output dir, process, flags) of a run that memorises 64 noisy reviews (30 epochs,
    120 steps), validated once, at its last step, on 100 others; with the ONNX copy."""
    folder = tmp_path_factory.mktemp("calibration")
    output_dir = str(folder / "OUTPUT_Bert")
    flags = training_flags(output_dir, tiny_module, "--train-file",
                           write_csv(folder / "train.csv", one_word_rows(1, 64, 0.2)),
                           "--test-file",
                           write_csv(folder / "test.csv", one_word_rows(2, 200, 0.2)),
                           "--validation-file",
                           write_csv(folder / "valid.csv", one_word_rows(3, 100, 0.2)),
                           "--eval-every-steps", "1000", onnx=True, epochs="30")
    result = run_train(*flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result, flags


def test_the_temperature_lowers_the_calibration_error_on_the_test_sample(overconfident):
    output_dir, result, _ = overconfident
    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert CALIBRATION_KEYS <= set(results)
    assert results["expected_calibration_error"] < \
        results["expected_calibration_error_uncalibrated"]
    assert results["nll"] < results["nll_uncalibrated"]
    assert results["temperature"] > 1  # over-confident: the logits are divided down
    record = read_json(os.path.join(output_dir, CALIBRATION))
    assert record["temperature"] == results["temperature"]
    assert (record["global_step"], record["validation_examples"]) == (120, 100)
    assert "Temperature %.4f fitted on 100 validation reviews" % record["temperature"] \
        in result.stdout
    assert "expected calibration error     %.4f   %.4f" % (
        results["expected_calibration_error_uncalibrated"],
        results["expected_calibration_error"]) in result.stdout
    with open(os.path.join(output_dir, "reliability_diagram.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "temperature" not in read_json(os.path.join(output_dir, "model_settings.json"))


def test_every_path_gives_the_same_calibrated_numbers_and_uncalibrated_the_raw_ones(
        overconfident):
    output_dir = overconfident[0]
    sentences = [row[0] for row in one_word_rows(4, 6)]
    temperature = read_json(os.path.join(output_dir, CALIBRATION))["temperature"]
    outputs = {}
    for path, flags in (("onnx", []), ("savedmodel", ["--no-onnx"]),
                        ("checkpoint", ["--from-checkpoint"])):
        outputs[path], stderr = predict_json("--output-dir", output_dir, *flags, *sentences)
        assert "calibrated with the temperature %.4f" % temperature in stderr
        assert ("ONNX Runtime" in stderr) == (path == "onnx")
        assert {item["temperature"] for item in outputs[path]} == {temperature}
    for path in ("savedmodel", "checkpoint"):
        np.testing.assert_allclose([item["probabilities"] for item in outputs[path]],
                                   [item["probabilities"] for item in outputs["onnx"]],
                                   atol=1e-4)
    raw, _ = predict_json("--output-dir", output_dir, "--uncalibrated", *sentences)
    assert all("temperature" not in item for item in raw)
    np.testing.assert_allclose(
        np.exp(calibration.calibrated(np.array([item["log_probabilities"] for item in raw]),
                                      temperature)),
        [item["probabilities"] for item in outputs["onnx"]], atol=1e-6)
    assert max(max(item["probabilities"]) for item in raw) > \
        max(max(item["probabilities"]) for item in outputs["onnx"])


def test_eval_only_refits_on_other_validation_reviews_and_reports_both(overconfident,
                                                                       tmp_path):
    output_dir, _, flags = overconfident
    before = read_json(os.path.join(output_dir, CALIBRATION))
    other = write_csv(tmp_path / "other.csv", one_word_rows(5, 60, 0.3))
    flags = flags[:flags.index("--validation-file") + 1] + [other] + \
        flags[flags.index("--validation-file") + 2:]
    result = run_train(*flags, "--eval-only")
    assert result.returncode == 0, result.stderr[-3000:]
    record = read_json(os.path.join(output_dir, CALIBRATION))
    assert record["validation_examples"] == 60, result.stdout[-3000:]
    assert record["validation_features"] != before["validation_features"]
    assert record["temperature"] != before["temperature"]
    assert "fitted on 60 validation reviews" in result.stdout
    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert results["temperature"] == record["temperature"]
    assert CALIBRATION_KEYS <= set(results)
