"""What an evaluation leaves to look at, from the real probabilities of the test reviews:
confusion_matrix.png, roc_curve.png (two labels), test_predictions.csv, and the metrics
that eval_results.json adds next to the notebook's (for more than two labels: macro and
weighted F1 and each class's precision, recall and F1)."""
import io
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import metrics  # noqa: E402

import config  # noqa: E402
from imdb_bert.data.text_files import TEXT_B  # noqa: E402
from imdb_bert.evaluation import calibration  # noqa: E402
from imdb_bert.output.files import (CONFUSION_MATRIX, RELIABILITY_DIAGRAM,  # noqa: E402
                                    ROC_CURVE, TEST_PREDICTIONS, result_file, write_file)
from imdb_bert.tasks import METRIC_NAMES, SINGLE_LABEL  # noqa: E402


def plain_metrics(result):
    """An evaluation dict with plain types: counts and the step as ints, the rest floats."""
    counts = ("true_positives", "true_negatives", "false_positives", "false_negatives",
              "global_step")
    return {key: int(value) if key in counts else float(value)
            for key, value in result.items()}


def undefined_auc_note(label_values, labels, sample):
    """A two-label single-label run's `sample` (its labels: `label_values`) of one label
    only has no auc (tf.metrics.auc then says about 1.0, whatever the model does): the
    note to print when its auc is recorded as null, else None."""
    if labels.task != SINGLE_LABEL or len(labels.label_list) != 2:
        return None
    present = set(label_values)
    if len(present) != 1:
        return None
    name = labels.names[labels.label_list.index(present.pop())]
    return ("Note: the %s holds one label only (%s), so its auc is undefined: recorded as "
            "null." % (sample, name))


def write_report(output_dir, test, eval_batches, labels, test_set=None):
    """Write the plots and the CSV for `test` (the DataFrame evaluated, in order) of a
    single-label run (task_report.py: the other tasks') from the batches an
    EvalPredictionsHook collected; returns the keys to add to eval_results.
    `labels`: the run's Labels (labels.py); `test_set`: the name of another test set than
    the run's own, which the files' names carry (files.result_file)."""
    label_ids, log_probs = evaluated(eval_batches)
    index = {label: i for i, label in enumerate(labels.label_list)}
    if not np.array_equal(label_ids, test[config.LABEL_COLUMN].map(index).to_numpy()):
        raise RuntimeError("evaluated examples are not the test sample, in order")
    probabilities = np.exp(log_probs)
    predicted = probabilities.argmax(axis=1)
    label_names = labels.names
    write_file(os.path.join(output_dir, result_file(TEST_PREDICTIONS, test_set)),
               predictions_csv(test, label_ids, predicted, probabilities, labels))
    write_file(os.path.join(output_dir, result_file(CONFUSION_MATRIX, test_set)),
               confusion_matrix_png(label_ids, predicted, label_names))
    report = metrics.classification_report(
        label_ids, predicted, labels=list(range(len(label_names))),
        target_names=label_names, output_dict=True, zero_division=0)
    if len(label_names) > 2:
        return dict(per_class_metrics(report, label_names), classification_report=report)
    # Two labels: the positive one's (the second, or --positive-label) probability.
    is_positive = (label_ids == labels.positive_index).astype(label_ids.dtype)
    positive = probabilities[:, labels.positive_index]
    both_classes = len(np.unique(label_ids)) == 2
    if both_classes:
        write_file(os.path.join(output_dir, result_file(ROC_CURVE, test_set)),
                   roc_curve_png(is_positive, positive, label_names[labels.positive_index]))
    return {
        "roc_auc": float(metrics.roc_auc_score(is_positive, positive)) if both_classes
        else None,
        "classification_report": report,
    }


def evaluated(eval_batches):
    """(label ids or targets, outputs) of the batches an EvalPredictionsHook collected: the
    outputs are log-probabilities (single-label), each label's probability (multi-label) or
    the value (regression)."""
    return (np.concatenate([batch["label_ids"] for batch in eval_batches]),
            np.concatenate([batch["outputs"] for batch in eval_batches]))


def write_calibration_report(output_dir, eval_batches, temperature, test_set=None):
    """reliability_diagram.png (named for `test_set` as write_report's files are), and
    eval_results' calibration keys (calibration.metrics), for the test reviews'
    log-probabilities without and with `temperature`."""
    label_ids, log_probs = evaluated(eval_batches)
    results = calibration.metrics(log_probs, label_ids, temperature)
    write_file(os.path.join(output_dir, result_file(RELIABILITY_DIAGRAM, test_set)),
               reliability_diagram_png(log_probs, label_ids, results))
    return results


def predictions_csv(test, label_ids, predicted, probabilities, labels):
    """test_predictions.csv: each test text, its label, the predicted one, and the positive
    label's probability (two labels) or every label's (probability_<label>)."""
    label_values = np.array(labels.label_list, dtype=object)
    table = texts_table(test, labels)
    table[labels.columns[1]] = label_values[label_ids]
    table["predicted_label"] = label_values[predicted]
    if len(labels.label_list) == 2:
        table["probability_positive"] = probabilities[:, labels.positive_index]
    else:
        for i, name in enumerate(labels.names):
            table["probability_%s" % name] = probabilities[:, i]
    return table.to_csv(index=False)


def texts_table(test, labels):
    """The first columns of test_predictions.csv: the test texts (and second texts of
    pairs) under the columns' names."""
    table = pd.DataFrame({labels.columns[0]: test[config.DATA_COLUMN]})
    if labels.pair_column:
        table[labels.pair_column] = test[TEXT_B]
    return table


