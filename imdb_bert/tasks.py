"""The three shapes of text classification a run learns (--task), and what differs between
them outside the model's graph: the outputs it serves, the metric that picks the best
checkpoint. Nothing here imports TensorFlow: predict.py's ONNX path reads it too.

  single-label  one label per text (or pair): softmax over the labels, the notebook's head;
  multi-label   any number of labels per text: one sigmoid per label;
  regression    a number per text: one output, mean squared error.
"""
SINGLE_LABEL = "single-label"
MULTI_LABEL = "multi-label"
REGRESSION = "regression"
TASKS = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)

# The SavedModel's (and its ONNX copy's) output that predict.py reads, per task.
SERVING_OUTPUT = {SINGLE_LABEL: "log_probabilities", MULTI_LABEL: "probabilities",
                  REGRESSION: "values"}
# The prediction the Estimator yields per example, per task ("probabilities" is the
# notebook's key, which holds log-softmax values).
CHECKPOINT_OUTPUT = {SINGLE_LABEL: "probabilities", MULTI_LABEL: "probabilities",
                     REGRESSION: "values"}
# The validation metric that --keep-best keeps the best checkpoint on and early stopping
# waits on, and whether higher is better.
BEST_METRIC = {SINGLE_LABEL: ("eval_accuracy", True), MULTI_LABEL: ("micro_f1", True),
               REGRESSION: ("loss", False)}
# How the printed lines and the learning curves name them.
METRIC_NAMES = {"eval_accuracy": "accuracy", "micro_f1": "micro F1", "loss": "loss"}
DEFAULT_THRESHOLD = 0.5


def task_of(settings):
    """The task of a model_settings.json (written before --task: single-label)."""
    return settings.get("task", SINGLE_LABEL)


def output_count(task, label_list):
    """The head's outputs: one per label, or one value."""
    return 1 if task == REGRESSION else len(label_list)
