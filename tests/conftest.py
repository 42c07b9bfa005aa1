"""Session-wide test material, made here: no test reaches the network.

- tiny_module: a 2-layer, hidden-32 BERT Hub module with a tiny vocab, from the
  project's own exporter (random weights).
- imdb_dir: a small folder in aclImdb's layout whose reviews carry a learnable signal
  (positive and negative words), plus the real archive's extra folders and files.
- imdb_archive / imdb_server: the same tree as a .tar.gz, served on 127.0.0.1.
"""
import functools
import hashlib
import http.server
import os
import re
import subprocess
import sys
import tarfile
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from imdb_bert.tools.synthetic_reviews import make_imdb_tree  # noqa: E402 (needs ROOT on the path)


def leave_gpu_memory_to_the_runs_the_tests_start():
    """On a GPU machine, the test process's own TF sessions (fixtures such as tiny_module,
    in-process tests) must not hold a whole GPU for as long as pytest lives: every train.py
    and predict.py the tests start would run in what is left. Two parts, before any session:
    - TF_FORCE_GPU_ALLOW_GROWTH=true (unless the user set it): the GPU allocator takes
      memory as needed for every session of the process, whatever its config (TF's GPU
      guide, "Limiting GPU memory growth"; GetAllowGrowthValue in
      tensorflow/core/common_runtime/gpu/gpu_bfc_allocator.cc). This covers the sessions
      that bring a config (Estimators' RunConfig, tf.ConfigProto, train.main), which
      ignore the next line (tensorflow/python/client/session.py uses the context's
      config only `if config is None`).
    - no GPU for config-less sessions and eager ops (tf.config.set_visible_devices, TF
      2.15 docs): they run on the CPU, as the tests that compare their results with CPU
      runs expect.
    The train.py and predict.py the tests start still see the GPUs (and inherit the
    variable: their sessions take memory as needed anyway, device.base_session_config)."""
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    from imdb_bert.compat import tf2
    tf2.config.set_visible_devices([], "GPU")


leave_gpu_memory_to_the_runs_the_tests_start()

def pytest_configure(config):
    # TF 1 APIs that TF 2.15 marks deprecated, called by bert and tensorflow-hub.
    config.addinivalue_line("filterwarnings", "ignore::UserWarning")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")


def write_google_checkpoint(folder, seed):
    """Write a tiny BERT into `folder` as Google's release zips hold one: bert_config.json,
    bert_model.ckpt.*, vocab.txt, with a pre-training head variable that an export must
    leave out; returns its BertConfig."""
    from imdb_bert.compat import modeling, tf
    from imdb_bert.tools import make_hub_module
    vocab = make_hub_module.tiny_vocab()
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    bert_config = modeling.BertConfig(vocab_size=len(vocab), hidden_size=32,
                                      num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64)
    with open(os.path.join(folder, "bert_config.json"), "w") as f:
        f.write(bert_config.to_json_string())
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        modeling.BertModel(bert_config, is_training=False,
                           input_ids=tf.placeholder(tf.int32, [None, None]))
        tf.get_variable("cls/predictions/output_bias", [len(vocab)])
        with tf.Session(config=tf.ConfigProto(device_count={"GPU": 0})) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, os.path.join(folder, "bert_model.ckpt"))
    return bert_config


@pytest.fixture(scope="session")
def tiny_module(tmp_path_factory):
    from imdb_bert.tools import make_hub_module
    path = str(tmp_path_factory.mktemp("hub") / "tiny_bert")
    make_hub_module.export_random(path, layers=2, hidden=32, heads=2,
                                    max_position_embeddings=128, seed=1)
    return path


@pytest.fixture(scope="session")
def imdb_dir(tmp_path_factory):
    """The folder that holds aclImdb/ (what --data-dir takes)."""
    return make_imdb_tree(str(tmp_path_factory.mktemp("imdb")))


