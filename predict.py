"""Say whether sentences are Positive or Negative (or which of the labels of your own
data, with a model trained on --train-file), with the model train.py trained (the
notebook's getPrediction, from the command line, without retraining).

    python predict.py "That movie was absolutely awful" "Absolutely fantastic!"
    python predict.py --file reviews.txt --json        # one sentence per line; - is stdin
    python predict.py --file reviews.txt --jsonl       # one JSON object per line, streamed
    python predict.py "first text" --pair "second"     # a model of sentence pairs

Output, one line per sentence: label, probability of that label, the log-probabilities of
[Negative, Positive] (or of the run's labels, in the order of model_settings.json's
label_names), the sentence; written 8 batches at a time as they are classified (so is
--jsonl), in input order, while --json prints its list at the end. Ctrl-C or SIGTERM keeps the lines written, says
how many of how many, and exits with 130 or 143.

It uses the export of train.py when it holds the latest checkpoint (or the best one that
--keep-best recorded): its ONNX copy through ONNX Runtime, without loading TensorFlow, else
the SavedModel; without an export it restores that checkpoint through the Estimator.
stderr says which ran. When train.py fitted a temperature on a validation sample
(calibration.json), the probabilities are calibrated with it (--uncalibrated: raw).

    python predict.py --explain "Absolutely fantastic!"    # the words that decided, marked
    python predict.py --file reviews.txt --explain --html explained.html
"""
import argparse
import json
import os
import shlex
import signal
import sys

import numpy as np

import config
from imdb_bert import signals
from imdb_bert.errors import CONTEXT, UserError, run_script
from imdb_bert.evaluation import calibration
from imdb_bert.output import files, run_settings, run_state
from imdb_bert.output.files import CALIBRATION, checkpoint_step, newest_export
from imdb_bert.serving import answers, explain, inputs, onnx_model
from imdb_bert.tasks import SINGLE_LABEL, task_of


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sentences", nargs="*", help="sentences to classify")
    p.add_argument("--file", help="read sentences from this file, one per line (- for stdin); "
                                  "a .csv, .tsv or .jsonl file: its rows, in the columns "
                                  "the model was trained on")
    p.add_argument("--pair", action="append", metavar="TEXT",
                   help="the second text of a sentence pair (a model trained with "
                        "--text-pair-column): one --pair per sentence, in their order")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    p.add_argument("--jsonl", action="store_true",
                   help="print one JSON object per line (the elements of --json's list), "
                        "written as each 8 batches are classified")
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
                   help="sentences per batch, each padded to its longest sentence "
                        "(default %(default)s)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 mixed precision on CPUs with AVX512_BF16/AMX")
    p.add_argument("--uncalibrated", action="store_true",
                   help="the model's raw probabilities, without the temperature train.py "
                        "fitted on the validation sample")
    p.add_argument("--explain", action="store_true",
                   help="the words that decided: each sentence again with each word left "
                        "out (one more model input per word); the plain output marks the "
                        "top words, --json/--jsonl add \"explanation\"")
    p.add_argument("--explain-max-words", type=int, default=explain.MAX_WORDS,
                   help="with --explain, longer sentences leave out runs of consecutive "
                        "words, at most this many runs (default %(default)s)")
    p.add_argument("--html", metavar="FILE",
                   help="with --explain, also write a page with every sentence's words "
                        "coloured by score to FILE")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's log")
    return p.parse_intermixed_args(argv)  # "a" --pair "b" "c" --pair "d": sentences in order


def read_sentences(args):
    """(The sentences to classify, in order; their --pair texts, or None). A blank sentence
    (empty or only whitespace), as an argument or a line of --file, is skipped and counted
    on stderr, with its --pair: it holds nothing to classify. A table --file is read once
    the settings are (serving/inputs.py)."""
    filled = [i for i, sentence in enumerate(args.sentences) if sentence.strip()]
    sentences = [args.sentences[i] for i in filled]
    pairs = args.pair
    if pairs and len(pairs) == len(args.sentences):  # else inputs.py says the counts differ
        pairs = [pairs[i] for i in filled]
    if len(sentences) < len(args.sentences):
        print("Skipped %d blank arguments" % (len(args.sentences) - len(sentences)),
              file=sys.stderr)
    if args.file and not inputs.is_table(args.file):
        lines = file_lines(args.file)
        kept = [line for line in lines if line.strip()]
        if not kept and not sentences:
            raise UserError("%s holds no sentences%s: give one per line."
                            % ("stdin" if args.file == "-" else args.file,
                               " (only blank lines)" if lines else ""))
        if len(kept) < len(lines):
            print("Skipped %d blank lines of %s" % (len(lines) - len(kept), args.file),
                  file=sys.stderr)
        sentences += kept
    if not sentences and not inputs.is_table(args.file):
        raise UserError("No sentences to classify: give them as arguments or with --file.")
    return sentences, pairs


