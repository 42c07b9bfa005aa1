"""BERT's ops regrouped for oneDNN's fused CPU kernels in evaluations
(imdb_bert/model/onednn_fusion.py): the same outputs as the module's own graph, the
kernels fused for real, the same evaluation, and the training and export graphs left as
they are."""
import collections
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, quick_args, run_train
from imdb_bert import device
from imdb_bert.compat import hub, modeling, tf
from imdb_bert.model import classifier, onednn_fusion
from tensorflow.python.util import _pywrap_util_port

LAYERS = 2  # the tiny module's
ONEDNN = _pywrap_util_port.IsMklEnabled()


def ran_ops(run_metadata):
    """Counts of the ops that ran, fused ones with their parts: '_FusedMatMul[BiasAdd]'."""
    ops = collections.Counter()
    for graph in run_metadata.partition_graphs:
        for node in graph.node:
            fused = node.attr["fused_ops"].list.s if "fused_ops" in node.attr else []
            ops[node.op + ("[%s]" % ",".join(p.decode() for p in fused) if fused else "")] += 1
    return ops


def module_outputs(tiny_module, fuse, shape, feed_shape=(3, 20), bf16=False):
    """(counts of the rewrites, pooled and sequence outputs, the ops that ran) of the
    module applied to [batch, length] ids; `shape`, the inputs' static shape."""
    config = device.evaluation_session_config(device.session_config(bf16=bf16)[0])
    with tf.Graph().as_default():
        inputs = {name: tf.placeholder(tf.int32, shape, name=name)
                  for name in ("input_ids", "input_mask", "segment_ids")}
        module, graph = hub.Module(tiny_module), tf.get_default_graph()
        start = len(graph.get_operations())  # as create_model: the module's application
        outputs = module(inputs=inputs, signature="tokens", as_dict=True)
        counts = onednn_fusion.fuse(onednn_fusion.module_ops(graph, start)) if fuse else {}
        rng = np.random.RandomState(0)
        mask = np.ones(feed_shape, np.int32)
        mask[0, 12:] = 0  # a padded review among them
        feed = {inputs["input_ids"]: rng.randint(100, 200, size=feed_shape),
                inputs["input_mask"]: mask,
                inputs["segment_ids"]: np.zeros(feed_shape, np.int32)}
        with tf.Session(config=config) as session:
            session.run(tf.global_variables_initializer())
            metadata = tf.RunMetadata()
            values = session.run([outputs["pooled_output"], outputs["sequence_output"]], feed,
                                 options=tf.RunOptions(output_partition_graphs=True),
                                 run_metadata=metadata)
    return counts, values, ran_ops(metadata)


@pytest.mark.parametrize("shape", [[None, None], [None, 20], [3, 20]],
                         ids=["padded-to-the-batch", "fixed-length", "static"])
def test_the_fused_module_gives_the_same_outputs(tiny_module, shape):
    """The Estimator's batches have an unknown batch size (drop_remainder=False): there
    the kernels fuse. With a static shape grappler folds the layer norms' shapes, and
    they stay unfused (the outputs are the same)."""
    _, plain, plain_ops = module_outputs(tiny_module, False, shape)
    counts, fused, fused_ops = module_outputs(tiny_module, True, shape)
    # Per layer: query, key, value, attention output, intermediate, output; one GELU,
    # two layer norms; and the embeddings' layer norm.
    assert counts == {"dense": 6 * LAYERS, "gelu": LAYERS, "layer_norm": 2 * LAYERS + 1}
    for before, after in zip(plain, fused):
        np.testing.assert_allclose(after, before, atol=1e-5)
        assert np.abs(before).max() > 0.1  # outputs, not zeros
    if ONEDNN and shape[0] is None:  # what the rewrite is for: the kernels that ran are oneDNN's fused ones
        assert fused_ops["_MklLayerNorm"] == 2 * LAYERS + 1
        assert fused_ops["_MklNativeFusedMatMul[BiasAdd,GeluApproximate]"] == LAYERS
        assert fused_ops["_MklNativeFusedMatMul[BiasAdd]"] == 5 * LAYERS
        assert plain_ops["_MklLayerNorm"] == 0
        assert plain_ops["_MklMatMul"] - fused_ops["_MklMatMul"] == 6 * LAYERS


