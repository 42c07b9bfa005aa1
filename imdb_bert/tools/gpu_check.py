"""make gpu-check: on a GPU machine, prove every GPU path in a few minutes, with a tiny
random BERT and generated reviews (the tests' material). It prints TensorFlow's version,
the CUDA and cuDNN it was built with, the driver and the GPUs it sees, then one PASS/FAIL
line per path with its time (SKIP where a path does not apply: Horovod not installed,
--use-amp on GPUs without fast float16), and exits 1 if any failed. Without a GPU it says
so and exits 0.

    python -m imdb_bert.tools.gpu_check [--keep DIR]

Each check runs train.py or predict.py as a user would, with one of these probes set in
the environment: GPU_CHECK_LOG_PLACEMENT (log where each op runs), GPU_CHECK_LOSS_SCALE (a
loss scale start far too high, so that it must adapt), GPU_CHECK_MEMORY_FRACTION (a small
share of the GPU, so that a large batch runs out of memory). Whether a check passes is
decided by the judge_* functions, unit-tested on the CPU with made-up outputs.
"""
import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRESS = re.compile(r"^step (\d+)/\d+  loss ([^ ]+) ", re.M)
# The query projection's own computation (Einsum in modules of this project's exporter,
# MatMul in Google's), not its variable reads or initialisers.
PLACEMENT = re.compile(r"bert/encoder/layer_0/attention/self/query/\S*: \((?:Einsum|MatMul)\): "
                       r"/job:localhost/replica:0/task:0/device:(\w+):(\d+)")
DIGEST = re.compile(r"Horovod process \d+ of \d+: global step (\d+), weights sha256 (\w+)")
SCALE_START = 2.0 ** 24  # float16 gradients scaled this much overflow: the scale must halve


def judge_placement(output):
    """The first encoder layer's query projection runs on GPU:0."""
    devices = set(PLACEMENT.findall(output))
    if not devices:
        return False, "no placement of bert/encoder/layer_0/attention/self/query in the log"
    return devices == {("GPU", "0")}, "query projection on %s" % ", ".join(
        "%s:%s" % device for device in sorted(devices))


def judge_amp(output, scale_start, scale_end):
    """Losses finite and changing; the loss scale moved from its start."""
    losses = [float(loss) for _, loss in PROGRESS.findall(output)]
    if len(losses) < 2:
        return False, "fewer than two progress lines"
    if not all(math.isfinite(loss) for loss in losses):
        return False, "a loss is not finite: %s" % losses
    if len(set(losses)) == 1:
        return False, "the loss never changed (%s)" % losses[0]
    if scale_end is None or scale_end == scale_start:
        return False, "the loss scale stayed at %s" % scale_start
    return True, "losses %.4f .. %.4f, loss scale %g -> %g" % (
        losses[0], losses[-1], scale_start, scale_end)


def judge_xla(output):
    compiled = "Compiled cluster using XLA" in output
    return compiled, "XLA compiled clusters" if compiled else "no 'Compiled cluster using XLA'"


def judge_predict(returncode, stdout, stderr):
    """A label for each of the two sentences, and the model's query projection on GPU:0
    in the placement log of predict.py's TensorFlow session (placement lines may share
    stdout with the predictions)."""
    labels = re.findall(r"^(Positive|Negative)\t", stdout, re.M)
    if returncode != 0 or len(labels) != 2:
        return False, "exit %d, labels %s %s" % (returncode, labels, stderr.strip()[-200:])
    placed, detail = judge_placement(stdout + stderr)
    return placed, "labels %s, %s" % (labels, detail)


# NCCL's own log with NCCL_DEBUG=INFO (on stdout, "[rank]<stdout>:" under horovodrun):
# its version line, and each communicator's "Init COMPLETE". With INFO, NCCL prefixes the
# version line as every line, "host:pid:tid [dev] NCCL INFO NCCL version 2.x.y+cuda12.z"
# (issue 29, item 8); a bare "NCCL version" line (NCCL_DEBUG=VERSION) still counts.
NCCL_RAN = re.compile(r"(?:NCCL INFO |^(?:\[\d+\]<stdout>:)?)NCCL version \d"
                      r"|NCCL INFO .*Init COMPLETE", re.M)


def judge_horovod(returncode, output, nccl_built):
    """Every process ends at the same step with the same weights and, when Horovod was
    built with NCCL (hvd.nccl_built(): NCCL's version code, else 0), NCCL's log shows it
    ran. A Gloo-only Horovod passes, saying so (its all-reduce goes through the CPU)."""
    reports = set(DIGEST.findall(output))
    steps = {step for step, _ in reports}
    same = returncode == 0 and len(DIGEST.findall(output)) >= 2 and len(reports) == 1
    ran = bool(NCCL_RAN.search(output))
    if nccl_built:
        built = "Horovod built with NCCL %d.%d.%d" % (nccl_built // 10000,
                                                      nccl_built % 10000 // 100,
                                                      nccl_built % 100)
    else:
        built = "Horovod built with Gloo only (all-reduce on the CPU; see make horovod)"
    return same and (ran or not nccl_built), "exit %d, %d digest(s) at step(s) %s; %s, %s" % (
        returncode, len(reports), ", ".join(sorted(steps)) or "none", built,
        "NCCL ran" if ran else "NCCL did not run")


