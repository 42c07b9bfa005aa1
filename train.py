"""Fine-tune BERT on IMDB movie reviews: Google's notebook "Predicting Movie Review
Sentiment with BERT on TF Hub", step by step, as a script.

    python train.py                       # the notebook's run: BERT-Base, 5000/5000 reviews
    python train.py --bert-hub DIR        # a local Hub module (imdb_bert/tools/make_hub_module.py)
    python train.py --train-file train.csv --test-file test.csv   # your own labelled texts
    python train.py ... --text-pair-column b --task multi-label  # pairs, multi-label, regression
    horovodrun -np 4 python train.py --horovod   # 4 GPUs (make horovod installs Horovod)
"""
import argparse
import os
import sys
from datetime import datetime

import config
from imdb_bert import device, errors, signals
from imdb_bert.compat import quiet_tf_logging, tf
from imdb_bert.data import aclimdb, text_files
from imdb_bert.data.label_cells import DEFAULT_SEPARATOR
from imdb_bert.data.labels import file_labels, imdb_labels
from imdb_bert.errors import UserError, run_script
from imdb_bert.evaluation import calibration, report, task_report
from imdb_bert.features import conversion, feature_cache, padding
from imdb_bert.features.truncation import HEAD, MODES
from imdb_bert.model import hub_module
from imdb_bert.model.classifier import model_fn_builder
from imdb_bert.output import cleanup, disk_space, files, folder_lock, run_settings, run_state
from imdb_bert.output.files import checkpoint_step
from imdb_bert.serving.export import add_onnx_copy, export_for_prediction
from imdb_bert.tasks import (DEFAULT_THRESHOLD, MULTI_LABEL, REGRESSION, SINGLE_LABEL,
                             TASKS, output_count)
from imdb_bert.training import runtime, validation
from imdb_bert.training.hooks import EvalPredictionsHook, ProgressHook, StepSummaryHook


