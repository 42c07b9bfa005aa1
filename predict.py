"""Say whether sentences are Positive or Negative (or which of the labels of your own
data, with a model trained on --train-file), with the model train.py trained (the
notebook's getPrediction, from the command line, without retraining).

    python predict.py "That movie was absolutely awful" "Absolutely fantastic!"
    python predict.py --file reviews.txt --json        # one sentence per line; - is stdin

Output, one line per sentence: label, probability of that label, the log-probabilities of
[Negative, Positive] (or of the run's labels, in the order of model_settings.json's
label_names), the sentence. It uses the export of train.py when it holds the latest
checkpoint (or the best one that --keep-best recorded): its ONNX copy through ONNX Runtime,
without loading TensorFlow, else the SavedModel; without an export it restores that
checkpoint through the Estimator. stderr says which ran.
"""
import argparse
import json
import os
import sys

import numpy as np
from tqdm import tqdm

import config
from imdb_bert import onnx_model, output_folder, run_state
from imdb_bert.errors import CONTEXT, UserError, run_script
from imdb_bert.output_folder import checkpoint_step, newest_export


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sentences", nargs="*", help="sentences to classify")
    p.add_argument("--file", help="read sentences from this file, one per line (- for stdin)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    p.add_argument("--output-dir", default=config.OUTPUT_DIR,
                   help="the folder train.py wrote (default %(default)s)")
    p.add_argument("--bert-hub", default=None,
                   help="for a folder without model_settings.json (made by the notebook): "
                        "the Hub module it was trained from")
    p.add_argument("--max-seq-length", type=int, default=None,
                   help="for a folder without model_settings.json: its sequence length "
                        "(default %d)" % config.MAX_SEQ_LENGTH)
    p.add_argument("--no-onnx", action="store_true",
                   help="use TensorFlow (the SavedModel, else the checkpoint) even when the "
                        "export has its ONNX copy")
    p.add_argument("--from-checkpoint", action="store_true",
                   help="restore the checkpoint through the Estimator even when an export "
                        "exists")
    p.add_argument("--allow-untrained", action="store_true",
                   help="predict even with a step-0 checkpoint (an untrained model)")
    p.add_argument("--batch-size", type=int, default=config.BATCH_SIZE,
                   help="sentences per batch (default %(default)s)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 mixed precision on CPUs with AVX512_BF16/AMX")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's log")
    return p.parse_args(argv)


def read_sentences(args):
    """The sentences to classify, in order; blank lines of --file are skipped."""
    sentences = list(args.sentences)
    if args.file:
        try:
            if args.file == "-":
                lines = split_lines(sys.stdin.buffer.read().decode("utf-8"))
            else:
                with open(args.file, encoding="utf-8", newline="") as f:
                    lines = split_lines(f.read())
        except (OSError, UnicodeDecodeError) as e:
            raise UserError("Cannot read sentences from %s: %s" % (args.file, e))
        kept = [line for line in lines if line.strip()]
        if len(kept) < len(lines):
            print("Skipped %d blank lines of %s" % (len(lines) - len(kept), args.file),
                  file=sys.stderr)
        sentences += kept
    if not sentences:
        raise UserError("No sentences to classify: give them as arguments or with --file.")
    return sentences


def split_lines(text):
    """Lines split at "\n" only ("\r\n" counts as one): reviews hold U+0085, U+2028, form
    feeds and the like, at which str.splitlines() would also split a line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# Characters at which a reader of the plain output (str.splitlines and the like) would
# break a line: written escaped, so the output stays one line per sentence.
LINE_BREAKS = {ord(c): "\\u%04x" % ord(c)
               for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def model_settings(args):
    """The settings the model was trained with: model_settings.json, or for a notebook's
    folder the flags. A flag that contradicts model_settings.json is an error."""
    settings = output_folder.read_settings(args.output_dir)
    if settings is None:
        if not args.bert_hub:
            raise UserError(
                "%s has no model_settings.json. If train.py has not run yet, run it first; "
                "for a folder made by the notebook, pass --bert-hub with the module it was "
                "trained from (and --max-seq-length if not %d)."
                % (args.output_dir, config.MAX_SEQ_LENGTH))
        return output_folder.notebook_settings(args.bert_hub, args.max_seq_length)
    given = {"bert_hub": args.bert_hub, "max_seq_length": args.max_seq_length}
    for key, value in given.items():
        if value is not None and value != settings[key]:
            if key == "bert_hub" and not output_folder.is_remote(value) and \
                    os.path.abspath(value) == settings[key]:
                continue
            raise UserError("--%s %s does not match the model in %s, trained with %s. "
                            "Leave the flag out to use the trained model's setting."
                            % (key.replace("_", "-"), value, args.output_dir, settings[key]))
    return settings


def main(argv=None):
    args = parse_args(argv)
    if args.batch_size <= 0:
        raise UserError("--batch-size must be positive, not %d." % args.batch_size)
    sentences = read_sentences(args)

    # With --keep-best, train.py recorded the checkpoint of the best validation accuracy.
    checkpoint = (output_folder.best_checkpoint(args.output_dir)
                  or output_folder.latest_checkpoint(args.output_dir))
    if checkpoint is None:
        raise UserError("No checkpoint in %s: run train.py first (or pass --output-dir with "
                        "the folder it wrote)." % args.output_dir)
    settings = model_settings(args)
    run_state.check_trained(args.output_dir, checkpoint, settings, args.allow_untrained)
    export_dir, export_info = newest_export(args.output_dir)
    if args.from_checkpoint:
        export_dir, reason = None, "--from-checkpoint"
    elif (export_info is None or export_info.get("global_step") != checkpoint_step(checkpoint)
          or export_info.get("max_seq_length") != settings["max_seq_length"]):
        export_dir, reason = None, "no export of step %d" % checkpoint_step(checkpoint)
    else:
        reason = onnx_unusable(args, export_dir, len(sentences))

    log_probs = None
    if export_dir and not reason:
        print("Predicting with ONNX Runtime on the CPU: %s"
              % onnx_model.model_path(export_dir), file=sys.stderr)
        try:
            log_probs = predict_with_onnx(export_dir, settings, sentences, args.batch_size)
        except onnx_model.DamagedModel as damage:
            reason = "its ONNX copy cannot be loaded: %s" % damage
    if log_probs is None:
        log_probs = predict_with_tensorflow(args, checkpoint, export_dir, settings, sentences,
                                            reason)
    check_label_count(args.output_dir, log_probs, settings["label_names"])
    print_predictions(sentences, log_probs, settings["label_names"], args.json)
    return 0


def onnx_unusable(args, export_dir, sentence_count):
    """Why the export's ONNX copy is not the model to use, or None."""
    if args.no_onnx or args.bf16:
        return "--no-onnx" if args.no_onnx else "--bf16 runs in TensorFlow"
    if output_folder.is_remote(args.output_dir):
        return "ONNX Runtime reads local folders only"
    if not os.path.exists(onnx_model.model_path(export_dir)):
        return "no %s in it" % onnx_model.MODEL_FILE
    if onnx_model.missing("onnxruntime"):
        return "onnxruntime is not installed"
    if sentence_count > config.ONNX_MAX_SENTENCES_WITH_GPU and \
            onnx_model.nvidia_driver_present():
        return "%d sentences with an NVIDIA GPU here" % sentence_count
    return None


