"""The output folder (OUTPUT_Bert by default): the name of every file the project writes
there, atomic writes, model_settings.json (written by train.py, checked on resume, read by
predict.py), run_info.json, what --do-delete may remove, and finding the newest export.

Local folders are handled without TensorFlow, so a prediction path that does not load it
stays possible; gs:// folders (--bucket) go through TensorFlow's file system layer.
"""
import codecs
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata

import config
from imdb_bert.errors import UserError
from imdb_bert.output.folder_lock import LOCK_FILE

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What train.py (and the Estimator) write into the output folder.
MODEL_SETTINGS = "model_settings.json"
EVAL_RESULTS = "eval_results.json"
RUN_INFO = "run_info.json"
TEST_PREDICTIONS = "test_predictions.csv"
CONFUSION_MATRIX = "confusion_matrix.png"
ROC_CURVE = "roc_curve.png"
EXPORT = "export"  # export/<timestamp>/: the SavedModel predict.py loads
EXPORT_INFO = "export_info.json"  # in export/<timestamp>/assets.extra/
VALIDATION_HISTORY = "validation_history.json"
LEARNING_CURVES = "learning_curves.png"
BEST_CHECKPOINT = "best_checkpoint.json"  # --keep-best: the step kept, and where
BEST_CHECKPOINT_DIR = "best"
CHECKPOINT_INDEX = "checkpoint"
ESTIMATOR_NAMES = (CHECKPOINT_INDEX, "graph.pbtxt", "eval", "eval_validation")
CHECKPOINT_PREFIX = "model.ckpt-"
EVENTS_PREFIX = "events.out.tfevents."
FEATURES_PREFIX = "features-"
GITKEEP = ".gitkeep"  # OUTPUT_Bert/.gitkeep is part of the repository

# What --do-delete may remove: only what this project (or the Estimator) writes.
PROJECT_OUTPUT_NAMES = ESTIMATOR_NAMES + (
    GITKEEP, EXPORT, MODEL_SETTINGS, EVAL_RESULTS, RUN_INFO, TEST_PREDICTIONS,
    CONFUSION_MATRIX, ROC_CURVE, VALIDATION_HISTORY, LEARNING_CURVES, BEST_CHECKPOINT,
    BEST_CHECKPOINT_DIR, LOCK_FILE)
PROJECT_OUTPUT_PREFIXES = (CHECKPOINT_PREFIX, EVENTS_PREFIX, FEATURES_PREFIX)

# model_settings.json: what the checkpoints were trained with. These keys must not change
# while checkpoints exist (a key an older file lacks is no change, unless OLDER_RUNS_HAD
# says what its run had); predict.py rebuilds the model from them. --eval-only checks (and
# records) only what evaluation depends on.
EVALUATION_SETTINGS = ("bert_hub", "max_seq_length", "label_list", "label_names",
                       "do_lower_case", "seed", "data_dir", "test_samples", "truncate",
                       # a run on the user's files (--train-file) records these too
                       "test_file_sha256", "text_column", "label_column", "positive_label")
TRAINING_SETTINGS = ("train_samples", "validation_samples", "eval_every_steps", "keep_best",
                     "early_stopping_patience", "epochs", "batch_size", "learning_rate",
                     "warmup_proportion", "use_amp", "processes",
                     "train_file_sha256", "validation_file_sha256")
# What every run had before its key was recorded (predict.py reads a missing key so too).
OLDER_RUNS_HAD = {"truncate": "head"}
PACKAGES = ("tensorflow", "tensorflow-hub", "bert-tensorflow", "tf-slim", "numpy", "pandas",
            "scikit-learn", "matplotlib")


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
    with open(tmp, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
        f.write(content)
    os.replace(tmp, path)


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
            "model_settings.json, from this run's flags); or pass --do-delete to start the "
            "folder afresh." % (path, e)) from None


def plain_metrics(result):
    """An evaluation dict with plain types: counts and the step as ints, the rest floats."""
    counts = ("true_positives", "true_negatives", "false_positives", "false_negatives",
              "global_step")
    return {key: int(value) if key in counts else float(value)
            for key, value in result.items()}


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


def model_settings(args, use_amp, runtime):
    """model_settings.json for train.py's flags (do_lower_case comes from the module);
    `use_amp` as it runs (it is ignored on a CPU), and the runtime's processes."""
    settings = {
        "bert_hub": args.bert_hub if is_remote(args.bert_hub)
        else os.path.abspath(args.bert_hub),
        "max_seq_length": args.max_seq_length,
        "truncate": args.truncate,
        "label_list": config.label_list,
        "label_names": config.LABEL_NAMES,
        "seed": args.seed,
        "data_dir": os.path.abspath(args.data_dir),
        "train_samples": args.train_samples,
        "test_samples": args.test_samples,
        "validation_samples": args.validation_samples,
        "eval_every_steps": args.eval_every_steps,
        "keep_best": args.keep_best,
        "early_stopping_patience": args.early_stopping_patience,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "warmup_proportion": args.warmup_proportion,
        "use_amp": use_amp,
        "processes": runtime.processes,
    }
    if args.train_file:  # the labels come from the files, once read (labels.py)
        from imdb_bert.data import text_files  # train.py only: predict.py needs no pandas here
        del settings["label_list"], settings["label_names"]
        settings.update(text_files.settings(args))
    if args.eval_only:
        return {key: settings[key] for key in EVALUATION_SETTINGS if key in settings}
    return settings


def notebook_settings(bert_hub, max_seq_length):
    """What predict.py needs of a folder the notebook wrote (it has no settings file)."""
    return {"bert_hub": bert_hub, "max_seq_length": max_seq_length or config.MAX_SEQ_LENGTH,
            "label_list": config.label_list, "label_names": config.LABEL_NAMES}


