"""The ONNX copy of the SavedModel export: export/<timestamp>/model.onnx, written by train.py
(tf2onnx, in a child process) and run by predict.py with ONNX Runtime, which answers in a
fraction of TensorFlow's start-up time. Nothing here imports TensorFlow.

Optional at run time: where tf2onnx or onnxruntime is not installed (Python 3.9 has no
tf2onnx 1.17), train.py says so and predict.py uses the SavedModel.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from imdb_bert.features import padding
from imdb_bert.features.fast_tokenizer import FastTokenizer, encode_inputs
from imdb_bert.features.truncation import HEAD
from imdb_bert.output import files
from imdb_bert.tasks import SERVING_OUTPUT, task_of

MODEL_FILE = "model.onnx"
OPSET = 17
INPUTS = ("input_ids", "input_mask", "segment_ids")
# The largest difference in probability from the SavedModel's that a new copy may show.
TOLERANCE = 1e-4


class ConversionFailed(Exception):
    """tf2onnx could not convert the export."""


def model_path(export_dir):
    return os.path.join(export_dir, MODEL_FILE)


def missing(*packages):
    """The packages of `packages` that cannot be imported here."""
    return [name for name in packages if importlib.util.find_spec(name) is None]


def temporary_path(export_dir):
    """Where convert() writes: beside the exports (a killed run's leftover is removed at the
    next start)."""
    return os.path.join(os.path.dirname(export_dir), "%s.tmp-%d" % (MODEL_FILE, os.getpid()))


def convert(export_dir, temporary):
    """The export's serving_default signature converted by tf2onnx into the file
    `temporary` (temporary_path), which the caller removes whatever happens. tf2onnx runs
    in a child process: it needs TensorFlow 2's behaviour, which the training process
    switched off, and no GPU. The child ends with this process, even one killed by SIGKILL
    (DIE_WITH_PARENT). Its paths are absolute: a relative one starting with "-" (an
    --output-dir such as -x) would be read as an option."""
    command = [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), "tf2onnx.convert",
               "--saved-model", os.path.abspath(export_dir),
               "--signature_def", "serving_default", "--tag", "serve",
               "--opset", str(OPSET), "--output", os.path.abspath(temporary)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode < 0:
        raise ConversionFailed("tf2onnx was killed by signal %d%s" % (
            -result.returncode, ", out of memory?" if result.returncode == -9 else ""))
    if result.returncode != 0 or not os.path.exists(temporary):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "error" in line]
        raise ConversionFailed((errors or lines or ["exit code %d" % result.returncode])[-1])


# Run as `python -c DIE_WITH_PARENT PARENT_PID MODULE ARGS...`: MODULE as `python -m` runs
# it, in a process that the kernel kills when its parent dies (prctl PR_SET_PDEATHSIG, man
# prctl(2); Linux only), so a killed train.py leaves no tf2onnx holding gigabytes. The signal
# comes when the parent *thread* ends: convert() runs in train.py's main thread, which lives
# as long as the process. A parent that died before prctl took effect is seen by getppid.
# Done in the child rather than in a preexec_fn, which is unsafe in a process with threads.
DIE_WITH_PARENT = """
import ctypes, os, runpy, signal, sys
parent, module = int(sys.argv[1]), sys.argv[2]
if sys.platform.startswith("linux"):
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit("the parent process %d has ended" % parent)
sys.argv = [module] + sys.argv[3:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def memory_shortfall(export_dir, available=None):
    """A message if this machine has too little free memory for tf2onnx, else None.
    tf2onnx's peak, measured here with random BERTs: 5.0 GB for 87 MB of variables (6
    layers, hidden 384), 16 GB for 418 MB (BERT-Base): about 2 GB plus 34 times the
    variables."""
    variables = os.path.join(export_dir, "variables")
    if not os.path.isdir(variables):
        return None  # a damaged export: tf2onnx will say what is missing
    size = sum(os.path.getsize(os.path.join(variables, name)) for name in os.listdir(variables))
    needed = 2 * 2 ** 30 + 34 * size
    available = available_memory() if available is None else available
    if available is None or available >= needed:
        return None
    return ("tf2onnx needs about %.0f GB of memory for this model and %.1f GB are free"
            % (needed / 1e9, available / 1e9))


def available_memory():
    """MemAvailable of /proc/meminfo in bytes, or None where there is none (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ONNX Runtime's session config keys, as named in its onnxruntime_session_options_config_keys.h
# (include/onnxruntime/core/session/) and its "Thread management" page
# (onnxruntime.ai/docs/performance/tune-performance/threading.html).
SPINNING = "session.intra_op.allow_spinning"  # "0": idle worker threads sleep, not spin
NO_PREPACKING = "session.disable_prepacking"  # "1": weights stay as loaded, not repacked
WEIGHTS_FILE = "session.optimized_model_external_initializers_file_name"
WEIGHTS_MIN_BYTES = "session.optimized_model_external_initializers_min_size_in_bytes"

# Up to this many model inputs (sentences, or --explain's copies) the work is small: a
# session that starts at once beats one that runs each batch a little faster. Measured on
# BERT-Base's shape (docs/speed.md "Predicting"): repacking the weights took 0.6 s of a
# 1.5 s session and nothing of it came back on one sentence, and a second intra-op thread
# made one sentence slower on the shared 2-core machine (0.28 s against 0.45 s).
SMALL_WORK = 32
SMALL_WORK_THREADS = 1
# The one switch that loads model.onnx as before the optimized copy (bench/predict_startup.py
# measures before and after with it); not for users.
PLAIN_ONNX_SWITCH = "IMDB_BERT_BENCH_PLAIN_ONNX"


def work_options(input_count):
    """How a session for `input_count` inputs runs: its intra-op threads (0: ONNX Runtime's
    default, one per core), whether idle worker threads spin, whether weights are repacked
    for speed when the session starts. Spinning is off for large work too: with a thread
    per core, 96 sentences took 7.5 s without it and 11.4 s with it at load average 6, and
    16.9 s against 17.7 s with every core busy (bench/predict_startup.py --onnx-grid); an
    idle machine, where spinning may win a little, was not to be had."""
    if input_count <= SMALL_WORK:
        return {"threads": SMALL_WORK_THREADS, "spinning": False, "prepacking": False}
    return {"threads": 0, "spinning": False, "prepacking": True}


def session(path, work=None, optimization="basic", save_to=None):
    """An ONNX Runtime session of the model at `path` on the CPU, run as `work`
    (work_options; None: ONNX Runtime's defaults), with the graph optimizations of
    `optimization` ("basic", or "none" for a copy already optimized); with `save_to`, the
    optimized graph is also written there, its weights into a file beside it."""
    import onnxruntime  # imported here: train.py only needs it to check a new copy
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    # The extended and layout optimizations sped up no step of this graph here and took
    # 0.4 s of BERT-Base's 1.0 s load (a one-sentence predict.py's largest part).
    options.graph_optimization_level = (onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
                                        if optimization == "basic" else
                                        onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if save_to:
        options.optimized_model_filepath = save_to
        # The weights in a file of their own: ONNX Runtime maps such a file into memory
        # instead of copying it out of the model's protobuf (measured: a session of
        # BERT-Base's shape in 0.1 s instead of 1.5 s).
        options.add_session_config_entry(WEIGHTS_FILE, WEIGHTS)
        options.add_session_config_entry(WEIGHTS_MIN_BYTES, "1024")
    if work:
        options.intra_op_num_threads = work["threads"]
        options.add_session_config_entry(SPINNING, "1" if work["spinning"] else "0")
        options.add_session_config_entry(NO_PREPACKING, "0" if work["prepacking"] else "1")
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


# The optimized copy of model.onnx: ONNX Runtime's basic graph optimizations, done once and
# saved (its "offline mode", onnxruntime.ai/docs/performance/model-optimizations/
# graph-optimizations.html) into export/<timestamp>/<OPTIMIZED>/, then loaded with none. A
# saved graph is specific to the ONNX Runtime version and execution provider that wrote it,
# so the folder is named for them; RECORD says what it was made from, and the sizes that
# tell a whole copy from a truncated one.
WEIGHTS = "weights.bin"
RECORD = "optimized.json"


def optimized_folder(export_dir):
    import onnxruntime
    return os.path.join(export_dir, "ort-%s-cpu-basic" % onnxruntime.__version__)


def load(export_dir, input_count):
    """A session of the export's model.onnx for `input_count` inputs: its optimized copy,
    written on first use (and again when stale or damaged). model.onnx itself stays as it
    is and is used directly where no copy can be written (a read-only folder)."""
    if os.environ.get(PLAIN_ONNX_SWITCH) == "1":
        return session(model_path(export_dir))
    work = work_options(input_count)
    folder = optimized_folder(export_dir)
    if is_whole(folder, export_dir):
        try:
            return session(os.path.join(folder, MODEL_FILE), work, "none")
        except Exception:  # damaged where the sizes cannot tell: written again below
            pass
    return optimize(export_dir, folder, work)


def is_whole(folder, export_dir):
    """Whether `folder` holds the optimized copy of the export's model.onnx as it is now,
    whole (the sizes RECORD noted)."""
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            record = json.load(f)
        return record == copy_record(folder, export_dir)
    except (OSError, ValueError):
        return False


def copy_record(folder, export_dir):
    """What RECORD holds for the copy in `folder` of the export's model.onnx."""
    source = os.stat(model_path(export_dir))
    return {"model.onnx": {"size": source.st_size, "mtime_ns": source.st_mtime_ns},
            "sizes": {name: os.path.getsize(os.path.join(folder, name))
                      for name in (MODEL_FILE, WEIGHTS)}}


def optimize(export_dir, folder, work):
    """A session of model.onnx that also writes its optimized copy into `folder`: into a
    temporary folder first, renamed when whole, so that no reader ever sees half a copy;
    copies for other ONNX Runtime versions go. Where the copy cannot be written (a
    read-only folder, a full disk) the session is of model.onnx alone."""
    temporary = "%s.tmp-%d" % (folder, os.getpid())
    try:
        try:
            remove_leftovers(export_dir)
            os.mkdir(temporary)
            model = session(model_path(export_dir), work,
                            save_to=os.path.join(temporary, MODEL_FILE))
        except Exception:  # onnxruntime says a failed write with a plain Exception too
            # A damaged model.onnx raises here again, for predict() to say.
            return session(model_path(export_dir), work)
        try:
            files.write_json(os.path.join(temporary, RECORD),
                             copy_record(temporary, export_dir))
            for name in os.listdir(export_dir):
                if name.startswith("ort-") and ".tmp-" not in name:
                    shutil.rmtree(os.path.join(export_dir, name))
            os.rename(temporary, folder)
        except OSError:
            pass  # another predict.py put its copy there first, or the disk is full
        return model
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def remove_leftovers(export_dir):
    """The temporary folders of optimize() that processes no longer running left."""
    for name in os.listdir(export_dir):
        pid = name.rpartition(".tmp-")[2]
        if name.startswith("ort-") and pid.isdigit() and not is_running(int(pid)):
            shutil.rmtree(os.path.join(export_dir, name), ignore_errors=True)


def is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def outputs(model, inputs, batch_size, output_name="log_probabilities", progress=None,
            on_batch=None):
    """The output `output_name` (tasks.SERVING_OUTPUT) of an ONNX Runtime session for
    `inputs`, the lists (input_ids, input_mask, segment_ids) of the encoded sentences,
    `batch_size` at a time, each batch padded to its longest sentence and grouped by length
    (padding.py) unless the model takes a fixed length (an export made before); each
    window's outputs are also passed to `on_batch`, in input order, as soon as they are
    computed."""
    def run_batch(columns):
        return model.run([output_name], dict(zip(INPUTS, columns)))[0]

    return padding.grouped_outputs(inputs, batch_size, run_batch,
                                   padding.padding_mode(fixed_length=fixed_length(model))
                                   == padding.BATCH, progress, on_batch)


def fixed_length(model):
    """The sequence length the ONNX model's inputs take, or None when it takes any (a
    symbolic dimension, a string in ONNX Runtime's input shapes)."""
    length = model.get_inputs()[0].shape[1]
    return length if isinstance(length, int) else None


class DamagedModel(Exception):
    """model.onnx or the export's vocab cannot be loaded."""


def predict(export_dir, settings, sentences, batch_size, progress=None, on_batch=None,
            pairs=None):
    """The task's outputs (log-probabilities [n, labels] for single-label) for `sentences`
    (with `pairs`, their second texts) from the export's model.onnx, tokenized with its
    vocab as train.py's features were; DamagedModel if either cannot be loaded."""
    try:
        tokenizer = FastTokenizer(os.path.join(export_dir, "assets", "vocab.txt"),
                                  settings["do_lower_case"])
        model = load(export_dir, len(sentences))
    except Exception as e:  # onnxruntime and tokenizers raise plain Exceptions
        raise DamagedModel("%s: %s" % (type(e).__name__, str(e).splitlines()[0])) from e
    inputs = encode_inputs(sentences, pairs, settings["max_seq_length"], tokenizer,
                           settings.get("truncate", HEAD))
    return outputs(model, inputs, batch_size, SERVING_OUTPUT[task_of(settings)], progress,
                   on_batch)


def nvidia_driver_present():
    """Whether TensorFlow would see an NVIDIA GPU, judged without loading it: the driver's
    files (as the Makefile judges) and CUDA_VISIBLE_DEVICES not hiding every GPU."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        return False
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")
