"""What a run recorded in its output folder: model_settings.json (what the checkpoints were
trained with: written by train.py, checked on resume and --eval-only, read by predict.py)
and run_info.json (flags, versions, device, times and the outcome)."""
import os
import subprocess
import sys

import config
from imdb_bert.errors import UserError
from imdb_bert.output.files import (MODEL_SETTINGS, REPOSITORY, RUN_INFO, has_checkpoints,
                                    is_remote, read_json, remove, write_json)

# model_settings.json: what the checkpoints were trained with. These keys must not change
# while checkpoints exist (a key an older file lacks is no change, unless OLDER_RUNS_HAD
# says what its run had); predict.py rebuilds the model from them. --eval-only checks (and
# records) only what evaluation depends on, and may evaluate another test set.
EVALUATION_SETTINGS = ("bert_hub", "max_seq_length", "label_list", "label_names",
                       "do_lower_case", "seed", "data_dir", "truncate",
                       # a run on the user's files (--train-file) records these too
                       "text_column", "label_column", "positive_label", "task",
                       "text_pair_column", "threshold", "label_separator")
TEST_SET_SETTINGS = ("test_samples", "test_file_sha256")
TRAINING_SETTINGS = ("train_samples", "validation_samples", "eval_every_steps", "keep_best",
                     "early_stopping_patience", "epochs", "batch_size", "learning_rate",
                     "warmup_proportion", "use_amp", "processes", "group_by_length",
                     "train_file_sha256", "validation_file_sha256",
                     "gradient_accumulation_steps")
# What every run had before its key was recorded (predict.py reads a missing key so too).
OLDER_RUNS_HAD = {"truncate": "head", "task": "single-label", "text_pair_column": None,
                  "threshold": None, "label_separator": None, "group_by_length": False,
                  "gradient_accumulation_steps": 1}
PACKAGES = ("tensorflow", "tensorflow-hub", "bert-tensorflow", "tf-slim", "numpy", "pandas",
            "scikit-learn", "matplotlib")


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
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "group_by_length": args.group_by_length,
    }
    if args.train_file:  # the labels come from the files, once read (labels.py)
        from imdb_bert.data import text_files  # train.py only: predict.py needs no pandas here
        del settings["label_list"], settings["label_names"]
        settings.update(text_files.settings(args), task=args.task,
                        text_pair_column=args.text_pair_column, threshold=args.threshold,
                        label_separator=args.label_separator)
    if args.eval_only:
        return {key: settings[key] for key in EVALUATION_SETTINGS if key in settings}
    return settings


def notebook_settings(bert_hub, max_seq_length):
    """What predict.py needs of a folder the notebook wrote (it has no settings file)."""
    return {"bert_hub": bert_hub, "max_seq_length": max_seq_length or config.MAX_SEQ_LENGTH,
            "label_list": config.label_list, "label_names": config.LABEL_NAMES}


def check_settings(output_dir, settings, eval_only=False):
    """Stop before touching checkpoints that were trained with other settings."""
    path = os.path.join(output_dir, MODEL_SETTINGS)
    previous = read_json(path)
    if previous is None:
        return
    previous = dict(OLDER_RUNS_HAD, **previous)
    changed = [key for key in EVALUATION_SETTINGS + TEST_SET_SETTINGS + TRAINING_SETTINGS
               if key in settings and key in previous and previous[key] != settings[key]]
    if changed and not has_checkpoints(output_dir):
        # A run that stopped before its first checkpoint: nothing of it to keep.
        remove(path)
        print("Replacing %s: it was written for other settings (%s), but no checkpoint was "
              "saved beside it." % (path, ", ".join(changed)))
    elif changed:
        # --eval-only wants the checkpoints as they are: no advice that deletes them.
        way_out = ("Pass the values the model was trained with (the first of each pair), "
                   "or the --output-dir of a run trained with these." if eval_only else
                   "Pass another --output-dir, rerun with the old values, or add --do-delete.")
        raise UserError(
            "%s was written for other settings (%s), so its checkpoints do not fit this run. "
            "%s" % (path, "; ".join("%s: %r now %r" % (k, previous.get(k), settings[k])
                                    for k in changed), way_out))


def write_settings(output_dir, settings, eval_only=False):
    """Check `settings` against the folder's model_settings.json, then record them (over
    the recorded ones: --eval-only leaves the training settings as they were)."""
    check_settings(output_dir, settings, eval_only)
    path = os.path.join(output_dir, MODEL_SETTINGS)
    write_json(path, dict(read_json(path) or {}, **settings))


def other_test_set(output_dir, args):
    """--eval-only on another test set than the one the run was trained with (another
    --test-file or --test-samples): the name its result files carry (files.result_file),
    the file's name without its extension, or aclImdb_test, with -N for a sample of N;
    None for the run's own test set."""
    recorded = read_settings(output_dir) or {}
    test_set = {"test_samples": args.test_samples}
    name = "aclImdb_test"
    if args.train_file:
        from imdb_bert.data import text_files  # as in model_settings: no pandas for predict.py
        test_set["test_file_sha256"] = text_files.file_sha256(args.test_file)
        name = os.path.splitext(os.path.basename(args.test_file))[0]
    if all(recorded.get(key, value) == value for key, value in test_set.items()):
        return None
    return name if args.test_samples is None else "%s-%d" % (name, args.test_samples)


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
    # Imported here: importlib.metadata (and the email package it loads) is train.py's
    # only, and costs predict.py's start-up 15-40 ms.
    from importlib import metadata
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
