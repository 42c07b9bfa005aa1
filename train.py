"""Fine-tune BERT on IMDB movie reviews: Google's notebook "Predicting Movie Review
Sentiment with BERT on TF Hub", step by step, as a script.

    python train.py                       # the notebook's run: BERT-Base, 5000/5000 reviews
    python train.py --bert-hub DIR        # a local Hub module (see export_hub_module.py)
    horovodrun -np 4 python train.py --horovod   # 4 GPUs (make horovod installs Horovod)
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from importlib import metadata

import config
import data
import device
import distributed
import feature_cache
import features
import hub_module
import report
from compat import quiet_tf_logging, run_classifier, tf
from errors import UserError, run_script
from export import checkpoint_step, export_for_prediction
from hooks import CheckpointSaverHook, StopOnSignalHook, WeightsDigestHook
from model import model_fn_builder
from outputs import read_json, write_json

# What --do-delete may remove: only what this project (or the Estimator) writes.
PROJECT_OUTPUT_NAMES = ("checkpoint", "graph.pbtxt", ".gitkeep", "eval", "export",
                        "model_settings.json", "eval_results.json", "run_info.json",
                        "test_predictions.csv", "confusion_matrix.png", "roc_curve.png")
PROJECT_OUTPUT_PREFIXES = ("model.ckpt-", "events.out.tfevents.", "features-")
PACKAGES = ("tensorflow", "tensorflow-hub", "bert-tensorflow", "tf-slim", "numpy", "pandas",
            "scikit-learn", "matplotlib")
# model_settings.json keys that must not change while checkpoints exist.
SETTINGS_THAT_MUST_MATCH = ("bert_hub", "max_seq_length", "label_list", "label_names",
                            "do_lower_case", "seed", "data_dir", "train_samples",
                            "test_samples")


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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=config.DATA_DIR,
                   help="folder that holds aclImdb/ (downloaded there when missing)")
    p.add_argument("--data-url", default=config.DATA_URL, help="where to download aclImdb from")
    p.add_argument("--data-md5", default=config.DATA_MD5,
                   help="MD5 of the downloaded archive; an empty string skips the check")
    p.add_argument("--bert-hub", default=config.BERT_MODEL_HUB,
                   help="TF1 BERT Hub module: a tfhub.dev URL or a local module folder")
    p.add_argument("--output-dir", default=config.OUTPUT_DIR,
                   help="checkpoints, summaries and results; training resumes from it")
    p.add_argument("--do-delete", action="store_true",
                   help="delete the output dir first (only if it holds nothing but this "
                        "project's output)")
    p.add_argument("--bucket", default=config.BUCKET,
                   help="GCS bucket: output goes to gs://BUCKET/OUTPUT_DIR")
    p.add_argument("--train-samples", type=sample_count, default=config.TRAIN_SAMPLES,
                   help="training reviews to sample, or 'all' (25,000)")
    p.add_argument("--test-samples", type=sample_count, default=config.TEST_SAMPLES,
                   help="test reviews to sample, or 'all' (25,000)")
    p.add_argument("--max-seq-length", type=positive(int), default=config.MAX_SEQ_LENGTH,
                   help="word pieces per review, [CLS] and [SEP] included")
    p.add_argument("--batch-size", type=positive(int), default=config.BATCH_SIZE)
    p.add_argument("--learning-rate", type=positive(float), default=config.LEARNING_RATE)
    p.add_argument("--epochs", type=positive(float), default=config.NUM_TRAIN_EPOCHS)
    p.add_argument("--warmup-proportion", type=float, default=config.WARMUP_PROPORTION,
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
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 mixed precision on CPUs with AVX512_BF16/AMX (oneDNN "
                        "graph rewrite); off by default, as the notebook ran float32")
    p.add_argument("--use-xla", action="store_true",
                   help="XLA JIT compilation (GPU; off by default, as in the notebook)")
    p.add_argument("--use-amp", action="store_true",
                   help="float16 mixed precision with loss scaling (GPU; off by default)")
    p.add_argument("--reference-tokenizer", action="store_true",
                   help="convert features with bert's FullTokenizer only (slower; the fast "
                        "path gives the same ids)")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate the latest checkpoint in the output dir, without training")
    p.add_argument("--horovod", action="store_true",
                   help="data-parallel training in every process horovodrun starts (one per "
                        "GPU); --batch-size is per process, so the global batch is "
                        "batch-size x processes")
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's deprecation warnings too")
    return p.parse_args(argv)


def delete_output_dir(output_dir, data_dir):
    """Delete `output_dir` only if it holds nothing but this project's output."""
    target = os.path.realpath(output_dir)
    forbidden = {"/", os.path.expanduser("~"), os.path.dirname(os.path.abspath(__file__)),
                 os.path.realpath(data_dir)}
    if target in {os.path.realpath(p) for p in forbidden}:
        raise UserError("Refusing --do-delete of %s: it is not an output folder. Pass "
                        "--output-dir with the folder to delete." % output_dir)
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(output_dir)]
    foreign = [name for name in names
               if name.split(".tmp-")[0] not in PROJECT_OUTPUT_NAMES  # or a temporary file
               and not name.startswith(PROJECT_OUTPUT_PREFIXES)]
    if foreign:
        raise UserError("Refusing --do-delete of %s: it holds files this project did not "
                        "write (%s). Move them away or delete the folder yourself."
                        % (output_dir, ", ".join(sorted(foreign)[:5])))
    tf.io.gfile.rmtree(output_dir)
    if ".gitkeep" in names:  # OUTPUT_Bert/.gitkeep is part of the repository
        tf.io.gfile.makedirs(output_dir)
        with tf.io.gfile.GFile(os.path.join(output_dir, ".gitkeep"), "w") as f:
            f.write("")


