"""Data-parallel training with Horovod (train.py --horovod), one process per GPU.

Each process builds the ordinary single-GPU graph, so hub.Module works unchanged (it does
not under tf.distribute strategies). Every process reads its own slice of each global
batch (--batch-size rows of batch-size x processes), the optimizer averages the gradients
across processes before clipping (optimizer.py), the variables start from rank 0's, and
only rank 0 writes to the output dir.
"""
import functools
import os
import sys

import tqdm

from compat import run_classifier, tf
from errors import UserError

INSTALL_HINT = (
    "--horovod needs Horovod built with TensorFlow support, and it cannot be imported here "
    "(%s). Install it into this project's environment with: make horovod (builds horovod "
    "0.28.1 from source in 3-7 minutes; needs cmake and g++). See "
    "requirements-horovod.txt for the pip command.")


def check_launch(horovod_flag):
    """Refuse a run that horovodrun (or mpirun) started several times without --horovod:
    each process would train alone and all would write the same output dir."""
    for variable in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        size = os.environ.get(variable, "1")
        if not horovod_flag and size.isdigit() and int(size) > 1:
            raise UserError("This is one of %s processes (%s=%s) but --horovod is not set, so "
                            "each would train alone and write the same output dir. Add "
                            "--horovod, or run python train.py without horovodrun."
                            % (size, variable, size))


def init():
    """horovod.tensorflow, initialised; a UserError saying how to install it if missing."""
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise UserError(INSTALL_HINT % error) from None
    hvd.init()
    return hvd


def quiet_worker():
    """Ranks other than 0 print nothing on stdout, log no INFO lines and draw no progress
    bars (rank 0 reports for all of them); their warnings and errors still reach stderr."""
    sys.stdout = open(os.devnull, "w")
    tf.logging.set_verbosity(tf.logging.WARN)
    tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)


def pin_to_local_gpu(session_config, hvd):
    """The session config with this process's GPU (its local rank) as the only one it
    sees; unchanged on a machine without GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return session_config
    if hvd.local_rank() >= len(gpus):
        raise UserError("Horovod process %d (local rank %d) has no GPU of its own: this "
                        "machine has %d. Start at most that many processes per machine "
                        "(horovodrun -np / -H host:N)." % (hvd.rank(), hvd.local_rank(),
                                                           len(gpus)))
    session_config = session_config or tf.ConfigProto()
    session_config.gpu_options.visible_device_list = str(hvd.local_rank())
    return session_config


def from_rank_0(hvd, value, session_config, name):
    """Rank 0's `value`, on every process. Every process waits here until all arrive,
    so it also serves as a barrier."""
    with tf.Graph().as_default(), tf.Session(config=session_config) as session:
        return hvd.broadcast_object(value, root_rank=0, session=session, name=name)


def barrier(hvd, session_config):
    """Returns once every process has called it."""
    from_rank_0(hvd, None, session_config, "barrier")


def average_across_processes(hvd):
    """A function mapping a list of tensors to their averages over all processes."""
    def average(tensors):
        return hvd.grouped_allreduce(list(tensors), op=hvd.Average)
    return average


def sharded_input_fn_builder(features, seq_length, rank, processes):
    """run_classifier's training input_fn over global batches of params["batch_size"] x
    `processes` reviews, of which this process keeps rows [rank x batch_size, (rank + 1) x
    batch_size). The shuffle takes its seed from the graph's (RunConfig's tf_random_seed),
    so every process sees the same global batches."""
    global_input_fn = run_classifier.input_fn_builder(features, seq_length, is_training=True,
                                                      drop_remainder=True)

    def input_fn(params):
        batch_size = params["batch_size"]
        start = rank * batch_size
        global_batches = global_input_fn({"batch_size": batch_size * processes})
        return global_batches.map(lambda batch: {name: column[start:start + batch_size]
                                                 for name, column in batch.items()})

    return input_fn