def main(argv=None):
    args = parse_args(argv)
    quiet_tf_logging(args.verbose)
    start_time = datetime.now()
    device.hide_or_check_gpus(args.cpu)  # before anything else starts CUDA
    # One process, or one of several Horovod processes: the runtime owns what differs.
    run = runtime.start(args)

    # Step 1: the output directory (and the device that trains).
    OUTPUT_DIR = make_output_dir(args, run)
    device_line, session_config, use_amp = choose_device(args, run)
    settings = run_settings.model_settings(args, use_amp, run)
    run_settings.check_settings(OUTPUT_DIR, settings, args.eval_only)  # before the slow steps

    # Step 2: the data as DataFrames (aclImdb, or --train-file and --test-file), a sample
    # "to keep training fast", and the labels (as many as the head has outputs).
    train, dev, test, labels = load_data(args, run)
    settings.update(labels.settings())

    # Step 3: InputExamples.
    train_InputExamples = input_examples(train, labels)
    test_InputExamples = input_examples(test, labels)

    # Step 4: the tokenizer that comes with the Hub module.
    bert_hub, vocab_file, do_lower_case = load_hub_module(args, OUTPUT_DIR)
    tokenizer = conversion.create_tokenizer(vocab_file, do_lower_case,
                                            fast=not args.reference_tokenizer)
    run_settings.write_settings(OUTPUT_DIR, dict(settings, do_lower_case=do_lower_case),
                                args.eval_only)

    # Step 5: InputFeatures (the training ones only when training), as TFRecord files in
    # OUTPUT_DIR that training and evaluation read (and a rerun reuses).
    def convert(split, examples):
        return feature_cache.load_or_convert(OUTPUT_DIR, split, examples, labels.label_list,
                                             args.max_seq_length, tokenizer, vocab_file,
                                             do_lower_case, args.truncate, labels.task)
    test_features_file = convert("test", test_InputExamples)
    train_features_file = None if args.eval_only else convert("train", train_InputExamples)

    # Steps 6-9: the model, the hyper-parameters and the Estimator.
    num_train_steps, num_warmup_steps = plan_steps(len(train), args, run)
    model_fn = model_fn_builder(
        num_labels=output_count(labels.task, labels.label_list),
        learning_rate=args.learning_rate,
        num_train_steps=num_train_steps, num_warmup_steps=num_warmup_steps,
        bert_hub=bert_hub, loss_scaling=use_amp, average=run.average,
        positive_index=labels.positive_index, task=labels.task, threshold=args.threshold,
        accumulation_steps=args.gradient_accumulation_steps, fuse_for_cpu=device.fuses_for_cpu())
    estimator = make_estimator(model_fn, OUTPUT_DIR, session_config, args, bert_hub)
    validating = plan_validation(dev, labels, convert, len(train), num_train_steps, args,
                                 run, OUTPUT_DIR)
    run_record = run_settings.RunRecord(OUTPUT_DIR, args, device_line, run, start_time)
    run_record.write("running")
    signals.record_interruptions(run_record)

    # Step 10: train (resuming from the latest checkpoint, if any).
    if args.eval_only:
        if estimator.latest_checkpoint() is None:
            raise UserError("--eval-only: no checkpoint in %s to evaluate; train first."
                            % OUTPUT_DIR)
    else:
        signals.now("training")  # a signal during a step: see hooks.StopOnSignalHook
        stopped_by = train_model(estimator, train_features_file, num_train_steps, validating,
                                 args, run, OUTPUT_DIR)
        if stopped_by:
            return interrupted(estimator, stopped_by, num_train_steps, run_record)
        validating.finish(run_record)

    # Step 11: evaluate on the test sample (with --keep-best, the best step's checkpoint),
    # calibrated too when a validation sample gives a temperature.
    checkpoint = files.best_checkpoint(OUTPUT_DIR) or estimator.latest_checkpoint()
    signals.now("evaluation")
    evaluate(estimator, checkpoint, test, test_features_file, OUTPUT_DIR, labels, args,
             calibrate(estimator, checkpoint, dev, labels, convert, args, OUTPUT_DIR))

    # Step 12 (for predict.py): a SavedModel of the trained model, fast to load, and its
    # ONNX copy, faster still.
    outcome = "completed" if args.eval_only else export(estimator, checkpoint, OUTPUT_DIR, args)
    run_record.write(outcome, datetime.now())
    return 0


def make_output_dir(args, run):
    """Step 1: OUTPUT_DIR (gs://BUCKET/OUTPUT_DIR with --bucket), created, locked for this
    run, emptied with --do-delete (else rid of what interrupted runs left) and printed."""
    signals.stop_before_recording()  # from here, Ctrl-C or SIGTERM: one line, no traceback
    output_dir = args.output_dir
    if args.bucket:
        output_dir = "gs://{}/{}".format(args.bucket, output_dir)
    output_dir = run.output_dir(output_dir)
    errors.CONTEXT.update(output_dir=output_dir)  # for the errors' messages
    files.check_output_dir(output_dir)  # before anything is written or deleted
    if args.do_delete and files.exists(output_dir):
        cleanup.check_deletable(output_dir, args.data_dir)
        text_files.check_outside(output_dir, args)
    files.makedirs(output_dir)
    if files.is_remote(output_dir):
        print("%s cannot be locked: make sure no other train.py uses it." % output_dir)
    else:
        folder_lock.lock_output_dir(output_dir)
    if args.do_delete:
        cleanup.delete_contents(output_dir)
    cleanup.remove_leftovers(output_dir)
    print("***** Model output directory: {} *****".format(output_dir))
    return output_dir


def input_examples(df, labels):
    """Step 3: the InputExamples of a DataFrame's rows: text_a, text_b with
    --text-pair-column, and what the model learns of the label."""
    return conversion.make_examples(df[config.DATA_COLUMN],
                                    labels.targets(df[config.LABEL_COLUMN]),
                                    df.get(text_files.TEXT_B))


