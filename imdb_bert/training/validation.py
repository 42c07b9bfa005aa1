"""Evaluation during training (--validation-samples N; the notebook evaluates only once,
after training): the validation reviews are evaluated at fixed global steps, each result is
appended to validation_history.json, --keep-best keeps the checkpoint of the best
validation accuracy for the test results and the export, and --early-stopping-patience K
stops training when K evaluations in a row did not improve on the best.

Training runs in segments that end at the evaluation steps (estimator.train up to each),
so every evaluation has its own checkpoint, steps stay global across resumes, and with
Horovod process 0 evaluates while the others wait and then follow its stop decision.

After training, the validation sample also calibrates the evaluated checkpoint: the
temperature fitted on its log-probabilities (evaluation/calibration.py).
"""
import os

from imdb_bert import device
from imdb_bert.compat import tf
from imdb_bert.evaluation import calibration, report
from imdb_bert.features import feature_cache
from imdb_bert.output import files, run_state
from imdb_bert.output.files import (BEST_CHECKPOINT, BEST_CHECKPOINT_DIR, CALIBRATION,
                                    LEARNING_CURVES, VALIDATION_HISTORY, checkpoint_step,
                                    read_json, write_json)
from imdb_bert.tasks import BEST_METRIC, METRIC_NAMES, SINGLE_LABEL
from imdb_bert.training.hooks import EvalPredictionsHook

# The folder estimator.evaluate(name="validation") writes its TensorBoard scalars to.
VALIDATION_SUMMARIES = "eval_validation"
TRAINING_LOSS_TAG = "loss_1"  # the Estimator's "loss" summary, beside the model's scope "loss"


class NoValidation:
    """The notebook's run: train to the last step, evaluate the test sample after."""

    def resume(self, estimator, start_step):
        return False  # early stopping did not end training

    def segments(self, start_step, num_train_steps):
        return [num_train_steps]

    def after_segment(self, estimator, step):
        return False  # never stops early

    def finish(self, run_record):
        pass


class Validation(NoValidation):
    """Evaluations of `input_fn` at `steps`; `leads` says whether this process evaluates
    and writes (process 0), `agree` spreads its stop decision to every process;
    `auc_undefined`: the sample holds one of two labels only, so its auc is null."""

    def __init__(self, output_dir, input_fn, steps, examples_per_step, train_size, keep_best,
                 patience, leads, agree, task=SINGLE_LABEL, auc_undefined=False):
        self.output_dir = output_dir
        self.input_fn = input_fn
        self.steps = steps
        self.epochs_per_step = examples_per_step / train_size
        self.keep_best = keep_best
        self.patience = patience
        self.leads = leads
        self.agree = agree
        self.auc_undefined = auc_undefined
        self.history_path = os.path.join(output_dir, VALIDATION_HISTORY)
        self.history = read_json(self.history_path) or []
        self.metric, self.higher_is_better = BEST_METRIC[task]
        self.evaluation = None  # built at the first validation, kept for the others

    def best(self):
        """The history entry of the best validation metric (tasks.BEST_METRIC: accuracy,
        micro F1 or the loss; ties: the earlier)."""
        if not self.history:
            return None
        sign = 1 if self.higher_is_better else -1
        return max(self.history, key=lambda entry: (sign * entry[self.metric],
                                                    -entry["global_step"]))

    def stopped_early(self):
        """Whether K evaluations in a row after the best did not improve on it."""
        if not self.patience or not self.history:
            return False
        best_index = self.history.index(self.best())
        return len(self.history) - 1 - best_index >= self.patience

    def resume(self, estimator, start_step):
        """Before training: evaluate the checkpoint whose evaluation a killed run missed;
        whether early stopping already ended training. Every process follows process 0."""
        evaluated = {entry["global_step"] for entry in self.history}
        missed = self.leads and start_step in self.steps and start_step not in evaluated
        if self.agree(missed, "missed_evaluation"):
            self.after_segment(estimator, start_step)
        return self.agree(self.leads and self.stopped_early(), "stopped_early")

    def segments(self, start_step, num_train_steps):
        return [step for step in self.steps if step > start_step]

    def after_segment(self, estimator, step):
        """Evaluate the checkpoint of `step`; whether to stop training early."""
        stop = False
        if self.leads:
            self.evaluate(estimator, step)
            stop = self.stopped_early()
        return self.agree(stop, "stop_early")

    def evaluate(self, estimator, step):
        if self.evaluation is None:
            self.evaluation = KeptEvaluation(estimator, self.input_fn, os.path.join(
                self.output_dir, VALIDATION_SUMMARIES))
        result = report.plain_metrics(self.evaluation.evaluate(estimator.latest_checkpoint()))
        entry = dict(result, epoch=round(step * self.epochs_per_step, 4))
        if self.auc_undefined:
            entry["auc"] = None
        self.history.append(entry)
        write_json(self.history_path, self.history)
        shown = "" if self.metric == "loss" else "%s %.4f, " % (
            METRIC_NAMES[self.metric], entry[self.metric])
        print("Validation at step %d (epoch %.2f): %sloss %.4f"
              % (step, entry["epoch"], shown, entry["loss"]))
        if self.keep_best and self.best() is entry:
            keep_checkpoint(self.output_dir, estimator.latest_checkpoint(), step)

    def finish(self, run_record):
        """learning_curves.png, and the best step and early stop in run_info.json; the
        validations' session closed (its weights freed before the test evaluation)."""
        if self.evaluation is not None:
            self.evaluation.session.close()
        best = self.best()
        stopped = self.stopped_early()
        run_record.fields.update(
            best_step=best and best["global_step"],
            early_stopping={"stopped": stopped,
                            "at_step": self.history[-1]["global_step"] if stopped else None})
        if self.leads and stopped:  # training is finished, short of the planned step
            run_state.record_early_stop(self.output_dir, self.history[-1]["global_step"])
        if self.leads and self.history:
            report.write_learning_curves(
                os.path.join(self.output_dir, LEARNING_CURVES),
                training_losses(self.output_dir), self.history, best["global_step"],
                self.metric)


