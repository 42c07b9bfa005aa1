"""Loading aclImdb into the notebook's DataFrames, and downloading it."""
import http.server
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time

import pytest
from conftest import ROOT

from imdb_bert.data import aclimdb
from imdb_bert.errors import UserError


def test_load_dataset_labels_ratings_and_ignored_files(imdb_dir):
    train = aclimdb.load_dataset(os.path.join(imdb_dir, "aclImdb", "train"), seed=0)
    assert list(train.columns) == ["sentence", "sentiment", "polarity"]
    assert len(train) == 200  # 100 pos + 100 neg; unsup/, *.feat and urls_*.txt ignored
    assert sorted(train["polarity"].value_counts().items()) == [(0, 100), (1, 100)]
    assert not train["sentence"].str.contains("unlabelled").any()
    ratings = train["sentiment"].astype(int)
    assert train["sentiment"].map(type).eq(str).all()
    assert ratings[train["polarity"] == 1].between(7, 10).all()
    assert ratings[train["polarity"] == 0].between(1, 4).all()
    assert list(train.index) == list(range(200))
    # Shuffled: the classes are mixed, not 100 of one then 100 of the other.
    assert train["polarity"].head(20).nunique() == 2


def test_rating_and_text_come_from_each_file(tmp_path):
    folder = tmp_path / "pos"
    folder.mkdir()
    (folder / "12_9.txt").write_text("Great film.<br />Really.", encoding="utf-8")
    (folder / "3_10.txt").write_text("Superb.", encoding="utf-8")
    df = aclimdb.load_directory_data(str(folder))
    assert sorted(zip(df["sentence"], df["sentiment"])) == [
        ("Great film.<br />Really.", "9"), ("Superb.", "10")]


def test_same_seed_same_sample(imdb_dir):
    split = os.path.join(imdb_dir, "aclImdb", "test")
    first = aclimdb.sample(aclimdb.load_dataset(split, seed=3), 30, seed=3)
    second = aclimdb.sample(aclimdb.load_dataset(split, seed=3), 30, seed=3)
    other = aclimdb.sample(aclimdb.load_dataset(split, seed=4), 30, seed=4)
    assert first.equals(second)
    assert not first["sentence"].equals(other["sentence"])
    assert len(aclimdb.sample(first, None, seed=3)) == 30


def test_asking_for_more_samples_than_reviews_is_an_error(imdb_dir):
    df = aclimdb.load_dataset(os.path.join(imdb_dir, "aclImdb", "test"), seed=0)
    with pytest.raises(UserError, match="only 100 reviews"):
        aclimdb.sample(df, 101, seed=0)


def test_badly_named_review_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="notes.txt"):
        aclimdb.load_directory_data(str(tmp_path))


def test_download_checks_md5_and_extracts(tmp_path, imdb_server, imdb_archive):
    target = tmp_path / "data"
    train, test = aclimdb.download_and_load_datasets(str(target), imdb_server, imdb_archive[1],
                                                     seed=0)
    assert len(train) == 200 and len(test) == 100
    assert (target / "aclImdb" / "train" / "unsup").is_dir()
    assert not (target / "aclImdb_v1.tar.gz").exists()  # archive removed after extraction
    assert not (target / "aclImdb_v1.tar.gz.part").exists()


def test_download_with_bad_checksum_stops_and_cleans_up(tmp_path, imdb_server):
    target = tmp_path / "data"
    with pytest.raises(UserError, match="MD5") as error:
        aclimdb.download_and_extract(imdb_server, "0" * 32, str(target))
    assert str(target / "aclImdb") in str(error.value)
    assert not (target / "aclImdb").exists()
    assert os.listdir(target) == []


def test_download_from_closed_port_says_where_to_put_the_data(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = tmp_path / "data"
    with pytest.raises(UserError, match="Could not download") as error:
        aclimdb.download_and_extract("http://127.0.0.1:%d/aclImdb_v1.tar.gz" % port, "",
                                     str(target))
    assert str(target / "aclImdb") in str(error.value)
    assert os.listdir(target) == []


@pytest.mark.parametrize("name, content, message", [
    ("5_9.txt", b"\xff\xfe bad bytes", "not valid UTF-8"),
    ("6_9.txt", b"  \n", "empty review"),
])
def test_damaged_review_is_named(tmp_path, name, content, message):
    (tmp_path / "1_8.txt").write_text("Fine.")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message) as error:
        aclimdb.load_directory_data(str(tmp_path))
    assert name in str(error.value)


