"""Steps 6-7 of the notebook: BERT from the Hub module with a classification head, and
the Estimator model_fn. train.py and predict.py both use this, so a checkpoint written
by one restores in the other (and the notebook's own checkpoints restore too: the
variable names are the notebook's)."""
import config
from imdb_bert.compat import f1_score, hub, tf
from imdb_bert.features import padding
from imdb_bert.model import heads, onednn_fusion
from imdb_bert.model.optimizer import create_accumulating_optimizer, create_optimizer
from imdb_bert.tasks import DEFAULT_THRESHOLD, SINGLE_LABEL

# Tensors the project's hooks read by name (hooks.py), so the model_fn needs no hooks.
REPORTED_LOSS = "reported_loss"  # training: the loss of the whole (global) batch
# (with gradient accumulation: of the micro-batches of the optimizer step so far)
EVAL_LABEL_IDS = "eval_label_ids"
EVAL_EXAMPLE_INDEX = "eval_example_index"  # each evaluated review's place in its file
LOG_PROBS = "loss/log_probs"


def create_model(is_training, is_predicting, input_ids, input_mask, segment_ids, labels,
                 num_labels, bert_hub, task=SINGLE_LABEL, threshold=DEFAULT_THRESHOLD,
                 fuse_for_cpu=False):
    """The notebook's create_model. Deviations (docs/deviations.md): the head's dropout runs
    in training only, and the predicted labels keep their batch dimension. Multi-label and
    regression (`task`) take the same layer's logits to their own head (heads.py);
    `num_labels` is then the number of outputs. `fuse_for_cpu`: BERT's ops regrouped so
    that oneDNN fuses them (onednn_fusion.py; the same results within float rounding)."""
    # No tags={"train"}, as in the notebook: BERT's own dropout stays off.
    bert_module = hub.Module(bert_hub, trainable=True)
    bert_inputs = dict(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids)
    graph, start = tf.get_default_graph(), len(tf.get_default_graph().get_operations())
    bert_outputs = bert_module(inputs=bert_inputs, signature="tokens", as_dict=True)
    if fuse_for_cpu:
        onednn_fusion.fuse(onednn_fusion.module_ops(graph, start))

    # "pooled_output" classifies the whole review; "sequence_output" would be per token.
    output_layer = bert_outputs["pooled_output"]
    hidden_size = output_layer.shape[-1]

    output_weights = tf.get_variable(
        "output_weights", [num_labels, hidden_size],
        initializer=tf.truncated_normal_initializer(stddev=0.02))
    output_bias = tf.get_variable(
        "output_bias", [num_labels], initializer=tf.zeros_initializer())

    with tf.variable_scope("loss"):
        if is_training:
            output_layer = tf.nn.dropout(output_layer,
                                         rate=1.0 - config.HEAD_DROPOUT_KEEP_PROB)
        logits = tf.matmul(output_layer, output_weights, transpose_b=True)
        logits = tf.nn.bias_add(logits, output_bias)
        if task != SINGLE_LABEL:
            return heads.head(task, logits, labels, is_predicting, threshold)
        log_probs = tf.nn.log_softmax(logits, axis=-1, name="log_probs")
        predicted_labels = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        if is_predicting:
            return predicted_labels, log_probs

        one_hot_labels = tf.one_hot(labels, depth=num_labels, dtype=tf.float32)
        per_example_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1)
        loss = tf.reduce_mean(per_example_loss)
        return loss, predicted_labels, log_probs


def metric_fn(label_ids, predicted_labels, num_labels=2, positive_index=1):
    """The notebook's eval metrics, with its keys. F1 is tf.contrib's (the best F1 over
    thresholds, here on hard labels); auc is tf.metrics.auc on the hard labels. They are
    about the label at `positive_index`. More than two labels: the accuracy only (report.py
    adds the per-class metrics)."""
    if num_labels > 2:
        return {"eval_accuracy": tf.metrics.accuracy(label_ids, predicted_labels)}
    if positive_index == 0:  # --positive-label names the first label: count it as 1
        label_ids, predicted_labels = 1 - label_ids, 1 - predicted_labels
    return {
        "eval_accuracy": tf.metrics.accuracy(label_ids, predicted_labels),
        "f1_score": f1_score(label_ids, predicted_labels),
        "auc": tf.metrics.auc(label_ids, predicted_labels),
        "precision": tf.metrics.precision(label_ids, predicted_labels),
        "recall": tf.metrics.recall(label_ids, predicted_labels),
        "true_positives": tf.metrics.true_positives(label_ids, predicted_labels),
        "true_negatives": tf.metrics.true_negatives(label_ids, predicted_labels),
        "false_positives": tf.metrics.false_positives(label_ids, predicted_labels),
        "false_negatives": tf.metrics.false_negatives(label_ids, predicted_labels),
    }


