"""Whether the checkpoint predict.py is about to serve is the result of a finished training
run. train.py records in model_settings.json the planned final step before training and,
once early stopping has ended training, the step it ended at. Whether an unfinished run is
still running or was interrupted (by a signal, a crash, or a kill -9 that leaves no record)
is told by whether a train.py holds the folder's lock (folder_lock.py), read from
/proc/locks without taking the lock: a train.py that starts meanwhile never finds it taken.

No TensorFlow here: predict.py's ONNX path does not load it."""
import os
import sys

from imdb_bert.errors import UserError
from imdb_bert.output import files, run_settings
from imdb_bert.output.folder_lock import LOCK_FILE

PLANNED_STEPS = "num_train_steps"  # model_settings.json keys, written by train.py
EARLY_STOPPING_STEP = "early_stopping_step"


def record_plan(output_dir, num_train_steps):
    """Before training: the planned final step, in model_settings.json."""
    record(output_dir, PLANNED_STEPS, num_train_steps)


def record_early_stop(output_dir, step):
    """Early stopping ended training at `step`: the run is finished short of its plan."""
    record(output_dir, EARLY_STOPPING_STEP, step)


def record(output_dir, key, value):
    settings = run_settings.read_settings(output_dir) or {}
    files.write_json(os.path.join(output_dir, files.MODEL_SETTINGS),
                     dict(settings, **{key: value}))


def lock_holder(output_dir):
    """(held, PID): whether a process holds the flock on output_dir/train.lock, and the PID
    the file names; held is None where /proc/locks cannot tell (not Linux, gs://)."""
    path = os.path.join(output_dir, LOCK_FILE)
    if files.is_remote(output_dir):
        return None, None
    try:
        status = os.stat(path)
        with open(path) as f:
            pid = f.read().strip() or None
    except OSError:
        return False, None  # no lock file: no train.py has run here since the notebook
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, pid
    # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2164134 0 EOF"; waiters have "->" after the id.
    for fields in (line.split() for line in lines):
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        device, _, inode = fields[5].rpartition(":")
        if inode != str(status.st_ino):
            continue
        # The device in hex major:minor; on overlayfs stat may give another device than the
        # kernel's, so the PID the lock file names also identifies it.
        if device == "%02x:%02x" % (os.major(status.st_dev), os.minor(status.st_dev)) or \
                fields[4] == pid:
            return True, pid
    return False, pid


def run_state(output_dir):
    """(how the run that writes output_dir stands, what to do about it)."""
    held, pid = lock_holder(output_dir)
    if held:
        return ("its run is still running (train.py PID %s holds %s)" % (pid, LOCK_FILE),
                "wait for it to finish")
    again = "run train.py with the same flags again to finish it (it resumes)"
    if held is None:
        return "its run was interrupted or is still running (this system cannot tell)", again
    return "its run was interrupted (no train.py holds %s)" % LOCK_FILE, again


def check_trained(output_dir, checkpoint, settings, allow_untrained):
    """Refuse a step-0 checkpoint (untrained) unless `allow_untrained`; say in one line on
    stderr when `checkpoint` comes from a run short of its planned final step. A run that
    early stopping ended, and its --keep-best step, are finished."""
    step = files.checkpoint_step(checkpoint)
    planned = settings.get(PLANNED_STEPS)
    latest = files.latest_checkpoint(output_dir)
    reached = files.checkpoint_step(latest) if latest else step
    finished = settings.get(EARLY_STOPPING_STEP) is not None or (
        planned is not None and reached >= planned)
    if step > 0 and (finished or planned is None):
        return
    of_planned = " of %d planned" % planned if planned is not None else ""
    state, what_to_do = run_state(output_dir)
    if step == 0 and not allow_untrained:
        raise UserError("%s is step 0%s: the model is untrained; %s. For a trained "
                        "model, %s; or pass --allow-untrained to predict with it anyway."
                        % (checkpoint, of_planned, state, what_to_do))
    print("Warning: %s is step %d%s, an unfinished model: %s; for the trained one, %s."
          % (checkpoint, step, of_planned, state, what_to_do), file=sys.stderr)