def file_lines(path):
    """The lines of --file `path` (- for stdin), read as train.py reads its files
    (text_files.decoded_lines: UTF-8, a BOM dropped, a line that is not UTF-8 named), split
    at "\n" only ("\r\n" counts as one): reviews hold U+0085, U+2028, form feeds and the
    like, at which str.splitlines() would also split a line."""
    # Imported here: with its csv and tqdm, 20-40 ms of start-up that sentences given as
    # arguments do not need.
    from imdb_bert.data.text_files import decoded_lines
    try:
        if path == "-":
            return without_line_ends(decoded_lines(sys.stdin.buffer, "stdin"))
        with open(path, "rb") as f:
            return without_line_ends(decoded_lines(f, path))
    except OSError as e:
        raise UserError("Cannot read sentences from %s: %s" % (path, e))


def without_line_ends(lines):
    """The lines without their "\n" or "\r\n"."""
    lines = [line[:-1] if line.endswith("\n") else line for line in lines]
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# Characters at which a reader of the plain output (str.splitlines and the like) would
# break a line, and the other C0 controls but tab, and DEL (a terminal would act on them):
# written escaped, so the output stays one visible line per sentence.
LINE_BREAKS = {ord(c): "\\u%04x" % ord(c)
               for c in "\x85\u2028\u2029\x7f" + "".join(map(chr, range(32))) if c != "\t"}

# In a --jsonl line: characters that JSON leaves as they are, at which str.splitlines()
# would split the line; escaped, they read back the same.
LINE_SEPARATORS = {ord(c): "\\u%04x" % ord(c) for c in "\x85\u2028\u2029"}


def model_settings(args):
    """The settings the model was trained with: model_settings.json, or for a notebook's
    folder the flags. A flag that contradicts model_settings.json is an error."""
    settings = run_settings.read_settings(args.output_dir)
    if settings is None:
        if not args.bert_hub:
            raise UserError(
                "%s has no model_settings.json. If train.py has not run yet, run it first; "
                "for a folder made by the notebook, pass --bert-hub with the module it was "
                "trained from (and --max-seq-length if not %d)."
                % (args.output_dir, config.MAX_SEQ_LENGTH))
        return run_settings.notebook_settings(args.bert_hub, args.max_seq_length)
    given = {"bert_hub": args.bert_hub, "max_seq_length": args.max_seq_length}
    for key, value in given.items():
        if value is not None and value != settings[key]:
            if key == "bert_hub" and not files.is_remote(value) and \
                    os.path.abspath(value) == settings[key]:
                continue
            raise UserError("--%s %s does not match the model in %s, trained with %s. "
                            "Leave the flag out to use the trained model's setting."
                            % (key.replace("_", "-"), value, args.output_dir, settings[key]))
    return settings


def check_flags(args):
    if args.batch_size <= 0:
        raise UserError("--batch-size must be positive, not %d." % args.batch_size)
    if args.json and args.jsonl:
        raise UserError("--json prints one list at the end, --jsonl one line per sentence "
                        "as it goes: pass one of them.")
    if args.explain_max_words <= 0:
        raise UserError("--explain-max-words must be positive, not %d."
                        % args.explain_max_words)
    if args.html and not args.explain:
        raise UserError("--html writes the page of --explain: pass --explain too.")


