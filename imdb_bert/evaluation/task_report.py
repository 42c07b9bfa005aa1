"""What the test evaluation of a multi-label or a regression run leaves to look at, from
the evaluation pass itself (report.py does the single-label runs'):

  multi-label  test_predictions.csv (the labels, the predicted ones, each label's
               probability), label_f1.png (each label's F1), and per label precision,
               recall, F1, support and ROC AUC in eval_results.json;
  regression   test_predictions.csv (the number, the predicted one) and
               regression_scatter.png (predicted against true).
"""
import os

import numpy as np
from sklearn import metrics

import config
from imdb_bert.evaluation.report import (evaluated, plt,  # plt: files only
                                         png_bytes, texts_table)
from imdb_bert.model import task_metrics
from imdb_bert.output.files import (LABEL_F1, REGRESSION_SCATTER, TEST_PREDICTIONS,
                                    result_file, write_file)
from imdb_bert.tasks import MULTI_LABEL


def write_report(output_dir, test, eval_batches, labels, test_set=None):
    """Write the plot and the CSV for `test` (the DataFrame evaluated, in order) from the
    batches an EvalPredictionsHook collected; returns the keys to add to eval_results.
    `test_set`: as report.write_report's."""
    true, outputs = evaluated(eval_batches)
    # The targets as the features hold them: float32.
    expected = np.array(labels.targets(test[config.LABEL_COLUMN]), dtype=np.float32)
    if not np.array_equal(true.reshape(expected.shape), expected):
        raise RuntimeError("evaluated examples are not the test sample, in order")
    if labels.task == MULTI_LABEL:
        return multi_label_report(output_dir, test, true.astype(int), outputs, labels,
                                  test_set)
    return regression_report(output_dir, test, true[:, 0], outputs, labels, test_set)


def multi_label_report(output_dir, test, true, probabilities, labels, test_set):
    predicted = (probabilities >= labels.threshold).astype(int)
    names = labels.names
    table = texts_table(test, labels)
    table[labels.columns[1]] = joined(true, names, labels.separator)
    table["predicted_labels"] = joined(predicted, names, labels.separator)
    for i, name in enumerate(names):
        table["probability_%s" % name] = probabilities[:, i]
    write_file(os.path.join(output_dir, result_file(TEST_PREDICTIONS, test_set)),
               table.to_csv(index=False))
    per_label = task_metrics.per_label_metrics(true, predicted, probabilities, names)
    write_file(os.path.join(output_dir, result_file(LABEL_F1, test_set)),
               label_f1_png(per_label, len(true)))
    report = metrics.classification_report(true, predicted, labels=list(range(len(names))),
                                           target_names=names, output_dict=True,
                                           zero_division=0)
    return {"per_label": per_label, "classification_report": report}


def joined(rows, names, separator):
    """Each 0/1 row as its labels, separated as in the user's CSV files."""
    return [separator.join(name for name, on in zip(names, row) if on) for row in rows]


def regression_report(output_dir, test, true, predicted, labels, test_set):
    table = texts_table(test, labels)
    table[labels.columns[1]] = true
    table["predicted_value"] = predicted
    write_file(os.path.join(output_dir, result_file(TEST_PREDICTIONS, test_set)),
               table.to_csv(index=False))
    write_file(os.path.join(output_dir, result_file(REGRESSION_SCATTER, test_set)),
               scatter_png(true, predicted))
    return {}


def label_f1_png(per_label, count):
    names = list(per_label)
    figure, axes = plt.subplots(figsize=(max(4.5, 0.5 * len(names) + 2), 4))
    axes.bar(range(len(names)), [row["f1"] for row in per_label.values()], color="tab:blue")
    axes.set_xticks(range(len(names)), names, rotation=90 if len(names) > 6 else 0)
    axes.set_ylim(0, 1)
    axes.set_ylabel("F1")
    axes.set_title("F1 per label (%d test texts)" % count)
    return png_bytes(figure)


def scatter_png(true, predicted):
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.scatter(true, predicted, s=12, alpha=0.6)
    low, high = min(true.min(), predicted.min()), max(true.max(), predicted.max())
    axes.plot([low, high], [low, high], linestyle="--", color="grey", label="predicted = true")
    axes.set_xlabel("true")
    axes.set_ylabel("predicted")
    axes.set_title("Predicted against true (%d test texts)" % len(true))
    axes.legend(loc="upper left")
    return png_bytes(figure)


def summary_text(results, task):
    """The lines printed after the test evaluation: per label and overall (multi-label),
    or the regression metrics."""
    if task != MULTI_LABEL:
        return "MSE %.4f, MAE %.4f, Pearson %.4f, Spearman %.4f, R2 %.4f, loss %.4f" % tuple(
            results[key] for key in task_metrics.REGRESSION_KEYS + ("loss",))
    lines = ["%-20s %9s %9s %9s %9s %9s" % ("label", "precision", "recall", "f1", "support",
                                            "roc_auc")]
    lines += ["%-20s %9.4f %9.4f %9.4f %9d %9s" % (
        name[:20], row["precision"], row["recall"], row["f1"], row["support"],
        "-" if row["roc_auc"] is None else "%.4f" % row["roc_auc"])
        for name, row in results["per_label"].items()]
    lines.append("micro F1 %.4f, macro F1 %.4f, subset accuracy %.4f, Hamming loss %.4f, "
                 "loss %.4f" % tuple(results[key] for key in task_metrics.MULTI_LABEL_KEYS
                                     + ("loss",)))
    return "\n".join(lines)
