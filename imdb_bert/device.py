"""Which device trains: a CUDA GPU when TensorFlow can use one, else the CPU; the session
config every TF session of this code starts from."""
import os
import shutil
import subprocess
import sys

from imdb_bert.compat import rewriter_config_pb2, tf, tf2
from imdb_bert.errors import UserError

PINNED = {}  # {"index": the GPU of this Horovod process}, once pin_gpu has run

# TensorFlow 2.15's wheel has kernels for sm_50-sm_75 and PTX for compute_80 only
# (build_info.py): GPUs of capability 8.0 and newer compile its kernels from PTX at first
# start, 30 minutes or more on Hopper (tensorflow/tensorflow#62320). The CUDA JIT cache
# keeps them for the next start if it is large enough: TensorFlow's release notes (2.3.0)
# give CUDA_CACHE_MAXSIZE=2147483648. Set here, before anything initialises CUDA, unless
# the user set it.
JIT_CACHE_BYTES = "2147483648"
os.environ.setdefault("CUDA_CACHE_MAXSIZE", JIT_CACHE_BYTES)


def visible_gpus():
    return tf2.config.list_physical_devices("GPU")


def training_device():
    """"GPU" when TensorFlow sees a GPU (train.py then trains on it), else "CPU"."""
    return "GPU" if visible_gpus() else "CPU"


def pin_gpu(local_rank, local_size):
    """Pin this Horovod process to its own GPU, right after hvd.init() and before any TF
    session: number `local_rank` of the machine's, or the only one when the launcher gave
    each process its own (CUDA_VISIBLE_DEVICES per rank). Returns its index, or None
    without GPUs.
    Every session here gets an explicit config, so what pins them is the config's
    visible_device_list, which base_session_config sets from PINNED: Horovod's TF1 /
    Estimator pattern (https://horovod.readthedocs.io/en/stable/tensorflow.html,
    "config.gpu_options.visible_device_list = str(hvd.local_rank())"). The two tf.config
    calls below (Horovod's TF 2 pattern, same page) reach only config-less sessions and
    eager ops (tensorflow/python/client/session.py takes the context's config only
    `if config is None`), and must name the same GPU: both use `index`."""
    gpus = visible_gpus()
    if not gpus:
        return None
    if local_rank < len(gpus):
        index = local_rank
    elif len(gpus) == 1 and os.environ.get("CUDA_VISIBLE_DEVICES"):
        index = 0
    else:
        raise UserError("Horovod process with local rank %d has no GPU of its own: this "
                        "machine has %d for %d processes. Start at most that many processes "
                        "per machine (horovodrun -np / -H host:N)."
                        % (local_rank, len(gpus), local_size))
    # Config-less sessions and eager ops only; every session config gets PINNED's index.
    tf2.config.set_visible_devices(gpus[index], "GPU")
    tf2.config.experimental.set_memory_growth(gpus[index], True)
    PINNED["index"] = index  # -> visible_device_list in base_session_config
    return index


def make_gpu_ops_deterministic():
    """TensorFlow's op determinism, for Horovod processes on GPUs. bert's AdamW turns the
    embeddings' all-gathered gradient (IndexedSlices, which clipping measured by their
    values) into a dense tensor with unsorted_segment_sum, whose GPU kernel adds with
    atomics in a varying order: each process would apply a slightly different update and
    the replicas drift apart (horovod/horovod#828, #1121). With op determinism that sum
    (tf.convert_to_tensor of IndexedSlices, tf.gather's gradient) has a deterministic GPU
    kernel (TF 2.8 RELEASE.md, "Deterministic Op Functionality"), and clipping still sees
    the IndexedSlices. Its costs (docstring of tf.config.experimental.enable_op_determinism,
    TF 2.15): slower GPU kernels, an UnimplementedError from any op without a
    deterministic GPU kernel, a RuntimeError from random ops without a seed (the
    Estimator's tf_random_seed seeds them). CPU kernels add in a fixed order already, so
    CPU runs are left as they are."""
    tf2.config.experimental.enable_op_determinism()