class KeptEvaluation:
    """What estimator.evaluate(input_fn, name="validation") computes, with its graph and
    session built once and kept for every validation of the run (with --bf16 on the CPU a
    new session on the kept graph for each checkpoint: device.ONEDNN_WEIGHT_LAYOUT), where
    estimator.evaluate builds both anew at each call and its first step rewrites the graph
    again (grappler, oneDNN's kernels; with --bf16 the bfloat16 rewrite), seconds of fixed
    work a validation (docs/speed.md, "Where the evaluation's time goes"). The same
    model_fn, metric ops and loss mean as estimator.evaluate (tensorflow_estimator 2.15,
    estimator.py: _evaluate_build_graph), so the same numbers (tests/test_validation.py
    compares them), and the same scalars in `summary_dir` for TensorBoard. The kept
    session holds a copy of the model's weights for the whole training: memory for speed."""

    def __init__(self, estimator, input_fn, summary_dir):
        self.summary_dir = summary_dir
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(estimator.config.tf_random_seed)
            self.global_step = tf.train.get_or_create_global_step()
            iterator = tf.data.make_initializable_iterator(input_fn(estimator.params))
            spec = estimator.model_fn(iterator.get_next(), None, tf.estimator.ModeKeys.EVAL,
                                      estimator.config)
            metrics = dict(spec.eval_metric_ops, loss=tf.metrics.mean(spec.loss))
            self.values = {name: value for name, (value, _) in metrics.items()}
            self.update = tf.group(*[update for _, update in metrics.values()])
            self.start = tf.group(iterator.initializer, tf.local_variables_initializer(),
                                  tf.tables_initializer())
            self.saver = tf.train.Saver()
        self.graph.finalize()
        self.config = device.evaluation_session_config(estimator.config.session_config)
        self.session = tf.Session(graph=self.graph, config=self.config)
        self.fresh = True  # no checkpoint restored into self.session yet
        self.fused_matmuls_keep_first_weights = (
            device.fused_matmuls_keep_first_weights()
            and self.config.graph_options.rewrite_options.remapping
            != device.rewriter_config_pb2.RewriterConfig.OFF)

    def evaluate(self, checkpoint):
        """The metrics of `checkpoint` on the whole input, "global_step" included."""
        self.restore(checkpoint)
        while True:
            try:
                self.session.run(self.update)
            except tf.errors.OutOfRangeError:
                break
        return self.results()

    def restore(self, checkpoint):
        if not self.fresh and self.fused_matmuls_keep_first_weights:
            # its fused MatMul kernels would keep the first checkpoint's weights (device.py,
            # ONEDNN_WEIGHT_LAYOUT): a new session on the kept graph
            self.session.close()
            self.session = tf.Session(graph=self.graph, config=self.config)
        self.fresh = False
        self.saver.restore(self.session, checkpoint)
        self.session.run(self.start)  # metric totals to zero, the input from its start

    def results(self):
        result = self.session.run(dict(self.values, global_step=self.global_step))
        self.write_summaries(result)
        return result

    def write_summaries(self, result):
        """The scalars estimator.evaluate writes for TensorBoard (not the global step)."""
        summary = tf.Summary()
        for name, value in result.items():
            if name != "global_step":
                summary.value.add(tag=name, simple_value=float(value))
        writer = tf.summary.FileWriterCache.get(self.summary_dir)
        writer.add_summary(summary, result["global_step"])
        writer.flush()


