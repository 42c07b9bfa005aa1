"""optimizer.create_optimizer makes the updates of bert.optimization.create_optimizer."""
import numpy as np
import pytest

from imdb_bert.model import optimizer
from tensorflow.python.framework import config as determinism

from imdb_bert.compat import optimization, tf, tf2

RNG = np.random.RandomState(0)
INPUTS = RNG.normal(size=(8, 5)).astype(np.float32)
TARGETS = RNG.normal(size=(8, 3)).astype(np.float32)
KERNEL = RNG.normal(size=(5, 3)).astype(np.float32)
TABLE = RNG.normal(size=(6, 5)).astype(np.float32)
IDS = np.array([0, 2, 2, 5, 1, 0, 2, 3])  # row 4 unused


def train_weights(make_train_op, steps, num_train_steps, num_warmup_steps, embedded=False,
                  ref_variables=False):
    """Weights of a small linear model (with a bias and a LayerNorm-named variable, which
    skip weight decay) after `steps` updates, then the step; `embedded`: its inputs plus
    rows of an embedding table (a gradient of slices, as BERT's), whose weights come last;
    `ref_variables`: the model's variables are TF1 ref variables, as in Google's modules."""
    with tf.Graph().as_default():
        with tf.variable_scope(tf.get_variable_scope(), use_resource=not ref_variables):
            kernel = tf.get_variable("dense/kernel", initializer=KERNEL)
            bias = tf.get_variable("dense/bias", initializer=np.ones(3, np.float32))
            gamma = tf.get_variable("LayerNorm/gamma", initializer=np.full(3, 2.0, np.float32))
            weights = [kernel, bias, gamma]
            inputs = INPUTS
            if embedded:
                table = tf.get_variable("word_embeddings", initializer=TABLE)
                inputs = inputs + tf.gather(table, IDS)
                weights.append(table)
        assert optimizer.is_resource(kernel) != ref_variables
        outputs = (tf.matmul(inputs, kernel) + bias) * gamma
        loss = 50.0 * tf.reduce_mean(tf.square(outputs - TARGETS))  # large: clipping binds
        train_op = make_train_op(loss, 1e-2, num_train_steps, num_warmup_steps)
        config = tf.ConfigProto(inter_op_parallelism_threads=1, intra_op_parallelism_threads=1)
        with tf.Session(config=config) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(steps):
                sess.run(train_op)
            values = sess.run(weights + [tf.train.get_global_step()])
    return values[:3] + [values[-1]] + values[3:-1]


def bert_create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps):
    return optimization.create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps,
                                         use_tpu=False)


def test_same_updates_as_bert(monkeypatch):
    # bert's element-wise update (the fused one: test_the_fused_update_is_berts). Many
    # planned steps: whichever step bert's racing read sees, its learning rate differs
    # from ours by at most 1e-5 relative.
    monkeypatch.setenv("IMDB_BERT_FUSION", "off")
    ours = train_weights(optimizer.create_optimizer, 4, 100000, 0)
    berts = train_weights(bert_create_optimizer, 4, 100000, 0)
    initial = train_weights(optimizer.create_optimizer, 0, 100000, 0)
    assert ours[3] == berts[3] == 4
    for mine, theirs, start in zip(ours[:3], berts[:3], initial[:3]):
        assert np.abs(mine - start).max() > 1e-3  # it trained
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ref_variables", [False, True], ids=["resource", "ref"])
def test_the_fused_update_is_berts(monkeypatch, ref_variables):
    """The fused update (one Adam kernel a variable, on the CPU) moves every weight as
    bert's element-wise one does, over warm-up, decay, clipping, weight decay and a
    gradient of slices, for resource and ref variables: within 2e-5 of the largest move
    (the kernel takes 1 - beta_2 in float32, 1.3e-5 off 0.001; a learning rate 1e-3 higher
    would be 50 times that)."""
    def weights_after(steps):
        return train_weights(optimizer.create_optimizer, steps, 20, 2, embedded=True,
                             ref_variables=ref_variables)
    initial = weights_after(0)
    monkeypatch.setenv("IMDB_BERT_FUSION", "off")
    elementwise = weights_after(6)
    monkeypatch.delenv("IMDB_BERT_FUSION")
    with tf.Graph().as_default():  # the CPU's default, tested here
        assert optimizer.scheduled_optimizer(1e-2, tf.constant(0), 20, 2).fused
    fused = weights_after(6)
    assert fused[3] == elementwise[3] == 6
    for name, i in (("kernel", 0), ("bias", 1), ("gamma", 2), ("table", 4)):  # 3: the step
        moves = np.abs(elementwise[i] - initial[i]).max()
        assert moves > 1e-3, name  # it trained
        assert np.abs(fused[i] - elementwise[i]).max() <= 2e-5 * moves, name


def test_schedule_warms_up_from_zero_then_decays_to_zero():
    initial = train_weights(optimizer.create_optimizer, 0, 10, 2)
    after_first = train_weights(optimizer.create_optimizer, 1, 10, 2)
    for start, weights in zip(initial[:3], after_first[:3]):
        np.testing.assert_array_equal(weights, start)  # step 0 of warm-up: rate 0
    at_end = train_weights(optimizer.create_optimizer, 10, 10, 2)
    past_end = train_weights(optimizer.create_optimizer, 12, 10, 2)
    for end, past in zip(at_end[:3], past_end[:3]):
        np.testing.assert_array_equal(past, end)  # decayed to rate 0
    assert past_end[3] == 12