def base_session_config():
    """The config every TF session here starts from: the Estimator's defaults (soft
    placement, one meta-optimizer pass), GPU memory taken as needed rather than a whole
    GPU, and with Horovod the pinned GPU as visible_device_list: what keeps each session
    off another process's GPU (Horovod's TF1 pattern; see pin_gpu)."""
    config = tf.ConfigProto(allow_soft_placement=True)
    config.graph_options.rewrite_options.meta_optimizer_iterations = (
        rewriter_config_pb2.RewriterConfig.ONE)
    config.gpu_options.allow_growth = True
    # make gpu-check's probe (imdb_bert/tools/gpu_check.py): a small GPU.
    config.gpu_options.per_process_gpu_memory_fraction = float(
        os.environ.get("GPU_CHECK_MEMORY_FRACTION", 0))
    if "index" in PINNED:
        config.gpu_options.visible_device_list = str(PINNED["index"])
    return config


# The oldest NVIDIA driver for TensorFlow 2.15 (CUDA 12.2), by GPU generation. NVIDIA's
# CUDA compatibility guide (docs.nvidia.com/deploy/cuda-compatibility/, "Minor Version
# Compatibility"): a CUDA 12.x application runs on any driver >= 525.60.13, as far as it
# needs no PTX JIT; PTX made by a newer toolkit than the driver's cannot be JIT-compiled
# by it. TensorFlow's wheel carries kernels (SASS) for sm_50, sm_60, sm_70, sm_75, which
# capabilities 5.x-7.x run, so there 525.60.13 does; GPUs of 8.0 and newer (Ampere, Ada,
# Hopper) run its compute_80 PTX of CUDA 12.2, which needs the driver of CUDA 12.2:
# 535.54.03 (CUDA 12.2 release notes, Linux x86_64).
MIN_DRIVER = "525.60.13"
MIN_DRIVER_FOR_PTX = "535.54.03"


def minimum_driver(compute_capability):
    """The oldest driver that runs TensorFlow 2.15 on a GPU of `compute_capability`
    ("8.0"; None or "" when nvidia-smi did not say)."""
    major = (compute_capability or "").split(".")[0]
    if major.isdigit() and int(major) >= 8:
        return MIN_DRIVER_FOR_PTX
    return MIN_DRIVER