def test_googles_dense_layers_keep_theirs_and_their_gelu_and_layer_norm_fuse():
    """Google's modules (the 2018 modeling.py) add the bias next to a 2-D MatMul: nothing
    to rewrite there, but the GELU and layer norm after it are bert's all the same."""
    rng = np.random.RandomState(1)
    weights, bias = rng.randn(16, 24).astype(np.float32), rng.randn(24).astype(np.float32)
    values = rng.randn(5, 16).astype(np.float32) * 3
    results = []
    for fuse in (False, True):
        with tf.Graph().as_default():
            x = tf.placeholder(tf.float32, [None, 16])
            start = len(tf.get_default_graph().get_operations())
            with tf.variable_scope("layer"):
                dense = tf.nn.bias_add(tf.matmul(x, weights), bias)
                out = modeling.layer_norm(modeling.gelu(dense))
            if fuse:
                counts = onednn_fusion.fuse(
                    onednn_fusion.module_ops(tf.get_default_graph(), start))
                assert counts == {"dense": 0, "gelu": 1, "layer_norm": 1}
            with tf.Session() as session:
                session.run(tf.global_variables_initializer())
                results.append(session.run(out, {x: values}))
    np.testing.assert_allclose(results[1], results[0], atol=1e-5)


def test_other_ops_are_left_alone():
    """A tanh that is no GELU, a sum that is no dense layer, a normalization that is not
    bert's: nothing is rewritten."""
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 8])
        start = len(tf.get_default_graph().get_operations())
        y = x * (0.5 * (1.0 + tf.tanh(0.5 * (x + 0.044715 * tf.pow(x, 3)))))  # k is 0.5
        z = tf.reshape(tf.matmul(y, tf.ones([8, 4])), [-1, 2, 2]) + tf.ones([2, 2])
        mean, variance = tf.nn.moments(z, [-1], keepdims=True)
        tf.nn.batch_normalization(z, mean, variance, None, None, 1e-3)  # no gamma, beta
        counts = onednn_fusion.fuse(onednn_fusion.module_ops(tf.get_default_graph(), start))
    assert counts == {"dense": 0, "gelu": 0, "layer_norm": 0}


def model_fn_ops(tiny_module, mode):
    """The op names of the model_fn's graph in `mode`, with fuse_for_cpu on."""
    model_fn = classifier.model_fn_builder(2, 1e-3, 10, 1, tiny_module, fuse_for_cpu=True)
    with tf.Graph().as_default() as graph:
        features = {name: tf.placeholder(tf.int32, [None, None], name=name)
                    for name in ("input_ids", "input_mask", "segment_ids")}
        features["label_ids"] = tf.placeholder(tf.int32, [None])
        tf.train.get_or_create_global_step()
        model_fn(features, None, mode, {"batch_size": 4})
        return [op.name for op in graph.get_operations()]


def test_only_the_evaluation_graph_is_rewritten(tiny_module):
    """Training gained nothing measurable (docs/speed.md), and the PREDICT graph is the
    export that becomes predict.py's ONNX model: those stay bert's."""
    keys = tf.estimator.ModeKeys
    for mode in (keys.TRAIN, keys.PREDICT):
        assert not [name for name in model_fn_ops(tiny_module, mode) if "_fused" in name]
    assert any(name.endswith("_fused/FusedBatchNormV3")
               for name in model_fn_ops(tiny_module, keys.EVAL))


def test_evaluation_sessions_take_two_grappler_passes_on_the_cpu(monkeypatch):
    two = device.rewriter_config_pb2.RewriterConfig.TWO
    config = device.session_config()[0]
    evaluation = device.evaluation_session_config(config)
    assert evaluation.graph_options.rewrite_options.meta_optimizer_iterations == two
    assert config.graph_options.rewrite_options.meta_optimizer_iterations != two  # a copy
    assert evaluation.allow_soft_placement and evaluation.gpu_options.allow_growth
    monkeypatch.setenv("IMDB_BERT_FUSION", "off")
    assert device.evaluation_session_config(config) is config


