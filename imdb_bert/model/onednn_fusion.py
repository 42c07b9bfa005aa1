"""BERT's ops, as the Hub module applied them, regrouped into the shapes that TensorFlow
2.15's grappler remapper fuses into oneDNN kernels on the CPU
(tensorflow/core/grappler/optimizers/remapper.cc): the same variables, the same math in
another order. Outputs equal the plain graph's within float rounding
(tests/test_onednn_fusion.py); ops of another shape are left as they are, so a module
built otherwise runs unfused, as before.

  dense layer  Reshape(MatMul(a, w)) + b  ->  Reshape(BiasAdd(MatMul(a, w), b))
               (remapper: MatMul + BiasAdd -> _FusedMatMul; modules written by
               make_hub_module add the bias after the Reshape, Google's next to the MatMul)
  GELU         x * (0.5 * (1 + tanh(k * (x + c * pow(x, 3)))))
               ->  0.5 * x * (1 + tanh(k * (x + c * (x * x * x))))
               (FindMatMulBiasAddAndGelu's GeluApproximate pattern, as tf.nn.gelu(
               approximate=True) builds it: after the arithmetic optimizer x * x * x is
               Mul(x, Square(x)); it matches _FusedMatMul[BiasAdd], so in a second
               meta-optimizer pass, see device.session_config)
  layer norm   mean, variance, rsqrt, gamma, beta (tf.contrib's layer_norm)
               ->  Reshape, FusedBatchNormV3 with Fill scale and offset, Reshape, * gamma
               + beta, as Keras' LayerNormalization builds it (FindMklLayerNorm ->
               _MklLayerNorm; the pattern holds Fills, which grappler folds away when the
               input's shape is static: the Estimator's batch size is unknown)

Rerouting the consumers of an op's output uses tf.Operation._update_input, TensorFlow's
own in-place graph edit (its while_v2 and the graph_editor of tf.contrib use it); the
pinned TensorFlow 2.15 has it (tests/test_onednn_fusion.py would fail without it)."""
import numpy as np

from imdb_bert.compat import tf

GELU_SCALE = float(np.sqrt(2 / np.pi))
GELU_CUBE = 0.044715


def module_ops(graph, start):
    """The ops added to `graph` since it had `start` ops (one module application)."""
    return graph.get_operations()[start:]


def fuse(ops):
    """Rewrite the dense layers, GELUs and layer norms among `ops`; the counts of each."""
    dense = fuse_dense_layers(ops)
    return {"dense": len(dense), "gelu": fuse_gelus(ops, dense),
            "layer_norm": fuse_layer_norms(ops)}


def reroute(old, new):
    """Make every consumer of tensor `old` read `new` instead."""
    for consumer in list(old.consumers()):
        if consumer is not new.op:
            for index, tensor in enumerate(consumer.inputs):
                if tensor is old:
                    consumer._update_input(index, new)  # pylint: disable=protected-access


def other_input(op, tensor):
    first, second = op.inputs
    return second if first is tensor else first


def is_scalar(tensor, value, tolerance=1e-6):
    """Whether `tensor` is a constant holding the one number `value`."""
    if tensor.op.type != "Const":
        return False
    constant = tf.get_static_value(tensor)
    return np.size(constant) == 1 and abs(float(np.ravel(constant)[0]) - value) < tolerance


def only_consumer(tensor, op_type):
    consumers = tensor.consumers()
    return consumers[0] if len(consumers) == 1 and consumers[0].type == op_type else None


def vector_behind(tensor):
    """The 1-D tensor `tensor` is (itself, or reshaped), else None: a dense layer's bias."""
    if tensor.shape.rank == 1:
        return tensor
    if tensor.op.type == "Reshape" and tensor.op.inputs[0].shape.rank == 1:
        return tensor.op.inputs[0]
    return None


def fuse_dense_layers(ops):
    """{name of the new Reshape op: (its 2-D BiasAdd, the shape)} of each dense layer
    rewritten from Reshape(MatMul) + bias."""
    done = {}
    for op in ops:
        if op.type not in ("AddV2", "Add"):
            continue
        for product in op.inputs:
            if product.op.type != "Reshape" or product.op.inputs[0].op.type != "MatMul":
                continue
            flat, shape = product.op.inputs
            bias = vector_behind(other_input(op, product))
            if bias is None or bias.shape[0] is None or bias.shape[0] != flat.shape[-1]:
                continue
            with tf.name_scope(op.name + "_fused"):
                biased = tf.nn.bias_add(flat, bias)
                new = tf.reshape(biased, shape)
            reroute(op.outputs[0], new)
            done[new.op.name] = (biased, shape)
            break
    return done


def gelu_approximate(x):
    """bert's GELU, grouped as tf.nn.gelu(approximate=True) groups it, x**3 as x * x * x."""
    return 0.5 * x * (1.0 + tf.tanh(GELU_SCALE * (x + GELU_CUBE * (x * x * x))))


