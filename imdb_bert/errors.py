"""The errors the scripts turn into a plain message and exit code 2: UserError, a full disk,
running out of (GPU) memory and a checkpoint without a weight of the model."""
import errno
import re
import sys

# What the run is doing, for the messages of errors raised deep inside TensorFlow:
# device, batch_size, max_seq_length (device.py), output_dir and sizes (output/disk_space.py).
CONTEXT = {}
# TensorFlow reports a full disk as ResourceExhaustedError, the class of a GPU's
# out-of-memory error too, so it is told apart by its message.
FULL_DISK = "No space left on device"


class UserError(Exception):
    """Something the user can fix: the message says what was wrong and what to do."""


def run_script(main):
    """Run a script's main(): a UserError, a full disk or an out-of-memory error becomes a
    message on stderr and exit code 2, without a traceback."""
    try:
        sys.exit(main())
    except UserError as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if is_full_disk(e):
            message = full_disk_message(e)
        elif type(e).__name__ == "ResourceExhaustedError":
            message = out_of_memory_message(e)
        elif weight := missing_weight(e):
            message = missing_weight_message(weight)
        else:
            raise
        print("error: %s" % message, file=sys.stderr)
        sys.exit(2)


def out_of_memory_message(error):
    """What to tell the user when TensorFlow ran out of memory (ResourceExhaustedError that
    is not a full disk)."""
    batch_size = CONTEXT.get("batch_size") or 32
    max_seq_length = CONTEXT.get("max_seq_length") or 128
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    what = next((line for line in lines if "OOM" in line), lines[0] if lines else "")
    where = ("Out of memory on %s at batch size %d and max_seq_length %d (%s)." % (
        CONTEXT.get("device", "this device"), batch_size, max_seq_length, what[:200]))
    if CONTEXT.get("eval_only"):  # the user keeps the model: no advice that deletes it
        return ("%s Try a smaller --batch-size (e.g. %d): --eval-only may use another one "
                "than training did; the checkpoints are kept."
                % (where, max(1, batch_size // 2)))
    return ("%s Try a smaller --batch-size (e.g. %d) or a shorter --max-seq-length (e.g. %d). "
            "For train.py, another batch size or length changes the training, so it needs "
            "another --output-dir (or --do-delete); the checkpoints saved so far are kept."
            % (where, max(1, batch_size // 2), max(8, max_seq_length // 2)))


def missing_weight(error):
    """The weight a checkpoint lacks when restoring it failed on it (NotFoundError), else
    None."""
    found = re.search(r"Key (\S+) not found in checkpoint", str(error))
    return found.group(1) if type(error).__name__ == "NotFoundError" and found else None


def missing_weight_message(weight):
    where = CONTEXT.get("output_dir", "the output folder")
    return ("the checkpoint in %s has no weight %s of this model: it was written by "
            "another model (another --bert-hub, task or label set) or cut short. Run with "
            "the settings it was trained with, or train this model in another --output-dir."
            % (where, weight))


def megabytes(size):
    return "%d MB" % max(1, round(size / 1e6))


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
