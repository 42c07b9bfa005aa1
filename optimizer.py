"""bert.optimization.create_optimizer (use_tpu=False) with the same math, made
repeatable: bert's version reads the step counter for the learning rate while the same
step increments it, with nothing ordering the two, so a step's learning rate is that of
step n or n+1 at random. Here the step is read once and incremented after the update."""
from compat import optimization, tf


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps):
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

    optimizer = optimization.AdamWeightDecayOptimizer(
        learning_rate=learning_rate, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999,
        epsilon=1e-6, exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"])
    tvars = tf.trainable_variables()
    grads = tf.gradients(loss, tvars)
    grads, _ = tf.clip_by_global_norm(grads, clip_norm=1.0)
    train_op = optimizer.apply_gradients(zip(grads, tvars), global_step=global_step)
    with tf.control_dependencies([train_op]):
        return tf.group(global_step.assign(step + 1))