def version_tuple(version):
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def nvidia_smi_query(fields):
    """nvidia-smi's CSV lines for `fields`, or None when it fails or is missing."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=" + fields,
                                 "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.splitlines() if result.returncode == 0 else None


def nvidia_smi_details():
    """[(GPU name, driver version, compute capability or "")] that nvidia-smi reports
    (empty without a driver). Drivers older than R510 know no compute_cap field."""
    lines = nvidia_smi_query("name,driver_version,compute_cap")
    if lines is None:
        lines = nvidia_smi_query("name,driver_version") or []
    details = []
    for line in lines:
        if line.strip():
            parts = [part.strip() for part in line.split(",")] + ["", ""]
            details.append(tuple(parts[:3]))
    return details


def nvidia_smi_gpus():
    """[(GPU name, driver version)] that nvidia-smi reports (empty without a driver)."""
    return [(name, driver) for name, driver, _ in nvidia_smi_details()]


def unusable_gpu_cause(driver, compute_capability=""):
    """The likely reason TensorFlow cannot use a GPU nvidia-smi sees, and the fix."""
    needed = minimum_driver(compute_capability)
    if driver[:1].isdigit() and version_tuple(driver) < version_tuple(needed):
        kind = ("a GPU of compute capability %s" % compute_capability
                if compute_capability else "CUDA 12")
        return ("its driver %s is older than the %s that %s needs with TensorFlow 2.15 "
                "(CUDA 12.2): update the NVIDIA driver" % (driver, needed, kind))
    if not tf.test.is_built_with_cuda():
        return ("this TensorFlow is a CPU-only build: pip install "
                "'tensorflow[and-cuda]==2.15.1' (make does this when it finds a GPU driver)")
    if pip_nvidia_package("cudnn") is None:
        return ("the CUDA 12 libraries TensorFlow loads (pip's nvidia-* packages) are not "
                "installed: pip install 'tensorflow[and-cuda]==2.15.1' (make does this when "
                "it finds a GPU driver)")
    return ("the CUDA libraries did not load: run with TF_CPP_MIN_LOG_LEVEL=0 to see "
            "TensorFlow's reason")


def gpu_names():
    return [tf2.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in visible_gpus()]


def device_name():
    """'GPU <names>' or 'the CPU', for messages."""
    names = gpu_names()
    return "GPU %s" % ", ".join(names) if names else "the CPU"


def describe():
    """A line naming the training device; loud when a GPU is present but unusable."""
    names = gpu_names()
    if names:
        return "Training on GPU: %s" % ", ".join(names)
    smi_gpus = nvidia_smi_details()
    if smi_gpus:
        return ("WARNING: nvidia-smi sees %s but TensorFlow cannot use it, so this runs on "
                "the CPU (many times slower). Likely cause: %s."
                % (", ".join(gpu[0] for gpu in smi_gpus), unusable_gpu_cause(*smi_gpus[0][1:])))
    return "Training on CPU (no GPU found)"


def pip_nvidia_package(name, holding=""):
    """The folder of pip's CUDA package nvidia/<name> (tensorflow[and-cuda] installs them)
    that holds `holding`, or None."""
    for entry in sys.path:
        folder = os.path.join(entry, "nvidia", name)
        if os.path.isdir(os.path.join(folder, holding)):
            return folder
    return None


def cuda_nvcc_dir():
    """nvidia-cuda-nvcc-cu12's folder: the libdevice (nvvm/libdevice) and ptxas (bin/)
    that XLA needs on a GPU; or None."""
    return pip_nvidia_package("cuda_nvcc", os.path.join("nvvm", "libdevice"))


def point_xla_at_libdevice():
    """Without XLA_FLAGS=--xla_gpu_cuda_data_dir, XLA fails at its first compilation with
    "libdevice not found" when CUDA comes from pip: point it (and PATH, for ptxas) at the
    pip package, unless the user set it. Returns the message saying what was done."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_gpu_cuda_data_dir" in flags:
        return "--use-xla: XLA_FLAGS as you set it: %s" % flags
    folder = cuda_nvcc_dir()
    if folder is None:
        return ("--use-xla: pip's nvidia-cuda-nvcc-cu12 (libdevice, ptxas) was not found; if "
                "XLA fails with 'libdevice not found', install 'tensorflow[and-cuda]==2.15.1' "
                "or set XLA_FLAGS=--xla_gpu_cuda_data_dir=<your CUDA folder>.")
    os.environ["XLA_FLAGS"] = ("%s --xla_gpu_cuda_data_dir=%s" % (flags, folder)).strip()
    os.environ["PATH"] = os.pathsep.join([os.path.join(folder, "bin"),
                                          os.environ.get("PATH", "")])
    return "--use-xla: XLA_FLAGS=%s (libdevice of pip's CUDA)" % os.environ["XLA_FLAGS"]


def cpu_supports_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX), from Linux's
    /proc/cpuinfo; elsewhere no."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# TensorFlow 2.15's float16 rewrite (Grappler's auto_mixed_precision pass,
# tensorflow/core/grappler/optimizers/auto_mixed_precision.cc: kMinGPUArch = {7, 0},
# GetNumGPUs, HasFastFP16Support) skips a session whose GPUs all have a compute
# capability below 7.0 ("No (suitable) GPUs detected, skipping auto_mixed_precision graph
# optimizer"), unless this variable makes it ignore performance.
FLOAT16_MIN_CAPABILITY = (7, 0)
FLOAT16_ANY_GPU = "TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_IGNORE_PERFORMANCE"


