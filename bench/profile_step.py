"""Where one training step and one evaluation step spend their time: TensorFlow's step
timeline (RunMetadata step stats) summed by op type, by part of the step (forward,
backward, clipping, the optimizer's update) and by part of the model (the matrix
products, the element-wise work of the GELUs, attention, layer norms), the fused and
bfloat16 ops that grappler and oneDNN made of the graph that ran, and the model's GFLOP/s
against what one large MatMul reaches on this CPU (the ceiling). Run by hand, never in
tests.

    python bench/profile_step.py                 # random 6-layer, hidden-384 BERT
    python bench/profile_step.py --bf16          # with the --bf16 rewrite
    python bench/profile_step.py --bert-hub DIR  # a module of yours (Google's: MatMul dense)

The graph is the project's own (imdb_bert.model.classifier.create_model,
imdb_bert.model.optimizer), fed random ids of the given shape, with the session configs
train.py uses; the evaluation's is rewritten for oneDNN's fused kernels as train.py's
evaluations are (imdb_bert/model/onednn_fusion.py; IMDB_BERT_FUSION=off: not).
"""
import argparse
import collections
import os
import sys
import tempfile
import time

import numpy as np

from demo_material import random_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from imdb_bert import device
from imdb_bert.model import classifier, optimizer  # noqa: E402
from imdb_bert.compat import tf  # noqa: E402


def build(bert_hub, training, batch, seq):
    """(fetch, feed) of one step: the train op, or the evaluation's log-probabilities.
    The inputs' shape is [None, None], as the Estimator's batches are unknown in size."""
    inputs = {name: tf.placeholder(tf.int32, [None, None], name=name)
              for name in ("input_ids", "input_mask", "segment_ids")}
    labels = tf.placeholder(tf.int32, [None], name="labels")
    loss, _, log_probs = classifier.create_model(training, False, inputs["input_ids"],
                                                 inputs["input_mask"], inputs["segment_ids"],
                                                 labels, 2, bert_hub,
                                                 fuse_for_cpu=device.fuses_for_cpu()
                                                 and not training)
    fetch = (optimizer.create_optimizer(loss, 2e-5, 1000, 100) if training else log_probs)
    rng = np.random.RandomState(0)
    feed = {inputs["input_ids"]: rng.randint(1000, 30000, size=(batch, seq)),
            inputs["input_mask"]: np.ones((batch, seq), np.int32),
            inputs["segment_ids"]: np.zeros((batch, seq), np.int32),
            labels: rng.randint(0, 2, size=batch)}
    return fetch, feed


def op_type(node_stat):
    """'MatMul' of a timeline label such as 'bert/.../MatMul = _MklMatMul(a, b)'."""
    label = node_stat.timeline_label
    if " = " in label:
        return label.split(" = ", 1)[1].split("(", 1)[0]
    return node_stat.node_name.split(":")[0].rsplit("/", 1)[-1]


def part_of(node_name):
    """Which part of the step a node belongs to, from its name scope: tf.gradients writes
    the backward pass under gradients/, tf.clip_by_global_norm its own scope, the
    optimizer's update (imdb_bert/model/optimizer.py) has none, the forward pass is the
    module's and the classifier's (loss/)."""
    scope = node_name.split("/", 1)[0] if "/" in node_name else ""
    if scope.startswith("gradients"):
        return "backward"
    if scope.startswith("clip_by_global_norm"):
        return "clipping"
    if scope.startswith("module") or scope == "loss":
        return "forward"
    return "optimizer and the rest"


def model_part_of(node_name, op):
    """Which part of BERT an op computes, forward or backward, from the module's name
    scopes (bert's modeling.py): the matrix products, then by layer part the element-wise
    work around them (the GELU lives in intermediate/; BERT's own dropout is off, as in
    the notebook)."""
    if "MatMul" in op:
        return "matrix products"
    name = node_name.lower()
    for scope, part in (("layernorm", "layer norm"), ("intermediate", "GELU"),
                        ("attention", "attention"), ("embeddings", "embeddings")):
        if scope in name:
            return part + " element-wise"
    return "the rest"


def dtype_of(node):
    """'bfloat16' or 'float' for a node with a T attribute, else ''."""
    if "T" not in node.attr or not node.attr["T"].type:
        return ""
    return tf.dtypes.as_dtype(node.attr["T"].type).name