@pytest.fixture(scope="session")
def imdb_archive(tmp_path_factory, imdb_dir):
    """(path, md5) of aclImdb_v1.tar.gz holding the fixture's tree."""
    path = str(tmp_path_factory.mktemp("archive") / "aclImdb_v1.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(os.path.join(imdb_dir, "aclImdb"), arcname="aclImdb")
    with open(path, "rb") as f:
        return path, hashlib.md5(f.read()).hexdigest()


@pytest.fixture(scope="session")
def imdb_server(imdb_archive):
    """The URL of the fixture's archive on a local HTTP server (127.0.0.1)."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=os.path.dirname(imdb_archive[0]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/aclImdb_v1.tar.gz" % server.server_port
    server.shutdown()


def has_avx2(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as f:
            return "avx2" in f.read().split()
    except OSError:
        return False


def on_gpu():
    from imdb_bert import device
    return device.training_device() == "GPU"


def same_kernels_env(avx2, gpu):
    """The environment of runs that tests compare with each other or with a recording
    (None: the plain one). oneDNN picks its kernels by the CPU's instruction sets, and
    kernels for different sets sum in different orders: held to AVX2, every x86-64 CPU
    with AVX2 gives the same bits, so a run can be compared exactly with one recorded on
    another machine. On a GPU, TensorFlow's op determinism (TF_DETERMINISTIC_OPS=1, which
    TF 2.15 still reads; tf.config.experimental.enable_op_determinism replaced it): GPU
    kernels that add with atomics (the embeddings' gradient) take deterministic ones, so
    same-seed runs repeat."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2") if avx2 else None
    if gpu:
        env = dict(env or os.environ, TF_DETERMINISTIC_OPS="1")
    return env


SAME_KERNELS_ENV = same_kernels_env(has_avx2(), on_gpu())


def assert_same_results(actual, expected):
    """Equal eval results: to the bit on the CPU (repeated runs are), within 1e-4 on a GPU
    (runs with op determinism, SAME_KERNELS_ENV, but in TF1 sessions, for which
    TensorFlow's docs do not promise determinism)."""
    if not on_gpu():
        assert actual == expected
        return
    assert set(actual) == set(expected)
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_same_results(actual[key], value)
        else:
            assert actual[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


# TensorFlow reads TF_ONEDNN_ASSUME_FROZEN_WEIGHTS once a process, and with it on, a fused
# MatMul kernel keeps its first weights (imdb_bert/device.py). device.session_config(
# bf16=True) sets it where unset: off in this process, so that a test doing that in-process
# cannot switch it on for later tests' kernels, unless a test's own child process was
# given it; train.py's runs decide for themselves (run_train), as a user's do.
WEIGHT_LAYOUT = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"
os.environ.setdefault(WEIGHT_LAYOUT, "0")


def run_train(*args, env=None):
    env = {name: value for name, value in (env or os.environ).items()
           if name != WEIGHT_LAYOUT}
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)


def latest_step(output_dir):
    """The step of the latest checkpoint named in output_dir/checkpoint, or None."""
    try:
        with open(os.path.join(output_dir, "checkpoint")) as f:
            match = re.search(r'^model_checkpoint_path: "model\.ckpt-(\d+)"', f.read(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def quick_args(imdb_dir, tiny_module, output_dir, *extra, onnx=False):
    """The whole fixture (200 train, 100 test reviews), 10 epochs at batch 16 (125 steps):
    enough for the tiny model to learn the planted words. At 1e-3, seed 42 collapsed to a
    constant prediction (of seeds 1-4, none did); 7e-4 learned with each of the five.
    Without `onnx`, --no-onnx: tf2onnx's seconds only where a test needs its copy."""
    return ["--data-dir", imdb_dir, "--bert-hub", tiny_module, "--output-dir", output_dir,
            "--train-samples", "all", "--test-samples", "all", "--max-seq-length", "32",
            "--batch-size", "16", "--learning-rate", "7e-4", "--epochs", "10", *extra,
            *([] if onnx else ["--no-onnx"])]


@pytest.fixture(scope="session")
def trained(imdb_dir, tiny_module, tmp_path_factory):
    """(output dir, completed process) of one training run shared by the tests, with the
    kernels held to AVX2 where the CPU has it (tests/test_layout.py compares its results
    with the recorded ones)."""
    output_dir = str(tmp_path_factory.mktemp("run") / "OUTPUT_Bert")
    result = run_train(*quick_args(imdb_dir, tiny_module, output_dir, onnx=True),
                       env=SAME_KERNELS_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def tokenizers(request, tiny_module):
    """(bert's FullTokenizer, the FastTokenizer) for the tiny module's vocab, uncased and
    cased."""
    from imdb_bert.features import fast_tokenizer, conversion
    from imdb_bert.compat import tokenization
    vocab_file, _ = conversion.tokenization_info(tiny_module)
    return (tokenization.FullTokenizer(vocab_file, do_lower_case=request.param),
            fast_tokenizer.FastTokenizer(vocab_file, do_lower_case=request.param))


@pytest.fixture(autouse=True)
def onednn_weight_layout_kept_to_each_test():
    """The value of WEIGHT_LAYOUT put back after each test: device.session_config(bf16=True)
    sets it where it is unset."""
    before = os.environ.get(WEIGHT_LAYOUT)
    yield
    if before is None:
        os.environ.pop(WEIGHT_LAYOUT, None)
    else:
        os.environ[WEIGHT_LAYOUT] = before
