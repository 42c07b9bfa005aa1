"""Session hooks around training and evaluation: checkpoints, progress, predictions.

Checkpoints that never lose more than a few minutes of training: the notebook saves every
500 steps but trains 468, so a crash lost everything. RunConfig and
tf.train.CheckpointSaverHook take steps or seconds, not both; this hook saves every
`save_steps` steps, at least every `save_secs` seconds, at the end, and when SIGINT or
SIGTERM arrives (then it stops training after the current step).
"""
import datetime
import signal
import time

from compat import tf


class CheckpointSaverHook(tf.train.CheckpointSaverHook):

    def __init__(self, checkpoint_dir, save_steps, save_secs):
        super().__init__(checkpoint_dir, save_steps=save_steps)
        self._secs_timer = tf.train.SecondOrStepTimer(every_secs=save_secs)
        self.stopped_by_signal = None
        self._previous_handlers = {}

    def begin(self):
        super().begin()
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        # The step under way finishes, is saved, and training stops; a second signal
        # acts as it would without this hook.
        self.stopped_by_signal = signum
        signal.signal(signum, self._previous_handlers[signum])
        tf.logging.warning("%s received: saving a checkpoint after this step, then stopping.",
                           signal.Signals(signum).name)

    def after_create_session(self, session, coord):
        super().after_create_session(session, coord)
        self._secs_timer.update_last_triggered_step(session.run(self._global_step_tensor))

    def after_run(self, run_context, run_values):
        step = run_values.results + 1
        if (self.stopped_by_signal or self._timer.should_trigger_for_step(step)
                or self._secs_timer.should_trigger_for_step(step)):
            global_step = run_context.session.run(self._global_step_tensor)
            if global_step != self._timer.last_triggered_step():
                self._timer.update_last_triggered_step(global_step)
                self._secs_timer.update_last_triggered_step(global_step)
                if self._save(run_context.session, global_step):
                    run_context.request_stop()
        if self.stopped_by_signal:
            run_context.request_stop()

    def end(self, session):
        super().end(session)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)


class ProgressHook(tf.train.SessionRunHook):
    """Prints a line every `every_steps` steps: step, loss, examples/s and an ETA."""

    def __init__(self, loss, every_steps, batch_size, last_step):
        self._loss = loss
        self._every_steps = every_steps
        self._batch_size = batch_size
        self._last_step = last_step

    def begin(self):
        self._global_step_tensor = tf.train.get_global_step()

    def after_create_session(self, session, coord):
        self._start_step = session.run(self._global_step_tensor)
        self._start_time = time.time()

    def before_run(self, run_context):
        return tf.train.SessionRunArgs([self._global_step_tensor, self._loss])

    def after_run(self, run_context, run_values):
        step_before, loss = run_values.results
        step = step_before + 1
        if step % self._every_steps and step != self._last_step:
            return
        elapsed = time.time() - self._start_time
        steps_done = step - self._start_step
        eta = datetime.timedelta(
            seconds=round(elapsed / steps_done * max(self._last_step - step, 0)))
        print("step %d/%d  loss %.4f  %.1f examples/s  ETA %s"
              % (step, self._last_step, loss, steps_done * self._batch_size / elapsed, eta),
              flush=True)


class EvalPredictionsHook(tf.train.SessionRunHook):
    """Collects each evaluated example's label and log-probabilities into `sink`, in input
    order, so the evaluation pass also yields what the plots and the CSV need."""

    def __init__(self, label_ids, log_probs, sink):
        self._tensors = {"label_ids": label_ids, "log_probs": log_probs}
        self._sink = sink

    def begin(self):
        self._sink.clear()

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._tensors)

    def after_run(self, run_context, run_values):
        self._sink.append(run_values.results)