def check_settings(settings_path, settings):
    """Stop before touching checkpoints that were trained with other settings."""
    previous = read_json(settings_path)
    if previous is None:
        return
    changed = [key for key in SETTINGS_THAT_MUST_MATCH
               if key in settings and previous.get(key) != settings[key]]
    if changed:
        raise UserError(
            "%s was written for other settings (%s), so its checkpoints do not fit this run. "
            "Pass another --output-dir, rerun with the old values, or add --do-delete."
            % (settings_path, "; ".join("%s: %r now %r" % (k, previous.get(k), settings[k])
                                        for k in changed)))


def run_info(args, device_line, start_time, end_time=None, outcome="running", processes=1):
    """What run_info.json records: flags, versions, device, commit, times."""
    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        commit = ""
    return {"flags": vars(args), "seed": args.seed, "python": sys.version.split()[0],
            "packages": {package: version(package) for package in PACKAGES},
            "device": device_line, "processes": processes, "git_commit": commit or None,
            "start_time": start_time.isoformat(timespec="seconds"),
            "end_time": end_time.isoformat(timespec="seconds") if end_time else None,
            "outcome": outcome}


def main(argv=None):
    args = parse_args(argv)
    quiet_tf_logging(args.verbose)
    start_time = datetime.now()
    # With --horovod this is one of several processes; process 0 (the chief) writes all
    # output and the others only train.
    distributed.check_launch(args.horovod)
    hvd = distributed.init() if args.horovod else None
    processes = hvd.size() if hvd else 1
    is_chief = hvd is None or hvd.rank() == 0
    if not is_chief:
        distributed.quiet_worker()

    # Step 1: the output directory.
    output_dir = args.output_dir
    if args.bucket:
        output_dir = "gs://{}/{}".format(args.bucket, output_dir)
    if is_chief and args.do_delete and tf.io.gfile.exists(output_dir):
        delete_output_dir(output_dir, args.data_dir)
    if is_chief:
        tf.io.gfile.makedirs(output_dir)
    print("***** Model output directory: {} *****".format(output_dir))
    device_line = device.describe()
    print(device_line)
    session_config, speed_messages, use_amp = device.session_config(
        args.bf16, args.use_xla, args.use_amp)
    for message in speed_messages:
        print(message)
    if hvd:
        session_config = distributed.pin_to_local_gpu(session_config, hvd)
        print("Horovod: %d processes, %d reviews each of every global batch of %d"
              % (processes, args.batch_size, args.batch_size * processes))
    # Checked now, before the slow steps, and again once the module's casing is known.
    settings = {
        "bert_hub": args.bert_hub if hub_module.is_url(args.bert_hub)
        else os.path.abspath(args.bert_hub),
        "max_seq_length": args.max_seq_length,
        "label_list": config.label_list,
        "label_names": config.LABEL_NAMES,
        "seed": args.seed,
        "data_dir": os.path.abspath(args.data_dir),
        "train_samples": args.train_samples,
        "test_samples": args.test_samples,
    }
    settings_path = os.path.join(output_dir, "model_settings.json")
    if is_chief:
        check_settings(settings_path, settings)

    # Step 2: the data, as DataFrames, then a sample "to keep training fast". With
    # --horovod one process per machine downloads, while the others wait.
    downloads = hvd is None or hvd.local_rank() == 0
    if not downloads:
        distributed.barrier(hvd, session_config)
    train, test = data.download_and_load_datasets(args.data_dir, args.data_url,
                                                  args.data_md5, args.seed)
    if hvd and downloads:
        distributed.barrier(hvd, session_config)
    train = data.sample(train, args.train_samples, args.seed)
    test = data.sample(test, args.test_samples, args.seed)
    print("Train reviews: %d, test reviews: %d" % (len(train), len(test)))

    # Step 3: InputExamples.
    train_InputExamples = features.make_examples(train[config.DATA_COLUMN],
                                                 train[config.LABEL_COLUMN])
    test_InputExamples = features.make_examples(test[config.DATA_COLUMN],
                                                test[config.LABEL_COLUMN])

    # Step 4: the tokenizer that comes with the Hub module.
    bert_hub = hub_module.resolve(args.bert_hub)
    limit = hub_module.position_limit(bert_hub)
    if args.max_seq_length > limit:
        raise UserError("--max-seq-length %d is more than the %d positions %s takes; pass "
                        "--max-seq-length %d or less." % (args.max_seq_length, limit,
                                                          args.bert_hub, limit))
    vocab_file, do_lower_case = features.tokenization_info(bert_hub)
    tokenizer = features.create_tokenizer(vocab_file, do_lower_case,
                                          fast=not args.reference_tokenizer)
    settings["do_lower_case"] = do_lower_case
    if is_chief:
        check_settings(settings_path, settings)
        write_json(settings_path, settings)
    elif args.eval_only:
        return 0  # the chief evaluates

    # Step 5: InputFeatures (the training ones only when training), cached in output_dir
    # by the chief; other processes read the cache or convert for themselves.
    test_features = [] if not is_chief else feature_cache.load_or_convert(
        output_dir, "test", test_InputExamples, config.label_list, args.max_seq_length,
        tokenizer, vocab_file, do_lower_case)
    train_features = [] if args.eval_only else feature_cache.load_or_convert(
        output_dir, "train", train_InputExamples, config.label_list, args.max_seq_length,
        tokenizer, vocab_file, do_lower_case, write=is_chief)

    # Steps 6-9: the model, the hyper-parameters and the Estimator. An epoch is a pass of
    # the global batches (batch size x processes) over the training sample.
    global_batch_size = args.batch_size * processes
    num_train_steps = int(len(train) / global_batch_size * args.epochs)
    num_warmup_steps = int(num_train_steps * args.warmup_proportion)
    if num_train_steps < 1:
        raise UserError("%d training reviews at batch size %d for %s epochs make no training "
                        "step; sample more reviews or lower --batch-size."
                        % (len(train), global_batch_size, args.epochs))

    # Checkpoints are saved by the project's hook (steps, seconds and signals), so the
    # RunConfig's own saving is off. Only the chief restores and saves checkpoints; other
    # processes start from its variables (broadcast) in a temporary model dir of their own.
    model_dir = output_dir if is_chief else tempfile.mkdtemp(prefix="horovod-worker-")
    run_config = tf.estimator.RunConfig(
        model_dir=model_dir,
        save_summary_steps=args.save_summary_steps,
        save_checkpoints_steps=None,
        save_checkpoints_secs=None,
        log_step_count_steps=args.save_summary_steps,
        tf_random_seed=args.seed,
        session_config=session_config)
    eval_batches = []
    model_fn = model_fn_builder(
        num_labels=len(config.label_list),
        learning_rate=args.learning_rate,
        num_train_steps=num_train_steps,
        num_warmup_steps=num_warmup_steps,
        bert_hub=bert_hub,
        progress_every_steps=args.save_summary_steps,
        eval_predictions=eval_batches,
        loss_scaling=use_amp,
        hvd=hvd)
    estimator = tf.estimator.Estimator(
        model_fn=model_fn, config=run_config, params={"batch_size": args.batch_size})
    if is_chief:
        write_json(os.path.join(output_dir, "run_info.json"),
                   run_info(args, device_line, start_time, processes=processes))

    # Step 10: train (resuming from the latest checkpoint, if any).
    if args.eval_only:
        if estimator.latest_checkpoint() is None:
            raise UserError("--eval-only: no checkpoint in %s to evaluate; train first."
                            % output_dir)
    else:
        if hvd:
            train_input_fn = distributed.sharded_input_fn_builder(
                train_features, args.max_seq_length, hvd.rank(), processes)
        else:
            train_input_fn = run_classifier.input_fn_builder(
                features=train_features, seq_length=args.max_seq_length,
                is_training=True, drop_remainder=False)
        stop = StopOnSignalHook(hvd)
        hooks = [stop]
        if hvd:  # everyone starts from the chief's variables and reports a weights digest
            hooks = [hvd.BroadcastGlobalVariablesHook(0), stop,
                     WeightsDigestHook(hvd.rank(), processes)]
        if is_chief:
            hooks.append(CheckpointSaverHook(output_dir, args.save_checkpoints_steps,
                                             args.save_checkpoints_secs, stop))
        # All processes must run the same steps: the chief's checkpoint says how many.
        latest = estimator.latest_checkpoint() if is_chief else None
        start_step = checkpoint_step(latest) if latest else 0
        if hvd:
            start_step = distributed.from_rank_0(hvd, start_step, session_config,
                                                 "start_step")
        if start_step < num_train_steps:
            print("Beginning Training!")
            current_time = datetime.now()
            estimator.train(input_fn=train_input_fn, max_steps=num_train_steps, hooks=hooks)
            print("Training took time ", datetime.now() - current_time)
        else:
            print("The checkpoint in %s is at step %d of %d: nothing left to train."
                  % (output_dir, start_step, num_train_steps))
        if hvd and stop.stopped_by_signal:
            distributed.barrier(hvd, session_config)  # exit only once the chief has saved
        if not is_chief:
            shutil.rmtree(model_dir, ignore_errors=True)
            return 128 + stop.stopped_by_signal if stop.stopped_by_signal else 0
        if stop.stopped_by_signal:
            step = estimator.get_variable_value("global_step")
            write_json(os.path.join(output_dir, "run_info.json"),
                       run_info(args, device_line, start_time, datetime.now(),
                                "interrupted at step %d" % step, processes))
            print("Interrupted at step %d of %d; the checkpoint is saved. Run the same command "
                  "again to resume." % (step, num_train_steps), file=sys.stderr)
            return 128 + stop.stopped_by_signal

    # Step 11: evaluate on the test sample.
    test_input_fn = run_classifier.input_fn_builder(
        features=test_features, seq_length=args.max_seq_length,
        is_training=False, drop_remainder=False)
    result = estimator.evaluate(input_fn=test_input_fn, steps=None)
    print(result)
    results = eval_results_json(result)
    results.update(report.write_report(output_dir, test, eval_batches, config.LABEL_NAMES))
    write_json(os.path.join(output_dir, "eval_results.json"), results)
    print("Plots, test_predictions.csv and eval_results.json are in %s" % output_dir)

    # Step 12 (for predict.py): a SavedModel of the trained model, fast to load.
    if not args.eval_only:
        export_dir = export_for_prediction(estimator, output_dir, args.max_seq_length)
        print("Exported the model for prediction to %s" % export_dir)
    write_json(os.path.join(output_dir, "run_info.json"),
               run_info(args, device_line, start_time, datetime.now(), "completed",
                        processes))
    return 0


def eval_results_json(result):
    """The evaluation dict with plain types: counts and the step as ints, the rest floats."""
    counts = ("true_positives", "true_negatives", "false_positives", "false_negatives",
              "global_step")
    return {key: int(value) if key in counts else float(value)
            for key, value in result.items()}


if __name__ == "__main__":
    run_script(main)