def test_missing_or_empty_class_folder_is_named(tmp_path):
    (tmp_path / "train" / "pos").mkdir(parents=True)
    (tmp_path / "train" / "pos" / "1_9.txt").write_text("Great.")
    with pytest.raises(UserError, match="neg is missing"):
        aclimdb.load_dataset(str(tmp_path / "train"), seed=0)
    (tmp_path / "train" / "neg").mkdir()
    with pytest.raises(UserError, match="neg is empty"):
        aclimdb.load_dataset(str(tmp_path / "train"), seed=0)


def test_a_tree_without_the_datasets_counts_is_named_in_one_line(imdb_dir, capsys):
    aclimdb.download_and_load_datasets(imdb_dir, "http://unused", "", seed=0)
    out = capsys.readouterr().out
    assert out.count("Warning:") == 1 and len(out.splitlines()) == 1
    assert "train/pos 100, train/neg 100, test/pos 50, test/neg 50 reviews" in out
    assert "not the 12500 per class and split" in out


def test_an_extraction_that_fails_midway_leaves_no_tree(tmp_path, imdb_archive, imdb_server):
    target = tmp_path / "data"
    target.mkdir()
    with open(imdb_archive[0], "rb") as f:
        whole = f.read()
    archive = target / "aclImdb_v1.tar.gz"
    archive.write_bytes(whole[:len(whole) * 2 // 3])
    with tarfile.open(str(archive)) as tar:  # the first reviews do come out of it
        assert tar.next() is not None
    with pytest.raises(UserError, match="is damaged") as error:
        aclimdb.download_and_load_datasets(str(target), imdb_server, "", seed=0)
    assert "Delete it and run again" in str(error.value)
    assert sorted(os.listdir(target)) == ["aclImdb_v1.tar.gz"]  # no aclImdb/, no temp folder
    archive.unlink()  # as the message says; the rerun downloads it again
    train, test = aclimdb.download_and_load_datasets(str(target), imdb_server, imdb_archive[1],
                                                     seed=0)
    assert len(train) == 200 and len(test) == 100
    assert sorted(os.listdir(target)) == ["aclImdb"]


class HalfServer(http.server.BaseHTTPRequestHandler):
    """Announces the archive's length, sends half of it, then `stall`s or hangs up."""
    body = b"x" * 100000
    stall = False

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[:len(self.body) // 2])
        self.wfile.flush()
        if self.stall:
            time.sleep(30)

    def log_message(self, *args):
        pass


@pytest.fixture
def half_server():
    servers = []

    def start(stall):
        handler = type("Handler", (HalfServer,), {"stall": stall})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return "http://127.0.0.1:%d/aclImdb_v1.tar.gz" % server.server_port

    yield start
    for server in servers:
        server.shutdown()


def test_a_download_cut_short_leaves_no_part_file(tmp_path, half_server):
    target = tmp_path / "data"
    with pytest.raises(UserError, match="closed after 50000 of 100000 bytes"):
        aclimdb.download_and_extract(half_server(stall=False), "", str(target))
    assert os.listdir(target) == []


def test_ctrl_c_during_the_download_leaves_no_part_file(tmp_path, half_server):
    target = tmp_path / "data"
    script = ("import sys; from imdb_bert.data import aclimdb; "
              "aclimdb.download_and_extract(*sys.argv[1:])")
    process = subprocess.Popen([sys.executable, "-c", script, half_server(stall=True), "",
                                str(target)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    part = target / "aclImdb_v1.tar.gz.part"
    deadline = time.time() + 120
    while not part.exists() and time.time() < deadline:  # the server has sent half
        time.sleep(0.1)
    assert part.exists(), process.stderr.read() if process.poll() is not None else "no .part"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode != 0
    assert os.listdir(target) == []