def load_data(args, run):
    """Step 2: (train, validation sample or None, test, Labels): aclImdb's reviews
    (downloaded when missing) or the rows of the user's files, sampled with the seed."""
    if args.train_file:
        train, test, dev = text_files.load_files(args)
        labels = file_labels(args, train, {args.test_file: test, args.validation_file: dev})
    else:
        train, test = run.download(lambda: aclimdb.download_and_load_datasets(
            args.data_dir, args.data_url, args.data_md5, args.seed))
        dev, labels = None, imdb_labels()
    if dev is None:
        train, dev = aclimdb.sample_train_and_validation(train, args.train_samples,
                                                         args.validation_samples, args.seed)
    else:  # --validation-file: all its rows, or --validation-samples of them
        train = aclimdb.sample(train, args.train_samples, args.seed)
        dev = aclimdb.sample(dev, args.validation_samples or None, args.seed)
    test = aclimdb.sample(test, args.test_samples, args.seed)
    print("Train reviews: %d, test reviews: %d" % (len(train), len(test)))
    return train, dev, test, labels


def choose_device(args, run):
    """(the device line, the session config of the speed switches, whether --use-amp
    is on: it is for GPUs only)."""
    device_line = device.describe()
    print(device_line)
    first_start = device.first_start_note()
    if first_start:
        print(first_start)
    errors.CONTEXT.update(device=device.device_name(), batch_size=args.batch_size,
                          max_seq_length=args.max_seq_length,
                          eval_only=args.eval_only)  # for an out-of-memory error
    session_config, speed_messages, use_amp = device.session_config(
        args.bf16, args.use_xla, args.use_amp, tf32=not args.no_tf32)
    for message in speed_messages:
        print(message)
    return device_line, run.configure(session_config, args.batch_size), use_amp


def load_hub_module(args, output_dir):
    """Step 4: (the module's folder, its vocab file, do_lower_case), after checking that
    the module takes --max-seq-length positions and output_dir's disk space for a model
    of its size."""
    bert_hub = hub_module.resolve(args.bert_hub)
    if not args.eval_only:
        disk_space.check(output_dir, bert_hub, args.keep_best)
    limit = hub_module.position_limit(bert_hub)
    if args.max_seq_length > limit:
        raise UserError("--max-seq-length %d is more than the %d positions %s takes; pass "
                        "--max-seq-length %d or less." % (args.max_seq_length, limit,
                                                          args.bert_hub, limit))
    vocab_file, do_lower_case = conversion.tokenization_info(bert_hub)
    return bert_hub, vocab_file, do_lower_case


def make_estimator(model_fn, output_dir, session_config, args, bert_hub):
    """Step 9. Checkpoints are saved by the project's hook (steps, seconds and signals), so
    the RunConfig's own saving is off; so are its summaries with gradient accumulation
    (StepSummaryHook writes them per optimizer step). The params tell the input_fns how to
    pad and group their batches (features/padding.py)."""
    accumulating = args.gradient_accumulation_steps > 1
    run_config = tf.estimator.RunConfig(
        model_dir=output_dir,
        save_summary_steps=None if accumulating else args.save_summary_steps,
        save_checkpoints_steps=None, save_checkpoints_secs=None,
        log_step_count_steps=args.save_summary_steps, tf_random_seed=args.seed,
        session_config=session_config)
    return device.with_evaluation_config(tf.estimator.Estimator(
        model_fn=model_fn, config=run_config,
        params={"batch_size": args.batch_size, "group_by_length": args.group_by_length,
                "padding": padding_mode(args, bert_hub)}))


def padding_mode(args, bert_hub):
    """Each batch padded to its longest review, unless XLA or the module needs one
    length (then --max-seq-length, said on a line)."""
    fixed_length = hub_module.fixed_length(bert_hub)
    mode = padding.padding_mode(args.use_xla, fixed_length)
    if mode == padding.WINDOW and (args.use_xla or fixed_length):
        print("Batches padded to --max-seq-length %d: %s." % (
            args.max_seq_length, "--use-xla compiles for each new shape" if args.use_xla
            else "the Hub module takes %d positions only" % fixed_length))
    return mode


