"""bert.optimization.create_optimizer (use_tpu=False) with the same math, made repeatable
and ready for mixed precision.

Repeatable: bert's version reads the step counter for the learning rate while the same
step increments it, with nothing ordering the two, so a step's learning rate is that of
step n or n+1 at random. Here the step is read once and incremented after the update.

Mixed precision (--use-amp on a GPU): float16 gradients need loss scaling, which must sit
between tf.gradients and clipping, inside what bert's create_optimizer does in one piece.
With `loss_scaling` the loss is multiplied by a dynamic scale, the gradients divided by
it, and a step whose gradients are not finite changes no weight (the scale halves; after
LOSS_SCALE_PERIOD good steps it doubles).

Data-parallel training (train.py --horovod): `average` all-reduces the gradients across
processes after tf.gradients (and the loss scale) and before clipping, so every process
clips and applies the gradient of the whole global batch.
"""
import os

import config
from imdb_bert.compat import optimization, tf

# make gpu-check starts far too high (GPU_CHECK_LOSS_SCALE) to see the scale adapt.
LOSS_SCALE_START = float(os.environ.get("GPU_CHECK_LOSS_SCALE", 2.0 ** 15))
LOSS_SCALE_PERIOD = 2000
# How the embeddings' gradient crosses Horovod processes (averaged() below).
EMBEDDING_ALLREDUCE = os.environ.get("IMDB_BERT_EMBEDDING_ALLREDUCE", "sparse")


class AdamWeightDecayOptimizer(optimization.AdamWeightDecayOptimizer):
    """bert's AdamWeightDecayOptimizer (same variables and update) whose update can be
    made conditional: with `apply_if` false, weights and moments stay as they are."""

    def apply_gradients(self, grads_and_vars, global_step=None, name=None, apply_if=None):
        assignments = []
        for grad, param in grads_and_vars:
            if grad is None or param is None:
                continue
            param_name = self._get_variable_name(param.name)
            m = tf.get_variable(name=param_name + "/adam_m", shape=param.shape.as_list(),
                                dtype=tf.float32, trainable=False,
                                initializer=tf.zeros_initializer())
            v = tf.get_variable(name=param_name + "/adam_v", shape=param.shape.as_list(),
                                dtype=tf.float32, trainable=False,
                                initializer=tf.zeros_initializer())
            next_m = tf.multiply(self.beta_1, m) + tf.multiply(1.0 - self.beta_1, grad)
            next_v = (tf.multiply(self.beta_2, v)
                      + tf.multiply(1.0 - self.beta_2, tf.square(grad)))
            update = next_m / (tf.sqrt(next_v) + self.epsilon)
            if self._do_use_weight_decay(param_name):
                update += self.weight_decay_rate * param
            next_param = param - self.learning_rate * update
            for variable, value in ((param, next_param), (m, next_m), (v, next_v)):
                if apply_if is not None:
                    value = tf.where_v2(apply_if, value, variable)
                assignments.append(variable.assign(value))
        return tf.group(*assignments, name=name)


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, loss_scaling=False,
                     average=None):
    """bert's train op for `loss`; `average`, if given, maps a list of gradient tensors to
    their averages across processes."""
    global_step = tf.train.get_or_create_global_step()
    step = tf.identity(global_step.read_value(), name="step_this_update")

    # Linear decay to 0 at num_train_steps, after a linear warm-up from 0.
    learning_rate = tf.train.polynomial_decay(
        tf.constant(init_lr, tf.float32), step, num_train_steps, end_learning_rate=0.0,
        power=1.0, cycle=False)
    if num_warmup_steps:
        step_int = tf.cast(step, tf.int32)
        warmup_learning_rate = init_lr * (tf.cast(step_int, tf.float32) / float(num_warmup_steps))
        is_warmup = tf.cast(step_int < num_warmup_steps, tf.float32)
        learning_rate = (1.0 - is_warmup) * learning_rate + is_warmup * warmup_learning_rate
    tf.summary.scalar("learning_rate", learning_rate)  # for TensorBoard, next to the loss

    optimizer = AdamWeightDecayOptimizer(
        learning_rate=learning_rate, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999,
        epsilon=1e-6, exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"])
    tvars = tf.trainable_variables()
    if loss_scaling:
        grads, finite, update_scale = scaled_gradients(loss, tvars, average)
    else:
        grads, finite, update_scale = tf.gradients(loss, tvars), None, tf.no_op()
        if average:
            grads = averaged(grads, average)
    grads, _ = tf.clip_by_global_norm(grads, clip_norm=config.CLIP_NORM)
    train_op = optimizer.apply_gradients(zip(grads, tvars), global_step=global_step,
                                         apply_if=finite)
    with tf.control_dependencies([train_op, update_scale]):
        return tf.group(global_step.assign(step + 1))


def averaged(grads, average):
    """`grads` averaged across processes. None stays None. The embeddings' sparse gradient
    (the rows a batch touched) crosses as such (an all-gather) or, with
    IMDB_BERT_EMBEDDING_ALLREDUCE=dense, as the whole dense matrix; the optimizer's update
    makes a dense tensor of it either way, so both give the same update."""
    present = [i for i, g in enumerate(grads) if g is not None]
    sparse = EMBEDDING_ALLREDUCE == "sparse"
    means = average([grads[i] if sparse and isinstance(grads[i], tf.IndexedSlices)
                     else tf.convert_to_tensor(grads[i]) for i in present])
    grads = list(grads)
    for i, mean in zip(present, means):
        grads[i] = mean
    return grads


def scaled_gradients(loss, tvars, average=None):
    """(gradients, all finite, op updating the scale) with dynamic loss scaling;
    non-finite gradients come back as zeros, so clipping sees finite numbers. Averaged
    across processes before the check, a step is skipped by all processes or none."""
    scale_variable = tf.get_variable("loss_scale", initializer=tf.constant(LOSS_SCALE_START),
                                     trainable=False)
    good_steps = tf.get_variable("loss_scale_good_steps", initializer=tf.constant(0),
                                 trainable=False)
    scale = tf.identity(scale_variable.read_value())
    grads = [None if g is None else tf.convert_to_tensor(g) / scale
             for g in tf.gradients(loss * scale, tvars)]
    if average:
        grads = averaged(grads, average)
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads
                            if g is not None])
    grads = [None if g is None else tf.where_v2(finite, g, tf.zeros_like(g)) for g in grads]
    grow = tf.logical_and(finite, good_steps.read_value() + 1 >= LOSS_SCALE_PERIOD)
    update_scale = tf.group(
        scale_variable.assign(tf.where_v2(grow, scale * 2.0,
                                          tf.where_v2(finite, scale, scale / 2.0))),
        good_steps.assign(tf.where_v2(tf.logical_and(finite, tf.logical_not(grow)),
                                      good_steps.read_value() + 1, 0)))
    return grads, finite, update_scale
