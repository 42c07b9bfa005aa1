"""The one module that imports TensorFlow, tensorflow_hub and bert, and the one place that
makes the notebook's TF1 code run on TensorFlow 2.15. (Horovod's TensorFlow binding,
horovod.tensorflow, is imported by training/runtime.py and tools/gpu_check.py, which need
Horovod itself; it imports TensorFlow after this module has set it up.)

Every other module imports them from here, never directly:
  - TF 2 behaviour is switched off (graph mode, tf.compat.v1 as `tf`);
  - bert/modeling.py imports `tensorflow.contrib.layers` (gone in TF 2): it gets
    tf_slim's port of the same layers;
  - bert's tokenizer reads an absl flag and fails unless absl flags count as parsed.
"""
import logging
import os
import re
import sys
import tempfile
import types
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ start-up chatter
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*pkg_resources is deprecated.*")
warnings.filterwarnings("ignore", message=".*is deprecated and will be removed.*")

# TF 2.15 prints three harmless "Unable to register cuDNN/cuFFT/cuBLAS factory" errors at
# import (tensorflow/tensorflow#62075). Its stderr during the import goes to a file and comes
# back without those three lines; every other line, errors included, is kept.
FACTORY_NOISE = re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to "
                           r"register factory for plugin cu(DNN|FFT|BLAS) when one has already "
                           r"been registered")


def import_tensorflow():
    sys.stderr.flush()
    real_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(real_stderr, 2)
            os.close(real_stderr)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(True):
                if not FACTORY_NOISE.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
    return tensorflow


tf2 = import_tensorflow()
import tf_slim  # noqa: E402
from absl import flags as absl_flags  # noqa: E402

from tensorflow.core.protobuf import rewriter_config_pb2  # noqa: E402
from tensorflow.python.util import deprecation  # noqa: E402

tf = tf2.compat.v1
deprecation._PRINT_DEPRECATION_WARNINGS = False  # see quiet_tf_logging
tf.disable_v2_behavior()
# Resource variables, not TF1's ref variables: bert's optimizer updates a weight as soon as
# its gradient is ready, and a ref variable can then change under a backward-pass op that
# still reads it (results vary from run to run). The checkpoint format is the same.
tf.enable_resource_variables()

if "tensorflow.contrib" not in sys.modules:
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers = tf_slim.layers
    sys.modules["tensorflow.contrib"] = contrib
    sys.modules["tensorflow.contrib.layers"] = tf_slim.layers

if not absl_flags.FLAGS.is_parsed():
    absl_flags.FLAGS.mark_as_parsed()

import tensorflow_hub as hub  # noqa: E402
from bert import modeling, optimization, run_classifier, tokenization  # noqa: E402

f1_score = tf_slim.metrics.f1_score  # tf.contrib.metrics.f1_score, ported


def quiet_tf_logging(verbose=False):
    """Keep TF's INFO lines (the notebook's log) but drop the deprecation flood that
    TF 2.15 prints for TF1 APIs, unless `verbose`."""
    tf.logging.set_verbosity(tf.logging.INFO)
    logging.getLogger("tensorflow").propagate = False  # else absl's root handler repeats it
    deprecation._PRINT_DEPRECATION_WARNINGS = verbose
    if verbose:
        warnings.resetwarnings()
        return
    logging.getLogger("tensorflow").addFilter(
        lambda record: "deprecat" not in record.getMessage().lower())


__all__ = ["tf", "tf2", "hub", "modeling", "optimization", "run_classifier",
           "tokenization", "f1_score", "rewriter_config_pb2", "quiet_tf_logging"]
