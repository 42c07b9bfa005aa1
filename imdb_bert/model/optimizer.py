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

Gradient accumulation (train.py --gradient-accumulation-steps N > 1,
create_accumulating_optimizer): N runs sum their micro-batches' gradients, and the N-th
applies the update of the batch N times larger, clipped as that batch would be; steps count
updates. With N = 1 create_optimizer builds the graph it always did.
"""
import os

import config
from imdb_bert import device
from imdb_bert.compat import optimization, tf

# make gpu-check starts far too high (GPU_CHECK_LOSS_SCALE) to see the scale adapt.
LOSS_SCALE_START = float(os.environ.get("GPU_CHECK_LOSS_SCALE", 2.0 ** 15))
LOSS_SCALE_PERIOD = 2000
# How the embeddings' gradient crosses Horovod processes (averaged() below).
EMBEDDING_ALLREDUCE = os.environ.get("IMDB_BERT_EMBEDDING_ALLREDUCE", "sparse")
# With --gradient-accumulation-steps N > 1, true on the runs that apply an update (every
# N-th): the project's hooks count, save and stop on those only (training/hooks.py).
APPLIES = "gradient_accumulation/applies"


class AdamWeightDecayOptimizer(optimization.AdamWeightDecayOptimizer):
    """bert's AdamWeightDecayOptimizer (same variables and update) whose update can be
    made conditional (with `apply_if` false, weights and moments stay as they are) and
    fused: one kernel a variable for the moments and the Adam step instead of bert's dozen
    element-wise ops, each a pass over the weights (`fused`, on the CPU unless
    IMDB_BERT_FUSION=off; the same update within float rounding, tested)."""

    def __init__(self, fused=False, **kwargs):
        super().__init__(**kwargs)
        self.fused = fused

    def apply_gradients(self, grads_and_vars, global_step=None, name=None, apply_if=None):
        pairs = [(grad, param) for grad, param in grads_and_vars
                 if grad is not None and param is not None]
        # The moments exist outside the tf.cond below, so that sessions initialise them.
        moments = [self.moments(param) for _, param in pairs]
        if not self.fused:
            return tf.group(*[assignment for (grad, param), (m, v) in zip(pairs, moments)
                              for assignment in self.elementwise_update(grad, param, m, v,
                                                                        apply_if)], name=name)

        def fused_updates():
            return tf.group(*[self.fused_update(grad, param, m, v)
                              for (grad, param), (m, v) in zip(pairs, moments)])
        if apply_if is None:
            return tf.group(fused_updates(), name=name)
        return tf.group(tf.cond(apply_if, fused_updates, tf.no_op), name=name)

    def moments(self, param):
        """(adam_m, adam_v) of `param`, bert's names: checkpoints hold them either way.
        Google's Hub modules hold TF1 ref variables, whose Adam kernel (ApplyAdam) takes
        ref moments only: fused, a ref variable's moments are ref variables too."""
        param_name = self._get_variable_name(param.name)
        use_resource = not self.fused or is_resource(param)
        return [tf.get_variable(name=param_name + suffix, shape=param.shape.as_list(),
                                dtype=tf.float32, trainable=False,
                                initializer=tf.zeros_initializer(), use_resource=use_resource)
                for suffix in ("/adam_m", "/adam_v")]

    def decays(self, param):
        return self._do_use_weight_decay(self._get_variable_name(param.name))

    def elementwise_update(self, grad, param, m, v, apply_if):
        """bert's update, op by op: the assignments of param, m and v."""
        next_m = tf.multiply(self.beta_1, m) + tf.multiply(1.0 - self.beta_1, grad)
        next_v = (tf.multiply(self.beta_2, v)
                  + tf.multiply(1.0 - self.beta_2, tf.square(grad)))
        update = next_m / (tf.sqrt(next_v) + self.epsilon)
        if self.decays(param):
            update += self.weight_decay_rate * param
        next_param = param - self.learning_rate * update
        assignments = []
        for variable, value in ((param, next_param), (m, next_m), (v, next_v)):
            if apply_if is not None:
                value = tf.where_v2(apply_if, value, variable)
            assignments.append(variable.assign(value))
        return assignments

    def fused_update(self, grad, param, m, v):
        """The same update in two ops. bert's is param - lr * (m' / (sqrt(v') + eps) + wd *
        param): first param -= lr * wd * param, then TensorFlow's Adam kernel, whose step
        is lr_t * m' / (sqrt(v') + eps) with lr_t = lr * sqrt(1 - beta2_power) / (1 -
        beta1_power) (tf.raw_ops.ApplyAdam's docs): with both powers 0, lr_t = lr, bert's
        step without bias correction. The decay waits for the (clipped) gradient, which
        waits for the whole backward pass, so no forward read sees a decayed weight, as
        bert's assignment waits for it too."""
        grad = tf.convert_to_tensor(grad)  # the embeddings' slices made dense, as bert's are
        decayed = []
        if self.decays(param):
            with tf.control_dependencies([grad]):
                decayed = [param.assign_sub(
                    param.read_value() * (self.learning_rate * self.weight_decay_rate))]
        settings = dict(beta1_power=tf.constant(0.0), beta2_power=tf.constant(0.0),
                        lr=self.learning_rate, beta1=self.beta_1, beta2=self.beta_2,
                        epsilon=self.epsilon, grad=grad)
        with tf.control_dependencies(decayed):
            if is_resource(param):
                return tf.raw_ops.ResourceApplyAdam(var=param.handle, m=m.handle, v=v.handle,
                                                    **settings)
            return tf.raw_ops.ApplyAdam(var=param, m=m, v=v, **settings).op


