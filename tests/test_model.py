"""Steps 6-7: the model_fn in its three modes, and the notebook's metrics."""
import os

import numpy as np
import pytest

import config
from imdb_bert.compat import run_classifier, tf
from imdb_bert.features import conversion
from imdb_bert.model.classifier import metric_fn, model_fn_builder

NOTEBOOK_METRIC_KEYS = {"eval_accuracy", "f1_score", "auc", "precision", "recall",
                        "true_positives", "true_negatives", "false_positives",
                        "false_negatives"}


@pytest.fixture(scope="module")
def estimator_and_features(tiny_module, tmp_path_factory):
    tokenizer = conversion.create_tokenizer_from_hub_module(tiny_module)
    sentences = ["great wonderful film", "awful boring movie", "superb acting",
                 "terrible plot", "loved it"]
    feats = run_classifier.convert_examples_to_features(
        conversion.make_examples(sentences, [1, 0, 1, 0, 1]), config.label_list, 16, tokenizer)
    estimator = tf.estimator.Estimator(
        model_fn=model_fn_builder(num_labels=2, learning_rate=1e-3, num_train_steps=3,
                                  num_warmup_steps=1, bert_hub=tiny_module),
        config=tf.estimator.RunConfig(model_dir=str(tmp_path_factory.mktemp("model")),
                                      tf_random_seed=1),
        params={"batch_size": 2})
    estimator.train(run_classifier.input_fn_builder(feats, 16, True, False), max_steps=3)
    return estimator, feats


def test_train_mode_reaches_the_planned_step(estimator_and_features):
    estimator, _ = estimator_and_features
    assert estimator.get_variable_value("global_step") == 3
    names = estimator.get_variable_names()
    assert {"output_weights", "output_bias", "module/bert/pooler/dense/kernel"} <= set(names)
    assert estimator.get_variable_value("output_weights").shape == (2, 32)


def test_eval_mode_gives_the_notebooks_metrics_repeatably(estimator_and_features):
    estimator, feats = estimator_and_features
    input_fn = run_classifier.input_fn_builder(feats, 16, False, False)
    first = estimator.evaluate(input_fn, steps=None)
    second = estimator.evaluate(input_fn, steps=None)
    assert set(first) == NOTEBOOK_METRIC_KEYS | {"loss", "global_step"}
    counts = sum(first[k] for k in ("true_positives", "true_negatives",
                                    "false_positives", "false_negatives"))
    assert counts == 5
    assert first == second  # no dropout outside training


def test_predict_mode_including_a_batch_of_one(estimator_and_features):
    estimator, feats = estimator_and_features
    input_fn = run_classifier.input_fn_builder(feats[:1], 16, False, False)
    [prediction] = list(estimator.predict(input_fn))
    assert prediction["probabilities"].shape == (2,)
    np.testing.assert_allclose(np.exp(prediction["probabilities"]).sum(), 1.0, rtol=1e-5)
    assert prediction["labels"] == np.argmax(prediction["probabilities"])
    again = list(estimator.predict(input_fn))[0]
    np.testing.assert_array_equal(prediction["probabilities"], again["probabilities"])


def test_f1_is_contribs_best_over_thresholds():
    """STACK.md: on hard labels tf.contrib's F1 is the larger of the usual F1 and the F1
    of predicting everything positive."""
    with tf.Graph().as_default():
        metrics = metric_fn(tf.constant([1, 0, 1, 1, 0, 1]), tf.constant([1, 0, 0, 1, 1, 1]))
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            sess.run({k: update for k, (_, update) in metrics.items()})
            values = sess.run({k: value for k, (value, _) in metrics.items()})
    assert values["f1_score"] == pytest.approx(0.8, abs=1e-6)
    assert values["eval_accuracy"] == pytest.approx(4 / 6)
    assert values["precision"] == pytest.approx(0.75)
    assert values["recall"] == pytest.approx(0.75)
    assert (values["true_positives"], values["true_negatives"], values["false_positives"],
            values["false_negatives"]) == (3, 1, 1, 1)


def test_module_with_tf1_ref_variables_trains(tmp_path):
    """Google's published BERT Hub modules hold TF1 ref variables (VariableV2), while this
    project runs with resource variables: such a module must load and train too."""
    from imdb_bert.tools import make_hub_module
    from imdb_bert.compat import hub, modeling

    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(make_hub_module.tiny_vocab()) + "\n")
    bert_config = modeling.BertConfig(vocab_size=len(make_hub_module.tiny_vocab()),
                                      hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=32)
    module_fn = make_hub_module.bert_module_fn(bert_config, str(vocab_file), True)

    def ref_variables_module_fn(is_training):
        with tf.variable_scope(tf.get_variable_scope(), use_resource=False):
            module_fn(is_training)

    spec = hub.create_module_spec(ref_variables_module_fn, tags_and_args=[
        ({"train"}, {"is_training": True}), (set(), {"is_training": False})])
    module_path = str(tmp_path / "ref_module")
    with tf.Graph().as_default():
        module = hub.Module(spec)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            module.export(module_path, sess)
    with open(tmp_path / "ref_module" / "saved_model.pb", "rb") as f:
        graph = f.read()
    assert b"VariableV2" in graph and b"VarHandleOp" not in graph

    tokenizer = conversion.create_tokenizer_from_hub_module(module_path)
    feats = run_classifier.convert_examples_to_features(
        conversion.make_examples(["great film", "awful film"], [1, 0]), config.label_list, 8,
        tokenizer)
    estimator = tf.estimator.Estimator(
        model_fn=model_fn_builder(2, 1e-2, 3, 0, module_path),
        config=tf.estimator.RunConfig(model_dir=str(tmp_path / "model"), tf_random_seed=1),
        params={"batch_size": 2})
    estimator.train(run_classifier.input_fn_builder(feats, 8, True, False), max_steps=3)
    reader = tf.train.load_checkpoint(str(tmp_path / "ref_module" / "variables" / "variables"))
    trained = estimator.get_variable_value("module/bert/pooler/dense/kernel")
    assert np.abs(trained - reader.get_tensor("bert/pooler/dense/kernel")).max() > 1e-4


def test_loss_scaling_inside_the_estimator_trains_like_float32(tiny_module, tmp_path):
    """--use-amp's optimizer path (the float16 rewrite itself needs a GPU) on the CPU:
    the same weights as without loss scaling."""
    tokenizer = conversion.create_tokenizer_from_hub_module(tiny_module)
    feats = run_classifier.convert_examples_to_features(
        conversion.make_examples(["great film", "awful film", "loved it"], [1, 0, 1]),
        config.label_list, 8, tokenizer)
    weights = []
    for loss_scaling in (False, True):
        estimator = tf.estimator.Estimator(
            model_fn=model_fn_builder(2, 1e-3, 3, 0, tiny_module, loss_scaling=loss_scaling),
            config=tf.estimator.RunConfig(model_dir=str(tmp_path / str(loss_scaling)),
                                          tf_random_seed=1),
            params={"batch_size": 3})
        estimator.train(run_classifier.input_fn_builder(feats, 8, True, False), max_steps=3)
        weights.append(estimator.get_variable_value("module/bert/pooler/dense/kernel"))
    assert "loss_scale" in estimator.get_variable_names()
    initial = tf.train.load_checkpoint(os.path.join(tiny_module, "variables", "variables"))
    start = initial.get_tensor("bert/pooler/dense/kernel")
    assert np.abs(weights[0] - start).max() > 1e-3  # it trained
    np.testing.assert_allclose(weights[1], weights[0], rtol=1e-4, atol=1e-6)