def model_fn_builder(num_labels, learning_rate, num_train_steps, num_warmup_steps, bert_hub,
                     loss_scaling=False, average=None, positive_index=1, task=SINGLE_LABEL,
                     threshold=DEFAULT_THRESHOLD, accumulation_steps=1, fuse_for_cpu=False):
    """The Estimator model_fn of the notebook, for the module at `bert_hub`. Optional:
    `loss_scaling` for float16 mixed precision (--use-amp); `average`, a function mapping a
    list of tensors to their averages over several processes (--horovod), each of which
    trains on params["batch_size"] reviews; `positive_index`, the label the two-label
    metrics are about; `task` and, for multi-label, `threshold` (tasks.py, heads.py);
    `accumulation_steps`, the micro-batches of params["batch_size"] whose gradients make
    one optimizer step (--gradient-accumulation-steps; the steps counted are those);
    `fuse_for_cpu`, BERT's ops regrouped for oneDNN's fused kernels in evaluations
    (onednn_fusion.py). Training gained nothing measurable from it, and the export for
    predict.py (the PREDICT graph) is converted to ONNX, so those graphs stay as they are."""

    def model_fn(features, labels, mode, params):
        input_ids = features["input_ids"]
        input_mask = features["input_mask"]
        segment_ids = features["segment_ids"]
        label_ids = features["label_ids"]

        is_training = mode == tf.estimator.ModeKeys.TRAIN
        is_predicting = mode == tf.estimator.ModeKeys.PREDICT

        if is_predicting:
            predicted_labels, log_probs = create_model(
                is_training, is_predicting, input_ids, input_mask, segment_ids,
                label_ids, num_labels, bert_hub, task, threshold)
            if task != SINGLE_LABEL:
                return heads.predict_spec(task, mode, predicted_labels, log_probs)
            return predict_spec(mode, predicted_labels, log_probs)

        loss, predicted_labels, log_probs = create_model(
            is_training, is_predicting, input_ids, input_mask, segment_ids,
            label_ids, num_labels, bert_hub, task, threshold,
            fuse_for_cpu and mode == tf.estimator.ModeKeys.EVAL)
        if is_training:
            if accumulation_steps > 1:  # the loss reported: the optimizer step's so far
                train_op, loss = create_accumulating_optimizer(
                    loss, learning_rate, num_train_steps, num_warmup_steps, accumulation_steps,
                    loss_scaling, average)
            else:
                train_op = create_optimizer(loss, learning_rate, num_train_steps,
                                            num_warmup_steps, loss_scaling, average)
            if average:
                loss = average([loss])[0]  # logs and summaries: the global batch's loss
            loss = tf.identity(loss, name=REPORTED_LOSS)
            return tf.estimator.EstimatorSpec(mode=mode, loss=loss, train_op=train_op,
                                              scaffold=scaffold_without_readiness_checks())
        tf.identity(label_ids, name=EVAL_LABEL_IDS)
        if padding.EXAMPLE_INDEX in features:  # batches grouped by length (padding.py)
            tf.identity(features[padding.EXAMPLE_INDEX], name=EVAL_EXAMPLE_INDEX)
        if task != SINGLE_LABEL:
            metrics = heads.metric_fn(task, label_ids, predicted_labels)
        else:
            metrics = metric_fn(label_ids, predicted_labels, num_labels, positive_index)
        return tf.estimator.EstimatorSpec(mode=mode, loss=loss, eval_metric_ops=metrics,
                                          scaffold=scaffold_without_readiness_checks())

    return model_fn


def scaffold_without_readiness_checks():
    """The Scaffold of a training or evaluation session, without its two readiness checks.
    The session either restores every variable of the model from the checkpoint, the Saver
    failing on any one missing (errors.py says which), or (a new training) runs the init op
    of every global variable; then its local init sets the local ones (the metrics, the
    accumulated gradients). Each check (a report of the uninitialized variables, built at
    session start and run as a session run of its own over the whole graph) then has nothing
    to find, so both check an empty list: 0.2 s less of each evaluation and 0.3-0.5 s of
    each training segment on the 6-layer model (docs/speed.md)."""
    nothing_uninitialized = tf.constant([], tf.string, name="nothing_uninitialized")
    return tf.train.Scaffold(ready_op=nothing_uninitialized,
                             ready_for_local_init_op=nothing_uninitialized)


def predict_spec(mode, predicted_labels, log_probs):
    """The notebook's predictions, and the outputs of the exported SavedModel."""
    # The notebook's keys: "probabilities" holds log-softmax values.
    predictions = {"probabilities": log_probs, "labels": predicted_labels}
    # The exported SavedModel names each output for what it holds.
    serving_outputs = {"probabilities": tf.exp(log_probs),
                       "log_probabilities": log_probs, "labels": predicted_labels}
    return tf.estimator.EstimatorSpec(mode, predictions=predictions, export_outputs={
        "serving_default": tf.estimator.export.PredictOutput(serving_outputs)})


def serving_input_receiver_fn_builder():
    """Inputs of the exported SavedModel: int32 [batch, length] each, of any length up to
    the model's max_seq_length, so that predict.py pads each batch to its longest sentence
    (padding.py). Exports made before took [batch, max_seq_length] only; predict.py feeds
    those at that length."""

    def serving_input_receiver_fn():
        inputs = {name: tf.placeholder(tf.int32, [None, None], name=name)
                  for name in ("input_ids", "input_mask", "segment_ids")}
        features = dict(inputs, label_ids=tf.zeros_like(inputs["input_ids"][:, 0]))
        return tf.estimator.export.ServingInputReceiver(features, inputs)

    return serving_input_receiver_fn