def plan_validation(dev, labels, convert, train_size, num_train_steps, args, run,
                    output_dir):
    """Evaluations of the validation sample during training (--validation-samples), or
    none, as in the notebook (and with --eval-only, which does not train)."""
    if dev is None or args.eval_only:
        return validation.NoValidation()
    if args.validation_file:
        print("Validation reviews: %d, from %s" % (len(dev), args.validation_file))
    else:
        print("Validation reviews: %d, from the training split and not in the training "
              "sample" % len(dev))
    auc_note = report.undefined_auc_note(dev[config.LABEL_COLUMN], labels, "validation sample")
    if auc_note:
        print(auc_note)
    input_fn = feature_cache.input_fn_builder(
        validation_features(dev, labels, convert), args.max_seq_length, is_training=False,
        drop_remainder=False)
    step_batch_size = optimizer_step_batch_size(args, run)
    every_steps = args.eval_every_steps or max(1, round(train_size / step_batch_size))
    return validation.Validation(
        output_dir, input_fn, validation.evaluation_steps(num_train_steps, every_steps),
        step_batch_size, train_size, args.keep_best, args.early_stopping_patience,
        run.leads, run.agree, labels.task, auc_undefined=bool(auc_note))


def validation_features(dev, labels, convert):
    return convert("validation", input_examples(dev, labels))


def calibrate(estimator, checkpoint, dev, labels, convert, args, output_dir):
    """With a validation sample: the temperature that calibrates `checkpoint`'s
    probabilities, fitted on it (or kept from the run that fitted it). Without: the one
    calibration.json records for `checkpoint`, if any (so --eval-only reports it). None
    for multi-label and regression: the temperature scales a softmax's log-probabilities."""
    if labels.task != SINGLE_LABEL:
        return None
    if dev is None:
        return calibration.recorded_temperature(output_dir, checkpoint_step(checkpoint))
    return validation.temperature(estimator, checkpoint,
                                  validation_features(dev, labels, convert),
                                  args.max_seq_length, output_dir)


def plan_steps(train_size, args, run):
    """Step 8: (num_train_steps, num_warmup_steps), in optimizer steps. An epoch is a pass
    of their batches (batch size x processes x accumulated micro-batches) over the training
    sample."""
    global_batch_size = optimizer_step_batch_size(args, run)
    num_train_steps = int(train_size / global_batch_size * args.epochs)
    num_warmup_steps = int(num_train_steps * args.warmup_proportion)
    if num_train_steps < 1:
        raise UserError("%d training reviews at batch size %d for %s epochs make no training "
                        "step; sample more reviews or lower --batch-size."
                        % (train_size, global_batch_size, args.epochs))
    run.note_plan(num_train_steps, num_warmup_steps, args.batch_size, args.learning_rate,
                  args.gradient_accumulation_steps)
    return num_train_steps, num_warmup_steps


def optimizer_step_batch_size(args, run):
    """The reviews of one optimizer step: the global batch (--batch-size x processes) of
    each of --gradient-accumulation-steps runs."""
    return run.global_batch_size(args.batch_size) * args.gradient_accumulation_steps


def train_model(estimator, train_features_file, num_train_steps, validating, args, run,
                output_dir):
    """Step 10: train up to num_train_steps (with validation, in segments that end at the
    evaluation steps); the signal that stopped training, or None."""
    train_input_fn = run.train_input_fn(train_features_file, args.max_seq_length, args.seed)
    hooks = run.training_hooks(output_dir, args.save_checkpoints_steps,
                               args.save_checkpoints_secs)
    hooks.append(ProgressHook(args.save_summary_steps, optimizer_step_batch_size(args, run),
                              num_train_steps))
    if args.gradient_accumulation_steps > 1:
        hooks.append(StepSummaryHook(output_dir, args.save_summary_steps))
    start_step = run.start_step(estimator)
    run_state.record_plan(output_dir, num_train_steps)  # for predict.py: is it trained?
    if validating.resume(estimator, start_step):
        print("Early stopping ended training in %s; nothing left to train." % output_dir)
    elif start_step < num_train_steps:
        print("Beginning Training!")
        current_time = datetime.now()
        for max_steps in validating.segments(start_step, num_train_steps):
            estimator.train(input_fn=train_input_fn, max_steps=max_steps, hooks=hooks)
            if run.stop.stopped_by_signal or validating.after_segment(estimator, max_steps):
                break
        print("Training took time ", datetime.now() - current_time)
    else:
        print("The checkpoint in %s is at step %d of %d: nothing left to train."
              % (output_dir, start_step, num_train_steps))
    return run.end_training()