@pytest.mark.skipif(not device.cpu_supports_bf16(), reason="--bf16 needs AVX512_BF16 or AMX")
def test_bf16_keeps_the_gelu_pattern_whole_and_a_users_list_wins(monkeypatch, tiny_module):
    name = "TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_INFERLIST_ADD"
    monkeypatch.setenv(name, "Erf")
    device.session_config(bf16=True)
    assert os.environ[name] == "Erf"
    monkeypatch.delenv(name)
    device.session_config(bf16=True)
    assert os.environ[name] == "Tanh"
    ops = module_outputs(tiny_module, True, [None, None], bf16=True)[2]
    assert ops["_MklNativeFusedMatMul[BiasAdd,GeluApproximate]"] == LAYERS
    assert ops["_MklLayerNorm"] == 2 * LAYERS + 1


def test_an_evaluation_of_the_fused_graph_equals_the_plain_one(trained, imdb_dir,
                                                                tiny_module, tmp_path):
    """train.py --eval-only on the CPU, rewritten and with IMDB_BERT_FUSION=off: the same
    metrics, the same per-review probabilities within float rounding."""
    output_dir = str(tmp_path / "OUTPUT_Bert")
    shutil.copytree(trained[0], output_dir)

    def evaluate(fusion):
        env = dict(os.environ, IMDB_BERT_FUSION=fusion, CUDA_VISIBLE_DEVICES="")
        result = run_train(*quick_args(imdb_dir, tiny_module, output_dir), "--eval-only",
                           env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        with open(os.path.join(output_dir, "eval_results.json")) as f:
            results = json.load(f)
        with open(os.path.join(output_dir, "test_predictions.csv")) as f:
            return results, f.read().splitlines()

    (fused, fused_rows), (plain, plain_rows) = evaluate("on"), evaluate("off")
    assert fused.keys() == plain.keys()
    assert fused["loss"] == pytest.approx(plain["loss"], abs=1e-5)
    assert {k: v for k, v in fused.items() if k != "loss"} == \
        {k: v for k, v in plain.items() if k != "loss"}
    assert len(fused_rows) == len(plain_rows) == 101
    for row, plain_row in zip(fused_rows[1:], plain_rows[1:]):
        row, plain_row = row.rsplit(",", 1), plain_row.rsplit(",", 1)
        assert row[0] == plain_row[0]  # text, label, predicted label
        assert float(row[1]) == pytest.approx(float(plain_row[1]), abs=1e-5)



WEIGHTS_CHANGE_BETWEEN_RUNS = r"""
import json, sys
import numpy as np
from imdb_bert import device
from imdb_bert.compat import tf
session_kind = sys.argv[1]  # training, evaluation (one session), evaluations (one a change)
training_config = device.session_config()[0]
config = (training_config if session_kind == "training"
          else device.evaluation_session_config(training_config))
rng = np.random.RandomState(0)
x_value = rng.randn(64, 48).astype(np.float32)
weights = [(rng.randn(48, 40).astype(np.float32), rng.randn(40).astype(np.float32))
           for _ in range(3)]
bf16 = tf.bfloat16
with tf.Graph().as_default():
    x = tf.constant(x_value)
    w, b = tf.Variable(weights[0][0]), tf.Variable(weights[0][1])
    outputs = {  # grappler's remapper fuses MatMul and BiasAdd: _MklNativeFusedMatMul
        "fused": tf.nn.bias_add(tf.matmul(x, w), b),
        "plain": tf.matmul(x, w) * 1.0,
        "fused bf16": tf.nn.bias_add(tf.matmul(tf.cast(x, bf16), tf.cast(w, bf16)),
                                     tf.cast(b, bf16)),
        "plain bf16": tf.matmul(tf.cast(x, bf16), tf.cast(w, bf16)) * tf.constant(1, bf16)}
    fetch = {name: tf.cast(output, tf.float32) for name, output in outputs.items()}
    new_w, new_b = tf.placeholder(tf.float32, [48, 40]), tf.placeholder(tf.float32, [40])
    restore = [w.assign(new_w), b.assign(new_b)]  # as a restored checkpoint: new buffers
    change = (weights[2][0] - weights[1][0], weights[2][1] - weights[1][1])
    step = [w.assign_add(change[0]), b.assign_add(change[1])]  # as an optimizer: in place
    errors, ran, session = [], set(), None
    for number, (w_value, b_value) in enumerate(weights):
        if session is None or session_kind == "evaluations":
            session = tf.Session(config=config)
            session.run(tf.global_variables_initializer())
        if number == 1:
            session.run(restore, {new_w: w_value, new_b: b_value})
        elif number == 2:
            session.run(step if session_kind != "evaluations" else restore,
                        {new_w: w_value, new_b: b_value})
        metadata = tf.RunMetadata()
        values = session.run(fetch, options=tf.RunOptions(output_partition_graphs=True),
                             run_metadata=metadata)
        ran.update(node.op for graph in metadata.partition_graphs for node in graph.node)
        product = x_value @ w_value
        for name, value in values.items():
            expected = product + b_value if name.startswith("fused") else product
            errors.append([name, number, float(np.max(np.abs(value - expected))
                                               / np.max(np.abs(expected)))])
print(json.dumps({"errors": errors, "ran": sorted(ran)}))
"""


def run_with_weights_changing(session_kind):
    """(the relative error of each product, run by run, the ops that ran) in a process of
    its own with TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 (train.py --bf16 sets it on the CPU;
    TensorFlow reads it once a process)."""
    env = dict(os.environ, TF_ONEDNN_ASSUME_FROZEN_WEIGHTS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("IMDB_BERT_FUSION", None)
    result = subprocess.run([sys.executable, "-c", WEIGHTS_CHANGE_BETWEEN_RUNS, session_kind],
                            env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["errors"]) == 12
    return report["errors"], set(report["ran"])


def off_by(error, name):
    # bfloat16 keeps 8 bits of mantissa: a product of 48 terms within 2 %; a stale weight
    # is off by the whole change (weights drawn anew)
    return error > (2e-2 if "bf16" in name else 1e-5)


@pytest.mark.skipif(not ONEDNN, reason="oneDNN's kernels only")
def test_fused_matmuls_keep_their_first_weights_when_taken_as_constant():
    """Why training and the kept validation session must not reuse a fused MatMul with
    TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1: TensorFlow 2.15.1's fused kernel keeps the weights
    of its first run, after a restore and after an update in place alike."""
    errors, ran = run_with_weights_changing("evaluation")
    assert "_MklNativeFusedMatMul" in ran
    stale = {(name, run) for name, run, error in errors if off_by(error, name)}
    assert stale == {(name, run) for name in ("fused", "fused bf16") for run in (1, 2)}


@pytest.mark.parametrize("session_kind", ["training", "evaluations"])
def test_matmuls_use_each_runs_weights_in_training_and_in_a_session_per_checkpoint(
        session_kind):
    """With TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 training's session config has no fused
    MatMul (the remapper off), so its weights, updated in place or restored, are used at
    every run; evaluations, with the fused kernels, use a new session per checkpoint."""
    errors, ran = run_with_weights_changing(session_kind)
    if ONEDNN:
        assert "_MklMatMul" in ran
        assert ("_MklNativeFusedMatMul" in ran) == (session_kind == "evaluations")
    assert [(name, run) for name, run, error in errors if off_by(error, name)] == []


def test_bf16_lets_onednn_choose_the_weight_layout_and_a_users_setting_wins(monkeypatch):
    name = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"
    monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("IMDB_BERT_FUSION", raising=False)
    remapping = device.rewriter_config_pb2.RewriterConfig.OFF
    config = device.session_config()[0]
    assert name not in os.environ  # float32: as before
    assert config.graph_options.rewrite_options.remapping != remapping
    config = device.session_config(bf16=True)[0]
    on = device.cpu_supports_bf16() and device.training_device() == "CPU"
    assert os.environ.get(name) == ("1" if on else None)
    assert (config.graph_options.rewrite_options.remapping == remapping) == on
    assert device.evaluation_session_config(config).graph_options.rewrite_options.remapping \
        != remapping
    prediction = device.session_config(bf16=True, training=False)[0]  # restored once
    assert prediction.graph_options.rewrite_options.remapping != remapping
    monkeypatch.setenv(name, "0")
    config = device.session_config(bf16=True)[0]
    assert os.environ[name] == "0"
    assert config.graph_options.rewrite_options.remapping != remapping
