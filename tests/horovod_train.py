"""train.py as the Horovod tests run it (horovodrun -np 2 python tests/horovod_train.py
--horovod ...): with the head's dropout off, so that one process and two compute the same
losses, and with a clip norm small enough that clipping binds, so that clipping before
averaging would show."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import config  # noqa: E402
import train  # noqa: E402
from imdb_bert.errors import run_script  # noqa: E402

config.HEAD_DROPOUT_KEEP_PROB = 1.0
config.CLIP_NORM = 0.01

if __name__ == "__main__":
    run_script(train.main)
