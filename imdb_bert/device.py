"""Which device trains: a CUDA GPU when TensorFlow can use one, else the CPU; the session
config every TF session of this code starts from."""
import os
import shutil
import subprocess
import sys

from imdb_bert.compat import rewriter_config_pb2, tf, tf2
from imdb_bert.errors import UserError

PINNED = {}  # {"index": the GPU of this Horovod process}, once pin_gpu has run
CPU_ONLY = {}  # {"on": True} once --cpu hid the GPUs (use_cpu_only)

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


def fuses_for_cpu():
    """Whether evaluations regroup BERT's ops for oneDNN's fused CPU kernels
    (model/onednn_fusion.py) and training's optimizer runs a fused kernel a variable
    (model/optimizer.py): on the CPU, unless IMDB_BERT_FUSION=off (the benchmarks'
    "before", the tests' reference, and a way back should a fused kernel misbehave)."""
    return training_device() == "CPU" and os.environ.get("IMDB_BERT_FUSION") != "off"


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
# needs no PTX JIT; PTX of a newer ISA than the driver's toolkit cannot be JIT-compiled by
# it. TensorFlow's wheel carries kernels (SASS) for sm_50, sm_60, sm_70, sm_75, which
# capabilities 5.x-7.x run, so there 525.60.13 does; GPUs of 8.0 and newer (Ampere, Ada,
# Hopper) JIT-compile its compute_80 PTX. That PTX is ISA 8.1 (and 7.1), none 8.2: the
# wheel's libraries were built by clang 17 (build_info.py), which writes ISA 8.1, CUDA
# 12.1's; read from the 2.15.1 wheel with `strings -a libtensorflow_cc.so.2`, 608 modules
# ".version 8.1" and 1149 ".version 7.1", all ".target sm_80". CUDA 12.1's driver JIT-compiles
# ISA 8.1: 530.30.02 (CUDA 12.1 release notes, Linux x86_64), not CUDA 12.2's 535.54.03.
MIN_DRIVER = "525.60.13"
MIN_DRIVER_FOR_PTX = "530.30.02"
# Blackwell (compute capability 10.x, 11.x, 12.x): TensorFlow 2.16-2.21 fail there after
# "jit-compiled from PTX" with CUDA_ERROR_INVALID_PTX (tensorflow/tensorflow#101746, #99592,
# #97387, #89272); 2.15.1 has the same sm_50-sm_75 + compute_80 build, and its pip ptxas
# (CUDA 12.2) knows no sm_100/sm_120. No driver helps: such a GPU cannot run TensorFlow 2.15.
BLACKWELL_MAJOR = 10
CPU_FLAG_HINT = "train on the CPU with train.py --cpu (many times slower)"


def capability_major(compute_capability):
    """8 for "8.0"; None when unknown (None or "")."""
    major = (compute_capability or "").split(".")[0]
    return int(major) if major.isdigit() else None


def is_blackwell(compute_capability):
    major = capability_major(compute_capability)
    return major is not None and major >= BLACKWELL_MAJOR


def minimum_driver(compute_capability):
    """The oldest driver that runs TensorFlow 2.15 on a GPU of `compute_capability`
    ("8.0"; None or "" when nvidia-smi did not say)."""
    major = capability_major(compute_capability)
    if major is not None and major >= 8:
        return MIN_DRIVER_FOR_PTX
    return MIN_DRIVER


def blackwell_problem(name, compute_capability):
    return ("TensorFlow 2.15 cannot run on %s (compute capability %s, Blackwell): its GPU "
            "kernels are compute_80 PTX, which fails to compile for Blackwell "
            "(CUDA_ERROR_INVALID_PTX, tensorflow/tensorflow#89272)"
            % (name, compute_capability))


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
    if is_blackwell(compute_capability):
        return ("it is a Blackwell GPU (compute capability %s), which TensorFlow 2.15 cannot "
                "run (tensorflow/tensorflow#89272): %s, or on a machine with an older GPU"
                % (compute_capability, CPU_FLAG_HINT))
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


