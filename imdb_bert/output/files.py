"""The output folder (OUTPUT_Bert by default): the name of every file the project writes
there, atomic writes and reads, and finding the checkpoints and the newest export. What the
run recorded is run_settings.py's; what --do-delete and a rerun remove, cleanup.py's.

Local folders are handled without TensorFlow, so a prediction path that does not load it
stays possible; gs:// folders (--bucket) go through TensorFlow's file system layer.
"""
import codecs
import json
import os
import re
import shutil
import sys

from imdb_bert.errors import UserError

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What train.py (and the Estimator) write into the output folder.
MODEL_SETTINGS = "model_settings.json"
EVAL_RESULTS = "eval_results.json"
RUN_INFO = "run_info.json"
TEST_PREDICTIONS = "test_predictions.csv"
CONFUSION_MATRIX = "confusion_matrix.png"
ROC_CURVE = "roc_curve.png"
LABEL_F1 = "label_f1.png"  # multi-label
REGRESSION_SCATTER = "regression_scatter.png"
EXPORT = "export"  # export/<timestamp>/: the SavedModel predict.py loads
EXPORT_INFO = "export_info.json"  # in export/<timestamp>/assets.extra/
VALIDATION_HISTORY = "validation_history.json"
LEARNING_CURVES = "learning_curves.png"
BEST_CHECKPOINT = "best_checkpoint.json"  # --keep-best: the step kept, and where
BEST_CHECKPOINT_DIR = "best"
CALIBRATION = "calibration.json"  # with validation: the temperature predict.py applies
RELIABILITY_DIAGRAM = "reliability_diagram.png"
CHECKPOINT_INDEX = "checkpoint"
ESTIMATOR_NAMES = (CHECKPOINT_INDEX, "graph.pbtxt", "eval", "eval_validation",
                   "eval_calibration")
CHECKPOINT_PREFIX = "model.ckpt-"
EVENTS_PREFIX = "events.out.tfevents."
FEATURES_PREFIX = "features-"
GITKEEP = ".gitkeep"  # OUTPUT_Bert/.gitkeep is part of the repository
# What an evaluation writes; for another test set than the run's own, named for it.
RESULT_FILES = (EVAL_RESULTS, TEST_PREDICTIONS, CONFUSION_MATRIX, ROC_CURVE, LABEL_F1,
                REGRESSION_SCATTER, RELIABILITY_DIAGRAM)


def result_file(name, test_set=None):
    """The file name of a result (one of RESULT_FILES) of the run's own test set (None),
    or of another test set that --eval-only evaluated: eval_results-<test set>.json."""
    if test_set is None:
        return name
    stem, extension = os.path.splitext(name)
    return "%s-%s%s" % (stem, test_set, extension)


def is_result_of_another_test_set(name):
    """Whether `name` is a result_file() of a test set other than the run's own."""
    return any(name.startswith(os.path.splitext(result)[0] + "-")
               and name.endswith(os.path.splitext(result)[1]) for result in RESULT_FILES)


def is_remote(path):
    return "://" in path


def gfile():
    """TensorFlow's file system layer, for gs:// folders; imported only when needed."""
    from imdb_bert.compat import tf
    return tf.io.gfile


def exists(path):
    return gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path):
    return gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def listdir(path):
    if is_remote(path):
        return [name.rstrip("/") for name in gfile().listdir(path)]
    return os.listdir(path)


def makedirs(path):
    if is_remote(path):
        gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def check_output_dir(output_dir):
    """Before anything is written: a UserError when `output_dir` cannot be the run's folder,
    an existing file (or inside one) or a place this user cannot write to (a read-only file
    system; root may write where permissions say no)."""
    if exists(output_dir) and not isdir(output_dir):
        raise UserError("--output-dir %s is a file, not a folder. Pass the folder train.py "
                        "should write (it is created if missing)." % output_dir)
    if is_remote(output_dir):
        return
    nearest = os.path.abspath(output_dir)  # the folder itself, or its nearest existing parent
    while not os.path.exists(nearest):
        nearest = os.path.dirname(nearest)
    if not os.path.isdir(nearest):
        raise UserError("--output-dir %s is inside %s, which is a file, not a folder. Pass "
                        "another --output-dir." % (output_dir, nearest))
    if not os.access(nearest, os.W_OK | os.X_OK):
        why = ("is on a read-only file system" if os.statvfs(nearest).f_flag & os.ST_RDONLY
               else "is not writable by this user")
        raise UserError("--output-dir %s cannot be written: %s %s. Pass an --output-dir on a "
                        "writable disk." % (output_dir, nearest, why))