def float16_rewrite_skipped():
    """Why TensorFlow would skip the float16 rewrite on the GPUs this process's sessions
    see (with Horovod, its pinned GPU), or None when it runs or the capability is unknown."""
    gpus = visible_gpus()
    if "index" in PINNED:
        gpus = gpus[PINNED["index"]:PINNED["index"] + 1]
    details = [tf2.config.experimental.get_device_details(gpu) for gpu in gpus]
    capabilities = [detail.get("compute_capability") for detail in details]
    if (not gpus or None in capabilities or max(capabilities) >= FLOAT16_MIN_CAPABILITY
            or os.environ.get(FLOAT16_ANY_GPU, "").lower() in ("1", "true")):
        return None
    return ("TensorFlow's float16 rewrite needs a GPU of compute capability 7.0 or newer "
            "and skips %s" % ", ".join("%s (compute capability %d.%d)" % (
                detail.get("device_name", gpu.name), *capability)
                for gpu, detail, capability in zip(gpus, details, capabilities)))


def session_config(bf16=False, use_xla=False, use_amp=False):
    """(session config, messages, whether AMP is on) for the speed switches, all
    off by default so results match the notebook's float32 run:
      --bf16     oneDNN's bfloat16 rewrite, on CPUs that compute bfloat16 natively;
      --use-xla  XLA JIT compilation, on a GPU;
      --use-amp  float16 mixed precision (graph rewrite; the optimizer scales the loss),
                 on a GPU.
    A switch that does not fit the device is ignored, with a message saying so."""
    on_gpu = training_device() == "GPU"
    config = base_session_config()
    # make gpu-check's placement probe: the sessions of training (and of predict.py's
    # TensorFlow paths) log where each op runs; the ONNX check's CPU session does not.
    config.log_device_placement = bool(os.environ.get("GPU_CHECK_LOG_PLACEMENT"))
    rewrites = config.graph_options.rewrite_options
    messages = []
    if bf16:
        if on_gpu:
            messages.append("--bf16 is ignored: it speeds up CPUs with AVX512_BF16/AMX; on a "
                            "GPU use --use-amp.")
            bf16 = False
        elif not cpu_supports_bf16():
            messages.append("--bf16 is ignored: this CPU has no AVX512_BF16 or AMX, so "
                            "bfloat16 would not be faster; running in float32.")
            bf16 = False
        else:
            rewrites.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
            messages.append("--bf16: oneDNN bfloat16 mixed precision on (AVX512_BF16/AMX CPU).")
    for flag, requested in (("--use-xla", use_xla), ("--use-amp", use_amp)):
        if requested and not on_gpu:
            messages.append("%s is ignored: it is for GPUs and this run is on the CPU%s."
                            % (flag, " (see --bf16)" if flag == "--use-amp" else ""))
    use_xla, use_amp = use_xla and on_gpu, use_amp and on_gpu
    skipped = use_amp and float16_rewrite_skipped()
    if skipped:
        messages.append("--use-amp is ignored: %s; running in float32." % skipped)
        use_amp = False
    if use_xla:
        config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
        messages.append("--use-xla: XLA JIT compilation on.")
        messages.append(point_xla_at_libdevice())
    if use_amp:
        rewrites.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
        messages.append("--use-amp: float16 mixed precision with dynamic loss scaling on.")
    return config, messages, use_amp


def evaluations_in_float32(estimator):
    """`estimator`, whose evaluations (the test sample's, the validation's) run without
    the float16 rewrite of --use-amp, as the notebook evaluated in float32: one session
    config serves every session of an Estimator (tensorflow_estimator 2.15, estimator.py:
    _evaluate_run opens its session with self._session_config), so evaluate() runs with
    a copy that has the rewrite off. Without the rewrite, `estimator` is left as it is."""
    training_config = estimator._session_config
    rewrites = training_config.graph_options.rewrite_options
    if rewrites.auto_mixed_precision != rewriter_config_pb2.RewriterConfig.ON:
        return estimator
    float32_config = tf.ConfigProto()
    float32_config.CopyFrom(training_config)
    float32_config.graph_options.rewrite_options.auto_mixed_precision = (
        rewriter_config_pb2.RewriterConfig.OFF)
    evaluate = estimator.evaluate

    def evaluate_in_float32(*args, **kwargs):
        estimator._session_config = float32_config
        try:
            return evaluate(*args, **kwargs)
        finally:
            estimator._session_config = training_config

    estimator.evaluate = evaluate_in_float32
    return estimator

