"""Who runs train.py: one process, or one of several Horovod processes (--horovod, one per
GPU). train.py asks the runtime, chosen once from the flags, for everything that differs:
the output folder, the session config, the order of the download, the training input_fn,
the gradient averaging, the training hooks, the start step and how training ends.

With Horovod each process builds the ordinary single-GPU graph, so hub.Module works
unchanged (it does not under tf.distribute strategies). Every process reads its own slice
of each global batch (--batch-size rows of batch-size x processes), the optimizer averages
the gradients across processes before clipping (optimizer.py), the variables start from
process 0's, and only process 0 writes to the output folder: the others work in a
temporary folder of their own, removed when they end.
"""
import functools
import os
import shutil
import sys
import tempfile

import tqdm

import config
from imdb_bert import device
from imdb_bert.compat import tf
from imdb_bert.errors import UserError
from imdb_bert.features import feature_cache
from imdb_bert.output.files import checkpoint_step
from imdb_bert.training.hooks import CheckpointSaverHook, StopOnSignalHook, WeightsDigestHook

INSTALL_HINT = (
    "--horovod needs Horovod built with TensorFlow support, and it cannot be imported here "
    "(%s). Install it into this project's environment with: make horovod (builds horovod "
    "0.28.1 from source in 3-7 minutes; needs cmake and g++). See "
    "requirements-horovod.txt for the pip command.")


def start(args):
    """The runtime for these flags. With --horovod --eval-only, process 0 evaluates alone
    and the other processes end here."""
    check_launch(args.horovod)
    if not args.horovod:
        return SingleProcess()
    hvd = init_horovod()
    if args.eval_only:
        if hvd.rank() != 0:
            sys.exit(0)
        return SingleProcess()
    return HorovodProcess(hvd)


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


def init_horovod():
    """horovod.tensorflow, initialised; a UserError saying how to install it if missing."""
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise UserError(INSTALL_HINT % error) from None
    hvd.init()
    if device.pin_gpu(hvd.local_rank(), hvd.local_size()) is not None:  # before any session
        device.make_gpu_ops_deterministic()  # the same update in every process
    return hvd


class SingleProcess:
    """The notebook's case: one process does everything."""
    processes = 1
    leads = True  # evaluates during training and decides for all
    average = None  # no gradients to average across processes

    def __init__(self):
        self.stop = StopOnSignalHook()

    def output_dir(self, output_dir):
        return output_dir

    def configure(self, session_config, batch_size):
        return session_config

    def download(self, load):
        return load()

    def global_batch_size(self, batch_size):
        return batch_size * self.processes

    def note_plan(self, num_train_steps, num_warmup_steps, batch_size, learning_rate,
                  accumulation_steps=1):
        """Process 0 says so when a global batch over the notebook's makes fewer steps."""
        note = undertraining_note(num_train_steps, num_warmup_steps, batch_size,
                                  self.processes, learning_rate, accumulation_steps)
        if note and self.leads:
            print(note)

    def train_input_fn(self, features_file, seq_length, seed):
        return feature_cache.input_fn_builder(features_file, seq_length, is_training=True,
                                              drop_remainder=False, seed=seed)

    def training_hooks(self, output_dir, save_steps, save_secs):
        return [self.stop, CheckpointSaverHook(output_dir, save_steps, save_secs, self.stop)]

    def start_step(self, estimator):
        """The step training starts from: the latest checkpoint's, else 0."""
        latest = estimator.latest_checkpoint()
        return checkpoint_step(latest) if latest else 0

    def end_training(self):
        """The signal that stopped training, or None."""
        return self.stop.stopped_by_signal

    def agree(self, value, name):
        """The leading process's `value`, on every process."""
        return value


