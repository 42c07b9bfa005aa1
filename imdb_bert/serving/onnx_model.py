"""The ONNX copy of the SavedModel export: export/<timestamp>/model.onnx, written by train.py
(tf2onnx, in a child process) and run by predict.py with ONNX Runtime, which answers in a
fraction of TensorFlow's start-up time. Nothing here imports TensorFlow.

Optional at run time: where tf2onnx or onnxruntime is not installed (Python 3.9 has no
tf2onnx 1.17), train.py says so and predict.py uses the SavedModel.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np

from imdb_bert.features import padding
from imdb_bert.features.fast_tokenizer import FastTokenizer, encode_inputs
from imdb_bert.features.truncation import HEAD
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


def session(path):
    """An ONNX Runtime session of the model at `path` on the CPU, all cores."""
    import onnxruntime  # imported here: train.py only needs it to check a new copy
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    # The extended and layout optimizations sped up no step of this graph here and took
    # 0.4 s of BERT-Base's 1.0 s load (a one-sentence predict.py's largest part).
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


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
        model = session(model_path(export_dir))
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
