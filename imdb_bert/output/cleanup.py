"""What train.py removes from its output folder: everything this project wrote, with
--do-delete (and nothing it did not write), and what killed runs left behind."""
import os

from imdb_bert.errors import UserError
from imdb_bert.output.files import (BEST_CHECKPOINT, BEST_CHECKPOINT_DIR, CALIBRATION,
                                    CHECKPOINT_PREFIX, CONFUSION_MATRIX, ESTIMATOR_NAMES,
                                    EVAL_RESULTS, EVENTS_PREFIX, EXPORT, FEATURES_PREFIX,
                                    GITKEEP, LABEL_F1, LEARNING_CURVES, MODEL_SETTINGS,
                                    REGRESSION_SCATTER, RELIABILITY_DIAGRAM, REPOSITORY,
                                    ROC_CURVE, RUN_INFO, TEST_PREDICTIONS, VALIDATION_HISTORY,
                                    best_checkpoint, export_root,
                                    is_result_of_another_test_set, isdir, listdir, remove)
from imdb_bert.output.folder_lock import LOCK_FILE

# What --do-delete may remove: only what this project (or the Estimator) writes.
PROJECT_OUTPUT_NAMES = ESTIMATOR_NAMES + (
    GITKEEP, EXPORT, MODEL_SETTINGS, EVAL_RESULTS, RUN_INFO, TEST_PREDICTIONS,
    CONFUSION_MATRIX, ROC_CURVE, LABEL_F1, REGRESSION_SCATTER, VALIDATION_HISTORY,
    LEARNING_CURVES, BEST_CHECKPOINT, BEST_CHECKPOINT_DIR, CALIBRATION, RELIABILITY_DIAGRAM,
    LOCK_FILE)
PROJECT_OUTPUT_PREFIXES = (CHECKPOINT_PREFIX, EVENTS_PREFIX, FEATURES_PREFIX)


def check_deletable(output_dir, data_dir):
    """Refuse --do-delete of a folder that is not only this project's output."""
    target = os.path.realpath(output_dir)
    forbidden = {"/", os.path.expanduser("~"), REPOSITORY, os.path.realpath(data_dir)}
    if target in {os.path.realpath(p) for p in forbidden}:
        raise UserError("Refusing --do-delete of %s: it is not an output folder. Pass "
                        "--output-dir with the folder to delete." % output_dir)
    foreign = [name for name in listdir(output_dir)
               if not is_project_output(name.split(".tmp-")[0])]  # or its temporary file
    if foreign:
        raise UserError("Refusing --do-delete of %s: it holds files this project did not "
                        "write (%s). Move them away or delete the folder yourself."
                        % (output_dir, ", ".join(sorted(foreign)[:5])))


def is_project_output(name):
    return (name in PROJECT_OUTPUT_NAMES or name.startswith(PROJECT_OUTPUT_PREFIXES)
            or is_result_of_another_test_set(name))


def delete_contents(output_dir):
    """--do-delete, after check_deletable: everything in `output_dir` but the lock of this
    run and the repository's .gitkeep."""
    for name in listdir(output_dir):
        if name in (LOCK_FILE, GITKEEP):
            continue
        remove(os.path.join(output_dir, name))


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