def main(argv=None):
    args = parse_args(argv)
    check_flags(args)
    sentences, pairs = read_sentences(args)

    # With --keep-best, train.py recorded the checkpoint of the best validation accuracy.
    checkpoint = (files.best_checkpoint(args.output_dir)
                  or files.latest_checkpoint(args.output_dir))
    if checkpoint is None:
        raise UserError("No checkpoint in %s: run train.py first (or pass --output-dir with "
                        "the folder it wrote)." % args.output_dir)
    settings = model_settings(args)
    sentences, pairs = inputs.sentences_and_pairs(args, settings, sentences, pairs)
    if args.explain and task_of(settings) != SINGLE_LABEL:
        raise UserError("--explain explains single-label models only; the model in %s is "
                        "%s." % (args.output_dir, task_of(settings)))
    run_state.check_trained(args.output_dir, checkpoint, settings, args.allow_untrained)
    output = Output(sentences, settings, args, temperature(args, checkpoint, settings), pairs)
    model_inputs, model_pairs = output.model_inputs()
    export_dir, export_info = newest_export(args.output_dir)
    if args.from_checkpoint:
        export_dir, reason = None, "--from-checkpoint"
    elif (export_info is None or export_info.get("global_step") != checkpoint_step(checkpoint)
          or export_info.get("max_seq_length") != settings["max_seq_length"]):
        export_dir, reason = None, "no export of step %d" % checkpoint_step(checkpoint)
    else:
        reason = onnx_unusable(args, export_dir, len(model_inputs))
        if reason == "no %s in it" % onnx_model.MODEL_FILE:
            say_how_to_write_the_onnx_copy(args)

    log_probs = None
    if export_dir and not reason:
        print("Predicting with ONNX Runtime on the CPU: %s"
              % onnx_model.model_path(export_dir), file=sys.stderr)
        try:
            log_probs = predict_with_onnx(export_dir, settings, model_inputs,
                                          args.batch_size, output.write, model_pairs)
        except onnx_model.DamagedModel as damage:
            reason = "its ONNX copy cannot be loaded: %s" % damage
    if log_probs is None:
        predict_with_tensorflow(args, checkpoint, export_dir, settings, model_inputs,
                                reason, output.write, model_pairs)
    output.finish()
    return 0


def temperature(args, checkpoint, settings):
    """The temperature train.py fitted for `checkpoint` (calibration.json), said on stderr;
    None with --uncalibrated, when none was fitted for it, or for a multi-label or
    regression model (train.py fits none for them)."""
    record = calibration.read_record(args.output_dir)
    if record is None or args.uncalibrated or task_of(settings) != SINGLE_LABEL:
        return None
    if record["global_step"] != checkpoint_step(checkpoint):
        print("%s holds a temperature for step %d, not for step %d of %s: the probabilities "
              "are not calibrated." % (CALIBRATION, record["global_step"],
                                       checkpoint_step(checkpoint), checkpoint),
              file=sys.stderr)
        return None
    print("Probabilities calibrated with the temperature %.4f of %s (--uncalibrated: raw)."
          % (record["temperature"], CALIBRATION), file=sys.stderr)
    return record["temperature"]


def say_how_to_write_the_onnx_copy(args):
    """A line for an export without its ONNX copy (removed by hand, or a run with
    --no-onnx): the command that writes it, where tf2onnx is installed. The folder's path
    is absolute: a relative one starting with "-" would be read as an option."""
    if not onnx_model.missing("tf2onnx", "onnx", "onnxruntime"):
        print("The export has no ONNX copy (%s), which answers without loading TensorFlow: "
              "python -m imdb_bert.serving %s writes it."
              % (onnx_model.MODEL_FILE, shlex.quote(os.path.abspath(args.output_dir))),
              file=sys.stderr)


def onnx_unusable(args, export_dir, sentence_count):
    """Why the export's ONNX copy is not the model to use, or None."""
    if args.no_onnx or args.bf16:
        return "--no-onnx" if args.no_onnx else "--bf16 runs in TensorFlow"
    if files.is_remote(args.output_dir):
        return "ONNX Runtime reads local folders only"
    if not os.path.exists(onnx_model.model_path(export_dir)):
        return "no %s in it" % onnx_model.MODEL_FILE
    if onnx_model.missing("onnxruntime"):
        return "onnxruntime is not installed"
    if sentence_count > config.ONNX_MAX_SENTENCES_WITH_GPU and \
            onnx_model.nvidia_driver_present():
        return "%d sentences with an NVIDIA GPU here" % sentence_count
    return None


