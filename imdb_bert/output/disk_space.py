"""Disk space for what train.py writes: before training, a warning when the output folder's
disk lacks the space the planned checkpoints and exports need; the sizes it finds go into
errors.CONTEXT for the full-disk message (errors.py)."""
import os
import shutil

from imdb_bert.errors import CONTEXT, megabytes
from imdb_bert.output.files import CHECKPOINT_PREFIX, export_folders, is_remote

CHECKPOINTS_KEPT = 5  # RunConfig's keep_checkpoint_max
EXPORTS_KEPT = 2  # serving.export.export_for_prediction keeps the two newest, writing a third
# A checkpoint holds each weight three times (the weight and Adam's two moments).
COPIES_PER_CHECKPOINT = 3


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def check(output_dir, bert_hub, keep_best):
    """Warn when output_dir's disk has less free space than the checkpoints (5 kept, one
    more with --keep-best, and the one written before the oldest goes) and the exports (up
    to 3 at once) of this model still need."""
    if is_remote(output_dir) or is_remote(bert_hub):
        return
    weights = folder_bytes(os.path.join(bert_hub, "variables"))
    sizes = checkpoint_sizes(output_dir)
    checkpoint = max(sizes.values()) if sizes else COPIES_PER_CHECKPOINT * weights
    CONTEXT.update(checkpoint=checkpoint, export=weights)  # train.py set output_dir
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
