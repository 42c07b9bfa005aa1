"""Which device trains: a CUDA GPU when TensorFlow can use one, else the CPU."""
import shutil
import subprocess

from imdb_bert.compat import rewriter_config_pb2, tf, tf2


def nvidia_smi_gpus():
    """GPU names that nvidia-smi reports (empty without a driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def describe():
    """A line naming the training device; loud when a GPU is present but unusable."""
    tf_gpus = tf2.config.list_physical_devices("GPU")
    if tf_gpus:
        names = [tf2.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                 for gpu in tf_gpus]
        return "Training on GPU: %s" % ", ".join(names)
    smi_gpus = nvidia_smi_gpus()
    if smi_gpus:
        return ("WARNING: nvidia-smi sees %s but TensorFlow cannot use it, so this runs on "
                "the CPU (many times slower). Install the CUDA build: pip install "
                "'tensorflow[and-cuda]==2.15.1' (make train does this when nvidia-smi works), "
                "and check the driver supports CUDA 12." % ", ".join(smi_gpus))
    return "Training on CPU (no GPU found)"


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


def session_config(bf16=False, use_xla=False, use_amp=False):
    """(session config or None, messages, whether AMP is on) for the speed switches, all
    off by default so results match the notebook's float32 run:
      --bf16     oneDNN's bfloat16 rewrite, on CPUs that compute bfloat16 natively;
      --use-xla  XLA JIT compilation, on a GPU;
      --use-amp  float16 mixed precision (graph rewrite; the optimizer scales the loss),
                 on a GPU.
    A switch that does not fit the device is ignored, with a message saying so."""
    on_gpu = bool(tf2.config.list_physical_devices("GPU"))
    config = tf.ConfigProto()
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
    if use_xla:
        config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
        messages.append("--use-xla: XLA JIT compilation on.")
    if use_amp:
        rewrites.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
        messages.append("--use-amp: float16 mixed precision with dynamic loss scaling on.")
    return (config if bf16 or use_xla or use_amp else None), messages, use_amp