def predict_with_onnx(export_dir, settings, sentences, batch_size, on_batch, pairs):
    if len(sentences) <= batch_size:  # one batch: no progress bar, so no tqdm to import
        return onnx_model.predict(export_dir, settings, sentences, batch_size, None, on_batch,
                                  pairs)
    from tqdm import tqdm  # imported here: 10-30 ms of start-up
    batch_count = -(-len(sentences) // batch_size)
    with tqdm(total=batch_count, desc="Predicting", unit=" batches",
              file=sys.stderr) as progress:
        return onnx_model.predict(export_dir, settings, sentences, batch_size, progress.update,
                                  on_batch, pairs)


def predict_with_tensorflow(args, checkpoint, export_dir, settings, sentences, reason,
                            on_batch, pairs):
    """Log-probabilities from the SavedModel in `export_dir`, else (none, or damaged) from
    the checkpoint through the Estimator. TensorFlow is imported here only: the ONNX path
    answers in less time than its import takes."""
    from imdb_bert import device
    from imdb_bert.compat import quiet_tf_logging, tf
    from imdb_bert.serving.inference import DamagedExport, predict_from_export
    quiet_tf_logging(args.verbose)
    if not args.verbose:
        tf.logging.set_verbosity(tf.logging.WARN)
    session_config, speed_messages, _ = device.session_config(bf16=args.bf16, training=False)
    on_cpu_instead = device.cpu_where_tensorflow_cannot_run(session_config)
    for message in speed_messages + [on_cpu_instead] * bool(on_cpu_instead):
        print(message, file=sys.stderr)
    CONTEXT.update(device="the CPU" if on_cpu_instead else device.device_name(),
                   batch_size=args.batch_size,
                   max_seq_length=settings["max_seq_length"])  # for an out-of-memory error
    if export_dir:
        print("Predicting with the SavedModel %s (%s)." % (export_dir, reason),
              file=sys.stderr)
        try:
            return predict_from_export(export_dir, settings, sentences, args.batch_size,
                                       session_config, on_batch, pairs)
        except DamagedExport as damage:
            reason = "the export %s is damaged: %s" % (export_dir, damage)
    print("Restoring %s through the Estimator (%s)." % (checkpoint, reason), file=sys.stderr)
    return restore_and_predict(args, checkpoint, settings, sentences, session_config, on_batch,
                               pairs)


def restore_and_predict(args, checkpoint, settings, sentences, session_config, on_batch,
                        pairs):
    """Log-probabilities from `checkpoint` through the Estimator; from the newest one if a
    training run that writes the folder deletes it first."""
    from imdb_bert.serving.inference import CheckpointGone, predict_from_checkpoint
    while True:
        try:
            return predict_from_checkpoint(args.output_dir, checkpoint, settings, sentences,
                                           args.batch_size, session_config, on_batch, pairs)
        except CheckpointGone:
            newer = files.latest_checkpoint(args.output_dir)
            if newer in (None, checkpoint):
                raise UserError("%s was deleted while predict.py was restoring it. Run "
                                "predict.py again: it takes the newest checkpoint then."
                                % checkpoint)
            print("%s was deleted meanwhile (a training run keeps only its newest "
                  "checkpoints): restoring %s." % (checkpoint, newer), file=sys.stderr)
            checkpoint = newer


def check_label_count(output_dir, log_probs, label_names):
    """The model's outputs must be the labels model_settings.json names (a regression's
    values, one per sentence, name none)."""
    if np.ndim(log_probs) == 2 and np.shape(log_probs)[-1] != len(label_names):
        raise UserError("The model in %s has %d outputs but its model_settings.json names %d "
                        "labels (%s): the folder mixes two runs. Pass the --output-dir "
                        "of the run, or train again with another --output-dir."
                        % (output_dir, np.shape(log_probs)[-1], len(label_names),
                           ", ".join(map(str, label_names))))


class Output:
    """The predictions on stdout as each window of batches (features/padding.py) is
    classified: plain lines (label, its probability, log-probabilities, sentence) or --jsonl
    lines, flushed window by window; or with --json one list at the end. A signal that comes while a batch is being written
    takes effect once it is written, so every line on stdout is whole."""
    current = None  # for the signal handler: what has been done

    def __init__(self, sentences, settings, args, temperature, pairs=None):
        self.sentences = sentences
        self.settings = settings
        self.label_names = settings["label_names"]
        self.args = args
        self.pairs = pairs  # the second texts of sentence pairs, or None
        self.temperature = temperature
        self.occlusion = (explain.Occlusion(sentences, args.explain_max_words)
                          if args.explain else None)
        self.done = 0
        self.items = []  # --json's list, --html's sentences
        self.printing_list = False  # --json's list is being printed (at the end)
        self.writing = False
        self.pending_signal = None
        Output.current = self

    def model_inputs(self):
        """(What the model classifies, their second texts or None): the sentences, or with
        --explain each followed by its copies with words left out (and its pair with
        each)."""
        if not self.occlusion:
            return self.sentences, self.pairs
        if self.pairs is None:
            return self.occlusion.inputs, None
        return self.occlusion.inputs, [pair for pair, runs in zip(self.pairs,
                                                                  self.occlusion.runs)
                                       for _ in range(len(runs) + 1)]

    def write(self, log_probs):
        """Write the predictions of the sentences that the log-probabilities of the next
        len(log_probs) model inputs complete."""
        check_label_count(self.args.output_dir, log_probs, self.label_names)
        # The one place the temperature is applied, whichever model answered.
        log_probs = calibration.calibrated(log_probs, self.temperature)
        self.writing = True
        explained = (self.occlusion.add(log_probs) if self.occlusion
                     else [(lps, None) for lps in log_probs])
        sentences = self.sentences[self.done:self.done + len(explained)]
        task = task_of(self.settings)
        items = [prediction(sentence, lps, self.label_names, self.temperature, explanation)
                 if task == SINGLE_LABEL else answers.answer(task, sentence, lps, self.settings)
                 for sentence, (lps, explanation) in zip(sentences, explained)]
        if self.pairs is not None:
            for item, pair in zip(items, self.pairs[self.done:]):
                item["pair"] = pair
        if self.args.json or self.args.html:
            self.items += items
        if self.args.jsonl:
            sys.stdout.write("".join(json.dumps(item, ensure_ascii=False).translate(
                LINE_SEPARATORS) + "\n" for item in items))
        elif not self.args.json:
            sys.stdout.write("".join(plain_line(item) + "\n" for item in items))
        sys.stdout.flush()
        self.done += len(items)
        self.writing = False
        if self.pending_signal:
            raise Interrupted(self.pending_signal)

    def finish(self):
        if self.args.json:
            self.printing_list = True
            print(json.dumps(self.items, indent=2, ensure_ascii=False))
        if self.args.html:
            write_page(self.args.html, explain.html_page(self.items, self.temperature))


def write_page(path, page):
    try:
        files.write_file(path, page)
    except OSError as e:
        raise UserError("Cannot write the --html page %s: %s" % (path, e))
    print("The explanations' page is %s" % path, file=sys.stderr)


def prediction(sentence, log_probs, label_names, temperature=None, explanation=None):
    """One element of --json's list (a line of --jsonl); "temperature" when calibrated,
    "explanation" with --explain."""
    item = {"sentence": sentence, "label": label_names[int(np.argmax(log_probs))],
            "probabilities": [float(p) for p in np.exp(log_probs)],
            "log_probabilities": [float(lp) for lp in log_probs],
            "label_names": list(label_names)}
    if temperature is not None:
        item["temperature"] = temperature
    if explanation is not None:
        item["explanation"] = explanation
    return item


def plain_line(item):
    """label, its probability, the log-probabilities, the sentence (and its pair); for
    multi-label and regression, answers.plain_text's fields, then the sentence."""
    sentence = item["sentence"]
    if "explanation" in item:
        sentence = explain.marked(sentence, item["explanation"])
    texts = [sentence] + ([item["pair"]] if "pair" in item else [])
    texts = "\t".join(text.translate(LINE_BREAKS) for text in texts)
    if "label" not in item:
        return "%s\t%s" % (answers.plain_text(item), texts)
    probabilities = item["probabilities"]
    return "%s\t%.4f\t[%s]\t%s" % (item["label"], max(probabilities),
                                   ", ".join("%.4f" % lp for lp in item["log_probabilities"]),
                                   texts)


class Interrupted(BaseException):
    """SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt: the `except Exception`
    clauses on its way (loading a model) must not take it for a damaged file."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def stop_on_signals(main):
    """`main` that ends on SIGINT (Ctrl-C) or SIGTERM with one line on stderr (how many
    sentences of how many were written) and exit code 128 + the signal, no traceback."""
    def stop(signum):
        output = Output.current
        if output is not None and output.writing:
            output.pending_signal = signum
        else:
            raise Interrupted(signum)

    def interruptible_main(argv=None):
        signals.handle_first(stop)
        try:
            return main(argv)
        except Interrupted as e:
            print("%s: stopped. %s" % (signals.name(e.signum),
                                       interrupted_progress(Output.current)), file=sys.stderr)
            return signals.exit_code(e.signum)
        except BrokenPipeError:  # the reader of stdout ended, as `| head` does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for the exit
            print("stdout was closed: stopped. %s" % interrupted_progress(Output.current),
                  file=sys.stderr)
            return signals.exit_code(signal.SIGPIPE)
    return interruptible_main


def interrupted_progress(output):
    if output is None:
        return "No sentence was classified."
    done, total = output.done, len(output.sentences)
    if output.printing_list:
        return ("%d of %d sentences were classified; --json's list was being printed and is "
                "cut short." % (done, total))
    if output.args.json:
        return ("%d of %d sentences were classified; --json prints its list at the end only, "
                "so nothing was printed (--jsonl writes each line as it goes)." % (done, total))
    return "%d of %d sentences were classified and written." % (done, total)


if __name__ == "__main__":
    run_script(stop_on_signals(main))