def per_class_metrics(report, label_names):
    """Macro and weighted F1 and each label's precision, recall, F1 and support, from
    sklearn's classification report."""
    return {
        "macro_f1": report["macro avg"]["f1-score"],
        "weighted_f1": report["weighted avg"]["f1-score"],
        "per_class": {name: {"precision": report[name]["precision"],
                             "recall": report[name]["recall"],
                             "f1": report[name]["f1-score"],
                             "support": int(report[name]["support"])}
                      for name in label_names},
    }


def per_class_text(results):
    """The per-class metrics of eval_results (more than two labels), as lines to print."""
    lines = ["%-20s %9s %9s %9s %9s" % ("label", "precision", "recall", "f1", "support")]
    lines += ["%-20s %9.4f %9.4f %9.4f %9d" % (name[:20], row["precision"], row["recall"],
                                              row["f1"], row["support"])
              for name, row in results["per_class"].items()]
    lines.append("accuracy %.4f, macro F1 %.4f, weighted F1 %.4f, loss %.4f" % (
        results["eval_accuracy"], results["macro_f1"], results["weighted_f1"],
        results["loss"]))
    return "\n".join(lines)


def png_bytes(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def confusion_matrix_png(label_ids, predicted, label_names):
    counts = metrics.confusion_matrix(label_ids, predicted, labels=range(len(label_names)))
    size = max(4.5, 0.6 * len(label_names) + 2)  # room for many labels
    figure, axes = plt.subplots(figsize=(size, size - 0.5))
    axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > counts.max() / 2 else "black", fontsize=13)
    axes.set_xticks(range(len(label_names)), label_names,
                    rotation=90 if len(label_names) > 6 else 0)
    axes.set_yticks(range(len(label_names)), label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (%d test reviews)" % len(label_ids))
    return png_bytes(figure)


def roc_curve_png(label_ids, positive, positive_name="Positive"):
    false_positive_rate, true_positive_rate, _ = metrics.roc_curve(label_ids, positive)
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.plot(false_positive_rate, true_positive_rate,
              label="ROC AUC %.4f" % metrics.roc_auc_score(label_ids, positive))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title("ROC curve, P(%s) on the test reviews" % positive_name)
    axes.legend(loc="lower right")
    return png_bytes(figure)


def reliability_diagram_png(log_probs, label_ids, results):
    """Accuracy against confidence in calibration's 15 bins, before and after the
    temperature: a calibrated model's bars reach the diagonal. Below, the reviews per bin."""
    figure, axes = plt.subplots(2, 2, figsize=(9, 5.5), sharex=True,
                                gridspec_kw={"height_ratios": [3, 1]})
    width = 1.0 / calibration.ECE_BINS
    edges = np.arange(calibration.ECE_BINS) * width
    for column, (title, temperature, ece) in enumerate((
            ("before", None, results["expected_calibration_error_uncalibrated"]),
            ("after, T = %.3f" % results["temperature"], results["temperature"],
             results["expected_calibration_error"]))):
        count, accuracy, confidence = calibration.reliability_bins(
            calibration.calibrated(log_probs, temperature), label_ids)
        used = count > 0
        bars, counts = axes[0, column], axes[1, column]
        bars.bar(edges[used], accuracy[used], width=width, align="edge", edgecolor="black",
                 color="tab:blue", label="accuracy")
        bars.bar(edges[used], confidence[used] - accuracy[used], bottom=accuracy[used],
                 width=width, align="edge", color="tab:red", alpha=0.3, hatch="//",
                 label="gap to the mean confidence")
        bars.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        bars.set_ylim(0, 1)
        bars.set_title("%s: ECE %.4f" % (title, ece))
        bars.set_ylabel("accuracy")
        counts.bar(edges, count, width=width, align="edge", edgecolor="black", color="grey")
        for edge, number in zip(edges[used], count[used]):
            counts.annotate(str(number), (edge + width / 2, number), ha="center",
                            va="bottom", fontsize=7)
        counts.set_ylim(0, count.max() * 1.3)
        counts.set_xlim(0, 1)
        counts.set_xlabel("confidence (probability of the predicted label)")
        counts.set_ylabel("reviews")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    figure.suptitle("Reliability diagram, %d test reviews" % len(label_ids))
    return png_bytes(figure)


def write_learning_curves(path, training_losses, history, best_step, metric="eval_accuracy"):
    """learning_curves.png: training loss and validation loss against the step, validation
    accuracy (or the task's `metric`, unless that is the loss) on a second axis, the best
    step marked."""
    figure, loss_axes = plt.subplots(figsize=(7, 4.5))
    if training_losses:
        steps, losses = zip(*training_losses)
        loss_axes.plot(steps, losses, color="tab:blue", alpha=0.6, label="training loss")
    steps = [entry["global_step"] for entry in history]
    loss_axes.plot(steps, [entry["loss"] for entry in history], "o-", color="tab:orange",
                   label="validation loss")
    loss_axes.set_xlabel("global step")
    loss_axes.set_ylabel("loss")
    all_axes = [loss_axes]
    if metric != "loss":
        name = METRIC_NAMES[metric]
        accuracy_axes = loss_axes.twinx()
        accuracy_axes.plot(steps, [entry[metric] for entry in history], "s-",
                           color="tab:green", label="validation " + name)
        accuracy_axes.set_ylabel("validation " + name)
        all_axes.append(accuracy_axes)
    loss_axes.axvline(best_step, color="grey", linestyle="--",
                      label="best step %d" % best_step)
    handles = [h for axes in all_axes for h in axes.get_legend_handles_labels()[0]]
    loss_axes.legend(handles=handles, loc="center right")
    loss_axes.set_title("Learning curves")
    write_file(path, png_bytes(figure))
