"""The metrics of multi-label and regression runs, from the true and predicted values of
every evaluated example (scikit-learn and scipy). The Estimator's evaluation computes them
with these same functions (model/heads.py), so eval_results.json, validation_history.json
and TensorBoard hold the same numbers as scikit-learn gives."""
import numpy as np
from scipy import stats
from sklearn import metrics

# Keys of eval_results.json (scripts read them).
MULTI_LABEL_KEYS = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")
REGRESSION_KEYS = ("mse", "mae", "pearson", "spearman", "r2")


def multi_label_scores(true, predicted):
    """`true`, `predicted`: [n, labels] of 0 and 1."""
    true, predicted = np.asarray(true, int), np.asarray(predicted, int)
    return {
        "micro_f1": metrics.f1_score(true, predicted, average="micro", zero_division=0),
        "macro_f1": metrics.f1_score(true, predicted, average="macro", zero_division=0),
        "subset_accuracy": metrics.accuracy_score(true, predicted),
        "hamming_loss": metrics.hamming_loss(true, predicted),
    }


def regression_scores(true, predicted):
    """`true`, `predicted`: [n] numbers. Pearson and Spearman are 0 when either side is
    constant (scipy's NaN would end the JSON files' use as numbers)."""
    true, predicted = np.asarray(true, float), np.asarray(predicted, float)
    constant = len(true) < 2 or np.ptp(true) == 0 or np.ptp(predicted) == 0
    return {
        "mse": metrics.mean_squared_error(true, predicted),
        "mae": metrics.mean_absolute_error(true, predicted),
        "pearson": 0.0 if constant else stats.pearsonr(true, predicted)[0],
        "spearman": 0.0 if constant else stats.spearmanr(true, predicted)[0],
        "r2": metrics.r2_score(true, predicted) if len(true) > 1 else 0.0,
    }


def per_label_metrics(true, predicted, probabilities, label_names):
    """{label: {precision, recall, f1, support, roc_auc}} of a multi-label run; roc_auc is
    None for a label that every test text has, or none has."""
    true, predicted = np.asarray(true, int), np.asarray(predicted, int)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        true, predicted, average=None, labels=range(len(label_names)), zero_division=0)
    result = {}
    for i, name in enumerate(label_names):
        both = len(np.unique(true[:, i])) == 2
        result[name] = {"precision": float(precision[i]), "recall": float(recall[i]),
                        "f1": float(f1[i]), "support": int(support[i]),
                        "roc_auc": float(metrics.roc_auc_score(true[:, i], probabilities[:, i]))
                        if both else None}
    return result
