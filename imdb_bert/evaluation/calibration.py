"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"):
fine-tuned BERT is over-confident, so one temperature T, fitted after training on the
validation sample's log-probabilities by minimising their negative log-likelihood, divides
the logits: softmax(logits / T). The argmax does not move, so accuracy and the confusion
matrix stay as they are; only the probabilities do.

For single-label tasks (one softmax over two or more labels). T is recorded in
calibration.json beside model_settings.json, which predict.py reads: the one place it is
applied to a prediction is calibrated() below. The metrics: the expected calibration error
over 15 equal-width confidence bins (Guo et al.), the negative log-likelihood and the Brier
score. numpy only at import: predict.py's ONNX path imports this without TensorFlow.
"""
import os

import numpy as np

from imdb_bert.output.files import CALIBRATION, read_json, write_json

ECE_BINS = 15
# The search range of T: wide enough for any real fit (Guo et al. report 1 to 3 or so);
# an optimum at its edge means the validation sample cannot decide T (see fit_temperature).
LOWEST_TEMPERATURE, HIGHEST_TEMPERATURE = 0.01, 100.0


class CannotCalibrate(Exception):
    """The validation log-probabilities cannot give a temperature; the message says why."""


def calibrated(log_probs, temperature):
    """Log-probabilities [n, labels] with the temperature applied. log_softmax(log_probs / T)
    equals log_softmax(logits / T): log-probabilities are the logits shifted by a constant
    per row, which the softmax ignores. `temperature` None: `log_probs` as they are."""
    if temperature is None:
        return log_probs
    scaled = np.asarray(log_probs, np.float64) / temperature
    top = scaled.max(axis=-1, keepdims=True)
    return scaled - top - np.log(np.exp(scaled - top).sum(axis=-1, keepdims=True))


def negative_log_likelihood(log_probs, label_ids):
    """The mean of -log p(true label): the loss train.py reports, in float64."""
    return float(-np.mean(np.asarray(log_probs, np.float64)[np.arange(len(label_ids)),
                                                             label_ids]))


def brier_score(log_probs, label_ids):
    """The mean over examples of the sum over labels of (p - 1[label is true])^2, Brier's
    (1950) multi-class form: 0 is perfect, 2 the worst; for two labels twice the squared
    error of the positive label's probability."""
    probabilities = np.exp(np.asarray(log_probs, np.float64))
    truth = np.eye(probabilities.shape[1])[label_ids]
    return float(np.mean(np.sum((probabilities - truth) ** 2, axis=1)))


def reliability_bins(log_probs, label_ids, bins=ECE_BINS):
    """(count, accuracy, mean confidence) per equal-width bin of the confidence (the
    predicted label's probability), bin m holding ((m-1)/bins, m/bins]; empty bins have
    accuracy and confidence 0."""
    probabilities = np.exp(np.asarray(log_probs, np.float64))
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(label_ids)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    seen = np.maximum(count, 1)
    accuracy = np.bincount(index, weights=correct, minlength=bins) / seen
    mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / seen
    return count, accuracy, mean_confidence


def expected_calibration_error(log_probs, label_ids, bins=ECE_BINS):
    """sum over bins of |bin| / n * |accuracy(bin) - confidence(bin)| (Guo et al., eq. 3)."""
    count, accuracy, confidence = reliability_bins(log_probs, label_ids, bins)
    return float(np.sum(count / count.sum() * np.abs(accuracy - confidence)))


def fit_temperature(log_probs, label_ids):
    """The T that minimises the negative log-likelihood of `log_probs` [n, labels] with
    `label_ids` [n]: a bounded 1-D search on log T (the loss is convex in 1/T, so it has
    one minimum). CannotCalibrate for a sample that cannot decide T."""
    from scipy.optimize import minimize_scalar  # scikit-learn's dependency; train.py only
    log_probs = np.asarray(log_probs, np.float64)
    label_ids = np.asarray(label_ids)
    check_sample(log_probs, label_ids)
    bounds = np.log([LOWEST_TEMPERATURE, HIGHEST_TEMPERATURE])
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(calibrated(log_probs, np.exp(log_t)), label_ids),
        bounds=bounds, method="bounded", options={"xatol": 1e-6})
    if min(abs(result.x - bounds)) < 1e-3:
        raise CannotCalibrate("the validation loss is lowest at T = %g, the edge of the search "
                              "from %g to %g" % (np.exp(result.x), LOWEST_TEMPERATURE,
                                                 HIGHEST_TEMPERATURE))
    return float(np.exp(result.x))


def check_sample(log_probs, label_ids):
    """CannotCalibrate for NaN or infinite log-probabilities, a single class, or a sample
    classified right throughout (its loss falls without end as T goes to 0)."""
    broken = int(np.sum(~np.isfinite(log_probs).all(axis=1)))
    if broken:
        raise CannotCalibrate("%d of %d validation reviews have NaN or infinite "
                              "log-probabilities (the model diverged)"
                              % (broken, len(log_probs)))
    if len(np.unique(label_ids)) < 2:
        raise CannotCalibrate("the %d validation reviews hold one label only, so a "
                              "temperature fitted on them would be about that label alone"
                              % len(label_ids))
    if np.all(log_probs.argmax(axis=1) == label_ids):
        raise CannotCalibrate("all %d validation reviews are classified right, so they cannot "
                              "show how over-confident the model is; a larger validation "
                              "sample can" % len(label_ids))


def metrics(log_probs, label_ids, temperature):
    """eval_results.json's calibration keys: each metric after (calibrated) and before."""
    log_probs = np.asarray(log_probs, np.float64)
    results = {"temperature": temperature}
    for name, metric in (("expected_calibration_error", expected_calibration_error),
                         ("nll", negative_log_likelihood), ("brier", brier_score)):
        results[name] = metric(calibrated(log_probs, temperature), label_ids)
        results[name + "_uncalibrated"] = metric(log_probs, label_ids)
    return results


def calibration_text(results):
    """The calibration keys of eval_results, as lines to print."""
    lines = ["Calibration on the test sample, temperature %.4f:" % results["temperature"],
             "%-28s %8s %8s" % ("", "before", "after")]
    for label, key in (("expected calibration error", "expected_calibration_error"),
                       ("negative log-likelihood", "nll"), ("Brier score", "brier")):
        lines.append("%-28s %8.4f %8.4f" % (label, results[key + "_uncalibrated"],
                                            results[key]))
    return "\n".join(lines)


def read_record(output_dir):
    """calibration.json of `output_dir`, or None."""
    return read_json(os.path.join(output_dir, CALIBRATION))


def write_record(output_dir, temperature, global_step, validation_features, label_ids):
    """Record T for the checkpoint of `global_step`, and the validation sample it was fitted
    on (its features file's name holds a key over its texts and labels)."""
    write_json(os.path.join(output_dir, CALIBRATION), {
        "temperature": temperature, "global_step": global_step,
        "validation_features": os.path.basename(validation_features),
        "validation_examples": len(label_ids)})


def recorded_temperature(output_dir, global_step, validation_features=None):
    """T from calibration.json when it was fitted for the checkpoint of `global_step` (and,
    if given, on the validation features file `validation_features`), else None."""
    record = read_record(output_dir)
    if record is None or record.get("global_step") != global_step:
        return None
    if validation_features and record.get("validation_features") != os.path.basename(
            validation_features):
        return None
    return record["temperature"]