def is_resource(variable):
    """False for a TF1 ref variable (VariableV2)."""
    return hasattr(variable, "handle")


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, loss_scaling=False,
                     average=None):
    """bert's train op for `loss`; `average`, if given, maps a list of gradient tensors to
    their averages across processes."""
    global_step = tf.train.get_or_create_global_step()
    step = tf.identity(global_step.read_value(), name="step_this_update")
    optimizer = scheduled_optimizer(init_lr, step, num_train_steps, num_warmup_steps)
    tvars = tf.trainable_variables()
    if loss_scaling:
        grads, finite, update_scale = scaled_gradients(loss, tvars, average)
    else:
        grads, finite, update_scale = tf.gradients(loss, tvars), None, tf.no_op()
        if average:
            grads = averaged(grads, average)
    grads, _ = tf.clip_by_global_norm(grads, clip_norm=config.CLIP_NORM)
    return apply_and_count(optimizer, grads, tvars, global_step, step, finite, update_scale)


def scheduled_optimizer(init_lr, step, num_train_steps, num_warmup_steps):
    """bert's AdamW whose learning rate warms up linearly from 0 over num_warmup_steps, then
    decays linearly to 0 at num_train_steps (steps of the optimizer)."""
    learning_rate = tf.train.polynomial_decay(
        tf.constant(init_lr, tf.float32), step, num_train_steps, end_learning_rate=0.0,
        power=1.0, cycle=False)
    if num_warmup_steps:
        step_int = tf.cast(step, tf.int32)
        warmup_learning_rate = init_lr * (tf.cast(step_int, tf.float32) / float(num_warmup_steps))
        is_warmup = tf.cast(step_int < num_warmup_steps, tf.float32)
        learning_rate = (1.0 - is_warmup) * learning_rate + is_warmup * warmup_learning_rate
    tf.summary.scalar("learning_rate", learning_rate)  # for TensorBoard, next to the loss
    return AdamWeightDecayOptimizer(
        fused=device.fuses_for_cpu(), learning_rate=learning_rate, weight_decay_rate=0.01,
        beta_1=0.9, beta_2=0.999, epsilon=1e-6,
        exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"])


def apply_and_count(optimizer, grads, tvars, global_step, step, finite, update_scale):
    """The update of the clipped `grads` (none unless `finite`, if given), then the step
    counter's increment."""
    train_op = optimizer.apply_gradients(zip(grads, tvars), global_step=global_step,
                                         apply_if=finite)
    with tf.control_dependencies([train_op, update_scale]):
        return tf.group(global_step.assign(step + 1))


def create_accumulating_optimizer(loss, init_lr, num_train_steps, num_warmup_steps,
                                  accumulation_steps, loss_scaling=False, average=None):
    """(train op, the mean loss of the micro-batches of the optimizer step under way) for
    --gradient-accumulation-steps N > 1: every run adds its micro-batch's gradients to
    sums; every N-th run applies the update of a batch N times larger (bert's loss is a
    mean over the batch, so that batch's gradient is the mean of the N micro-batches'),
    counts one step and empties the sums. The sums are local variables: checkpoints never
    hold them, so a resume starts a fresh accumulation at an optimizer step. The tensor
    named APPLIES tells the hooks whether a run applied an update."""
    global_step = tf.train.get_or_create_global_step()
    step = tf.identity(global_step.read_value(), name="step_this_update")
    optimizer = scheduled_optimizer(init_lr, step, num_train_steps, num_warmup_steps)
    tvars = tf.trainable_variables()
    loss_scale = LossScale() if loss_scaling else None
    # --use-amp: each micro-batch's gradients are unscaled ("the final gradients are
    # divided (or unscaled) by the loss scale", tf.keras.mixed_precision.LossScaleOptimizer
    # docs) before they are summed; the scale is checked and updated "whenever gradients
    # are applied" (the same docs): once per optimizer step, on the sum, so a step with a
    # non-finite micro-batch is skipped whole, as the larger batch's would be.
    grads = loss_scale.gradients(loss, tvars) if loss_scale else tf.gradients(loss, tvars)
    sums = Accumulator(tvars, grads, loss, average)
    counted = sums.count.read_value() + 1  # micro-batches summed, this run's included
    applies = tf.equal(counted, accumulation_steps, name=APPLIES)
    with tf.control_dependencies(sums.additions):
        mean_loss = sums.loss_sum.read_value() / tf.cast(counted, tf.float32)

    def apply_the_mean():
        means = sums.means(accumulation_steps, average)
        slice_squares = sums.slice_squares_of_mean(accumulation_steps, average)
        finite, update_scale = None, tf.no_op()
        if loss_scale:
            means, finite, update_scale = loss_scale.check(means)
        means, _ = tf.clip_by_global_norm(means, clip_norm=config.CLIP_NORM,
                                          use_norm=sums.global_norm(means, slice_squares))
        update = apply_and_count(optimizer, means, tvars, global_step, step, finite,
                                 update_scale)
        with tf.control_dependencies([update, mean_loss]):  # empty the sums once read
            return sums.empty()

    applied = tf.cond(applies, apply_the_mean, tf.no_op)
    with tf.control_dependencies([applied] + sums.additions):
        return (tf.group(sums.count.assign(tf.where_v2(applies, 0, counted))),
                tf.identity(mean_loss))


class Accumulator:
    """Local variables that sum the micro-batches' gradients (and loss) of one optimizer
    step, and `additions`, the ops that add this run's. The embeddings' sparse gradient is
    added row by row (no dense copy per micro-batch) and summed dense, as Horovod's
    LocalGradientAggregationHelper does (horovod/tensorflow/gradient_aggregation.py,
    sparse_as_dense). To clip as the larger batch would, its norm is kept as bert's
    clipping measures slices (tf.clip_by_global_norm takes the norm of their rows, a row
    repeated in a batch counted each time): `slice_squares` sums the squares of the rows."""

    def __init__(self, tvars, grads, loss, average):
        with tf.variable_scope("gradient_accumulation"):
            self.count = local_variable("micro_batches", [], tf.int32)
            self.loss_sum = local_variable("loss_sum", [], tf.float32)
            self.slice_squares = local_variable("slice_squares", [], tf.float32)
            self.sums = [None if grad is None else
                         local_variable(param.op.name, param.shape, tf.float32)
                         for param, grad in zip(tvars, grads)]
        # With IMDB_BERT_EMBEDDING_ALLREDUCE=dense, Horovod clips the embeddings' gradient
        # as a dense matrix (averaged()), and so does a larger batch.
        measure_slices = not average or EMBEDDING_ALLREDUCE == "sparse"
        self.from_slices = [measure_slices and isinstance(grad, tf.IndexedSlices)
                            for grad in grads]
        self.additions = [self.loss_sum.assign_add(loss)]
        squares = []
        for grad, total, from_slices in zip(grads, self.sums, self.from_slices):
            if grad is None:
                continue
            if isinstance(grad, tf.IndexedSlices):
                self.additions.append(total.scatter_add(grad))
            else:
                self.additions.append(total.assign_add(grad))
            if from_slices:
                squares.append(tf.reduce_sum(tf.square(grad.values)))
        if squares:
            self.additions.append(self.slice_squares.assign_add(tf.add_n(squares)))

    def means(self, accumulation_steps, average):
        """The mean gradients, averaged across processes. On an applying run only: with
        Horovod the sums cross once per optimizer step, after the accumulation, as Horovod's
        backward_passes_per_step does (gradient_aggregation.py: the all-reduce sits in a
        tf.cond that is true every backward_passes_per_step-th run)."""
        with tf.control_dependencies(self.additions):
            means = [None if total is None else total.read_value() / accumulation_steps
                     for total in self.sums]
        return averaged(means, average) if average else means

    def slice_squares_of_mean(self, accumulation_steps, average):
        """The sum of squares of the rows the larger batch's sparse gradients would have,
        or None when no gradient came as slices."""
        if not any(self.from_slices):
            return None
        with tf.control_dependencies(self.additions):
            # The larger batch's rows are those of all micro-batches, each divided by N.
            squares = self.slice_squares.read_value() / accumulation_steps ** 2
        if average:
            # The larger batch's slices would cross as slices: gathered from every process,
            # each divided by the number of processes (HorovodProcess.average). This
            # process's norm crosses as one such slice, so it is divided alike.
            norm = tf.IndexedSlices(tf.reshape(tf.sqrt(squares), [1]), tf.constant([0]),
                                    tf.constant([1]))
            squares = tf.reduce_sum(tf.square(average([norm])[0].values))
        return squares

    def global_norm(self, means, slice_squares):
        """The norm tf.clip_by_global_norm would measure on the larger batch's gradients;
        None (measure `means`) when no gradient came as slices."""
        if slice_squares is None:
            return None
        dense = [g for g, from_slices in zip(means, self.from_slices)
                 if g is not None and not from_slices]
        return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in dense]) + slice_squares)

    def empty(self):
        variables = [total for total in self.sums if total is not None]
        return tf.group(*[variable.assign(tf.zeros_like(variable)) for variable in
                          variables + [self.loss_sum, self.slice_squares]])


