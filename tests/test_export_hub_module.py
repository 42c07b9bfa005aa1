"""The exporter writes TF1 Hub modules that behave like Google's BERT Hub modules."""
import os

import numpy as np
import pytest

from conftest import write_google_checkpoint
from imdb_bert.compat import hub, modeling, tf
from imdb_bert.features import conversion
from imdb_bert.tools import make_hub_module

NOTEBOOK_EXAMPLE = "This here's an example of using the BERT tokenizer"
NOTEBOOK_TOKENS = ['this', 'here', "'", 's', 'an', 'example', 'of', 'using', 'the', 'bert',
                   'token', '##izer']


@pytest.fixture(scope="module")
def google_checkpoint(tmp_path_factory):
    """A folder like Google's release zips: bert_config.json, bert_model.ckpt.*, vocab.txt
    (with a pre-training head variable the module must leave out)."""
    folder = str(tmp_path_factory.mktemp("uncased_L-2_H-32_A-2"))
    return folder, write_google_checkpoint(folder, seed=7)


@pytest.fixture(scope="module")
def exported(google_checkpoint, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("exported") / "module")
    make_hub_module.export_google_checkpoint(google_checkpoint[0], path)
    return path


def test_exported_variables_equal_the_checkpoints(google_checkpoint, exported):
    original = tf.train.load_checkpoint(os.path.join(google_checkpoint[0], "bert_model.ckpt"))
    module = tf.train.load_checkpoint(os.path.join(exported, "variables", "variables"))
    bert_names = sorted(n for n in original.get_variable_to_shape_map() if n.startswith("bert/"))
    module_names = sorted(module.get_variable_to_shape_map())
    assert module_names == bert_names
    assert len(bert_names) == 5 + 2 * 16 + 2  # embeddings, 2 layers, pooler
    for name in bert_names:
        np.testing.assert_array_equal(module.get_tensor(name), original.get_tensor(name))


def test_module_outputs_equal_bert_model(google_checkpoint, exported):
    folder, bert_config = google_checkpoint
    rng = np.random.RandomState(0)
    input_ids = rng.randint(0, bert_config.vocab_size, size=(3, 20)).astype(np.int32)
    input_mask = np.ones_like(input_ids)
    input_mask[1, 12:] = 0
    segment_ids = np.zeros_like(input_ids)
    segment_ids[2, 10:] = 1
    with tf.Graph().as_default():
        input_ids, input_mask, segment_ids = map(tf.constant, (input_ids, input_mask, segment_ids))
        model = modeling.BertModel(bert_config, is_training=False, input_ids=input_ids,
                                   input_mask=input_mask, token_type_ids=segment_ids)
        tf.train.init_from_checkpoint(os.path.join(folder, "bert_model.ckpt"),
                                      {"bert/": "bert/"})
        outputs = hub.Module(exported)(
            dict(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids),
            signature="tokens", as_dict=True)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            expected_pooled, expected_sequence, pooled, sequence = sess.run(
                [model.get_pooled_output(), model.get_sequence_output(),
                 outputs["pooled_output"], outputs["sequence_output"]])
    assert pooled.shape == (3, 32) and sequence.shape == (3, 20, 32)
    np.testing.assert_allclose(pooled, expected_pooled, rtol=0, atol=1e-5)
    np.testing.assert_allclose(sequence, expected_sequence, rtol=0, atol=1e-5)


def test_the_module_graph_has_the_matmuls_of_googles_modules(exported):
    """Dense layers as MatMul, attention as BatchMatMul, as in Google's modules (bert's
    modeling.py of 2019 writes Einsum); test_module_outputs_equal_bert_model checks that
    the outputs are the same."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved_model = saved_model_pb2.SavedModel.FromString(
        open(os.path.join(exported, "saved_model.pb"), "rb").read())
    for meta_graph in saved_model.meta_graphs:
        ops = [node.op for node in meta_graph.graph_def.node]
        assert "Einsum" not in ops
        assert ops.count("MatMul") >= 2 * 6 + 1  # six dense layers a layer, the pooler
        assert ops.count("BatchMatMulV2") == 2 * 2  # scores and context, each layer


def test_train_tags_turn_bert_dropout_on(exported):
    ids = np.full((2, 16), 150, np.int32)
    inputs = dict(input_ids=ids, input_mask=np.ones_like(ids), segment_ids=np.zeros_like(ids))
    with tf.Graph().as_default():
        default = hub.Module(exported)(inputs, signature="tokens", as_dict=True)
        train = hub.Module(exported, tags={"train"})(inputs, signature="tokens", as_dict=True)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            d1, t1 = sess.run([default["sequence_output"], train["sequence_output"]])
            d2, t2 = sess.run([default["sequence_output"], train["sequence_output"]])
    np.testing.assert_array_equal(d1, d2)
    assert np.abs(t1 - t2).max() > 1e-3


def test_tokenizer_from_module_matches_the_notebook(exported):
    vocab_file, do_lower_case = conversion.tokenization_info(exported)
    assert do_lower_case is True
    assert vocab_file == os.path.join(exported, "assets", "vocab.txt")
    tokenizer = conversion.create_tokenizer_from_hub_module(exported)
    assert tokenizer.tokenize(NOTEBOOK_EXAMPLE) == NOTEBOOK_TOKENS
    assert tokenizer.convert_tokens_to_ids(["[UNK]", "[CLS]", "[SEP]"]) == [100, 101, 102]


def test_cased_flag_and_random_module(tmp_path):
    path = str(tmp_path / "cased")
    assert make_hub_module.main(["--random", "--layers", "1", "--hidden", "16", "--heads",
                                   "2", "--cased", path]) == 0
    assert conversion.tokenization_info(path)[1] is False
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    assert shapes["bert/embeddings/word_embeddings"] == [len(make_hub_module.tiny_vocab()), 16]
    assert "bert/encoder/layer_0/intermediate/dense/kernel" in shapes
    assert "bert/encoder/layer_1/intermediate/dense/kernel" not in shapes


def test_random_weights_follow_the_seed(tmp_path):
    def weights(name, seed):
        path = str(tmp_path / name)
        make_hub_module.export_random(path, layers=1, hidden=16, heads=2, seed=seed)
        reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
        return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}

    first, again, other = weights("a", 1), weights("b", 1), weights("c", 2)
    kernel = "bert/encoder/layer_0/intermediate/dense/kernel"
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first[kernel], other[kernel])


def test_errors_name_the_problem(tmp_path, exported, capsys):
    assert make_hub_module.main(["--google-checkpoint", str(tmp_path),
                                   str(tmp_path / "out")]) == 2
    assert "bert_config.json" in capsys.readouterr().err
    assert make_hub_module.main(["--random", exported]) == 2
    assert "not empty" in capsys.readouterr().err
