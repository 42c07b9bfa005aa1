"""Disk space for what train.py writes: before training, a warning when the output folder's
disk lacks the space the planned checkpoints and exports need; when the disk fills anyway,
a message naming the folder and the space a checkpoint takes instead of a traceback.
TensorFlow reports a full disk as ResourceExhaustedError, the class of a GPU's out-of-memory
error too, so it is told apart by its message."""
import errno
import os
import shutil

from imdb_bert.errors import CONTEXT
from imdb_bert.output_folder import CHECKPOINT_PREFIX, export_folders, is_remote

FULL_DISK = "No space left on device"
CHECKPOINTS_KEPT = 5  # RunConfig's keep_checkpoint_max
EXPORTS_KEPT = 2  # serving.export_for_prediction keeps the two newest, writing a third
# A checkpoint holds each weight three times (the weight and Adam's two moments).
COPIES_PER_CHECKPOINT = 3


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def megabytes(size):
    return "%d MB" % max(1, round(size / 1e6))


def check(output_dir, bert_hub, keep_best):
    """Warn when output_dir's disk has less free space than the checkpoints (5 kept, one
    more with --keep-best, and the one written before the oldest goes) and the exports (up
    to 3 at once) of this model still need."""
    if is_remote(output_dir) or is_remote(bert_hub):
        return
    weights = folder_bytes(os.path.join(bert_hub, "variables"))
    sizes = checkpoint_sizes(output_dir)
    checkpoint = max(sizes.values()) if sizes else COPIES_PER_CHECKPOINT * weights
    CONTEXT.update(output_dir=output_dir, checkpoint=checkpoint, export=weights)
    needed = (max(0, CHECKPOINTS_KEPT + keep_best + 1 - len(sizes)) * checkpoint
              + max(0, EXPORTS_KEPT + 1 - len(export_folders(output_dir))) * weights)
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        print("Warning: %s has %s free, but the checkpoints and exports of this model need "
              "about %s more (a checkpoint takes %s, an export %s). Free some space or pass "
              "another --output-dir." % (output_dir, megabytes(free), megabytes(needed),
                                         megabytes(checkpoint), megabytes(weights)))


def checkpoint_sizes(output_dir):
    """{step: bytes} of the checkpoints in output_dir (model.ckpt-N.*)."""
    sizes = {}
    for entry in os.scandir(output_dir):
        if entry.name.startswith(CHECKPOINT_PREFIX) and entry.is_file():
            step = entry.name[len(CHECKPOINT_PREFIX):].split(".")[0]
            sizes[step] = sizes.get(step, 0) + entry.stat().st_size
    return sizes


def is_full_disk(error):
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
        type(error).__name__ == "ResourceExhaustedError" and FULL_DISK in str(error))


def full_disk_message(error):
    """What to tell the user when `error` is a full disk."""
    where = CONTEXT.get("output_dir", "the output folder")
    sizes = ("; a checkpoint of this model takes about %s, an export %s"
             % (megabytes(CONTEXT["checkpoint"]), megabytes(CONTEXT["export"]))
             if "checkpoint" in CONTEXT else "")
    return ("%s while writing to %s%s. Free some space there (or pass another "
            "--output-dir) and run the same command again: the checkpoints saved before "
            "are whole, and training resumes from the latest." % (FULL_DISK, where, sizes))