def predict_with_onnx(export_dir, settings, sentences, batch_size):
    batch_count = -(-len(sentences) // batch_size)
    with tqdm(total=batch_count, desc="Predicting", unit=" batches",
              disable=len(sentences) <= batch_size, file=sys.stderr) as progress:
        return onnx_model.predict(export_dir, settings, sentences, batch_size, progress.update)


def predict_with_tensorflow(args, checkpoint, export_dir, settings, sentences, reason):
    """Log-probabilities from the SavedModel in `export_dir`, else (none, or damaged) from
    the checkpoint through the Estimator. TensorFlow is imported here only: the ONNX path
    answers in less time than its import takes."""
    from imdb_bert import device
    from imdb_bert.compat import quiet_tf_logging, tf
    from imdb_bert.serving import DamagedExport, predict_from_export
    quiet_tf_logging(args.verbose)
    if not args.verbose:
        tf.logging.set_verbosity(tf.logging.WARN)
    session_config, speed_messages, _ = device.session_config(bf16=args.bf16)
    for message in speed_messages:
        print(message, file=sys.stderr)
    CONTEXT.update(device=device.device_name(), batch_size=args.batch_size,
                   max_seq_length=settings["max_seq_length"])  # for an out-of-memory error
    if export_dir:
        print("Predicting with the SavedModel %s (%s)." % (export_dir, reason),
              file=sys.stderr)
        try:
            return predict_from_export(export_dir, settings, sentences, args.batch_size,
                                       session_config)
        except DamagedExport as damage:
            reason = "the export %s is damaged: %s" % (export_dir, damage)
    print("Restoring %s through the Estimator (%s)." % (checkpoint, reason), file=sys.stderr)
    return restore_and_predict(args, checkpoint, settings, sentences, session_config)


def restore_and_predict(args, checkpoint, settings, sentences, session_config):
    """Log-probabilities from `checkpoint` through the Estimator; from the newest one if a
    training run that writes the folder deletes it first."""
    from imdb_bert.serving import CheckpointGone, predict_from_checkpoint
    while True:
        try:
            return predict_from_checkpoint(args.output_dir, checkpoint, settings, sentences,
                                           args.batch_size, session_config)
        except CheckpointGone:
            newer = output_folder.latest_checkpoint(args.output_dir)
            if newer in (None, checkpoint):
                raise UserError("%s was deleted while predict.py was restoring it. Run "
                                "predict.py again: it takes the newest checkpoint then."
                                % checkpoint)
            print("%s was deleted meanwhile (a training run keeps only its newest "
                  "checkpoints): restoring %s." % (checkpoint, newer), file=sys.stderr)
            checkpoint = newer


def check_label_count(output_dir, log_probs, label_names):
    """The model's outputs must be the labels model_settings.json names."""
    if log_probs.shape[-1] != len(label_names):
        raise UserError("The model in %s has %d outputs but its model_settings.json names %d "
                        "labels (%s): the folder mixes two runs. Train again with "
                        "--do-delete, or pass the --output-dir of the run."
                        % (output_dir, log_probs.shape[-1], len(label_names),
                           ", ".join(map(str, label_names))))


def print_predictions(sentences, log_probs, label_names, as_json):
    """One line per sentence (label, its probability, log-probabilities, sentence), or a
    JSON list (probabilities in the order of "label_names")."""
    probabilities = np.exp(log_probs)
    labels = np.argmax(log_probs, axis=-1)
    if as_json:
        print(json.dumps([{"sentence": sentence, "label": label_names[label],
                           "probabilities": [float(p) for p in probs],
                           "log_probabilities": [float(lp) for lp in lps],
                           "label_names": list(label_names)}
                          for sentence, label, probs, lps
                          in zip(sentences, labels, probabilities, log_probs)],
                         indent=2, ensure_ascii=False))
        return
    for sentence, label, probs, lps in zip(sentences, labels, probabilities, log_probs):
        print("%s\t%.4f\t[%s]\t%s" % (label_names[label], probs[label],
                                      ", ".join("%.4f" % lp for lp in lps),
                                      sentence.translate(LINE_BREAKS)))


if __name__ == "__main__":
    run_script(main)