def temperature(estimator, checkpoint, features_file, max_seq_length, output_dir):
    """The temperature of `checkpoint` on the validation features in `features_file`: kept
    from calibration.json when fitted on both before (a rerun), else fitted on their
    log-probabilities and recorded. When they cannot give one, a line says why and the
    temperature calibration.json holds for `checkpoint` (if any) stays."""
    step = checkpoint_step(checkpoint)
    kept = calibration.recorded_temperature(output_dir, step, features_file)
    if kept is not None:
        print("Temperature %.4f from %s, fitted on these validation reviews for step %d."
              % (kept, CALIBRATION, step))
        return kept
    label_ids, log_probs = validation_log_probs(estimator, checkpoint, features_file,
                                                max_seq_length)
    try:
        fitted = calibration.fit_temperature(log_probs, label_ids)
    except calibration.CannotCalibrate as reason:
        earlier = calibration.recorded_temperature(output_dir, step)
        print("No calibration: %s.%s" % (reason, "" if earlier is None else
                                         " The temperature %.4f that %s holds for step %d "
                                         "stays." % (earlier, CALIBRATION, step)))
        return earlier
    calibration.write_record(output_dir, fitted, step, features_file, label_ids)
    print("Temperature %.4f fitted on %d validation reviews (their negative log-likelihood "
          "%.4f, calibrated %.4f); predict.py applies it."
          % (fitted, len(label_ids), calibration.negative_log_likelihood(log_probs, label_ids),
             calibration.negative_log_likelihood(calibration.calibrated(log_probs, fitted),
                                                 label_ids)))
    return fitted


def validation_log_probs(estimator, checkpoint, features_file, max_seq_length):
    """(label ids, log-probabilities) of the validation features for `checkpoint`, from an
    evaluation as the test sample's (in float32 with --use-amp; in TensorBoard as
    eval_calibration)."""
    input_fn = feature_cache.input_fn_builder(features_file, max_seq_length,
                                              is_training=False, drop_remainder=False)
    predictions = EvalPredictionsHook()
    estimator.evaluate(input_fn, steps=None, hooks=[predictions], checkpoint_path=checkpoint,
                       name="calibration")
    return report.evaluated(predictions.batches)


def evaluation_steps(num_train_steps, every_steps):
    """Every `every_steps` steps, and the last step."""
    return list(range(every_steps, num_train_steps, every_steps)) + [num_train_steps]


def keep_checkpoint(output_dir, checkpoint, step):
    """Copy `checkpoint` (of `step`) to best/, out of reach of the saver's rotation of old
    checkpoints, and record it in best_checkpoint.json. In this order a kill at any moment
    leaves best_checkpoint.json naming a whole checkpoint, the old best or the new: each file
    is copied under a temporary name (removed at the next start) and renamed, the record is
    replaced (write_json: atomic), and only then the old best's files are removed."""
    gfile = tf.io.gfile
    target = os.path.join(output_dir, BEST_CHECKPOINT_DIR)
    gfile.makedirs(target)
    for path in gfile.glob(checkpoint + ".*"):
        copy = os.path.join(target, os.path.basename(path))
        tmp = "%s.tmp-%d" % (copy, os.getpid())
        gfile.copy(path, tmp, overwrite=True)
        gfile.rename(tmp, copy, overwrite=True)
    write_json(os.path.join(output_dir, BEST_CHECKPOINT),
               {"global_step": step, "checkpoint": os.path.join(
                   BEST_CHECKPOINT_DIR, os.path.basename(checkpoint))})
    for path in gfile.glob(os.path.join(target, "*")):
        if not os.path.basename(path).startswith(os.path.basename(checkpoint) + "."):
            gfile.remove(path)


def training_losses(output_dir):
    """[(step, loss)] of the training loss summaries in output_dir's events files."""
    losses = {}
    for path in tf.io.gfile.glob(os.path.join(output_dir, files.EVENTS_PREFIX + "*")):
        for event in tf.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == TRAINING_LOSS_TAG:
                    losses[event.step] = value.simple_value
    return sorted(losses.items())