def interrupted(estimator, signal_number, num_train_steps, run_record):
    """A signal stopped training after a checkpoint: say so, and exit 128 + signal."""
    step = estimator.get_variable_value("global_step")
    run_record.write("interrupted at step %d" % step, datetime.now())
    print("Interrupted at step %d of %d; the checkpoint is saved. Run the same command "
          "again to resume." % (step, num_train_steps), file=sys.stderr)
    return 128 + signal_number


def evaluate(estimator, checkpoint, test, test_features_file, output_dir, labels, args,
             temperature=None):
    """Step 11: the notebook's metrics of `checkpoint` on the test sample (for more than
    two labels: accuracy and loss, and per class in the report), printed and written to
    eval_results.json, with the plots and test_predictions.csv from the same pass; named
    for the test set when --eval-only evaluates another one than the run's own; with a
    `temperature`, the calibration metrics before and after it and the reliability
    diagram."""
    test_set = run_settings.other_test_set(output_dir, args) if args.eval_only else None
    test_input_fn = feature_cache.input_fn_builder(
        test_features_file, args.max_seq_length, is_training=False, drop_remainder=False)
    predictions = EvalPredictionsHook(labels.task)
    result = estimator.evaluate(input_fn=test_input_fn, steps=None, hooks=[predictions],
                                checkpoint_path=checkpoint)
    results = report.plain_metrics(result)
    note = report.undefined_auc_note(test[config.LABEL_COLUMN], labels, "test sample")
    if note:
        print(note)
        result["auc"] = results["auc"] = None
    print(result)
    task_reports = report if labels.task == SINGLE_LABEL else task_report
    results.update(task_reports.write_report(output_dir, test, predictions.batches, labels,
                                             test_set))
    if "per_class" in results:
        print(report.per_class_text(results))
    elif labels.task != SINGLE_LABEL:
        print(task_report.summary_text(results, labels.task))
    if temperature is not None:
        results.update(report.write_calibration_report(output_dir, predictions.batches,
                                                       temperature, test_set))
        print(calibration.calibration_text(results))
    eval_results = files.result_file(files.EVAL_RESULTS, test_set)
    files.write_json(os.path.join(output_dir, eval_results), results)
    print("Plots, %s and %s are in %s" % (
        files.result_file(files.TEST_PREDICTIONS, test_set), eval_results, output_dir))


def export(estimator, checkpoint, output_dir, args):
    """Step 12: export `checkpoint` for predict.py, unless a rerun finds it exported, and
    add the ONNX copy (unless --no-onnx); the run's outcome for run_info.json."""
    signals.now("export")
    export_dir, new = export_for_prediction(estimator, checkpoint, output_dir,
                                            args.max_seq_length)
    if new:
        print("Exported the model for prediction to %s" % export_dir)
    else:
        print("%s already holds step %d: no new export." % (export_dir,
                                                            checkpoint_step(checkpoint)))
    if not args.no_onnx and not files.is_remote(output_dir) and \
            add_onnx_copy(export_dir, run_settings.read_settings(output_dir)):
        return "completed without the ONNX copy"  # the conversion failed: said above
    return "completed"


def sample_count(value):
    if value == "all":
        return None
    count = int(value)
    if count <= 0:
        raise argparse.ArgumentTypeError("must be a positive number or 'all', not %s" % value)
    return count


