"""make gpu-check: each check's verdict on made-up outputs, passing and failing (this
machine has no GPU to run them on), and what it does without a GPU."""
import os
import shutil
import subprocess
import sys
import time
import types

import pytest
from conftest import ROOT, on_gpu

from imdb_bert.tools import gpu_check

QUERY = ("module/bert/encoder/layer_0/attention/self/query/einsum/Einsum: (Einsum): "
         "/job:localhost/replica:0/task:0/device:%s\n")
READ = ("module/bert/encoder/layer_0/attention/self/query/Reshape/ReadVariableOp: "
        "(ReadVariableOp): /job:localhost/replica:0/task:0/device:CPU:0\n")


def progress(*losses):
    return "".join("step %d/20  loss %s  41.3 examples/s  ETA 0:00:01\n" % (i + 1, loss)
                   for i, loss in enumerate(losses))


def test_placement_passes_only_with_the_computation_on_gpu_0():
    assert gpu_check.judge_placement(READ + QUERY % "GPU:0" * 2)[0]
    assert not gpu_check.judge_placement(READ + QUERY % "CPU:0")[0]
    assert not gpu_check.judge_placement(QUERY % "GPU:0" + QUERY % "GPU:1")[0]
    assert not gpu_check.judge_placement(READ)[0]  # the computation was never logged


def test_amp_needs_finite_changing_losses_and_an_adapting_scale():
    start = gpu_check.SCALE_START
    assert gpu_check.judge_amp(progress("0.69", "0.52"), start, start / 2 ** 9)[0]
    assert not gpu_check.judge_amp(progress("0.69", "nan"), start, start / 2)[0]
    assert not gpu_check.judge_amp(progress("0.69", "0.69"), start, start / 2)[0]
    assert not gpu_check.judge_amp(progress("0.69", "0.52"), start, start)[0]
    assert not gpu_check.judge_amp(progress("0.69", "0.52"), start, None)[0]
    assert not gpu_check.judge_amp(progress("0.69"), start, start / 2)[0]


def test_xla_passes_only_when_clusters_were_compiled():
    assert gpu_check.judge_xla("I xla_compilation_cache.cc] Compiled cluster using XLA!  "
                               "This line is logged at most once")[0]
    assert not gpu_check.judge_xla("--use-xla: XLA JIT compilation on.")[0]


def test_predict_needs_a_label_per_sentence_and_the_model_on_gpu_0():
    lines = "Positive\t0.9\t[-2.3, -0.1]\ta great film\nNegative\t0.8\t[-0.2, -1.6]\tawful\n"
    # The placement log of predict.py's session goes to stdout and stderr, between lines.
    assert gpu_check.judge_predict(0, QUERY % "GPU:0" + lines, QUERY % "GPU:0")[0]
    assert gpu_check.judge_predict(0, lines, READ + QUERY % "GPU:0")[0]
    assert not gpu_check.judge_predict(0, lines, QUERY % "CPU:0")[0]  # the CPU predicted
    assert not gpu_check.judge_predict(0, lines, "")[0]  # e.g. the ONNX path: no placement
    assert not gpu_check.judge_predict(2, lines, QUERY % "GPU:0")[0]
    assert not gpu_check.judge_predict(0, lines.splitlines()[0], QUERY % "GPU:0")[0]


def test_the_predict_checks_take_the_gpu_paths_of_predict_py(monkeypatch):
    runs = []
    monkeypatch.setattr(gpu_check, "run", lambda script, args, env=None, **kw: runs.append(
        (script, args, env)) or (0, "", ""))
    found = dict(gpu_check.checks(("module", "data"), "/tmp/x", 1))
    for name, flag in (("predict SavedModel", "--no-onnx"),
                       ("predict checkpoint", "--from-checkpoint")):
        found[name]()
        script, args, env = runs[-1]
        assert script == "predict.py" and flag in args
        assert env == {"GPU_CHECK_LOG_PLACEMENT": "1"}


