"""One train.py per output folder: an exclusive OS lock (flock) on <output dir>/train.lock,
held for the whole run. The lock goes with the process, so a killed run (even kill -9)
leaves no stale lock; the file, which keeps the holder's PID for the message a second run
prints, may stay behind. A gs:// folder cannot be locked this way (docs/reliability.md)."""
import fcntl
import os

from imdb_bert.errors import UserError

LOCK_FILE = "train.lock"
HELD = []  # the open lock files of this process: a lock lasts as long as the process


def lock_output_dir(output_dir):
    """Lock `output_dir` (an existing local folder) for the rest of this process. A
    UserError naming the folder and the PID that holds it when another process has it."""
    path = os.path.join(output_dir, LOCK_FILE)
    lock = open(path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise UserError("%s is in use by another train.py (PID %s): two runs on one folder "
                        "would overwrite each other's checkpoints. Wait for it to end, or "
                        "pass another --output-dir." % (output_dir, holder)) from None
    lock.truncate(0)
    lock.write("%d\n" % os.getpid())
    lock.flush()
    HELD.append(lock)