def positive(kind):
    def parse(value):
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError("must be positive, not %s" % value)
        return number
    return parse


def sequence_length(value):
    length = int(value)
    if length < 3:
        raise argparse.ArgumentTypeError("must be at least 3 ([CLS], one word piece, [SEP]), "
                                         "not %s" % value)
    return length


def proportion(value):
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1, not %s" % value)
    return number


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_flags(p)
    add_file_flags(p)
    add_training_flags(p)
    add_validation_flags(p)
    add_speed_flags(p)
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate the trained model in the output dir without training (the "
                        "best checkpoint kept by --keep-best, else the latest), on the run's "
                        "test set or on another --test-file or --test-samples")
    p.add_argument("--horovod", action="store_true",
                   help="data-parallel training in every process horovodrun starts (one per "
                        "GPU); --batch-size is per process, so the global batch is "
                        "batch-size x processes")
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's deprecation warnings too")
    args = p.parse_args(argv)
    if args.eval_only and args.do_delete:  # before anything is touched
        raise UserError("--eval-only evaluates the checkpoints in the output dir, which "
                        "--do-delete would delete first: leave out --do-delete.")
    needs_validation = [flag for flag, value in (
        ("--eval-every-steps", args.eval_every_steps), ("--keep-best", args.keep_best),
        ("--early-stopping-patience", args.early_stopping_patience)) if value]
    if needs_validation and not args.validation_samples and not args.validation_file:
        p.error("%s needs --validation-samples N or --validation-file FILE"
                % ", ".join(needs_validation))
    check_file_flags(p, args)
    return args


def add_data_flags(p):
    p.add_argument("--data-dir", default=config.DATA_DIR,
                   help="folder that holds aclImdb/ (downloaded there when missing)")
    p.add_argument("--data-url", default=config.DATA_URL, help="where to download aclImdb from")
    p.add_argument("--data-md5", default=config.DATA_MD5,
                   help="MD5 of the downloaded archive; an empty string skips the check")
    p.add_argument("--bert-hub", default=config.BERT_MODEL_HUB,
                   help="TF1 BERT Hub module: a tfhub.dev URL or a local module folder")
    p.add_argument("--output-dir", default=config.OUTPUT_DIR,
                   help="checkpoints, summaries and results; training resumes from it")
    p.add_argument("--do-delete", action="store_true", default=config.DO_DELETE,
                   help="delete the output dir first (only if it holds nothing but this "
                        "project's output)")
    p.add_argument("--bucket", default=config.BUCKET if config.USE_BUCKET else None,
                   help="GCS bucket: output goes to gs://BUCKET/OUTPUT_DIR")
    p.add_argument("--train-samples", type=sample_count,
                   default=NotebookDefault(config.TRAIN_SAMPLES),
                   help="training reviews to sample, or 'all' (25,000)")
    p.add_argument("--test-samples", type=sample_count,
                   default=NotebookDefault(config.TEST_SAMPLES),
                   help="test reviews to sample, or 'all' (25,000)")
    p.add_argument("--max-seq-length", type=sequence_length, default=config.MAX_SEQ_LENGTH,
                   help="word pieces per review, [CLS] and [SEP] included")
    p.add_argument("--truncate", choices=MODES, default=HEAD,
                   help="which max-seq-length - 2 word pieces a longer review keeps: its "
                        "first ones (the notebook's), its last ones, or the first quarter "
                        "and the last three quarters of them (head+tail)")