def test_repeatable():
    first = train_weights(optimizer.create_optimizer, 3, 20, 1)
    second = train_weights(optimizer.create_optimizer, 3, 20, 1)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def scaled(loss, init_lr, num_train_steps, num_warmup_steps):
    return optimizer.create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps,
                                      loss_scaling=True)


def loss_scale_variable():
    [scale] = [v for v in tf.global_variables() if v.op.name == "loss_scale"]
    return scale


def test_loss_scaling_gives_the_same_updates():
    unscaled = train_weights(optimizer.create_optimizer, 4, 100, 1)
    with_scaling = train_weights(scaled, 4, 100, 1)
    for a, b in zip(unscaled, with_scaling):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("ref_variables", [False, True], ids=["resource", "ref"])
def test_non_finite_gradients_skip_the_update_and_halve_the_scale(ref_variables):
    with tf.Graph().as_default():
        with tf.variable_scope(tf.get_variable_scope(), use_resource=not ref_variables):
            kernel = tf.get_variable("dense/kernel", initializer=KERNEL)
        # Gradients about 1e35: finite in float32, but times the loss scale they are inf.
        loss = 1e36 * tf.reduce_mean(tf.matmul(INPUTS, kernel))
        train_op = scaled(loss, 1e-2, 100, 0)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(train_op)
            scale = loss_scale_variable()
            weights, scale_after, step = sess.run([kernel, scale, tf.train.get_global_step()])
    np.testing.assert_array_equal(weights, KERNEL)
    assert scale_after == optimizer.LOSS_SCALE_START / 2
    assert step == 1


def test_the_scale_doubles_after_a_period_of_good_steps(monkeypatch):
    monkeypatch.setattr(optimizer, "LOSS_SCALE_PERIOD", 3)
    with tf.Graph().as_default():
        kernel = tf.get_variable("dense/kernel", initializer=KERNEL)
        train_op = scaled(tf.reduce_mean(tf.square(tf.matmul(INPUTS, kernel))), 1e-2, 100, 0)
        scale = loss_scale_variable()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            scales = []
            for _ in range(4):
                sess.run(train_op)
                scales.append(sess.run(scale))
    start = optimizer.LOSS_SCALE_START
    assert scales == [start, start, 2 * start, 2 * start]


def test_averaging_across_processes_sees_the_gradients_before_clipping():
    # A stand-in for Horovod's average over 2 processes whose gradients are twice ours:
    # halving before clipping gives the plain updates; halving the clipped gradients (the
    # clipping binds here) would change them.
    def halve(tensors):
        return [0.5 * tensor for tensor in tensors]

    for loss_scaling in (False, True):
        def doubled_and_averaged(loss, *schedule):
            return optimizer.create_optimizer(2.0 * loss, *schedule, loss_scaling=loss_scaling,
                                              average=halve)
        plain = train_weights(optimizer.create_optimizer, 4, 100, 0)
        averaged = train_weights(doubled_and_averaged, 4, 100, 0)
        for a, b in zip(plain, averaged):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def embedding_update(deterministic):
    """(the gradient `average` got, its global norm, the norm of its dense form, the
    embeddings after one update) for a lookup that reads row 1 twice."""
    with tf.Graph().as_default():
        table = tf.get_variable("embeddings",
                                initializer=np.arange(12, dtype=np.float32).reshape(4, 3))
        loss = 50.0 * tf.reduce_sum(tf.square(tf.gather(table, [1, 1, 3])))
        seen = []

        def record(tensors):  # a one-process "average"
            seen.extend(tensors)
            return tensors
        train_op = optimizer.create_optimizer(loss, 1e-2, 100, 0, average=record)
        norms = [tf.linalg.global_norm([seen[0]]),
                 tf.linalg.global_norm([tf.convert_to_tensor(seen[0])])]
        if deterministic:
            tf2.config.experimental.enable_op_determinism()
        try:
            with tf.Session(config=tf.ConfigProto(device_count={"GPU": 0})) as sess:
                sess.run(tf.global_variables_initializer())
                values = sess.run(norms)
                sess.run(train_op)
                return seen[0], values[0], values[1], sess.run(table)
        finally:
            determinism.disable_op_determinism()  # not in the public API


def test_the_embedding_gradient_is_clipped_as_slices_and_determinism_keeps_cpu_bits():
    """The embeddings' gradient reaches `average` (Horovod's all-gather) and clipping as
    IndexedSlices: clipping measures their values, and a row read twice counts twice,
    which densifying first would change. Op determinism (Horovod on GPUs,
    device.make_gpu_ops_deterministic) changes only how the update sums the rows; on the
    CPU the weights stay the same to the bit."""
    gradient, slices_norm, dense_norm, plain = embedding_update(deterministic=False)
    assert isinstance(gradient, tf.IndexedSlices)
    assert abs(slices_norm - dense_norm) > 1.0
    _, _, _, deterministic = embedding_update(deterministic=True)
    np.testing.assert_array_equal(deterministic, plain)