def horovod_nccl_built():
    """hvd.nccl_built() of the Horovod installed here (0 without NCCL), or None when
    horovod.tensorflow does not import."""
    try:
        import horovod.tensorflow as hvd
    except ImportError:
        return None
    return int(hvd.nccl_built())


HOROVOD_MISSING = "not installed (make horovod)"


def judge_out_of_memory(returncode, stderr):
    ok = returncode == 2 and "error: Out of memory on GPU" in stderr \
        and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return ok, "exit %d: %s" % (returncode, last[:160])


# The out-of-memory check caps the run's GPU memory at a fixed size, not a share of the
# GPU (1 % would be 1.4 GB on an H200, 1.8 GB on a B200): at batch 4096 and 128 positions
# the tiny model's attention probabilities alone take 4096 x 2 heads x 128 x 128 x 4 bytes
# = 512 MiB per layer, twice what the cap lets TensorFlow's allocator take.
OUT_OF_MEMORY_CAP_MIB = 256


def out_of_memory_fraction():
    """per_process_gpu_memory_fraction giving OUT_OF_MEMORY_CAP_MIB on the smallest GPU
    nvidia-smi reports (memory.total), or 1 % without nvidia-smi."""
    from imdb_bert import device
    totals = [int(line.split()[0]) for line in device.nvidia_smi_query("memory.total") or []
              if line.split() and line.split()[0].isdigit()]
    return OUT_OF_MEMORY_CAP_MIB / min(totals) if totals else 0.01


VERDICTS = {True: "PASS", False: "FAIL", None: "SKIP"}
TIMEOUT = 900  # seconds for each run of train.py or predict.py


class TimedOut(Exception):
    """A run of train.py or predict.py took longer than TIMEOUT."""


def timeout_detail(seconds):
    """A timed-out check's FAIL detail: the time and the likely cause."""
    return ("no result within %d s. Likely cause: TensorFlow 2.15 has no kernels for GPUs "
            "of compute capability 8.0 and newer and compiles them from PTX at the first "
            "start, 30 minutes or more on Hopper (tensorflow/tensorflow#62320). The CUDA JIT "
            "cache (CUDA_CACHE_MAXSIZE=%s, ~/.nv/ComputeCache) keeps them: run make "
            "gpu-check again." % (seconds, os.environ.get("CUDA_CACHE_MAXSIZE", "unset")))


def run(script, args, env_extra=None, horovod_processes=0):
    """(exit code, stdout, stderr) of train.py or predict.py with `args`; TimedOut after
    TIMEOUT seconds."""
    command = [sys.executable, os.path.join(ROOT, script), *args]
    if horovod_processes:
        horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
        command = [horovodrun, "-np", str(horovod_processes), "-H",
                   "localhost:%d" % horovod_processes, "--gloo", *command]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", **(env_extra or {}))
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        process.communicate()
        raise TimedOut(TIMEOUT) from None
    return process.returncode, stdout, stderr


def kill_tree(pid):
    """Kill the process `pid` started in a session of its own, with its descendants:
    horovodrun's workers may run in sessions of their own."""
    try:
        import psutil  # installed with Horovod
        descendants = psutil.Process(pid).children(recursive=True)
    except Exception:  # no psutil, or the process is gone
        descendants = []
    os.killpg(pid, signal.SIGKILL)
    for descendant in descendants:
        try:
            descendant.kill()
        except Exception:  # ended meanwhile
            pass


def train_args(material, output_dir, *extra):
    module, data_dir = material
    return ["--bert-hub", module, "--data-dir", data_dir, "--output-dir", output_dir,
            "--train-samples", "all", "--test-samples", "all", "--max-seq-length", "32",
            "--batch-size", "16", "--learning-rate", "7e-4", "--epochs", "2",
            "--save-summary-steps", "1", *extra]


def loss_scale(output_dir):
    from imdb_bert.compat import tf
    try:
        return float(tf.train.load_checkpoint(output_dir).get_tensor("loss_scale"))
    except Exception:  # no checkpoint, or no loss scale in it
        return None


