"""Finding the BERT Hub module: a tfhub.dev URL (downloaded once into a persistent
cache) or a local module folder, e.g. one written by imdb_bert.tools.make_hub_module."""
import os

from google.protobuf.message import DecodeError

from imdb_bert.compat import hub, tf
from imdb_bert.errors import UserError

OFFLINE_ROUTE = (
    "To run offline, download Google's checkpoint zip (e.g. https://storage.googleapis.com/"
    "bert_models/2018_10_18/uncased_L-12_H-768_A-12.zip) where you have network, unzip it "
    "and turn it into a Hub module with: python -m imdb_bert.tools.make_hub_module "
    "--google-checkpoint uncased_L-12_H-768_A-12 bert_uncased_hub; then pass --bert-hub "
    "bert_uncased_hub.")


def cache_dir():
    """TFHUB_CACHE_DIR if set, else a folder under the user's cache dir (tensorflow-hub's
    own default is the temp dir, which the system may empty)."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                           "tfhub_modules")
    return os.environ.setdefault("TFHUB_CACHE_DIR", default)


def is_url(handle):
    return handle.startswith(("http://", "https://", "gs://"))


def resolve(handle):
    """The local folder of the module named by `handle` (a URL or a folder)."""
    if is_url(handle):
        cache_dir()
        try:
            path = hub.resolve(handle)
        except Exception as e:  # hub raises many kinds: network, HTTP, archive errors
            raise UserError("Could not download the Hub module %s (%s: %s). %s"
                            % (handle, type(e).__name__, e, OFFLINE_ROUTE))
    else:
        path = os.path.abspath(handle)
    if not tf.io.gfile.exists(os.path.join(path, "tfhub_module.pb")):
        raise UserError("%s is not a TF1 Hub module (no tfhub_module.pb in it). Pass a "
                        "tfhub.dev BERT URL or a folder written by "
                        "imdb_bert.tools.make_hub_module. %s"
                        % (path, OFFLINE_ROUTE))
    check_files(path)
    return path


def check_files(path):
    """A UserError naming the module folder `path` and what is wrong when its vocab is
    missing or its tfhub_module.pb is not a TF1 module's (hub would raise a bare
    FileNotFoundError, or a DecodeError that does not name the file)."""
    again = ("Copy or export the module again (python -m imdb_bert.tools.make_hub_module), or "
             "for a downloaded one delete that folder so that it is downloaded anew.")
    if not tf.io.gfile.exists(os.path.join(path, "assets", "vocab.txt")):
        raise UserError("The Hub module %s is broken: assets/vocab.txt, its vocab, is "
                        "missing. %s" % (path, again))
    module_def = hub.module_def_pb2.ModuleDef()
    with tf.io.gfile.GFile(os.path.join(path, "tfhub_module.pb"), "rb") as f:
        try:
            module_def.ParseFromString(f.read())
        except DecodeError as e:
            raise UserError("The Hub module %s is broken: its tfhub_module.pb cannot be read "
                            "(%s). %s" % (path, e, again)) from None
    if module_def.format != module_def.FORMAT_V3:
        raise UserError("The Hub module %s is broken: its tfhub_module.pb says format %d, not "
                        "the TF1 Hub format 3. %s" % (path, module_def.format, again))


def position_limit(module_path):
    """The longest sequence the module takes: its number of position embeddings."""
    reader = tf.train.load_checkpoint(os.path.join(module_path, "variables", "variables"))
    return reader.get_variable_to_shape_map()["bert/embeddings/position_embeddings"][0]


def fixed_length(module_path):
    """The sequence length the module's "tokens" signature takes, or None when it takes
    any (input_ids [None, None], as Google's BERT modules and make_hub_module's declare
    theirs): then batches can be padded to their longest member (features/padding.py)."""
    spec = hub.load_module_spec(module_path)
    return spec.get_input_info_dict("tokens")["input_ids"].get_shape().as_list()[1]