class HorovodProcess(SingleProcess):
    """One of hvd.size() processes; process 0 writes the output and reports for all."""

    def __init__(self, hvd):
        self.hvd = hvd
        self.processes = hvd.size()
        self.leads = hvd.rank() == 0  # process 0
        self.session_config = None
        self.model_dir = None
        self.stop = StopOnSignalHook(self.sum_across_processes)
        if not self.leads:
            quiet_worker()

    def output_dir(self, output_dir):
        if not self.leads:
            self.model_dir = tempfile.mkdtemp(prefix="horovod-worker-")
            return self.model_dir
        return output_dir

    def configure(self, session_config, batch_size):
        """The session config (device.base_session_config pins this process's GPU)."""
        self.session_config = session_config
        print("Horovod: %d processes, %d reviews each of every global batch of %d"
              % (self.processes, batch_size, batch_size * self.processes))
        return self.session_config

    def download(self, load):
        """One process per machine downloads the data while the others wait."""
        downloads = self.hvd.local_rank() == 0
        if not downloads:
            self.barrier()
        loaded = load()
        if downloads:
            self.barrier()
        return loaded

    def average(self, tensors):
        """`tensors` (a list) averaged over all processes: dense ones all-reduced in one
        group, sparse ones (IndexedSlices) all-gathered (Horovod's average of slices)."""
        tensors = list(tensors)
        dense = [i for i, t in enumerate(tensors) if not isinstance(t, tf.IndexedSlices)]
        means = dict(zip(dense, self.hvd.grouped_allreduce([tensors[i] for i in dense],
                                                           op=self.hvd.Average)))
        return [means[i] if i in means else self.hvd.allreduce(t, op=self.hvd.Average)
                for i, t in enumerate(tensors)]

    def sum_across_processes(self, tensor, name):
        return self.hvd.allreduce(tensor, op=self.hvd.Sum, name=name)

    def train_input_fn(self, features_file, seq_length, seed):
        global_input_fn = feature_cache.input_fn_builder(
            features_file, seq_length, is_training=True, drop_remainder=True, seed=seed)
        return sharded_input_fn_builder(global_input_fn, self.hvd.rank(), self.processes)

    def training_hooks(self, output_dir, save_steps, save_secs):
        """Everyone starts from process 0's variables and reports a weights digest; only
        process 0 saves checkpoints."""
        hooks = [self.hvd.BroadcastGlobalVariablesHook(0), self.stop,
                 WeightsDigestHook(self.hvd.rank(), self.processes)]
        if self.leads:
            hooks.append(CheckpointSaverHook(output_dir, save_steps, save_secs, self.stop))
        return hooks

    def start_step(self, estimator):
        """Process 0's checkpoint step, on every process: all must run the same steps."""
        step = super().start_step(estimator) if self.leads else 0
        return self.from_rank_0(step, "start_step")

    def end_training(self):
        """After a signal, wait until process 0 has saved. The processes other than 0 end
        here (process 0 evaluates and exports for all), with 128 + the signal if stopped."""
        signum = self.stop.stopped_by_signal
        if signum:
            self.barrier()
        if not self.leads:
            shutil.rmtree(self.model_dir, ignore_errors=True)
            sys.exit(128 + signum if signum else 0)
        return signum

    def agree(self, value, name):
        return self.from_rank_0(value, name)

    def from_rank_0(self, value, name):
        """Process 0's `value`, on every process. Every process waits here until all
        arrive, so it also serves as a barrier."""
        with tf.Graph().as_default(), tf.Session(config=self.session_config) as session:
            return self.hvd.broadcast_object(value, root_rank=0, session=session, name=name)

    def barrier(self):
        """Returns once every process has called it."""
        self.from_rank_0(None, "barrier")


# The notebook's plan: 5,000 reviews at batch 32 for 3 epochs make 468 steps.
NOTEBOOK_STEPS = int(config.TRAIN_SAMPLES / config.BATCH_SIZE * config.NUM_TRAIN_EPOCHS)


def undertraining_note(num_train_steps, num_warmup_steps, batch_size, processes,
                       learning_rate, accumulation_steps=1):
    """The line for a global batch over the notebook's 32 (several processes, a larger
    --batch-size or accumulated micro-batches): its fewer steps at the notebook's learning
    rate may undertrain the model. None otherwise."""
    global_batch_size = batch_size * processes * accumulation_steps
    if global_batch_size <= config.BATCH_SIZE:
        return None
    factors = ((["%d processes" % processes] if processes > 1 else [])
               + ["--batch-size %d" % batch_size]
               + (["--gradient-accumulation-steps %d" % accumulation_steps]
                  if accumulation_steps > 1 else []))
    batch = "%d" % global_batch_size
    if len(factors) > 1:
        batch += " (%s)" % " x ".join(factors)
    if processes > 1:
        # Horovod's guide (docs/tensorflow.rst): "Scale the learning rate by the number
        # of workers", as the global batch grows with them.
        rate = ("a learning rate scaled by the number of processes (--learning-rate %g = "
                "%g x %d, as Horovod's guide suggests)" % (learning_rate * processes,
                                                           learning_rate, processes))
    else:
        rate = "a larger --learning-rate"
    return ("Global batch %s: %d training steps, %d of warm-up, against the notebook's %d "
            "at batch %d; the model may be undertrained. To train more: a smaller "
            "per-process --batch-size, more --epochs, or %s."
            % (batch, num_train_steps, num_warmup_steps, NOTEBOOK_STEPS, config.BATCH_SIZE,
               rate))


def quiet_worker():
    """Processes other than 0 print nothing on stdout, log no INFO lines and draw no
    progress bars (process 0 reports for all of them); their warnings and errors still
    reach stderr."""
    sys.stdout = open(os.devnull, "w")
    tf.logging.set_verbosity(tf.logging.WARN)
    tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)


def sharded_input_fn_builder(global_input_fn, rank, processes):
    """`global_input_fn` over global batches of params["batch_size"] x `processes` reviews,
    of which this process keeps rows [rank x batch_size, (rank + 1) x batch_size). Its
    shuffle has an explicit seed, so every process sees the same global batches."""

    def input_fn(params):
        batch_size = params["batch_size"]
        start = rank * batch_size
        global_batches = global_input_fn(dict(params, batch_size=batch_size * processes))
        return global_batches.map(lambda batch: {name: column[start:start + batch_size]
                                                 for name, column in batch.items()})

    return input_fn