def add_file_flags(p):
    p.add_argument("--train-file", default=None,
                   help="train on your own labelled texts: a .csv, .tsv (header row) or "
                        ".jsonl file, UTF-8 (needs --test-file; --train-samples and "
                        "--test-samples then default to all)")
    p.add_argument("--test-file", default=None, help="the test texts (with --train-file)")
    p.add_argument("--validation-file", default=None,
                   help="evaluate these texts during training (all of them, or "
                        "--validation-samples N)")
    p.add_argument("--text-column", default=config.DATA_COLUMN,
                   help="the files' column (JSON key) that holds the text")
    p.add_argument("--label-column", default=config.LABEL_COLUMN,
                   help="the files' column (JSON key) that holds the label, read as text")
    p.add_argument("--labels", default=None,
                   help="a,b,c: the labels in this order; without it, the training "
                        "file's labels, sorted")
    p.add_argument("--positive-label", default=None,
                   help="with two labels, the one precision, recall and F1 are about; "
                        "without it, the second")
    p.add_argument("--allow-multiline-fields", action="store_true",
                   help="accept .csv/.tsv rows whose quoted text spans lines and holds the "
                        "delimiter (refused by default: a stray quote merges rows so)")
    p.add_argument("--text-pair-column", default=None,
                   help="the files' column (JSON key) of a second text: sentence pairs "
                        "(bert's text_b), e.g. paraphrase or question/answer")
    p.add_argument("--task", choices=TASKS, default=SINGLE_LABEL,
                   help="single-label: one label per text; multi-label: any number of "
                        "labels per text; regression: a number per text")
    p.add_argument("--label-separator", default=None,
                   help="multi-label, CSV and TSV: what separates the labels in a cell "
                        "(default %r; JSON Lines holds a list)" % DEFAULT_SEPARATOR)
    p.add_argument("--threshold", type=proportion, default=None,
                   help="multi-label: a label is predicted at this probability or more "
                        "(default %s)" % DEFAULT_THRESHOLD)


class NotebookDefault(int):
    """The default of --train-samples and --test-samples (the notebook's 5000 of aclImdb):
    with --train-file, all of the file's rows."""


def check_file_flags(p, args):
    """--train-file and --test-file come together; the other file flags need them."""
    if bool(args.train_file) != bool(args.test_file):
        p.error("--train-file and --test-file go together: give both (or neither, for "
                "aclImdb)")
    if not args.train_file:
        given = [flag for flag, value in (
            ("--validation-file", args.validation_file), ("--labels", args.labels),
            ("--positive-label", args.positive_label),
            ("--text-column", args.text_column != config.DATA_COLUMN),
            ("--label-column", args.label_column != config.LABEL_COLUMN),
            ("--allow-multiline-fields", args.allow_multiline_fields),
            ("--text-pair-column", args.text_pair_column),
            ("--task", args.task != SINGLE_LABEL), ("--label-separator", args.label_separator),
            ("--threshold", args.threshold is not None)) if value]
        if given:
            p.error("%s need --train-file and --test-file" % ", ".join(given))
    for name in ("train_samples", "test_samples"):
        if type(getattr(args, name)) is NotebookDefault:
            setattr(args, name, None if args.train_file else int(getattr(args, name)))
    check_task_flags(args)
    text_files.check_paths(args)


def check_task_flags(args):
    """--task, --text-pair-column and the flags that go with them (docs/own-data.md)."""
    multi_label_flags = [flag for flag, value in (
        ("--label-separator", args.label_separator),
        ("--threshold", args.threshold is not None)) if value]
    if multi_label_flags and args.task != MULTI_LABEL:
        raise UserError("%s: for --task multi-label only." % ", ".join(multi_label_flags))
    if args.task == REGRESSION and args.labels is not None:
        raise UserError("--labels: --task regression learns a number per text and has no "
                        "labels; leave --labels out.")
    if args.task != SINGLE_LABEL and args.positive_label is not None:
        raise UserError("--positive-label: for --task single-label with two labels only.")
    if args.label_separator == "":
        raise UserError("--label-separator '': give a character that no label holds, such "
                        "as %r." % DEFAULT_SEPARATOR)
    if args.text_pair_column is not None and args.text_pair_column == args.text_column:
        raise UserError("--text-pair-column %s is the --text-column too: name the column "
                        "of the second text." % args.text_pair_column)
    if args.text_pair_column and args.truncate != HEAD:
        raise UserError("--truncate %s is for single texts; sentence pairs "
                        "(--text-pair-column) are cut as bert cuts them, the longer text "
                        "first (--truncate head)." % args.truncate)
    if args.task == MULTI_LABEL:
        args.label_separator = args.label_separator or DEFAULT_SEPARATOR
        args.threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold


def add_training_flags(p):
    p.add_argument("--batch-size", type=positive(int), default=config.BATCH_SIZE)
    p.add_argument("--gradient-accumulation-steps", type=positive(int), default=1,
                   help="sum the gradients of N batches of --batch-size, then update once: "
                        "the update of a batch N x --batch-size, in the memory of one "
                        "--batch-size; steps, warm-up and checkpoints count updates")
    p.add_argument("--learning-rate", type=positive(float), default=config.LEARNING_RATE)
    p.add_argument("--epochs", type=positive(float), default=config.NUM_TRAIN_EPOCHS)
    p.add_argument("--warmup-proportion", type=proportion, default=config.WARMUP_PROPORTION,
                   help="share of the steps over which the learning rate warms up")
    p.add_argument("--save-checkpoints-steps", type=positive(int),
                   default=config.SAVE_CHECKPOINTS_STEPS)
    p.add_argument("--save-checkpoints-secs", type=positive(int),
                   default=config.SAVE_CHECKPOINTS_SECS,
                   help="also save at least this often (and on SIGINT/SIGTERM)")
    p.add_argument("--save-summary-steps", type=positive(int),
                   default=config.SAVE_SUMMARY_STEPS)
    p.add_argument("--seed", type=int, default=config.SEED,
                   help="seed of the review sample, shuffling and initialisation")
    p.add_argument("--group-by-length", action="store_true",
                   help="train on batches of reviews of like length (sorted within windows "
                        "of 8 batches), each padded to its longest: faster on texts of "
                        "mixed lengths; off by default, as it changes which reviews share "
                        "a batch")


def add_validation_flags(p):
    p.add_argument("--validation-samples", type=validation_count, default=0,
                   help="evaluate this many reviews of the training split (never in the "
                        "training sample) during training; 0: off, as in the notebook")
    p.add_argument("--eval-every-steps", type=positive(int), default=None,
                   help="evaluate the validation reviews every N steps (default: once per "
                        "epoch) and at the last step")
    p.add_argument("--keep-best", action="store_true",
                   help="test results and the export use the checkpoint with the best "
                        "validation accuracy")
    p.add_argument("--early-stopping-patience", type=positive(int), default=None,
                   help="stop when validation accuracy has not improved for K evaluations "
                        "in a row")


def validation_count(value):
    if value == "all":
        raise argparse.ArgumentTypeError("'all' is not allowed: the validation reviews come "
                                         "out of the training split")
    count = int(value)
    if count < 0:
        raise argparse.ArgumentTypeError("must be 0 (off) or a positive number, not %s" % value)
    return count


def add_speed_flags(p):
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 mixed precision on CPUs with AVX512_BF16/AMX (oneDNN "
                        "graph rewrite); off by default, as the notebook ran float32")
    p.add_argument("--use-xla", action="store_true",
                   help="XLA JIT compilation (GPU; off by default, as in the notebook)")
    p.add_argument("--use-amp", action="store_true",
                   help="float16 mixed precision with loss scaling (GPU; off by default)")
    p.add_argument("--no-tf32", action="store_true",
                   help="float32 matmuls in full float32 on Ampere and newer GPUs, which "
                        "TensorFlow otherwise runs in TensorFloat-32 (slower)")
    p.add_argument("--cpu", action="store_true",
                   help="train on the CPU even where a GPU is (many times slower); e.g. on "
                        "a GPU TensorFlow 2.15 cannot run (Blackwell) or whose driver is "
                        "too old")
    p.add_argument("--no-onnx", action="store_true",
                   help="write no model.onnx beside the export (saves tf2onnx's time; "
                        "predict.py then uses the SavedModel)")
    p.add_argument("--reference-tokenizer", action="store_true",
                   help="convert features with bert's FullTokenizer only (slower; the fast "
                        "path gives the same ids)")


if __name__ == "__main__":
    run_script(main)
