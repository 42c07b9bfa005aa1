"""Finding the Hub module: local folders, a persistent cache for URLs, clear failures."""
import os
import socket

import pytest

from imdb_bert.errors import UserError
from imdb_bert.model import hub_module


def test_local_module_resolves_to_its_absolute_path(tiny_module, monkeypatch):
    monkeypatch.chdir(os.path.dirname(tiny_module))
    assert hub_module.resolve(os.path.basename(tiny_module)) == tiny_module


def test_folder_that_is_not_a_module_is_refused(tmp_path):
    with pytest.raises(UserError, match="not a TF1 Hub module"):
        hub_module.resolve(str(tmp_path))


def test_cache_defaults_to_the_users_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert hub_module.cache_dir() == str(tmp_path / "tfhub_modules")
    monkeypatch.setenv("TFHUB_CACHE_DIR", "/elsewhere")
    assert hub_module.cache_dir() == "/elsewhere"


def test_failed_download_names_the_offline_route(monkeypatch, tmp_path):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError) as error:
        hub_module.resolve("http://127.0.0.1:%d/bert_uncased/1" % port)
    assert "Could not download the Hub module" in str(error.value)
    assert "imdb_bert.tools.make_hub_module --google-checkpoint" in str(error.value)
