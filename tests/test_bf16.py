"""--bf16: oneDNN's bfloat16 rewrite in the Estimator's session config on CPUs that compute
bfloat16 natively; elsewhere a message and float32."""
import json

from tensorflow.core.protobuf import rewriter_config_pb2

from imdb_bert import device
import predict
import train
from imdb_bert.compat import tf
from conftest import quick_args, run_train

ON = rewriter_config_pb2.RewriterConfig.ON


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert device.cpu_supports_bf16(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not device.cpu_supports_bf16(str(cpuinfo))
    assert not device.cpu_supports_bf16(str(tmp_path / "missing"))


def no_speed_switch(config):
    rewrites = config.graph_options.rewrite_options
    return (rewrites.auto_mixed_precision_onednn_bfloat16 != ON
            and rewrites.auto_mixed_precision != ON
            and config.graph_options.optimizer_options.global_jit_level
            != tf.OptimizerOptions.ON_1)


def on_the_cpu(monkeypatch):
    monkeypatch.setattr(device.tf2.config, "list_physical_devices", lambda kind: [])


def test_off_unless_asked_and_ignored_without_bf16_hardware(monkeypatch):
    on_the_cpu(monkeypatch)
    config, messages, use_amp = device.session_config()
    assert no_speed_switch(config) and messages == [] and use_amp is False
    assert config == device.base_session_config()
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    config, [message], _ = device.session_config(bf16=True)
    assert no_speed_switch(config) and "ignored" in message and "float32" in message


def test_gpu_switches_are_ignored_on_the_cpu_with_a_message(monkeypatch):
    on_the_cpu(monkeypatch)
    config, messages, use_amp = device.session_config(use_xla=True, use_amp=True)
    assert no_speed_switch(config) and use_amp is False
    assert any(m.startswith("--use-xla is ignored") for m in messages)
    assert any(m.startswith("--use-amp is ignored") for m in messages)


def test_gpu_switches_set_xla_and_the_float16_rewrite(monkeypatch):
    monkeypatch.setattr(device.tf2.config, "list_physical_devices",
                        lambda kind: ["GPU:0"] if kind == "GPU" else [])
    monkeypatch.setattr(device.tf2.config.experimental, "get_device_details",
                        lambda gpu: {"device_name": "NVIDIA A100", "compute_capability": (8, 0)})
    config, messages, use_amp = device.session_config(use_xla=True, use_amp=True, bf16=True)
    assert use_amp is True
    assert config.graph_options.optimizer_options.global_jit_level == tf.OptimizerOptions.ON_1
    assert config.graph_options.rewrite_options.auto_mixed_precision == ON
    assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 != ON
    assert any("--bf16 is ignored" in m and "--use-amp" in m for m in messages)


def test_train_and_predict_set_the_rewrite_in_the_estimators_config(
        monkeypatch, capsys, imdb_dir, tiny_module, tmp_path):
    """On a CPU reported as bf16-capable: the Estimator's session config has the rewrite
    on, and training, evaluation and prediction run. (TensorFlow itself skips the rewrite
    on a CPU without native bfloat16, so this runs anywhere.)"""
    on_the_cpu(monkeypatch)  # as train.py and predict.py would decide on a CPU machine
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: True)
    configs = []
    real_estimator = tf.estimator.Estimator

    class RecordingEstimator(real_estimator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            configs.append(self.config.session_config)

    monkeypatch.setattr(tf.estimator, "Estimator", RecordingEstimator)
    output_dir = str(tmp_path / "bf16")
    assert train.main(quick_args(imdb_dir, tiny_module, output_dir, "--bf16",
                                 "--epochs", "1")) == 0
    assert "oneDNN bfloat16 mixed precision on" in capsys.readouterr().out
    assert configs and all(
        c.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == ON
        for c in configs)

    assert predict.main(["--output-dir", output_dir, "--bf16", "--json", "--from-checkpoint",
                         "great film"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["label"] in ("Positive", "Negative")
    assert configs[-1].graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == ON


def test_bf16_run_on_this_machine_says_what_it_does(imdb_dir, tiny_module, tmp_path):
    result = run_train(*quick_args(imdb_dir, tiny_module, str(tmp_path / "o"), "--bf16",
                                   "--use-xla", "--use-amp", "--epochs", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    if device.training_device() == "GPU":
        assert "--bf16 is ignored" in result.stdout
        assert "XLA JIT compilation on" in result.stdout
        assert "float16 mixed precision with dynamic loss scaling on" in result.stdout
    else:
        expected = "mixed precision on" if device.cpu_supports_bf16() else "--bf16 is ignored"
        assert expected in result.stdout
        assert "--use-xla is ignored" in result.stdout
        assert "--use-amp is ignored" in result.stdout
    with open(tmp_path / "o" / "eval_results.json") as f:
        assert json.load(f)["global_step"] == 12
