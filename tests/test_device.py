"""The device TensorFlow trains on, the warning when nvidia-smi sees a GPU TensorFlow can't
use, and Horovod's GPU pinning (with faked GPUs: this machine has none)."""
import os
import subprocess
import sys
import types

import pytest
from conftest import ROOT

from imdb_bert import device
from imdb_bert.errors import UserError
from imdb_bert.training import runtime


def tensorflow_sees_no_gpu(monkeypatch):
    """TensorFlow's side of a machine whose GPU it cannot use, faked so that these tests
    hold on a GPU machine too (where the real TensorFlow sees the GPU)."""
    monkeypatch.setattr(device.tf2.config, "list_physical_devices", lambda kind: [])


def test_cpu_without_nvidia_smi(monkeypatch, tmp_path):
    tensorflow_sees_no_gpu(monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert device.describe() == "Training on CPU (no GPU found)"


def test_warns_when_a_gpu_is_present_but_unusable(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA A100-SXM4-40GB'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    tensorflow_sees_no_gpu(monkeypatch)
    monkeypatch.setattr(device.tf.test, "is_built_with_cuda", lambda: False)
    message = device.describe()
    assert message.startswith("WARNING")
    assert "NVIDIA A100-SXM4-40GB" in message
    assert "tensorflow[and-cuda]==2.15.1" in message


class FakeGPU:
    def __init__(self, index):
        self.name = "/physical_device:GPU:%d" % index
        self.device_type = "GPU"


def fake_gpus(monkeypatch, count, calls, capabilities=None):
    """TensorFlow's device functions, answering as if `count` GPUs were present (of
    compute `capabilities`, default 8.0 each) and recording the calls in `calls`."""
    gpus = [FakeGPU(i) for i in range(count)]
    capabilities = capabilities or [(8, 0)] * count
    monkeypatch.setattr(device.tf2.config.experimental, "get_device_details", lambda gpu: {
        "device_name": "NVIDIA GPU " + gpu.name[-1],
        "compute_capability": capabilities[int(gpu.name[-1])]})

    def list_physical_devices(kind):
        calls.append("list %s" % kind)
        return gpus if kind == "GPU" else []

    monkeypatch.setattr(device.tf2.config, "list_physical_devices", list_physical_devices)
    monkeypatch.setattr(device.tf2.config, "set_visible_devices",
                        lambda gpu, kind: calls.append("visible %s" % gpu.name))
    monkeypatch.setattr(device.tf2.config.experimental, "set_memory_growth",
                        lambda gpu, on: calls.append("growth %s %s" % (gpu.name, on)))
    monkeypatch.setattr(device.tf2.config.experimental, "enable_op_determinism",
                        lambda: calls.append("determinism"))
    monkeypatch.setattr(device, "PINNED", {})


class FakeHorovod:
    def __init__(self, calls, local_rank, local_size):
        self.calls, self._local_rank, self._local_size = calls, local_rank, local_size

    def init(self):
        self.calls.append("hvd.init")

    def local_rank(self):
        return self._local_rank

    def local_size(self):
        return self._local_size


def start_horovod(monkeypatch, calls, local_rank, local_size):
    fake = FakeHorovod(calls, local_rank, local_size)
    monkeypatch.setitem(sys.modules, "horovod", types.ModuleType("horovod"))
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", fake)
    return runtime.init_horovod()


def test_horovod_pins_each_process_to_its_gpu_before_any_session(monkeypatch):
    calls = []
    fake_gpus(monkeypatch, 4, calls)
    start_horovod(monkeypatch, calls, local_rank=2, local_size=4)
    gpu = "/physical_device:GPU:2"
    # Op determinism: the embeddings' summed gradient is the same in every process.
    assert calls == ["hvd.init", "list GPU", "visible %s" % gpu, "growth %s True" % gpu,
                     "determinism"]
    config = device.base_session_config()
    assert config.gpu_options.visible_device_list == "2"
    assert config.gpu_options.allow_growth and config.allow_soft_placement
    session_config, _, _ = device.session_config(use_xla=True)  # the speed switches' too
    assert session_config.gpu_options.visible_device_list == "2"


def test_one_visible_gpu_per_process_is_used_as_is(monkeypatch):
    calls = []
    fake_gpus(monkeypatch, 1, calls)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # the launcher gave rank 3 its own GPU
    start_horovod(monkeypatch, calls, local_rank=3, local_size=4)
    assert calls[-3:-1] == ["visible /physical_device:GPU:0", "growth /physical_device:GPU:0 True"]
    assert device.base_session_config().gpu_options.visible_device_list == "0"


def test_more_processes_than_gpus_is_refused(monkeypatch):
    calls = []
    fake_gpus(monkeypatch, 2, calls)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(UserError, match="local rank 2 has no GPU of its own: this machine "
                                        "has 2 for 3 processes"):
        start_horovod(monkeypatch, calls, local_rank=2, local_size=3)
    assert not [call for call in calls if call.startswith("visible")]


def test_without_gpus_nothing_is_pinned(monkeypatch):
    calls = []
    fake_gpus(monkeypatch, 0, calls)
    start_horovod(monkeypatch, calls, local_rank=1, local_size=2)
    assert "determinism" not in calls  # CPU runs stay as they were, bit for bit
    assert device.base_session_config().gpu_options.visible_device_list == ""
    assert device.training_device() == "CPU"


def test_the_device_tests_ask_follows_what_tensorflow_sees(monkeypatch):
    calls = []
    fake_gpus(monkeypatch, 2, calls)
    monkeypatch.setattr(device.tf2.config.experimental, "get_device_details",
                        lambda gpu: {"device_name": "NVIDIA A100 " + gpu.name[-1]})
    assert device.training_device() == "GPU"
    assert device.describe() == "Training on GPU: NVIDIA A100 0, NVIDIA A100 1"
    _, messages, use_amp = device.session_config(use_amp=True)
    assert use_amp and messages == [
        "--use-amp: float16 mixed precision with dynamic loss scaling on."]


def fake_nvidia_smi(monkeypatch, tmp_path, line):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '%s'\n" % line)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    tensorflow_sees_no_gpu(monkeypatch)


def fake_nvidia_smi_with_capability(monkeypatch, tmp_path, name, driver, capability):
    """An nvidia-smi that answers the compute_cap query (R510 and newer) or, without a
    `capability`, refuses that field as older ones do."""
    fake = tmp_path / "nvidia-smi"
    cap_answer = ("echo '%s, %s, %s'" % (name, driver, capability) if capability else
                  "echo 'Field \"compute_cap\" is not a valid field to query.'; exit 2")
    fake.write_text("#!/bin/sh\ncase \"$*\" in\n  *compute_cap*) %s ;;\n  *) echo '%s, %s' ;;\n"
                    "esac\n" % (cap_answer, name, driver))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    tensorflow_sees_no_gpu(monkeypatch)


def test_an_old_driver_is_named_as_the_cause(monkeypatch, tmp_path):
    fake_nvidia_smi(monkeypatch, tmp_path, "Tesla V100-SXM2-16GB, 470.82.01")
    message = device.describe()
    assert message.startswith("WARNING: nvidia-smi sees Tesla V100-SXM2-16GB but")
    assert "driver 470.82.01 is older than the 525.60.13 that CUDA 12 needs" in message


@pytest.mark.parametrize("name, driver, capability, needed", [
    ("Tesla V100-SXM2-16GB", "525.60.12", "7.0", "525.60.13"),  # SASS: minor version compat.
    # PTX ISA 8.1 (the wheel's, clang 17's): CUDA 12.1's driver
    ("NVIDIA A100-SXM4-40GB", "530.30.01", "8.0", "530.30.02"),
    ("NVIDIA H100 80GB HBM3", "525.105.17", "9.0", "530.30.02"),
    ("NVIDIA L4", "525.147.05", "8.9", "530.30.02"),
])
def test_the_minimum_driver_follows_the_gpu_generation(monkeypatch, tmp_path, name, driver,
                                                      capability, needed):
    fake_nvidia_smi_with_capability(monkeypatch, tmp_path, name, driver, capability)
    assert device.nvidia_smi_details() == [(name, driver, capability)]
    assert device.minimum_driver(capability) == needed
    assert ("driver %s is older than the %s that a GPU of compute capability %s needs"
            % (driver, needed, capability)) in device.describe()


@pytest.mark.parametrize("driver, capability", [("530.30.02", "7.5"), ("530.30.02", "9.0"),
                                                ("535.54.03", "9.0"), ("550.54.15", "8.0")])
def test_a_driver_new_enough_for_the_generation_is_not_blamed(monkeypatch, tmp_path, driver,
                                                              capability):
    fake_nvidia_smi_with_capability(monkeypatch, tmp_path, "NVIDIA GPU", driver, capability)
    monkeypatch.setattr(device.tf.test, "is_built_with_cuda", lambda: False)
    message = device.describe()
    assert "older than" not in message and "this TensorFlow is a CPU-only build" in message


def test_an_nvidia_smi_without_compute_cap_falls_back_to_name_and_driver(monkeypatch,
                                                                        tmp_path):
    fake_nvidia_smi_with_capability(monkeypatch, tmp_path, "Tesla K80", "470.57.02", None)
    assert device.nvidia_smi_details() == [("Tesla K80", "470.57.02", "")]
    assert device.nvidia_smi_gpus() == [("Tesla K80", "470.57.02")]
    assert "older than the 525.60.13 that CUDA 12 needs" in device.describe()


def test_the_cuda_jit_cache_is_enlarged_unless_the_user_set_it():
    script = ("import os, sys; sys.argv = ['x']; import imdb_bert.device; "
              "print(os.environ['CUDA_CACHE_MAXSIZE'])")
    env = {key: value for key, value in os.environ.items() if key != "CUDA_CACHE_MAXSIZE"}
    ours = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert ours.stdout.split() == ["2147483648"], ours.stderr[-2000:]
    users = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                           env=dict(env, CUDA_CACHE_MAXSIZE="1000"),
                           capture_output=True, text=True, timeout=120)
    assert users.stdout.split() == ["1000"], users.stderr[-2000:]


def test_a_cpu_only_tensorflow_is_named_as_the_cause(monkeypatch, tmp_path):
    fake_nvidia_smi(monkeypatch, tmp_path, "NVIDIA A100-SXM4-40GB, 550.54.15")
    monkeypatch.setattr(device.tf.test, "is_built_with_cuda", lambda: False)
    assert "this TensorFlow is a CPU-only build" in device.describe()


AMP_ON = "--use-amp: float16 mixed precision with dynamic loss scaling on."


@pytest.mark.parametrize("capabilities, pinned, ignore_performance, skipped", [
    # Pascal: TensorFlow skips the rewrite
    ([(6, 0), (6, 1)], None, None, "NVIDIA GPU 0 (compute capability 6.0), "
                                   "NVIDIA GPU 1 (compute capability 6.1)"),
    ([(6, 1), (7, 0)], None, None, None),  # the session has one GPU that can
    ([(7, 0), (6, 1)], 1, None, "NVIDIA GPU 1 (compute capability 6.1)"),  # Horovod: its own
    ([(7, 5), (6, 1)], 0, None, None),
    ([(6, 0)], None, "1", None),  # the user asked TensorFlow to rewrite anyway
    ([None], None, None, None),  # capability unknown: left to TensorFlow
])
def test_use_amp_is_ignored_where_tensorflow_skips_the_float16_rewrite(
        monkeypatch, capabilities, pinned, ignore_performance, skipped):
    fake_gpus(monkeypatch, len(capabilities), [], capabilities)
    if pinned is not None:
        monkeypatch.setitem(device.PINNED, "index", pinned)
    monkeypatch.setenv(device.FLOAT16_ANY_GPU, ignore_performance or "")
    config, messages, use_amp = device.session_config(use_amp=True)
    rewrite = config.graph_options.rewrite_options.auto_mixed_precision
    assert use_amp is (skipped is None)
    assert (rewrite == device.rewriter_config_pb2.RewriterConfig.ON) is (skipped is None)
    if skipped is None:
        assert messages == [AMP_ON] and device.float16_rewrite_skipped() is None
    else:
        assert messages == ["--use-amp is ignored: TensorFlow's float16 rewrite needs a GPU "
                            "of compute capability 7.0 or newer and skips %s; running in "
                            "float32." % skipped]


def test_xla_is_pointed_at_pips_libdevice_unless_xla_flags_says_otherwise(monkeypatch,
                                                                          tmp_path):
    fake_gpus(monkeypatch, 1, [])
    # setenv first, so that monkeypatch restores XLA_FLAGS (unset or not) after the test:
    # delenv(raising=False) of an unset variable records nothing to undo.
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setenv("PATH", os.environ["PATH"])  # restored after the test
    # No pip CUDA on the path (tensorflow[and-cuda] installs nvidia-cuda-nvcc-cu12 on a
    # GPU machine): the path holds only this test's folder.
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site")])
    _, messages, _ = device.session_config(use_xla=True)
    assert "nvidia-cuda-nvcc-cu12 (libdevice, ptxas) was not found" in messages[-1]
    assert "XLA_FLAGS" not in os.environ

    nvcc = tmp_path / "site" / "nvidia" / "cuda_nvcc"
    (nvcc / "nvvm" / "libdevice").mkdir(parents=True)
    _, messages, _ = device.session_config(use_xla=True)
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_cuda_data_dir=%s" % nvcc
    assert os.environ["PATH"].startswith(str(nvcc / "bin") + os.pathsep)
    assert messages[-1].startswith("--use-xla: XLA_FLAGS=--xla_gpu_cuda_data_dir=")

    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_cuda_data_dir=/usr/local/cuda")
    _, messages, _ = device.session_config(use_xla=True)
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_cuda_data_dir=/usr/local/cuda"


def test_only_the_three_factory_lines_are_hidden_at_import():
    result = subprocess.run([sys.executable, "-c", "import imdb_bert.compat"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Unable to register" not in result.stderr
    from imdb_bert.compat import FACTORY_NOISE
    for plugin, path in (("cuDNN", "cuda_dnn.cc:9261"), ("cuFFT", "cuda_fft.cc:607"),
                         ("cuBLAS", "cuda_blas.cc:1515")):
        assert FACTORY_NOISE.search(
            "E external/local_xla/xla/stream_executor/cuda/%s] Unable to register %s "
            "factory: Attempting to register factory for plugin %s when one has already "
            "been registered" % (path, plugin, plugin))
    assert not FACTORY_NOISE.search("E tensorflow/core/common_runtime/gpu/gpu_device.cc] "
                                    "Could not load dynamic library 'libcudnn.so.8'")


def test_the_test_process_leaves_gpu_memory_to_the_runs_it_starts(monkeypatch):
    """Sessions with a config ignore the hidden GPU list, so the allocator's own switch,
    which TensorFlow reads with getenv, must be on in this process; a user's value wins."""
    import ctypes

    import conftest
    getenv = ctypes.CDLL(None).getenv  # libc's, which TensorFlow's allocator calls
    getenv.restype = ctypes.c_char_p
    name = "TF_FORCE_GPU_ALLOW_GROWTH"
    # Set at conftest's import ("true", unless the user had set it).
    assert getenv(name.encode()) == os.environ[name].encode()
    assert device.tf2.config.get_visible_devices("GPU") == []  # config-less sessions
    calls = []
    monkeypatch.setattr(device.tf2.config, "set_visible_devices",
                        lambda devices, kind: calls.append((devices, kind)))
    monkeypatch.setenv(name, "false")
    conftest.leave_gpu_memory_to_the_runs_the_tests_start()
    assert getenv(name.encode()) == b"false"  # the user's value wins
    monkeypatch.delenv(name)
    conftest.leave_gpu_memory_to_the_runs_the_tests_start()
    assert getenv(name.encode()) == b"true"
    assert calls == [([], "GPU")] * 2


def test_evaluations_run_without_the_float16_rewrite(monkeypatch, tmp_path, tiny_module):
    """--use-amp: training sessions get the float16 rewrite, evaluation (test sample and
    validation) sessions the same config with the rewrite off."""
    on, off = (device.rewriter_config_pb2.RewriterConfig.ON,
               device.rewriter_config_pb2.RewriterConfig.OFF)
    fake_gpus(monkeypatch, 1, [])
    config, _, use_amp = device.session_config(use_amp=True)
    assert use_amp and config.graph_options.rewrite_options.auto_mixed_precision == on
    seen = []
    monkeypatch.setattr(device.tf.estimator.Estimator, "evaluate",
                        lambda self, *args, **kwargs: seen.append(self._session_config)
                        or {"global_step": 1})

    def estimator(session_config):  # train.py's
        import train
        return train.make_estimator(lambda features, labels, mode, params: None, str(tmp_path),
                                    session_config, train.parse_args([]), tiny_module)

    amp = estimator(config)
    assert amp.evaluate(input_fn=None) == {"global_step": 1}
    assert seen[-1].graph_options.rewrite_options.auto_mixed_precision == off
    assert seen[-1].gpu_options.allow_growth and seen[-1].allow_soft_placement
    assert amp._session_config.graph_options.rewrite_options.auto_mixed_precision == on
    plain_config = device.session_config()[0]
    plain = estimator(plain_config)
    plain.evaluate(input_fn=None)
    assert seen[-1] is plain_config  # without --use-amp, nothing changes
    # The validations' kept session (training/validation.py) takes the same configs.
    kept = device.evaluation_session_config(config)
    assert kept.graph_options.rewrite_options.auto_mixed_precision == off
    assert kept.gpu_options.allow_growth and kept.allow_soft_placement
    assert device.evaluation_session_config(plain_config) is plain_config


def test_xla_flags_set_by_one_test_do_not_leak_into_the_next():
    """Runs after test_xla_is_pointed_at_pips_libdevice_unless_xla_flags_says_otherwise
    (file order), which points XLA_FLAGS at a folder of its own."""
    assert "site/nvidia/cuda_nvcc" not in os.environ.get("XLA_FLAGS", "")


def test_same_seed_runs_get_op_determinism_on_a_gpu_only():
    from conftest import same_kernels_env
    assert same_kernels_env(avx2=False, gpu=False) is None  # the CPU runs as it always did
    cpu = same_kernels_env(avx2=True, gpu=False)
    assert cpu["ONEDNN_MAX_CPU_ISA"] == "AVX2" and "TF_DETERMINISTIC_OPS" not in cpu
    gpu = same_kernels_env(avx2=True, gpu=True)
    assert gpu["TF_DETERMINISTIC_OPS"] == "1" and gpu["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert same_kernels_env(avx2=False, gpu=True)["TF_DETERMINISTIC_OPS"] == "1"



# The drivers below, at and above the floor of each generation, and Blackwell GPUs, with
# the GPU listed by (a stubbed) TensorFlow: what train.py and make gpu-check decide.
BELOW, AT, ABOVE = "525.105.17", "530.30.02", "550.54.15"
BLACKWELL = [("NVIDIA B200", "10.0"), ("NVIDIA GeForce RTX 5090", "12.0")]


def fake_driver(monkeypatch, tmp_path, name, driver, capability, memory_mib=81559):
    """nvidia-smi on PATH answering the queries of device.py and gpu_check.py."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\ncase \"$*\" in\n  *compute_cap*) echo '%s, %s, %s' ;;\n"
                    "  *memory.total*) echo '%d MiB' ;;\n  *) echo '%s, %s' ;;\nesac\n"
                    % (name, driver, capability, memory_mib, name, driver))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])


def tensorflow_lists(monkeypatch, name, capability):
    """TensorFlow's GPU list and details answering as for one GPU `name` of `capability`
    ("8.0")."""
    gpu = FakeGPU(0)
    major, minor = (int(part) for part in capability.split("."))
    monkeypatch.setattr(device.tf2.config, "list_physical_devices",
                        lambda kind: [gpu] if kind == "GPU" else [])
    monkeypatch.setattr(device.tf2.config.experimental, "get_device_details", lambda gpu: {
        "device_name": name, "compute_capability": (major, minor)})
    monkeypatch.setattr(device, "PINNED", {})
    monkeypatch.setattr(device, "CPU_ONLY", {})


@pytest.mark.parametrize("capability", ["8.0", "9.0"])
@pytest.mark.parametrize("driver, refused", [(BELOW, True), (AT, False), (ABOVE, False)])
def test_a_listed_gpu_whose_driver_cannot_jit_the_ptx_is_refused(monkeypatch, tmp_path,
                                                                capability, driver, refused):
    """TensorFlow lists the GPU (the CUDA 12.2 runtime starts from 525.60.13 on), but
    below 530.30.02 the driver cannot JIT-compile the wheel's PTX ISA 8.1."""
    fake_driver(monkeypatch, tmp_path, "NVIDIA H100 80GB HBM3", driver, capability)
    tensorflow_lists(monkeypatch, "NVIDIA H100 80GB HBM3", capability)
    if not refused:
        device.refuse_gpus_tensorflow_cannot_run()
        assert device.describe() == "Training on GPU: NVIDIA H100 80GB HBM3"
        return
    with pytest.raises(UserError) as refusal:
        device.refuse_gpus_tensorflow_cannot_run()
    assert str(refusal.value) == (
        "NVIDIA H100 80GB HBM3 (compute capability %s) needs NVIDIA driver 530.30.02 or newer "
        "with TensorFlow 2.15 (CUDA 12.2), and this machine has 525.105.17. To do: update the "
        "NVIDIA driver, or train on the CPU with train.py --cpu (many times slower)."
        % capability)


@pytest.mark.parametrize("driver", [BELOW, ABOVE])
def test_a_listed_gpu_of_an_older_generation_needs_no_ptx_driver(monkeypatch, tmp_path,
                                                                 driver):
    fake_driver(monkeypatch, tmp_path, "Tesla T4", driver, "7.5")
    tensorflow_lists(monkeypatch, "Tesla T4", "7.5")
    device.refuse_gpus_tensorflow_cannot_run()
    assert device.first_start_note() is None  # SASS: nothing compiled at the first start


@pytest.mark.parametrize("name, capability", BLACKWELL)
@pytest.mark.parametrize("driver", [BELOW, AT, ABOVE, "575.51.03"])
def test_a_listed_blackwell_gpu_is_refused_whatever_the_driver(monkeypatch, tmp_path, name,
                                                               capability, driver):
    fake_driver(monkeypatch, tmp_path, name, driver, capability)
    tensorflow_lists(monkeypatch, name, capability)
    with pytest.raises(UserError) as refusal:
        device.refuse_gpus_tensorflow_cannot_run()
    assert str(refusal.value) == (
        "TensorFlow 2.15 cannot run on %s (compute capability %s, Blackwell): its GPU kernels "
        "are compute_80 PTX, which fails to compile for Blackwell (CUDA_ERROR_INVALID_PTX, "
        "tensorflow/tensorflow#89272). To do: train on the CPU with train.py --cpu (many times "
        "slower), or on a machine with an older GPU." % (name, capability))


@pytest.mark.parametrize("name, capability, driver, on_cpu", [
    *((name, capability, ABOVE, True) for name, capability in BLACKWELL),
    ("NVIDIA H100 80GB HBM3", "9.0", BELOW, True), ("NVIDIA H100 80GB HBM3", "9.0", AT, False),
    ("Tesla T4", "7.5", BELOW, False)])
def test_predict_runs_tensorflow_on_the_cpu_where_the_listed_gpu_would_crash(
        monkeypatch, tmp_path, name, capability, driver, on_cpu):
    """predict.py needs no --cpu: its sessions' config keeps them off such a GPU."""
    fake_driver(monkeypatch, tmp_path, name, driver, capability)
    tensorflow_lists(monkeypatch, name, capability)
    config = device.base_session_config()
    line = device.cpu_where_tensorflow_cannot_run(config)
    assert (config.device_count.get("GPU") == 0) is on_cpu
    if on_cpu:
        assert line.startswith("Predicting on the CPU: %s (compute capability %s"
                               % (("TensorFlow 2.15 cannot run on " if device.is_blackwell(capability)
                                   else "") + name, capability))
    else:
        assert line is None


@pytest.mark.parametrize("name, capability", BLACKWELL)
def test_a_blackwell_gpu_tensorflow_does_not_list_is_named_as_the_cause(monkeypatch, tmp_path,
                                                                       name, capability):
    fake_driver(monkeypatch, tmp_path, name, "575.51.03", capability)
    tensorflow_sees_no_gpu(monkeypatch)
    assert device.describe() == (
        "WARNING: nvidia-smi sees %s but TensorFlow cannot use it, so this runs on the CPU "
        "(many times slower). Likely cause: it is a Blackwell GPU (compute capability %s), "
        "which TensorFlow 2.15 cannot run (tensorflow/tensorflow#89272): train on the CPU "
        "with train.py --cpu (many times slower), or on a machine with an older GPU."
        % (name, capability))


@pytest.mark.parametrize("capability, note", [("8.0", True), ("9.0", True), ("7.0", False)])
def test_the_first_start_ptx_compilation_is_announced_on_ampere_and_newer(
        monkeypatch, tmp_path, capability, note):
    tensorflow_lists(monkeypatch, "NVIDIA GPU", capability)
    monkeypatch.setenv("CUDA_CACHE_MAXSIZE", "2147483648")
    line = device.first_start_note()
    if not note:
        assert line is None
        return
    assert line.startswith("NVIDIA GPU: TensorFlow 2.15 has no compiled kernels for this GPU, "
                           "so CUDA compiles them from PTX")
    assert "JIT cache (~/.nv/ComputeCache, CUDA_CACHE_MAXSIZE=2147483648) keeps them for the "\
        "next start." in line and "\n" not in line


def test_no_tf32_turns_tensorflows_tensor_float_32_off_on_a_gpu_only(monkeypatch):
    """The real switch of TensorFlow (process-wide), restored afterwards."""
    enabled = device.tf2.config.experimental.tensor_float_32_execution_enabled
    assert enabled()  # TensorFlow's default
    try:
        tensorflow_sees_no_gpu(monkeypatch)
        _, messages, _ = device.session_config(tf32=False)
        assert messages == ["--no-tf32 is ignored: it is for GPUs and this run is on the CPU."]
        assert enabled()
        fake_gpus(monkeypatch, 1, [])
        _, messages, _ = device.session_config()
        assert messages == [] and enabled()
        _, messages, _ = device.session_config(tf32=False)
        assert messages == ["--no-tf32: TensorFloat-32 off: float32 matmuls and convolutions "
                            "in full float32 precision (slower on Ampere and newer GPUs)."]
        assert not enabled()
    finally:
        device.tf2.config.experimental.enable_tensor_float_32_execution(True)


# train.py up to its device line, with a stubbed TensorFlow GPU list that, as CUDA does,
# lists nothing once CUDA_VISIBLE_DEVICES is empty; model_settings (the step after the
# device line) ends the run with exit code 7.
TRAIN_UNTIL_THE_DEVICE_LINE = """
import os, sys
sys.argv = ["train.py"] + sys.argv[1:]
from imdb_bert import device
from imdb_bert.errors import run_script
import train

class GPU:
    name, device_type = "/physical_device:GPU:0", "GPU"

device.tf2.config.list_physical_devices = lambda kind: (
    [GPU()] if kind == "GPU" and os.environ.get("CUDA_VISIBLE_DEVICES") != "" else [])
device.tf2.config.experimental.get_device_details = lambda gpu: {
    "device_name": os.environ["FAKE_GPU"],
    "compute_capability": tuple(int(part) for part in os.environ["FAKE_CC"].split("."))}

def stop(*args):
    print("CUDA_VISIBLE_DEVICES=%r" % os.environ.get("CUDA_VISIBLE_DEVICES"))
    sys.exit(7)

train.run_settings.model_settings = stop
run_script(train.main)
"""


def train_until_the_device_line(tmp_path, name, driver, capability, *flags):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '%s, %s, %s'\n" % (name, driver, capability))
    fake.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    env.update(PATH=str(bin_dir) + os.pathsep + os.environ["PATH"], FAKE_GPU=name,
               FAKE_CC=capability)
    return subprocess.run([sys.executable, "-c", TRAIN_UNTIL_THE_DEVICE_LINE,
                           "--output-dir", str(tmp_path / "out"), *flags],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_train_py_stops_on_a_blackwell_gpu_in_one_line_and_trains_on_the_cpu_with_cpu(
        tmp_path):
    refused = train_until_the_device_line(tmp_path, "NVIDIA GeForce RTX 5090", "575.51.03",
                                          "12.0")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines() == [
        "error: TensorFlow 2.15 cannot run on NVIDIA GeForce RTX 5090 (compute capability "
        "12.0, Blackwell): its GPU kernels are compute_80 PTX, which fails to compile for "
        "Blackwell (CUDA_ERROR_INVALID_PTX, tensorflow/tensorflow#89272). To do: train on the "
        "CPU with train.py --cpu (many times slower), or on a machine with an older GPU."]
    assert not (tmp_path / "out").exists()  # refused before anything was written

    on_cpu = train_until_the_device_line(tmp_path, "NVIDIA GeForce RTX 5090", "575.51.03",
                                         "12.0", "--cpu", "--no-tf32")
    assert on_cpu.returncode == 7, on_cpu.stderr[-2000:]
    assert on_cpu.stdout.splitlines()[-3:] == [
        "Training on CPU (--cpu)",
        "--no-tf32 is ignored: it is for GPUs and this run is on the CPU.",
        "CUDA_VISIBLE_DEVICES=''"]


def test_train_py_stops_below_the_ptx_driver_and_announces_the_jit_above_it(tmp_path):
    old = train_until_the_device_line(tmp_path, "NVIDIA A100-SXM4-40GB", BELOW, "8.0")
    assert old.returncode == 2 and "Traceback" not in old.stderr, old.stderr[-2000:]
    assert old.stderr.strip().splitlines() == [
        "error: NVIDIA A100-SXM4-40GB (compute capability 8.0) needs NVIDIA driver 530.30.02 "
        "or newer with TensorFlow 2.15 (CUDA 12.2), and this machine has 525.105.17. To do: "
        "update the NVIDIA driver, or train on the CPU with train.py --cpu (many times "
        "slower)."]
    current = train_until_the_device_line(tmp_path, "NVIDIA A100-SXM4-40GB", AT, "8.0",
                                          "--no-tf32")
    assert current.returncode == 7, current.stderr[-2000:]
    lines = current.stdout.splitlines()
    start = lines.index("Training on GPU: NVIDIA A100-SXM4-40GB")
    assert lines[start + 1].startswith("NVIDIA A100-SXM4-40GB: TensorFlow 2.15 has no "
                                       "compiled kernels for this GPU")
    assert lines[start + 2].startswith("--no-tf32: TensorFloat-32 off")
    assert lines[-1] == "CUDA_VISIBLE_DEVICES=None"