def test_a_run_that_times_out_is_a_fail_line_naming_the_time_and_the_cause(
        monkeypatch, tmp_path, capsys):
    """A real child that outlives the timeout: no traceback, a FAIL line, exit 1."""
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setattr(gpu_check, "TIMEOUT", 1)
    monkeypatch.setattr(gpu_check, "describe_installation", lambda: ["NVIDIA H100"])
    monkeypatch.setattr(gpu_check, "make_material", lambda folder: None)
    monkeypatch.setattr(gpu_check, "checks", lambda material, tmp, count: [
        ("training on GPU:0", lambda: gpu_check.run(str(slow), []))])
    assert gpu_check.main(["--keep", str(tmp_path)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("FAIL  training on GPU:0")
    assert "no result within 1 s" in line and "tensorflow/tensorflow#62320" in line
    assert "from PTX" in line and "CUDA_CACHE_MAXSIZE" in line


def test_horovod_needs_the_same_weights_in_every_process():
    line = "Horovod process %d of 2: global step 25, weights sha256 %s\n"
    assert gpu_check.judge_horovod(0, line % (0, "ab12") + line % (1, "ab12"), 0)[0]
    assert not gpu_check.judge_horovod(0, line % (0, "ab12") + line % (1, "cd34"), 0)[0]
    assert not gpu_check.judge_horovod(0, line % (0, "ab12"), 0)[0]
    assert not gpu_check.judge_horovod(1, line % (0, "ab12") + line % (1, "ab12"), 0)[0]


NCCL_LOG = ("[0]<stdout>:gpu-box:6502:6588 [0] NCCL INFO Bootstrap : Using lo:127.0.0.1<0>\n"
            "[0]<stdout>:gpu-box:6502:6588 [0] NCCL INFO NCCL version 2.18.1+cuda12.1\n"
            "[1]<stdout>:gpu-box:6503:6590 [1] NCCL INFO comm 0x55d8ac4ad300 rank 1 nranks 2 "
            "cudaDev 1 nvmlDev 1 busId 52000 commId 0x9ad9b5e4ab2566da - Init COMPLETE\n")


def test_horovod_says_what_was_built_and_whether_nccl_ran():
    digests = "".join("Horovod process %d of 2: global step 25, weights sha256 ab12\n" % rank
                      for rank in (0, 1))
    passed, detail = gpu_check.judge_horovod(0, NCCL_LOG + digests, 21801)
    assert passed and "Horovod built with NCCL 2.18.1, NCCL ran" in detail
    for log in (NCCL_LOG.splitlines()[1], NCCL_LOG.splitlines()[2]):
        assert gpu_check.judge_horovod(0, log + "\n" + digests, 21801)[0]
    passed, detail = gpu_check.judge_horovod(0, digests, 21801)  # built, but not used
    assert not passed and "NCCL did not run" in detail
    passed, detail = gpu_check.judge_horovod(0, digests, 0)
    assert passed and "Gloo only" in detail and "NCCL did not run" in detail
    assert not gpu_check.judge_horovod(0, NCCL_LOG.splitlines()[0] + "\n" + digests, 21801)[0]


def test_nccls_version_line_counts_prefixed_as_nccl_writes_it_or_bare():
    """NCCL_DEBUG=INFO prefixes the version line like every other ("host:pid:tid [dev]
    NCCL INFO"); NCCL_DEBUG=VERSION prints it bare."""
    for line in ("gpu-box:6502:6588 [0] NCCL INFO NCCL version 2.16.5+cuda12.2",
                 "[1]<stdout>:gpu-box:6503:6590 [1] NCCL INFO NCCL version 2.16.5+cuda12.2",
                 "NCCL version 2.16.5+cuda12.2", "[0]<stdout>:NCCL version 2.16.5+cuda12.2"):
        assert gpu_check.NCCL_RAN.search(line), line
    assert not gpu_check.NCCL_RAN.search("Horovod built with NCCL version 2.16.5")


def test_the_horovod_check_asks_nccl_for_its_log(monkeypatch):
    runs = []
    monkeypatch.setattr(gpu_check, "run", lambda *args, **kwargs: runs.append(
        (args, kwargs)) or (0, "", ""))
    monkeypatch.setattr(gpu_check, "horovod_nccl_built", lambda: 21801)
    found = dict(gpu_check.checks(("module", "data"), "/tmp/x", 2))
    passed, detail = found["Horovod, 2 GPUs"]()
    (script, args, env), kwargs = runs[-1]
    assert script == "train.py" and "--horovod" in args and kwargs == {"horovod_processes": 2}
    assert env == {"NCCL_DEBUG": "INFO"}
    assert not passed and "Horovod built with NCCL 2.18.1" in detail


def test_without_horovod_its_check_is_a_skip_line_and_not_a_failure(monkeypatch, tmp_path,
                                                                    capsys):
    """make gpu-check no longer builds Horovod first: where horovod.tensorflow does not
    import, the Horovod line says SKIP without starting horovodrun, and the exit code
    is that of the other checks."""
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)  # import fails
    assert gpu_check.horovod_nccl_built() is None
    runs = []
    monkeypatch.setattr(gpu_check, "run", lambda *args, **kwargs: runs.append(args))
    found = dict(gpu_check.checks(("module", "data"), "/tmp/x", 2))
    assert found["Horovod, 2 GPUs"]() == (None, "not installed (make horovod)") and not runs

    monkeypatch.setattr(gpu_check, "describe_installation", lambda: ["GPU 0", "GPU 1"])
    monkeypatch.setattr(gpu_check, "make_material", lambda folder: None)
    for other, code in ((True, 0), (False, 1)):
        monkeypatch.setattr(gpu_check, "checks", lambda material, tmp, count: [
            ("training on GPU:0", lambda: (other, "query projection on GPU:0")),
            ("Horovod, 2 GPUs", found["Horovod, 2 GPUs"])])
        assert gpu_check.main(["--keep", str(tmp_path)]) == code
        lines = capsys.readouterr().out.splitlines()
        assert lines[-1].startswith("SKIP  Horovod, 2 GPUs ")
        assert lines[-1].endswith("  not installed (make horovod)")


def test_the_amp_check_is_a_skip_naming_the_capability_where_float16_is_skipped(
        monkeypatch):
    """GPUs below compute capability 7.0: TensorFlow skips the float16 rewrite, train.py
    says it ignores --use-amp, and the check says SKIP with the reason instead of running
    train.py and failing on a loss scale that never moved."""
    from imdb_bert import device
    runs = []
    monkeypatch.setattr(gpu_check, "run", lambda *args, **kwargs: runs.append(args) or (
        0, "", ""))
    gpu = types.SimpleNamespace(name="/physical_device:GPU:0")
    monkeypatch.setattr(device.tf2.config, "list_physical_devices", lambda kind: [gpu])
    monkeypatch.setattr(device, "PINNED", {})
    monkeypatch.delenv(device.FLOAT16_ANY_GPU, raising=False)
    for capability in ((6, 0), (7, 0)):
        monkeypatch.setattr(device.tf2.config.experimental, "get_device_details",
                            lambda gpu: {"device_name": "Tesla P100-PCIE-16GB",
                                         "compute_capability": capability})
        passed, detail = dict(gpu_check.checks(("module", "data"), "/tmp/x", 1))["--use-amp"]()
        if capability == (6, 0):
            assert passed is None and not runs
            assert detail == ("TensorFlow's float16 rewrite needs a GPU of compute capability "
                              "7.0 or newer and skips Tesla P100-PCIE-16GB (compute "
                              "capability 6.0)")
        else:
            assert passed is False and len(runs) == 1  # ran train.py --use-amp and judged it
            assert "--use-amp" in runs[0][1]


def test_make_gpu_check_does_not_build_horovod(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed-cpu").touch()  # newer than the requirements files
    result = subprocess.run(
        [shutil.which("make"), "--no-print-directory", "-n", "gpu-check", "VENV=%s" % venv,
         "NVIDIA_DRIVER_FILES=%s" % (tmp_path / "none")],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PATH="/nonexistent"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "%s/bin/python -m imdb_bert.tools.gpu_check \n" % venv


def test_out_of_memory_needs_the_clear_message():
    message = ("error: Out of memory on GPU NVIDIA A100 at batch size 4096 and max_seq_length "
               "128 (OOM when allocating tensor ...). Try a smaller --batch-size (e.g. 2048)")
    assert gpu_check.judge_out_of_memory(2, message)[0]
    assert not gpu_check.judge_out_of_memory(1, "Traceback (most recent call last):\n" +
                                             "ResourceExhaustedError: OOM")[0]
    assert not gpu_check.judge_out_of_memory(0, "")[0]  # never ran out: the cap did not hold


@pytest.mark.parametrize("gpu, memory_mib", [("NVIDIA A100-SXM4-40GB", 40960),
                                             ("NVIDIA H200", 143771), ("NVIDIA B200", 183359)])
def test_the_out_of_memory_run_gets_the_same_small_cap_on_every_gpu(monkeypatch, tmp_path,
                                                                    gpu, memory_mib):
    """A fixed 256 MiB, not 1 % of the GPU (1.4 GB on an H200), from nvidia-smi's
    memory.total; the run needs 512 MiB per layer for its attention probabilities."""
    from test_device import fake_driver
    fake_driver(monkeypatch, tmp_path, gpu, "550.54.15", "9.0", memory_mib)
    runs = []
    monkeypatch.setattr(gpu_check, "run", lambda script, args, env=None, **kw: runs.append(
        env) or (2, "", "error: Out of memory on GPU"))
    assert dict(gpu_check.checks(("module", "data"), "/tmp/x", 1))["out of memory"]()[0]
    fraction = float(runs[-1]["GPU_CHECK_MEMORY_FRACTION"])
    assert fraction * memory_mib == pytest.approx(gpu_check.OUT_OF_MEMORY_CAP_MIB)
    assert 4096 * 2 * 128 * 128 * 4 / 2 ** 20 == 2 * gpu_check.OUT_OF_MEMORY_CAP_MIB


@pytest.mark.parametrize("name, capability, driver, verdict", [
    ("NVIDIA B200", "10.0", "575.51.03", "FAIL  TensorFlow 2.15 cannot run on NVIDIA B200 "
     "(compute capability 10.0, Blackwell)"),
    ("NVIDIA GeForce RTX 5090", "12.0", "575.51.03", "FAIL  TensorFlow 2.15 cannot run on "
     "NVIDIA GeForce RTX 5090 (compute capability 12.0, Blackwell)"),
    ("NVIDIA H100 80GB HBM3", "9.0", "525.105.17", "FAIL  NVIDIA H100 80GB HBM3 (compute "
     "capability 9.0) needs NVIDIA driver 530.30.02 or newer"),
    ("NVIDIA A100-SXM4-40GB", "8.0", "530.30.02", None),
])
def test_a_listed_gpu_tensorflow_cannot_run_is_one_fail_line_and_no_check(
        monkeypatch, tmp_path, capsys, name, capability, driver, verdict):
    from test_device import fake_driver, tensorflow_lists
    fake_driver(monkeypatch, tmp_path, name, driver, capability)
    tensorflow_lists(monkeypatch, name, capability)
    ran = []
    monkeypatch.setattr(gpu_check, "make_material", lambda folder: None)
    monkeypatch.setattr(gpu_check, "checks", lambda material, tmp, count: [
        ("training on GPU:0", lambda: ran.append("training") or (True, "on GPU:0"))])
    code = gpu_check.main(["--keep", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    need = ("Blackwell: TensorFlow 2.15 cannot run on it" if verdict and "Blackwell" in verdict
            else "needs driver 530.30.02+")
    assert lines[1] == "nvidia-smi: %s (driver %s, compute capability %s, %s)" % (
        name, driver, capability, need)
    if verdict is None:
        assert code == 0 and ran == ["training"] and lines[-1].startswith("PASS  training")
        return
    assert code == 1 and not ran
    assert lines[-1].startswith(verdict) and "train.py --cpu" in lines[-1]


@pytest.mark.skipif(on_gpu(), reason="on a GPU machine the check takes minutes: make gpu-check")
def run_gpu_check_with_nvidia_smi(tmp_path, script):
    """python -m imdb_bert.tools.gpu_check with `script` as the nvidia-smi first on PATH, and no
    GPU that TensorFlow can use (hidden on a GPU machine)."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    env = dict(os.environ, PATH=str(tmp_path) + os.pathsep + os.environ["PATH"],
               CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "imdb_bert.tools.gpu_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    result = run_gpu_check_with_nvidia_smi(tmp_path, "exit 9\n")  # no driver
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("TensorFlow 2.15.1, built with CUDA")
    assert "No GPU that TensorFlow can use: nothing to check here." in result.stdout


def test_a_gpu_tensorflow_cannot_use_is_a_fail_naming_the_cause(tmp_path):
    """nvidia-smi sees an A100 with a current driver, but TensorFlow cannot use it (here the
    CPU build): the first command on a GPU box must not pass."""
    from imdb_bert import device
    result = run_gpu_check_with_nvidia_smi(
        tmp_path, 'echo "NVIDIA A100-SXM4-40GB, 550.54.15, 8.0"\n')
    assert result.returncode == 1, result.stderr[-2000:]
    assert ("FAIL  TensorFlow cannot use NVIDIA A100-SXM4-40GB. Likely cause: %s."
            % device.unusable_gpu_cause("550.54.15", "8.0")) in result.stdout, result.stdout


def test_after_a_timeout_the_other_checks_are_skipped(monkeypatch, capsys):
    """A PTX JIT first start that times out would make every later run wait as long."""
    ran = []

    def timing_out():
        ran.append("first")
        raise gpu_check.TimedOut(900)

    def passing():
        ran.append("second")
        return True, "fine"

    monkeypatch.setattr(gpu_check, "describe_installation", lambda: ["GPU:0"])
    monkeypatch.setattr(gpu_check, "make_material", lambda folder: None)
    monkeypatch.setattr(gpu_check, "checks", lambda material, tmp, count: [
        ("training on GPU:0", timing_out), ("--use-amp", passing)])
    assert gpu_check.main([]) == 1
    assert ran == ["first"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL  training on GPU:0") and "no result within 900 s" in lines[0]
    assert lines[1].startswith("SKIP  --use-amp") and gpu_check.AFTER_A_TIMEOUT in lines[1]


def test_only_training_and_prediction_sessions_log_placement(monkeypatch):
    """The placement probe reaches the Estimator's sessions (device.session_config) and
    predict.py's, not the CPU-only session of the ONNX check (base_session_config), whose
    query op on CPU:0 would fail the placement line."""
    from imdb_bert import device
    monkeypatch.setenv("GPU_CHECK_LOG_PLACEMENT", "1")
    assert device.session_config()[0].log_device_placement
    assert not device.base_session_config().log_device_placement
    monkeypatch.delenv("GPU_CHECK_LOG_PLACEMENT")
    assert not device.session_config()[0].log_device_placement


def test_a_timed_out_run_is_killed_with_the_processes_it_started(monkeypatch, tmp_path):
    """As horovodrun's workers: a grandchild in a session of its own dies too."""
    import psutil
    pid_file = tmp_path / "grandchild.pid"
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],\n"
        "                         start_new_session=True)\n"
        "open(%r, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n" % str(pid_file))
    monkeypatch.setattr(gpu_check, "TIMEOUT", 3)
    start = time.time()
    with pytest.raises(gpu_check.TimedOut):
        gpu_check.run(str(slow), [])
    assert time.time() - start < 60  # not held up by a survivor holding the output pipe
    grandchild = int(pid_file.read_text())
    try:
        psutil.Process(grandchild).wait(timeout=10)
    except psutil.NoSuchProcess:
        pass
    assert not psutil.pid_exists(grandchild) or \
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
