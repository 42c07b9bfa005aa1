"""Write a TF1 Hub module shaped like tfhub.dev/google/bert_uncased_*, without tfhub.dev.

Signatures, as in Google's modules:
  "tokens":            input_ids, input_mask, segment_ids -> pooled_output, sequence_output
  "tokenization_info": -> vocab_file (a module asset), do_lower_case
with one graph for tags {"train"} (BERT's dropout on) and one for the default tags.

From a Google BERT checkpoint zip, or the folder unzipped from it (how to run fully offline):
  python -m imdb_bert.tools.make_hub_module --google-checkpoint uncased_L-12_H-768_A-12.zip OUT_DIR
From a random config (tests and smoke runs; a tiny vocab is generated unless given):
  python -m imdb_bert.tools.make_hub_module --random --layers 2 --hidden 32 --heads 2 OUT_DIR
"""
import argparse
import contextlib
import os
import shlex
import string
import sys
import tempfile
import zipfile

from imdb_bert.compat import hub, modeling, tf

SPECIAL_TOKENS = ["[PAD]"] + ["[unused%d]" % i for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Words of the tiny generated vocab: enough English for the tests' reviews and the
# notebook's example sentences to tokenize into whole words.
TINY_VOCAB_WORDS = """
the a an and or but of to in on at for with as by from is was were be been are it its
this that these those there here i you he she we they me my your his her our their
not no very so too bit really just quite also even still much more most less than then
movie movies film films story plot acting actor actors actress cast scene scenes script
director music ending character characters time people watch watched watching saw seen
good great excellent wonderful fantastic brilliant superb amazing loved love beautiful
creative surprising enjoyable perfect best masterpiece fun moving charming
bad awful terrible horrible boring worst waste poor dull lacking stupid hated hate weak
mess annoying disappointing pointless
absolutely example using bert token what who how why when one two all some any
about after before again would could should will can did do does had has have make made
br s t
""".split()


def tiny_vocab():
    """A vocab laid out like Google's (special ids [UNK]=100, [CLS]=101, [SEP]=102)."""
    pieces = list(string.ascii_lowercase) + list(string.digits) + list(string.punctuation)
    suffixes = ["##" + c for c in string.ascii_lowercase + string.digits]
    words = [w for w in dict.fromkeys(TINY_VOCAB_WORDS) if w not in pieces]
    return SPECIAL_TOKENS + pieces + suffixes + ["##izer"] + words


class MatMulEinsum:
    """TensorFlow, as bert's modeling.py sees it inside matmul_layers(): its einsums done
    as the 2018 modeling.py of Google's Hub modules did them, with MatMul (dense layers on
    [batch * length, width]) and BatchMatMul (attention). The same math and variables; on
    oneDNN CPUs the evaluation runs 16 % faster (bench/profile_step.py, docs/speed.md)."""

    def __getattr__(self, name):
        return getattr(tf, name)

    @staticmethod
    def einsum(equation, a, b, **kwargs):
        shape = modeling.get_shape_list
        if equation in ("abc,cde->abde", "abc,cd->abd", "BFNH,NHD->BFD"):
            # A dense layer: [..., width] x [width, units] -> [..., units].
            width = (shape(a)[-1] if equation != "BFNH,NHD->BFD"
                     else shape(a)[-2] * shape(a)[-1])
            kept = shape(a)[:2]
            units = shape(b)[1:] if equation.startswith("abc") else shape(b)[-1:]
            product = tf.matmul(tf.reshape(a, [-1, width]), tf.reshape(b, [width, -1]))
            return tf.reshape(product, kept + units)
        if equation == "BTNH,BFNH->BNFT":  # attention scores: query x key
            return tf.matmul(tf.transpose(b, [0, 2, 1, 3]), tf.transpose(a, [0, 2, 1, 3]),
                             transpose_b=True)
        if equation == "BNFT,BTNH->BFNH":  # context: probabilities x value
            return tf.transpose(tf.matmul(a, tf.transpose(b, [0, 2, 1, 3])), [0, 2, 1, 3])
        return tf.einsum(equation, a, b, **kwargs)


@contextlib.contextmanager
def matmul_layers():
    """bert-tensorflow 1.0.4's modeling.py writes its dense layers and attention as Einsum;
    inside this block it builds the MatMul graph of Google's modules instead."""
    modeling.tf = MatMulEinsum()
    try:
        yield
    finally:
        modeling.tf = tf


def bert_module_fn(bert_config, vocab_file, do_lower_case, seed=0):
    """The module_fn for hub.create_module_spec: BERT plus the two signatures. The
    initializers are seeded in the module's own graph (a seed set where the module is
    instantiated does not reach them), so the same seed gives the same random weights."""
    def module_fn(is_training):
        tf.set_random_seed(seed)
        input_ids = tf.placeholder(tf.int32, [None, None], name="input_ids")
        input_mask = tf.placeholder(tf.int32, [None, None], name="input_mask")
        segment_ids = tf.placeholder(tf.int32, [None, None], name="segment_ids")
        with matmul_layers():
            model = modeling.BertModel(
                config=bert_config, is_training=is_training, input_ids=input_ids,
                input_mask=input_mask, token_type_ids=segment_ids)
        hub.add_signature(
            name="tokens",
            inputs=dict(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids),
            outputs=dict(pooled_output=model.get_pooled_output(),
                         sequence_output=model.get_sequence_output()))
        vocab = tf.constant(vocab_file)
        tf.add_to_collection(tf.GraphKeys.ASSET_FILEPATHS, vocab)  # copied into assets/
        hub.add_signature(
            name="tokenization_info", inputs={},
            outputs=dict(vocab_file=vocab, do_lower_case=tf.constant(do_lower_case)))
    return module_fn


def export_module(output_dir, bert_config, vocab_file, do_lower_case,
                  init_checkpoint=None, seed=0):
    """Export the module to `output_dir`, with the weights of `init_checkpoint`
    (variables named bert/... as in Google's releases) or random ones."""
    if tf.io.gfile.exists(output_dir) and tf.io.gfile.listdir(output_dir):
        raise FileExistsError(
            "%s exists and is not empty; choose a new folder for the module." % output_dir)
    spec = hub.create_module_spec(
        bert_module_fn(bert_config, vocab_file, do_lower_case, seed),
        tags_and_args=[({"train"}, {"is_training": True}), (set(), {"is_training": False})])
    with tf.Graph().as_default():
        module = hub.Module(spec)
        if init_checkpoint:
            tf.train.init_from_checkpoint(init_checkpoint, dict(module.variable_map))
        # On the CPU: a config-less session would take nearly all of GPU 0 for as long as
        # its process lives (make gpu-check's, the tests'), and exporting needs no GPU.
        with tf.Session(config=tf.ConfigProto(device_count={"GPU": 0})) as sess:
            sess.run(tf.global_variables_initializer())
            module.export(output_dir, sess)


CHECKPOINT_FILES = ("bert_config.json", "vocab.txt", "bert_model.ckpt.index")


def checkpoint_folder(folder):
    """The folder holding Google's checkpoint files: `folder` itself, or its only subfolder
    (BERT-Base's zip has its files in one folder, the small BERTs' zips at the top)."""
    if os.path.isfile(os.path.join(folder, "bert_config.json")):
        return folder
    entries = [os.path.join(folder, name) for name in os.listdir(folder)
               if not name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and os.path.isdir(entries[0]):
        return entries[0]
    return folder


def export_google_checkpoint(checkpoint, output_dir, do_lower_case=True):
    """Export one of Google's BERT checkpoints: a zip as Google publishes them, or the
    folder unzipped from it (bert_config.json, bert_model.ckpt.*, vocab.txt at its top
    or in its only subfolder)."""
    if not os.path.exists(checkpoint):
        raise FileNotFoundError("%s does not exist: give the checkpoint zip or the folder "
                                "unzipped from it." % checkpoint)
    with tempfile.TemporaryDirectory() as unzipped:
        folder = checkpoint
        if zipfile.is_zipfile(checkpoint):
            with zipfile.ZipFile(checkpoint) as archive:
                archive.extractall(unzipped)
            folder = unzipped
        elif os.path.isfile(checkpoint):
            raise ValueError("%s is neither a zip nor a folder: give Google's checkpoint "
                             "zip (e.g. uncased_L-12_H-768_A-12.zip) or the folder unzipped "
                             "from it." % checkpoint)
        export_checkpoint_folder(checkpoint_folder(folder), checkpoint, output_dir,
                                 do_lower_case)


def export_checkpoint_folder(folder, source, output_dir, do_lower_case):
    """Export the checkpoint files in `folder` (unzipped from `source`, which errors name)."""
    missing = [name for name in CHECKPOINT_FILES
               if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(
            "%s is not a Google BERT checkpoint: missing %s. Give Google's checkpoint zip "
            "(e.g. uncased_L-12_H-768_A-12.zip) or the folder unzipped from it."
            % (source, ", ".join(missing)))
    bert_config = modeling.BertConfig.from_json_file(os.path.join(folder, "bert_config.json"))
    export_module(output_dir, bert_config, os.path.abspath(os.path.join(folder, "vocab.txt")),
                  do_lower_case, init_checkpoint=os.path.join(folder, "bert_model.ckpt"))


def export_random(output_dir, layers, hidden, heads, intermediate_size=None,
                  max_position_embeddings=512, vocab_file=None, do_lower_case=True, seed=0):
    """Export a randomly initialised BERT of the given size; a tiny vocab is generated
    (and carried into the module's assets) unless `vocab_file` is given."""
    with tempfile.TemporaryDirectory() as tmp:
        if vocab_file is None:
            vocab_file = os.path.join(tmp, "vocab.txt")
            with open(vocab_file, "w", encoding="utf-8") as f:
                f.write("\n".join(tiny_vocab()) + "\n")
        with open(vocab_file, encoding="utf-8") as f:
            vocab_size = sum(1 for _ in f)
        bert_config = modeling.BertConfig(
            vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=intermediate_size or 4 * hidden,
            max_position_embeddings=max_position_embeddings)
        export_module(output_dir, bert_config, os.path.abspath(vocab_file), do_lower_case,
                      seed=seed)
    return bert_config


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", help="folder to write the module to (new or empty)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--google-checkpoint", metavar="ZIP_OR_DIR",
                        help="Google's checkpoint zip, or the folder unzipped from it "
                             "(bert_config.json, bert_model.ckpt.*, vocab.txt at its top "
                             "or in its only subfolder)")
    source.add_argument("--random", action="store_true",
                        help="random weights of the size given below")
    parser.add_argument("--cased", action="store_true",
                        help="the vocab is cased (do_lower_case=False); default uncased")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--intermediate-size", type=int, default=None,
                        help="default 4 x hidden")
    parser.add_argument("--max-position-embeddings", type=int, default=512)
    parser.add_argument("--vocab-file", default=None,
                        help="with --random: vocab to use; default a generated tiny one")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.google_checkpoint:
            export_google_checkpoint(args.google_checkpoint, args.output_dir,
                                     do_lower_case=not args.cased)
        else:
            export_random(args.output_dir, args.layers, args.hidden, args.heads,
                          args.intermediate_size, args.max_position_embeddings,
                          args.vocab_file, not args.cased, args.seed)
    except (FileExistsError, FileNotFoundError, ValueError, zipfile.BadZipFile) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("Hub module written to %s; use it with: python train.py --bert-hub %s"
          % (args.output_dir, shlex.quote(os.path.abspath(args.output_dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
