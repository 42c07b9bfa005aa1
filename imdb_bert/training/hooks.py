"""Session hooks around training and evaluation: checkpoints, signals, progress,
predictions, weight digests. They read the model's tensors by name (model.py).

Checkpoints that never lose more than a few minutes of training: the notebook saves every
500 steps but trains 468, so a crash lost everything. RunConfig and
tf.train.CheckpointSaverHook take steps or seconds, not both; the saver here saves every
`save_steps` steps, at least every `save_secs` seconds, at the end, and when SIGINT or
SIGTERM arrives (then training stops after the current step).

With gradient accumulation (--gradient-accumulation-steps N) a step is N runs, of which the
last applies the update (optimizer.APPLIES): the hooks here count, save and stop after those
runs only, so every checkpoint holds whole optimizer steps.
"""
import datetime
import hashlib
import signal
import sys
import time

import numpy as np

from imdb_bert import signals
from imdb_bert.compat import tf
from imdb_bert.features import padding
from imdb_bert.model.classifier import (EVAL_EXAMPLE_INDEX, EVAL_LABEL_IDS, LOG_PROBS,
                                        REPORTED_LOSS)
from imdb_bert.model.heads import EVAL_OUTPUTS
from imdb_bert.model.optimizer import APPLIES
from imdb_bert.output.files import checkpoint_step
from imdb_bert.tasks import SINGLE_LABEL


def applies_tensor():
    """The tensor that says whether a run applied an update (with gradient accumulation),
    or None: every run does."""
    try:
        return tf.get_default_graph().get_tensor_by_name(APPLIES + ":0")
    except KeyError:
        return None


class StopOnSignalHook(tf.train.SessionRunHook):
    """On SIGINT or SIGTERM the step under way finishes and training stops; a second
    signal acts as it would without this hook. With `sum_across_processes` (a function
    (tensor, name) -> its sum over several Horovod processes) every step also sums the
    processes' "signal received" flags, so all of them stop after the same step, whichever
    got the signal."""

    def __init__(self, sum_across_processes=None):
        self._sum_across_processes = sum_across_processes
        self.stopped_by_signal = None  # the signal's number, once training stops for one
        self._received = None
        self._previous_handlers = None

    def begin(self):
        self._previous_handlers = signals.handle(self._on_signal)
        self._applies = applies_tensor()
        if self._sum_across_processes:
            self._flag = tf.placeholder_with_default(0, [], name="signal_received")
            self._flags_sum = self._sum_across_processes(self._flag, "signals_received")

    def _on_signal(self, signum):
        self._received = signum
        tf.logging.warning("%s received: saving a checkpoint after this step, then stopping.",
                           signals.name(signum))

    def before_run(self, run_context):
        fetches = {} if self._applies is None else {"applies": self._applies}
        if self._sum_across_processes:
            fetches["signals"] = self._flags_sum
            return tf.train.SessionRunArgs(fetches,
                                           feed_dict={self._flag: int(bool(self._received))})
        return tf.train.SessionRunArgs(fetches) if fetches else None

    def after_run(self, run_context, run_values):
        results = run_values.results or {}
        if not results.get("applies", True):
            return  # mid-accumulation: the optimizer step under way finishes first
        # With Horovod, a signal that arrived during this step counts from the next one,
        # the step that tells the other processes.
        if results["signals"] if self._sum_across_processes else self._received:
            self.stopped_by_signal = self._received or signal.SIGTERM
            run_context.request_stop()

    def end(self, session):
        signals.restore(self._previous_handlers)


class CheckpointSaverHook(tf.train.CheckpointSaverHook):
    """Saves every `save_steps` steps, at least every `save_secs` seconds, at the end, and
    after the step at which `stop_hook` (listed before this hook) stops training."""

    def __init__(self, checkpoint_dir, save_steps, save_secs, stop_hook):
        super().__init__(checkpoint_dir, save_steps=save_steps)
        self._secs_timer = tf.train.SecondOrStepTimer(every_secs=save_secs)
        self._stop_hook = stop_hook
        self._restored_step = None

    def begin(self):
        super().begin()
        self._applies = applies_tensor()

    def after_create_session(self, session, coord):
        step = session.run(self._global_step_tensor)
        # tf.train.CheckpointSaverHook saves the starting step here. When the latest
        # checkpoint is of that step, the session was restored from it (a resume, or the
        # next segment of training with validation): saving it again would rewrite the same
        # values, seconds of work for each segment (docs/speed.md).
        latest = tf.train.latest_checkpoint(self._checkpoint_dir)
        if latest and checkpoint_step(latest) == step:
            self._restored_step = step
        super().after_create_session(session, coord)
        self._restored_step = None
        self._secs_timer.update_last_triggered_step(step)

    def _save(self, session, step):
        if step == self._restored_step:
            return False  # training goes on
        return super()._save(session, step)

    def before_run(self, run_context):
        if self._applies is None:
            return super().before_run(run_context)
        return tf.train.SessionRunArgs([self._global_step_tensor, self._applies])

    def after_run(self, run_context, run_values):
        step_before = run_values.results
        if self._applies is not None:
            step_before, applies = run_values.results
            if not applies:
                return  # mid-accumulation: the weights are still those of the last save
        step = step_before + 1
        if (self._stop_hook.stopped_by_signal or self._timer.should_trigger_for_step(step)
                or self._secs_timer.should_trigger_for_step(step)):
            global_step = run_context.session.run(self._global_step_tensor)
            if global_step != self._timer.last_triggered_step():
                self._timer.update_last_triggered_step(global_step)
                self._secs_timer.update_last_triggered_step(global_step)
                if self._save(run_context.session, global_step):
                    run_context.request_stop()


