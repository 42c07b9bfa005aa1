"""--bf16: oneDNN's bfloat16 rewrite in the Estimator's session config on CPUs that compute
bfloat16 natively; elsewhere a message and float32."""
import json

from tensorflow.core.protobuf import rewriter_config_pb2

import device
import predict
import train
from compat import tf
from conftest import quick_args, run_train

ON = rewriter_config_pb2.RewriterConfig.ON


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert device.cpu_supports_bf16(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not device.cpu_supports_bf16(str(cpuinfo))
    assert not device.cpu_supports_bf16(str(tmp_path / "missing"))


def test_off_unless_asked_and_ignored_without_bf16_hardware(monkeypatch):
    assert device.bf16_session_config(False) == (None, None)
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    config, message = device.bf16_session_config(True)
    assert config is None and "ignored" in message and "float32" in message


def test_train_and_predict_set_the_rewrite_in_the_estimators_config(
        monkeypatch, capsys, imdb_dir, tiny_module, tmp_path):
    """On a CPU reported as bf16-capable: the Estimator's session config has the rewrite
    on, and training, evaluation and prediction run. (TensorFlow itself skips the rewrite
    on a CPU without native bfloat16, so this runs anywhere.)"""
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
                                   "--epochs", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    expected = "mixed precision on" if device.cpu_supports_bf16() else "--bf16 is ignored"
    assert expected in result.stdout
    with open(tmp_path / "o" / "eval_results.json") as f:
        assert json.load(f)["global_step"] == 12