def gelu_input(tanh):
    """(x, the op whose output is gelu(x)) when `tanh` is the Tanh of bert's GELU,
    x * (0.5 * (1 + tanh(k * (x + c * pow(x, 3))))), else None."""
    scaled = tanh.inputs[0].op                                  # k * (x + c * x^3)
    one_plus = only_consumer(tanh.outputs[0], "AddV2")          # 1 + tanh
    half = one_plus and only_consumer(one_plus.outputs[0], "Mul")  # 0.5 * (1 + tanh)
    out = half and only_consumer(half.outputs[0], "Mul")        # x * cdf
    if out is None or scaled.type != "Mul" or not (
            any(is_scalar(t, 1.0) for t in one_plus.inputs)
            and any(is_scalar(t, 0.5) for t in half.inputs)):
        return None
    x = other_input(out, half.outputs[0])
    inner = next((t.op for t in scaled.inputs if not is_scalar(t, GELU_SCALE)), None)
    if inner is None or inner.type != "AddV2" or x not in list(inner.inputs):
        return None
    cube = other_input(inner, x).op                             # c * pow(x, 3)
    power = next((t.op for t in cube.inputs if t.op.type == "Pow"), None)
    if (cube.type == "Mul" and any(is_scalar(t, GELU_CUBE) for t in cube.inputs)
            and power is not None and power.inputs[0] is x and is_scalar(power.inputs[1], 3)):
        return x, out
    return None


def fuse_gelus(ops, dense):
    """Rewrite each of bert's GELUs; on a rewritten dense layer's output, on its 2-D
    BiasAdd (what the remapper fuses), reshaped after. The count rewritten."""
    count = 0
    for tanh in [op for op in ops if op.type == "Tanh"]:
        found = gelu_input(tanh)
        if found is None:
            continue
        x, out = found
        with tf.name_scope(out.name + "_fused"):
            if x.op.name in dense:
                biased, shape = dense[x.op.name]
                new = tf.reshape(gelu_approximate(biased), shape)
            else:
                new = gelu_approximate(x)
        reroute(out.outputs[0], new)
        count += 1
    return count


def layer_norm_fused(x, gamma, beta, epsilon):
    """Layer norm of `x` over its last axis as Keras 2.15's LayerNormalization builds its
    fused path (keras/layers/normalization/layer_normalization.py): [1, rows, width, 1]
    through FusedBatchNormV3 in training mode, then gamma and beta. With bert's epsilon
    (the raw op takes it as it is)."""
    width = x.shape[-1]
    shape = tf.shape(x)
    rows = tf.reduce_prod(shape[:-1])
    grid = tf.reshape(x, tf.stack([1, rows, width, 1]))
    ones = tf.fill(tf.expand_dims(rows, 0), tf.constant(1.0, x.dtype))
    zeros = tf.fill(tf.expand_dims(rows, 0), tf.constant(0.0, x.dtype))
    normalized = tf.raw_ops.FusedBatchNormV3(
        x=grid, scale=ones, offset=zeros, mean=tf.constant([], x.dtype),
        variance=tf.constant([], x.dtype), epsilon=epsilon, data_format="NCHW",
        is_training=True)[0]
    return tf.reshape(normalized, shape) * gamma + beta


def layer_norm_parts(op):
    """(x, gamma, beta, epsilon) when `op` is the last Add of tf.nn.batch_normalization
    over tf.nn.moments, as tf.contrib's layer_norm builds it:
    x * (rsqrt(variance + epsilon) * gamma) + (beta - mean * (rsqrt(...) * gamma))."""
    if op.type != "AddV2":
        return None
    scaled, shifted = sorted((t.op for t in op.inputs), key=lambda o: o.type != "Mul")
    if scaled.type != "Mul" or shifted.type != "Sub":
        return None
    beta, mean_scaled = shifted.inputs
    if mean_scaled.op.type != "Mul":
        return None
    mean = next((t.op for t in mean_scaled.op.inputs if t.op.type == "Mean"), None)
    factor = next((t.op for t in mean_scaled.op.inputs if t.op.type == "Mul"), None)
    if mean is None or factor is None or factor.outputs[0] not in list(scaled.inputs):
        return None
    x = mean.inputs[0]
    rsqrt = next((t.op for t in factor.inputs if t.op.type == "Rsqrt"), None)
    if x not in list(scaled.inputs) or rsqrt is None or x.shape.rank not in (2, 3):
        return None
    gamma = other_input(factor, rsqrt.outputs[0])
    plus_epsilon = rsqrt.inputs[0].op
    epsilon = [tf.get_static_value(t) for t in plus_epsilon.inputs if t.op.type == "Const"]
    variance = [t.op for t in plus_epsilon.inputs if t.op.type == "Mean"]
    if (plus_epsilon.type != "AddV2" or len(epsilon) != 1 or np.size(epsilon[0]) != 1
            or not variance or variance[0].inputs[0].op.type != "SquaredDifference"):
        return None
    return x, gamma, beta, float(np.ravel(epsilon[0])[0])


def fuse_layer_norms(ops):
    count = 0
    for op in ops:
        parts = layer_norm_parts(op)
        if parts is None:
            continue
        with tf.name_scope(op.name + "_fused"):
            new = layer_norm_fused(*parts)
        reroute(op.outputs[0], new)
        count += 1
    return count
