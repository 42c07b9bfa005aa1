"""Which device trains: a CUDA GPU when TensorFlow can use one, else the CPU."""
import shutil
import subprocess

from compat import tf2


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
