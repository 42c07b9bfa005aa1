"""The device line: CPU here; a loud warning when nvidia-smi sees a GPU TensorFlow can't use."""
import os

from imdb_bert import device


def test_cpu_without_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert device.describe() == "Training on CPU (no GPU found)"


def test_warns_when_a_gpu_is_present_but_unusable(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA A100-SXM4-40GB'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    message = device.describe()
    assert message.startswith("WARNING")
    assert "NVIDIA A100-SXM4-40GB" in message
    assert "tensorflow[and-cuda]==2.15.1" in message