def listed_gpus():
    """[(name, compute capability "8.0" or "")] of the GPUs TensorFlow lists."""
    listed = []
    for gpu in visible_gpus():
        details = tf2.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        listed.append((details.get("device_name", gpu.name),
                       "%d.%d" % capability if capability else ""))
    return listed


def listed_gpu_problem():
    """(why TensorFlow 2.15 would crash on a GPU it lists, what to do), or None. It lists a GPU
    whose driver is too old for its PTX (the CUDA 12.2 runtime starts from 525.60.13 on)
    and a Blackwell GPU, then fails in the first kernel's PTX compile; the driver is
    nvidia-smi's (when it is missing, only the Blackwell rule applies)."""
    smi_gpus = nvidia_smi_details()
    driver = smi_gpus[0][1] if smi_gpus else ""
    for name, capability in listed_gpus():
        if is_blackwell(capability):
            return (blackwell_problem(name, capability),
                    "%s, or on a machine with an older GPU" % CPU_FLAG_HINT)
        needed = minimum_driver(capability)
        if driver[:1].isdigit() and version_tuple(driver) < version_tuple(needed):
            return ("%s (compute capability %s) needs NVIDIA driver %s or newer with "
                    "TensorFlow 2.15 (CUDA 12.2), and this machine has %s"
                    % (name, capability, needed, driver),
                    "update the NVIDIA driver, or %s" % CPU_FLAG_HINT)
    return None


def refuse_gpus_tensorflow_cannot_run():
    """Stop (exit code 2) before training on a GPU where TensorFlow 2.15 would crash."""
    problem = listed_gpu_problem()
    if problem:
        raise UserError("%s. To do: %s." % problem)


def cpu_where_tensorflow_cannot_run(config):
    """predict.py's TensorFlow paths on a GPU that TensorFlow lists but would crash on
    (listed_gpu_problem): `config`'s sessions run on the CPU instead (device_count, which a
    session given a config obeys, as onnx_difference's does). The line saying so, or None."""
    problem = listed_gpu_problem()
    if problem is None:
        return None
    config.device_count["GPU"] = 0
    return "Predicting on the CPU: %s." % problem[0]


def hide_or_check_gpus(cpu_only):
    """train.py's first look at the GPUs: with --cpu, hide them; else stop (exit code 2)
    where TensorFlow lists a GPU it cannot run, rather than crash in CUDA later."""
    if cpu_only:
        use_cpu_only()
    else:
        refuse_gpus_tensorflow_cannot_run()