def write_file(path, content):
    """Write `content` (str or bytes) to `path` atomically (a temporary file, then a
    rename), so an interrupted run never leaves half a file behind."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    mode = "wb" if isinstance(content, bytes) else "w"
    if is_remote(path):
        with gfile().GFile(tmp, mode) as f:
            f.write(content)
        gfile().rename(tmp, path, overwrite=True)
        return
    try:
        with open(tmp, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(content)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # the write failed (a full disk): no half file left
            os.remove(tmp)


def write_json(path, obj):
    write_file(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


class UnreadableFile(UserError):
    """A JSON file of the output folder that is damaged."""


def read_json(path):
    """The JSON object at `path`, or None when there is no such file; UnreadableFile (a
    message saying what to do) when it is damaged."""
    if not exists(path):
        return None
    try:
        if is_remote(path):
            with gfile().GFile(path) as f:
                return json.load(f)
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:  # not UTF-8, or not JSON
        raise UnreadableFile(
            "%s is damaged (%s). Move it away and run again: train.py writes it anew (for "
            "model_settings.json, from this run's flags)." % (path, e)) from None


def best_checkpoint(output_dir):
    """The checkpoint --keep-best recorded (best_checkpoint.json), or None."""
    recorded = read_json(os.path.join(output_dir, BEST_CHECKPOINT))
    return os.path.join(output_dir, recorded["checkpoint"]) if recorded else None


def latest_checkpoint(output_dir):
    """What tf.train.latest_checkpoint(output_dir) returns, read from the folder's
    "checkpoint" file without TensorFlow for a local folder: the newest checkpoint's path
    prefix if its .index file exists, else None."""
    if is_remote(output_dir):
        from imdb_bert.compat import tf
        return tf.train.latest_checkpoint(output_dir)
    try:
        with open(os.path.join(output_dir, "checkpoint"), "rb") as f:
            text = f.read()
    except OSError:
        return None
    # A text-format CheckpointState: model_checkpoint_path: "<C-escaped path>"
    match = re.search(rb'^model_checkpoint_path: "((?:[^"\\]|\\.)*)"', text, re.M)
    if not match:
        return None
    path = codecs.escape_decode(match.group(1))[0].decode("utf-8")
    path = os.path.join(output_dir, path)  # a path that was absolute stays as it was
    return path if os.path.exists(path + ".index") else None


def checkpoint_step(checkpoint_path):
    """468 for .../model.ckpt-468."""
    return int(checkpoint_path.rsplit("-", 1)[1])


def has_checkpoints(output_dir):
    """Whether `output_dir` holds a checkpoint (or its index, or the kept best one)."""
    return any(name == CHECKPOINT_INDEX or name == BEST_CHECKPOINT_DIR
               or name.startswith(CHECKPOINT_PREFIX) for name in listdir(output_dir))


def remove(path):
    """Delete the file or folder at `path`."""
    if is_remote(path):
        if gfile().isdir(path):
            gfile().rmtree(path)
        else:
            gfile().remove(path)
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def export_root(output_dir):
    return os.path.join(output_dir, EXPORT)


def newest_export(output_dir):
    """(folder, export info) of the newest export in output_dir, or (None, None)."""
    for folder in reversed(export_folders(output_dir)):
        try:
            info = read_json(os.path.join(folder, "assets.extra", EXPORT_INFO))
        except UnreadableFile:
            print("Skipping the damaged export %s (its %s cannot be read)."
                  % (folder, EXPORT_INFO), file=sys.stderr)
            continue
        if info is not None:
            return folder, info
    return None, None


def export_folders(output_dir):
    """The complete export folders (export/<timestamp>/), oldest first."""
    root = export_root(output_dir)
    if not isdir(root):
        return []
    stamps = sorted((name for name in listdir(root) if name.isdigit()), key=int)
    return [os.path.join(root, stamp) for stamp in stamps]


def remove_old_exports(output_dir, keep):
    """Delete all but the `keep` newest exports (BERT-Base's take 440 MB each)."""
    for folder in export_folders(output_dir)[:-keep]:
        remove(folder)


def features_file(output_dir, split, key):
    """The TFRecord file of cached features of `split` ("train", "validation" or "test")
    under `key`."""
    return os.path.join(output_dir, "%s%s-%s.tf_record" % (FEATURES_PREFIX, split, key))