def check_settings(output_dir, settings):
    """Stop before touching checkpoints that were trained with other settings."""
    path = os.path.join(output_dir, MODEL_SETTINGS)
    previous = read_json(path)
    if previous is None:
        return
    previous = dict(OLDER_RUNS_HAD, **previous)
    changed = [key for key in EVALUATION_SETTINGS + TRAINING_SETTINGS
               if key in settings and key in previous and previous[key] != settings[key]]
    if changed and not has_checkpoints(output_dir):
        # A run that stopped before its first checkpoint: nothing of it to keep.
        remove(path)
        print("Replacing %s: it was written for other settings (%s), but no checkpoint was "
              "saved beside it." % (path, ", ".join(changed)))
    elif changed:
        raise UserError(
            "%s was written for other settings (%s), so its checkpoints do not fit this run. "
            "Pass another --output-dir, rerun with the old values, or add --do-delete."
            % (path, "; ".join("%s: %r now %r" % (k, previous.get(k), settings[k])
                               for k in changed)))


def has_checkpoints(output_dir):
    """Whether `output_dir` holds a checkpoint (or its index, or the kept best one)."""
    return any(name == CHECKPOINT_INDEX or name == BEST_CHECKPOINT_DIR
               or name.startswith(CHECKPOINT_PREFIX) for name in listdir(output_dir))


def write_settings(output_dir, settings):
    """Check `settings` against the folder's model_settings.json, then record them (over
    the recorded ones: --eval-only leaves the training settings as they were)."""
    check_settings(output_dir, settings)
    path = os.path.join(output_dir, MODEL_SETTINGS)
    write_json(path, dict(read_json(path) or {}, **settings))


def read_settings(output_dir):
    """The folder's model_settings.json, or None (a folder the notebook wrote)."""
    return read_json(os.path.join(output_dir, MODEL_SETTINGS))


class RunRecord:
    """run_info.json: flags, versions, device, processes, commit, times and the outcome
    ("running", "completed", "interrupted at step N")."""

    def __init__(self, output_dir, args, device_line, runtime, start_time):
        self.path = os.path.join(output_dir, RUN_INFO)
        self.fields = {"flags": vars(args), "seed": args.seed,
                       "python": sys.version.split()[0],
                       "packages": {package: package_version(package) for package in PACKAGES},
                       "device": device_line, "processes": runtime.processes,
                       "git_commit": git_commit(),
                       "start_time": start_time.isoformat(timespec="seconds")}

    def write(self, outcome, end_time=None):
        write_json(self.path, dict(
            self.fields, outcome=outcome,
            end_time=end_time.isoformat(timespec="seconds") if end_time else None))


def package_version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit():
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=REPOSITORY).stdout.strip()
    except OSError:
        commit = ""
    return commit or None


def check_deletable(output_dir, data_dir):
    """Refuse --do-delete of a folder that is not only this project's output."""
    target = os.path.realpath(output_dir)
    forbidden = {"/", os.path.expanduser("~"), REPOSITORY, os.path.realpath(data_dir)}
    if target in {os.path.realpath(p) for p in forbidden}:
        raise UserError("Refusing --do-delete of %s: it is not an output folder. Pass "
                        "--output-dir with the folder to delete." % output_dir)
    foreign = [name for name in listdir(output_dir)
               if name.split(".tmp-")[0] not in PROJECT_OUTPUT_NAMES  # or a temporary file
               and not name.startswith(PROJECT_OUTPUT_PREFIXES)]
    if foreign:
        raise UserError("Refusing --do-delete of %s: it holds files this project did not "
                        "write (%s). Move them away or delete the folder yourself."
                        % (output_dir, ", ".join(sorted(foreign)[:5])))


def delete_contents(output_dir):
    """--do-delete, after check_deletable: everything in `output_dir` but the lock of this
    run and the repository's .gitkeep."""
    for name in listdir(output_dir):
        if name in (LOCK_FILE, GITKEEP):
            continue
        remove(os.path.join(output_dir, name))


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


def remove_leftovers(output_dir):
    """Delete what killed runs leave: temporary files (*.tmp-*), unfinished exports
    (export/temp-*) and checkpoint folders (*_temp). Call it only under the folder's lock,
    so no running process owns them."""
    found = []
    for folder in (output_dir, export_root(output_dir),
                   os.path.join(output_dir, BEST_CHECKPOINT_DIR)):
        if not isdir(folder):
            continue
        found += [os.path.join(folder, name) for name in listdir(folder)
                  if ".tmp-" in name or name.endswith("_temp")
                  or (folder != output_dir and name.startswith("temp-"))]
    found += [path for path in unrecorded_best_files(output_dir) if path not in found]
    for path in found:
        remove(path)
    if found:
        print("Removed what an interrupted run left in %s: %s"
              % (output_dir, ", ".join(os.path.relpath(p, output_dir) for p in found)))


def unrecorded_best_files(output_dir):
    """The files of best/ that best_checkpoint.json does not name: an earlier best's, when
    a run was killed after keep_checkpoint recorded a new one and before it removed them."""
    recorded = best_checkpoint(output_dir)
    folder = os.path.join(output_dir, BEST_CHECKPOINT_DIR)
    if recorded is None or not isdir(folder):
        return []
    prefix = os.path.basename(recorded) + "."
    return [os.path.join(folder, name) for name in listdir(folder)
            if not name.startswith(prefix)]


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
    """The TFRecord file of cached features of `split` ("train" or "test") under `key`."""
    return os.path.join(output_dir, "%s%s-%s.tf_record" % (FEATURES_PREFIX, split, key))