def checks(material, tmp, gpu_count):
    """[(name, function returning (passed, detail))], in the order they run; passed is
    None for a check that does not apply here (a SKIP line, not a failure)."""
    def out(name):
        return os.path.join(tmp, name)

    def placement():
        code, stdout, stderr = run("train.py", train_args(material, out("placed")),
                                   {"GPU_CHECK_LOG_PLACEMENT": "1"})
        return judge_placement(stdout + stderr) if code == 0 else (False, stderr[-300:])

    def amp():
        from imdb_bert import device
        skipped = device.float16_rewrite_skipped()  # as train.py would say it ignores --use-amp
        if skipped:
            return None, skipped
        code, stdout, stderr = run("train.py", train_args(material, out("amp"), "--use-amp"),
                                   {"GPU_CHECK_LOSS_SCALE": str(SCALE_START)})
        return judge_amp(stdout, SCALE_START, loss_scale(out("amp"))) if code == 0 else (
            False, stderr[-300:])

    def xla():
        code, stdout, stderr = run("train.py", train_args(material, out("xla"), "--use-xla"))
        return judge_xla(stdout + stderr) if code == 0 else (False, stderr[-300:])

    def predict(path_flag):
        # predict.py's TensorFlow paths, which use the GPU: its ONNX path runs on the CPU.
        def check():
            code, stdout, stderr = run("predict.py", [
                "--output-dir", out("placed"), path_flag, "a great film", "an awful film"],
                {"GPU_CHECK_LOG_PLACEMENT": "1"})
            return judge_predict(code, stdout, stderr)
        return check

    def horovod():
        nccl_built = horovod_nccl_built()
        if nccl_built is None:
            return None, HOROVOD_MISSING
        code, stdout, stderr = run("train.py", ["--horovod"] + train_args(
            material, out("horovod"), "--batch-size", "8"), {"NCCL_DEBUG": "INFO"},
            horovod_processes=2)
        return judge_horovod(code, stdout + stderr, nccl_built)

    def out_of_memory():
        code, _, stderr = run("train.py", train_args(
            material, out("oom"), "--max-seq-length", "128", "--batch-size", "4096",
            "--epochs", "100"), {"GPU_CHECK_MEMORY_FRACTION": repr(out_of_memory_fraction())})
        return judge_out_of_memory(code, stderr)

    found = [("training on GPU:0", placement), ("--use-amp", amp), ("--use-xla", xla),
             ("predict SavedModel", predict("--no-onnx")),
             ("predict checkpoint", predict("--from-checkpoint"))]
    if gpu_count >= 2:
        found.append(("Horovod, 2 GPUs", horovod))
    return found + [("out of memory", out_of_memory)]


def describe_installation():
    """TensorFlow's version, the CUDA and cuDNN it was built with, the driver, the GPUs."""
    from imdb_bert import device
    from imdb_bert.compat import tf2
    build = tf2.sysconfig.get_build_info()
    print("TensorFlow %s, built with CUDA %s and cuDNN %s" % (
        tf2.__version__, build.get("cuda_version", "none"), build.get("cudnn_version", "none")))
    drivers = device.nvidia_smi_details()
    print("nvidia-smi: %s" % (", ".join(
        "%s (driver %s, compute capability %s, %s)"
        % (name, driver, capability or "?", driver_need(capability))
        for name, driver, capability in drivers) or "not found"))
    names = device.gpu_names()
    print("GPUs TensorFlow sees: %s" % (", ".join(names) or "none"))
    return names


def driver_need(capability):
    """What the GPU needs of the driver, for the nvidia-smi line."""
    from imdb_bert import device
    if device.is_blackwell(capability):
        return "Blackwell: TensorFlow 2.15 cannot run on it"
    return "needs driver %s+" % device.minimum_driver(capability)


AFTER_A_TIMEOUT = ("not run after a timeout: the CUDA JIT cache is still being filled; run "
                   "make gpu-check again")


def no_gpu_verdict():
    """Exit code without a GPU TensorFlow can use: 0 on a machine without one, 1 (and the
    likely cause) where nvidia-smi sees a GPU that TensorFlow cannot use."""
    from imdb_bert import device
    drivers = device.nvidia_smi_details()
    if not drivers:
        print("No GPU that TensorFlow can use: nothing to check here.")
        return 0
    name, driver, capability = drivers[0]
    print("FAIL  TensorFlow cannot use %s. Likely cause: %s."
          % (name, device.unusable_gpu_cause(driver, capability)))
    return 1


def make_material(folder):
    """(tiny random Hub module, folder holding a small generated aclImdb tree)."""
    from imdb_bert.tools import make_hub_module
    from imdb_bert.tools.synthetic_reviews import make_imdb_tree
    module = os.path.join(folder, "module")
    make_hub_module.export_random(module, layers=2, hidden=32, heads=2,
                                  max_position_embeddings=128, seed=1)
    return module, make_imdb_tree(os.path.join(folder, "data"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep", help="keep the checks' output folders here (default: removed)")
    args = p.parse_args(argv)
    gpus = describe_installation()
    if not gpus:
        return no_gpu_verdict()
    from imdb_bert import device
    problem = device.listed_gpu_problem()
    if problem:  # every check would crash in the first kernel's PTX compile
        print("FAIL  %s. To do: %s." % problem)
        return 1
    tmp = args.keep or tempfile.mkdtemp(prefix="gpu-check-")
    failed = 0
    timed_out = False
    try:
        material = make_material(tmp)
        for name, check in checks(material, tmp, len(gpus)):
            start = time.time()
            if timed_out:  # the next runs would wait as long for the same JIT compilation
                passed, detail = None, AFTER_A_TIMEOUT
            else:
                try:
                    passed, detail = check()
                except TimedOut as timeout:
                    passed, detail = False, timeout_detail(timeout.args[0])
                    timed_out = True
            failed += passed is False
            print("%s  %-18s %6.1f s  %s" % (VERDICTS[passed], name, time.time() - start,
                                             detail), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
