"""The heads of multi-label and regression runs (--task), on the logits of the notebook's
classifier layer (classifier.create_model), with their loss, eval metrics and outputs. The
single-label head is the notebook's, in classifier.py, unchanged."""
from imdb_bert.compat import tf
from imdb_bert.model import task_metrics
from imdb_bert.tasks import MULTI_LABEL, REGRESSION, SERVING_OUTPUT

OUTPUTS = "outputs"  # in the scope "loss": each label's probability, or the value
EVAL_OUTPUTS = "loss/" + OUTPUTS  # what hooks.EvalPredictionsHook collects


def head(task, logits, labels, is_predicting, threshold):
    """(predicted, outputs) when predicting, else (loss, predicted, outputs). Multi-label:
    one sigmoid per label, a label predicted at a probability of `threshold` or more, the
    mean binary cross-entropy; regression: the one logit, mean squared error. `labels`:
    float [batch, labels] of 0 and 1, or [batch, 1] values."""
    if task == MULTI_LABEL:
        outputs = tf.sigmoid(logits, name=OUTPUTS)
        predicted = tf.cast(outputs >= threshold, tf.int32)
        if is_predicting:
            return predicted, outputs
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.float32), logits=logits))
        return loss, predicted, outputs
    outputs = tf.squeeze(logits, axis=-1, name=OUTPUTS)
    if is_predicting:
        return outputs, outputs
    loss = tf.reduce_mean(tf.square(outputs - tf.cast(labels[:, 0], tf.float32)))
    return loss, outputs, outputs


def metric_fn(task, labels, predicted):
    """Eval metric ops of `task` under eval_results.json's keys (task_metrics.py), over all
    the evaluated examples: each batch's values are collected, and the metrics computed by
    task_metrics' own functions at the end, so they are scikit-learn's and scipy's."""
    if task == MULTI_LABEL:
        true, keys, scores = (labels, task_metrics.MULTI_LABEL_KEYS,
                              task_metrics.multi_label_scores)
    else:
        true, keys, scores = (labels[:, 0], task_metrics.REGRESSION_KEYS,
                              task_metrics.regression_scores)
    all_true, update_true = collected(tf.cast(true, tf.float32), "true_values")
    all_predicted, update_predicted = collected(tf.cast(predicted, tf.float32),
                                                "predicted_values")
    update = tf.group(update_true, update_predicted)

    def value(key):
        return tf.py_func(lambda t, p: float(scores(t, p)[key]), [all_true, all_predicted],
                          tf.double, stateful=False, name=key)
    return {key: (value(key), update) for key in keys}


def collected(values, name):
    """(every batch's `values` so far, concatenated; the op that appends this batch's), in
    a local variable, as tf.metrics keep their counts."""
    with tf.variable_scope(None, default_name=name):
        shape = values.shape.as_list()
        # Empty to begin with, but not a constant: with one, evaluation failed in the
        # sigmoid loss with "Incompatible shapes: [16,3] vs. [0,3]" (TF 2.15's graph
        # optimizer, it seems, merging it with that loss's zeros).
        empty = tf.placeholder_with_default(tf.zeros([0] + shape[1:]), [None] + shape[1:])
        everything = tf.get_variable(
            "values", initializer=empty, validate_shape=False,
            trainable=False,
            collections=[tf.GraphKeys.LOCAL_VARIABLES, tf.GraphKeys.METRIC_VARIABLES])
    update = tf.assign(everything, tf.concat([everything, values], 0), validate_shape=False)
    return everything.read_value(), update


def predict_spec(task, mode, predicted, outputs):
    """The predictions of a multi-label or regression model, and the SavedModel's outputs:
    multi-label `probabilities` [batch, labels] and `labels` (1 where predicted), regression
    `values` [batch]."""
    if task == MULTI_LABEL:
        served = {SERVING_OUTPUT[task]: outputs, "labels": predicted}
    else:
        served = {SERVING_OUTPUT[REGRESSION]: outputs}
    return tf.estimator.EstimatorSpec(mode, predictions=served, export_outputs={
        "serving_default": tf.estimator.export.PredictOutput(served)})