class ProgressHook(tf.train.SessionRunHook):
    """Prints a line every `every_steps` steps: step, loss (of the whole global batch),
    examples/s and an ETA. `batch_size`: the examples of one optimizer step."""

    def __init__(self, every_steps, batch_size, last_step):
        self._every_steps = every_steps
        self._batch_size = batch_size
        self._last_step = last_step

    def begin(self):
        self._global_step_tensor = tf.train.get_global_step()
        self._loss = tf.get_default_graph().get_tensor_by_name(REPORTED_LOSS + ":0")
        self._applies = applies_tensor()

    def after_create_session(self, session, coord):
        self._start_step = session.run(self._global_step_tensor)
        self._start_time = time.time()

    def before_run(self, run_context):
        fetches = [self._global_step_tensor, self._loss]
        return tf.train.SessionRunArgs(fetches + ([] if self._applies is None
                                                  else [self._applies]))

    def after_run(self, run_context, run_values):
        step_before, loss, *applies = run_values.results
        if applies and not applies[0]:
            return  # mid-accumulation
        step = step_before + 1
        if step % self._every_steps and step != self._last_step:
            return
        elapsed = time.time() - self._start_time
        steps_done = step - self._start_step
        eta = datetime.timedelta(
            seconds=round(elapsed / steps_done * max(self._last_step - step, 0)))
        print("step %d/%d  loss %.6f  %.1f examples/s  ETA %s"
              % (step, self._last_step, loss, steps_done * self._batch_size / elapsed, eta),
              flush=True)


class StepSummaryHook(tf.train.SessionRunHook):
    """With gradient accumulation, in place of the Estimator's summary hook (which counts
    runs): the training summaries (loss, learning rate) every `every_steps` optimizer steps,
    taken from the run that applied the step, so they are those of the whole step, written
    at the step numbers a run without accumulation gives them."""

    def __init__(self, output_dir, every_steps):
        self._output_dir = output_dir
        self._timer = tf.train.SecondOrStepTimer(every_steps=every_steps)

    def begin(self):
        self._writer = tf.summary.FileWriterCache.get(self._output_dir)
        # The summary op the Estimator's hook would have run (its scaffold's default).
        summary = tf.train.Scaffold.get_or_default("summary_op", tf.GraphKeys.SUMMARY_OP,
                                                   tf.summary.merge_all)
        self._fetches = [tf.train.get_global_step(), applies_tensor(), summary]
        self._started = False

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        step_before, applies, summary = run_values.results
        step = step_before + 1
        if not applies:
            return
        if not self._started:  # as the Estimator's hook: TensorBoard drops what a killed
            self._started = True  # run wrote past this step
            self._writer.add_session_log(tf.SessionLog(status=tf.SessionLog.START), step)
        elif not self._timer.should_trigger_for_step(step):
            return
        self._timer.update_last_triggered_step(step)
        self._writer.add_summary(summary, step)

    def end(self, session):
        self._writer.flush()


class EvalPredictionsHook(tf.train.SessionRunHook):
    """Collects each evaluated example's label and log-probabilities (multi-label: each
    label's probability; regression: the value) in `batches`, in input order, so the
    evaluation pass also yields what the plots and the CSV need. Pass it to
    estimator.evaluate(hooks=[...]) and read `batches` afterwards. Batches grouped by
    length (padding.py) carry each example's index: at the end, `batches` is one batch
    of them all, sorted back into input order."""

    def __init__(self, task=SINGLE_LABEL):
        self.batches = []
        self._outputs = LOG_PROBS if task == SINGLE_LABEL else EVAL_OUTPUTS

    def begin(self):
        self.batches = []
        graph = tf.get_default_graph()
        self._tensors = {"label_ids": graph.get_tensor_by_name(EVAL_LABEL_IDS + ":0"),
                         "outputs": graph.get_tensor_by_name(self._outputs + ":0")}
        try:
            self._tensors[padding.EXAMPLE_INDEX] = graph.get_tensor_by_name(
                EVAL_EXAMPLE_INDEX + ":0")
        except KeyError:  # an input_fn without the index: its batches are in input order
            pass

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._tensors)

    def after_run(self, run_context, run_values):
        self.batches.append(run_values.results)

    def end(self, session):
        if self.batches and padding.EXAMPLE_INDEX in self.batches[0]:
            self.batches = [padding.in_input_order(self.batches)]


class WeightsDigestHook(tf.train.SessionRunHook):
    """With --horovod: at the end of training, each process prints on stderr the global
    step and a SHA-256 over all its variables (names and values), which are the same on
    every process when the processes stayed in step."""

    def __init__(self, rank, processes):
        self._rank = rank
        self._processes = processes

    def begin(self):
        self._variables = sorted(tf.global_variables(), key=lambda variable: variable.name)
        self._global_step_tensor = tf.train.get_global_step()

    def end(self, session):
        digest = hashlib.sha256()
        for variable, value in zip(self._variables, session.run(self._variables)):
            digest.update(variable.name.encode() + b"\0")
            digest.update(np.ascontiguousarray(value).tobytes())
        print("Horovod process %d of %d: global step %d, weights sha256 %s"
              % (self._rank, self._processes, session.run(self._global_step_tensor),
                 digest.hexdigest()), file=sys.stderr, flush=True)