def local_variable(name, shape, dtype):
    """A variable of zeros outside checkpoints (a local one), initialised by every new
    session. A resource variable: its reads see the additions made before them."""
    return tf.get_variable(name, shape, dtype, initializer=tf.zeros_initializer(),
                           trainable=False, collections=[tf.GraphKeys.LOCAL_VARIABLES],
                           use_resource=True)


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
    loss_scale = LossScale()
    grads = loss_scale.gradients(loss, tvars)
    if average:
        grads = averaged(grads, average)
    return loss_scale.check(grads)


class LossScale:
    """The dynamic loss scale: `gradients` of the scaled loss come back unscaled; `check`
    tells whether they are finite and updates the scale."""

    def __init__(self):
        self.variable = tf.get_variable("loss_scale", initializer=tf.constant(LOSS_SCALE_START),
                                        trainable=False)
        self.good_steps = tf.get_variable("loss_scale_good_steps", initializer=tf.constant(0),
                                          trainable=False)
        self.value = tf.identity(self.variable.read_value())

    def gradients(self, loss, tvars):
        return [None if g is None else tf.convert_to_tensor(g) / self.value
                for g in tf.gradients(loss * self.value, tvars)]

    def check(self, grads):
        """(grads, or zeros if any is not finite; whether all are finite; the op that
        halves the scale after a non-finite step and doubles it after LOSS_SCALE_PERIOD
        finite ones)."""
        scale, good_steps = self.value, self.good_steps
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads
                                if g is not None])
        grads = [None if g is None else tf.where_v2(finite, g, tf.zeros_like(g)) for g in grads]
        grow = tf.logical_and(finite, good_steps.read_value() + 1 >= LOSS_SCALE_PERIOD)
        update_scale = tf.group(
            self.variable.assign(tf.where_v2(grow, scale * 2.0,
                                             tf.where_v2(finite, scale, scale / 2.0))),
            good_steps.assign(tf.where_v2(tf.logical_and(finite, tf.logical_not(grow)),
                                          good_steps.read_value() + 1, 0)))
        return grads, finite, update_scale
