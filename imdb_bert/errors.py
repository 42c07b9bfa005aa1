"""The errors the scripts turn into a plain message and exit code 2: UserError, a full disk
and running out of (GPU) memory."""
import sys

# What the run is doing, for the messages of errors raised deep inside TensorFlow:
# device, batch_size, max_seq_length (device.py), output_dir and sizes (disk_space.py).
CONTEXT = {}


class UserError(Exception):
    """Something the user can fix: the message says what was wrong and what to do."""


def run_script(main):
    """Run a script's main(): a UserError, a full disk or an out-of-memory error becomes a
    message on stderr and exit code 2, without a traceback."""
    from imdb_bert import disk_space  # imports output_folder, which imports this module
    try:
        sys.exit(main())
    except UserError as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if disk_space.is_full_disk(e):
            message = disk_space.full_disk_message(e)
        elif type(e).__name__ == "ResourceExhaustedError":
            message = out_of_memory_message(e)
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
    return ("Out of memory on %s at batch size %d and max_seq_length %d (%s). Try a smaller "
            "--batch-size (e.g. %d) or a shorter --max-seq-length (e.g. %d). For train.py, "
            "another batch size or length changes the training, so it needs another "
            "--output-dir (or --do-delete); the checkpoints saved so far are kept."
            % (CONTEXT.get("device", "this device"), batch_size, max_seq_length,
               what[:200], max(1, batch_size // 2), max(8, max_seq_length // 2)))