def use_cpu_only():
    """--cpu: hide every GPU from CUDA before anything here starts it, so that every session
    (those with a config of their own too) and every subprocess runs on the CPU; CUDA reads
    CUDA_VISIBLE_DEVICES when it initialises (CUDA C++ Programming Guide, "CUDA Environment
    Variables"; TensorFlow's GPU guide hides GPUs the same way)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    CPU_ONLY["on"] = True


def first_start_note():
    """One line for GPUs of compute capability 8.0 and newer, which compile TensorFlow's
    kernels from PTX at the first start (see JIT_CACHE_BYTES); TensorFlow's own warning
    of it is hidden by TF_CPP_MIN_LOG_LEVEL=2. None for other GPUs and the CPU."""
    names = [name for name, capability in listed_gpus()
             if (capability_major(capability) or 0) >= 8]
    if not names:
        return None
    return ("%s: TensorFlow 2.15 has no compiled kernels for this GPU, so CUDA compiles them "
            "from PTX when a run first uses them, which can take many minutes (30 or more on "
            "Hopper, tensorflow/tensorflow#62320); the CUDA JIT cache (~/.nv/ComputeCache, "
            "CUDA_CACHE_MAXSIZE=%s) keeps them for the next start."
            % (", ".join(names), os.environ.get("CUDA_CACHE_MAXSIZE", "unset")))


def describe():
    """A line naming the training device; loud when a GPU is present but unusable."""
    if CPU_ONLY:
        return "Training on CPU (--cpu)"
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
    """Point XLA (--xla_gpu_cuda_data_dir) and PATH at pip's nvidia-cuda-nvcc-cu12, unless
    the user set XLA_FLAGS. TensorFlow 2.15.1 finds that package by itself: tsl's
    CandidateCudaRoots (tsl/platform/default/cuda_libdevice_path.cc) adds ../nvidia/cuda_nvcc
    and ../../nvidia/cuda_nvcc next to its libraries, strings present in the 2.15.1 wheel's
    libtensorflow_framework.so.2 and libtensorflow_cc.so.2. So this is not needed for
    libdevice; it names the folder XLA uses in the run's output and puts its ptxas (CUDA
    12.2's) first on PATH, where XLA also looks for ptxas ("Custom ptxas location can be
    specified using $PATH", the wheel's message), ahead of another toolkit's. Returns the
    message saying what was done."""
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


# --bf16: grappler's bfloat16 rewrite puts a Cast where its op lists change precision, and
# a Cast between the _FusedMatMul and bert's Tanh stops the remapper's GELU fusion of the
# evaluation graph (model/onednn_fusion.py). TensorFlow 2.15 reads changes to those lists
# from these variables at each graph optimization (grappler/optimizers/
# auto_mixed_precision_lists.h, UpdateList): Tanh joins the infer list, so it runs in
# bfloat16 after a bfloat16 MatMul. (Keeping the layer norm in float32 as well, with
# FusedBatchNormV3 on the deny list, fused too but ran 6 % slower: docs/speed.md.)
BFLOAT16_LIST_CHANGES = {"TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_INFERLIST_ADD": "Tanh"}


# --bf16 on the CPU: oneDNN's fused MatMul (_MklNativeFusedMatMul, TF 2.15's
# kernels/mkl/mkl_matmul_op_fused.cc) lets oneDNN choose the weights' layout ("any") only
# for weights it takes as constant; given them as they are stored, oneDNN runs the bfloat16
# product on AVX-512 (ONEDNN_VERBOSE=1: inner_product, x64:gemm:jit) instead of AMX
# (brg:avx512_core_amx): the evaluation step 1.5x slower on an AMX CPU (docs/speed.md).
# TF_ONEDNN_ASSUME_FROZEN_WEIGHTS (util/onednn_env_vars.cc, AreWeightsFrozen: read once a
# process, when the first kernel that asks is made) has the fused MatMul kernels take their
# weights as constant, and such a kernel then keeps the weights of its first run for good
# (measured on TF 2.15.1: tests/test_onednn_fusion.py changes them between runs; the plain
# _MklMatMul reads them anew). So with it, training sessions run without grappler's
# remapper (no fused MatMul: their weights change every step), and a kept validation
# session is made anew for each checkpoint (training/validation.py); evaluations and
# predict.py restore once a session anyway.
ONEDNN_WEIGHT_LAYOUT = ("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1")


def fused_matmuls_keep_first_weights():
    """Whether this process's fused MatMul kernels keep the weights of their first run
    (TF_ONEDNN_ASSUME_FROZEN_WEIGHTS on, as TensorFlow reads a boolean variable)."""
    return os.environ.get(ONEDNN_WEIGHT_LAYOUT[0], "").strip().lower() in ("1", "true")


def session_config(bf16=False, use_xla=False, use_amp=False, tf32=True, training=True):
    """(session config, messages, whether AMP is on) for the speed switches, all
    off by default so results match the notebook's float32 run (on Ampere and newer GPUs,
    float32 matmuls run in TF32 unless --no-tf32):
      --bf16     oneDNN's bfloat16 rewrite, on CPUs that compute bfloat16 natively;
      --use-xla  XLA JIT compilation, on a GPU;
      --use-amp  float16 mixed precision (graph rewrite; the optimizer scales the loss),
                 on a GPU;
      --no-tf32  (tf32=False) TensorFloat-32 off, on a GPU.
    A switch that does not fit the device is ignored, with a message saying so. With
    --bf16 on the CPU (unless IMDB_BERT_FUSION=off) oneDNN chooses its fused MatMuls'
    weight layout, and a `training` config has no fused MatMul (ONEDNN_WEIGHT_LAYOUT;
    predict.py's config is not for training: it restores its weights once)."""
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
            for name, ops in BFLOAT16_LIST_CHANGES.items():
                os.environ.setdefault(name, ops)  # a user's own lists win
            if fuses_for_cpu():
                os.environ.setdefault(*ONEDNN_WEIGHT_LAYOUT)  # a user's own setting wins
            messages.append("--bf16: oneDNN bfloat16 mixed precision on (AVX512_BF16/AMX CPU).")
    if training and not on_gpu and fused_matmuls_keep_first_weights():
        rewrites.remapping = rewriter_config_pb2.RewriterConfig.OFF
    for flag, requested in (("--use-xla", use_xla), ("--use-amp", use_amp),
                            ("--no-tf32", not tf32)):
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
    if on_gpu and not tf32:
        messages.append(turn_tf32_off())
    return config, messages, use_amp


def turn_tf32_off():
    """--no-tf32. On Ampere and newer GPUs TensorFlow runs float32 matmuls and convolutions
    in TensorFloat-32 by default (TensorFlow's docs of
    tf.config.experimental.enable_tensor_float_32_execution, TF 2.15), so a float32 run
    there differs from the notebook's. The switch is process-wide (it sets TensorFlow's
    global tensor_float_32_execution flag), so it reaches the Estimator's sessions too."""
    tf2.config.experimental.enable_tensor_float_32_execution(False)
    return ("--no-tf32: TensorFloat-32 off: float32 matmuls and convolutions in full float32 "
            "precision (slower on Ampere and newer GPUs).")


def evaluation_session_config(training_config):
    """The session config of evaluations: `training_config` without the float16 rewrite
    of --use-amp, and on the CPU with two meta-optimizer passes, as grappler's remapper
    fuses the GELU of the evaluation graph (model/onednn_fusion.py) into _FusedMatMul
    [BiasAdd] only in the second (remapper.cc, FindMatMulBiasAddAndGelu), and with the
    remapper, which session_config turns off for training with --bf16 (ONEDNN_WEIGHT_LAYOUT).
    A copy, or `training_config` itself when neither applies (then without the remapper
    if the training had none)."""
    rewrites = training_config.graph_options.rewrite_options
    float16 = rewrites.auto_mixed_precision == rewriter_config_pb2.RewriterConfig.ON
    fusing = fuses_for_cpu()
    if not float16 and not fusing:
        return training_config
    config = tf.ConfigProto()
    config.CopyFrom(training_config)
    # the remapper's fusions, off in training where fused MatMuls keep their first weights
    config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.DEFAULT
    if float16:
        config.graph_options.rewrite_options.auto_mixed_precision = (
            rewriter_config_pb2.RewriterConfig.OFF)
    if fusing:
        config.graph_options.rewrite_options.meta_optimizer_iterations = (
            rewriter_config_pb2.RewriterConfig.TWO)
    return config


def with_evaluation_config(estimator):
    """`estimator`, whose evaluations (the test sample's, the validation's) run with
    evaluation_session_config: without the float16 rewrite of --use-amp, as the notebook
    evaluated in float32, and on the CPU with the second grappler pass. One session
    config serves every session of an Estimator (tensorflow_estimator 2.15, estimator.py:
    _evaluate_run opens its session with self._session_config), so evaluate() runs with
    the evaluation's. When it is the training config, `estimator` is left as it is."""
    training_config = estimator._session_config
    evaluation_config = evaluation_session_config(training_config)
    if evaluation_config is training_config:
        return estimator
    evaluate = estimator.evaluate

    def evaluate_with_evaluation_config(*args, **kwargs):
        estimator._session_config = evaluation_config
        try:
            return evaluate(*args, **kwargs)
        finally:
            estimator._session_config = training_config

    estimator.evaluate = evaluate_with_evaluation_config
    return estimator