def profile(bert_hub, training, args, session_config):
    with tf.Graph().as_default():
        fetch, feed = build(bert_hub, training, args.batch_size, args.max_seq_length)
        with tf.Session(config=session_config) as sess:
            sess.run([tf.global_variables_initializer(), tf.tables_initializer()])
            start = time.perf_counter()
            sess.run(fetch, feed)  # grappler rewrites the graph, oneDNN makes its kernels
            first_step = time.perf_counter() - start
            for _ in range(args.warmup - 1):
                sess.run(fetch, feed)
            start = time.perf_counter()
            for _ in range(args.steps):
                sess.run(fetch, feed)
            step_seconds = (time.perf_counter() - start) / args.steps
            times, counts = collections.Counter(), collections.Counter()
            fused, parts = collections.Counter(), collections.Counter()
            model_parts = collections.Counter()
            for _ in range(args.traced_steps):
                metadata = tf.RunMetadata()
                sess.run(fetch, feed, options=tf.RunOptions(
                    trace_level=tf.RunOptions.FULL_TRACE, output_partition_graphs=True),
                    run_metadata=metadata)
                for dev in metadata.step_stats.dev_stats:
                    for stat in dev.node_stats:
                        op, micros = op_type(stat), stat.all_end_rel_micros
                        times[op] += micros
                        counts[op] += 1
                        parts[part_of(stat.node_name)] += micros
                        model_parts[model_part_of(stat.node_name, op)] += micros
            for graph in metadata.partition_graphs:
                fused.update("%s(%s)" % (node.op, dtype_of(node)) for node in graph.node)
    return step_seconds, first_step, times, counts, fused, parts, model_parts


def model_flops(bert_hub, seq):
    """Multiply-add FLOPs of one example's forward pass through the encoder, from the
    module's variable shapes: dense layers and attention, per token and layer."""
    shapes = tf.train.load_checkpoint(os.path.join(bert_hub, "variables", "variables")
                                      ).get_variable_to_shape_map()
    hidden = shapes["bert/embeddings/word_embeddings"][1]
    layers = len({name.split("/")[2] for name in shapes if name.startswith("bert/encoder/")})
    intermediate = shapes["bert/encoder/layer_0/intermediate/dense/kernel"][1]
    per_token = 2 * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * seq * hidden
    return layers * seq * per_token


def matmul_peak(dtype):
    """GFLOP/s of a [4096, 384] x [384, 1536] MatMul (one dense layer of a batch of 32 x
    128 tokens), ten in a step, with this project's session config."""
    with tf.Graph().as_default():
        a = tf.Variable(tf.random.normal([4096, 384]))
        b = tf.Variable(tf.random.normal([384, 1536]))
        total = tf.add_n([tf.reduce_sum(tf.cast(tf.matmul(
            tf.cast(a + float(i), dtype), tf.cast(b, dtype))[:1, :1], tf.float32))
            for i in range(10)])
        with tf.Session(config=device.base_session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(3):
                sess.run(total)
            start = time.perf_counter()
            for _ in range(10):
                sess.run(total)
            seconds = (time.perf_counter() - start) / 10
    return 10 * 2 * 4096 * 384 * 1536 / seconds / 1e9


def report(name, batch, result, top, flops):
    step_seconds, first_step, times, counts, fused, parts, model_parts = result
    total = sum(times.values())
    print("\n%s: %.3f s a step (%.1f examples/s, %.0f GFLOP/s), the first step %.1f s; op "
          "time summed over the traced steps (ops overlap on several threads, so shares are "
          "of the summed time):" % (name, step_seconds, batch / step_seconds,
                                    batch * flops / step_seconds / 1e9, first_step))
    for op, micros in times.most_common(top):
        print("  %-36s %6.1f %%  %5d runs" % (op, 100.0 * micros / total, counts[op]))
    print("  by part of the step: " + ", ".join(
        "%s %.1f %%" % (part, 100.0 * micros / total) for part, micros in parts.most_common()))
    print("  by part of the model: " + ", ".join(
        "%s %.1f %%" % (part, 100.0 * micros / total)
        for part, micros in model_parts.most_common()))
    print("  ops in the graph that ran, by type (T): " + ", ".join(
        "%s %d" % (op, n) for op, n in sorted(fused.items())
        if op.startswith("_") or op.startswith("Cast") or "bfloat16" in op))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bert-hub", help="a Hub module (default: a random one)")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps, the first included")
    p.add_argument("--steps", type=int, default=5, help="untraced steps that are timed")
    p.add_argument("--traced-steps", type=int, default=2)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--xla-cpu", action="store_true",
                   help="XLA auto-clustering on the CPU (TF_XLA_FLAGS=--tf_xla_cpu_global_jit)")
    args = p.parse_args()
    session_config, messages, _ = device.session_config(bf16=args.bf16)
    if args.xla_cpu:
        session_config.graph_options.optimizer_options.global_jit_level = (
            tf.OptimizerOptions.ON_1)
    for message in messages:
        print(message)
    print("One MatMul [4096, 384] x [384, 1536]: %.0f GFLOP/s float32, %.0f GFLOP/s bfloat16"
          % (matmul_peak(tf.float32), matmul_peak(tf.bfloat16)))
    with tempfile.TemporaryDirectory() as tmp:
        bert_hub = args.bert_hub or random_module(tmp, args.layers, args.hidden,
                                                  vocab_size=30522)
        forward = model_flops(bert_hub, args.max_seq_length)
        for name, training in (("evaluation", False), ("training", True)):
            # Training: the forward pass and a backward pass of twice its work.
            config = (session_config if training
                      else device.evaluation_session_config(session_config))
            report(name, args.batch_size, profile(bert_hub, training, args, config),
                   args.top, forward * (3 if training else 1))


if __name__ == "__main__":
    main()
