"""Loading aclImdb into the notebook's DataFrames, and downloading it."""
import os
import socket

import pytest

from imdb_bert import data
from imdb_bert.errors import UserError


def test_load_dataset_labels_ratings_and_ignored_files(imdb_dir):
    train = data.load_dataset(os.path.join(imdb_dir, "aclImdb", "train"), seed=0)
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
    df = data.load_directory_data(str(folder))
    assert sorted(zip(df["sentence"], df["sentiment"])) == [
        ("Great film.<br />Really.", "9"), ("Superb.", "10")]


def test_same_seed_same_sample(imdb_dir):
    split = os.path.join(imdb_dir, "aclImdb", "test")
    first = data.sample(data.load_dataset(split, seed=3), 30, seed=3)
    second = data.sample(data.load_dataset(split, seed=3), 30, seed=3)
    other = data.sample(data.load_dataset(split, seed=4), 30, seed=4)
    assert first.equals(second)
    assert not first["sentence"].equals(other["sentence"])
    assert len(data.sample(first, None, seed=3)) == 30


def test_asking_for_more_samples_than_reviews_is_an_error(imdb_dir):
    df = data.load_dataset(os.path.join(imdb_dir, "aclImdb", "test"), seed=0)
    with pytest.raises(UserError, match="only 100 reviews"):
        data.sample(df, 101, seed=0)


def test_badly_named_review_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="notes.txt"):
        data.load_directory_data(str(tmp_path))


def test_download_checks_md5_and_extracts(tmp_path, imdb_server, imdb_archive):
    target = tmp_path / "data"
    train, test = data.download_and_load_datasets(str(target), imdb_server, imdb_archive[1],
                                                  seed=0)
    assert len(train) == 200 and len(test) == 100
    assert (target / "aclImdb" / "train" / "unsup").is_dir()
    assert not (target / "aclImdb_v1.tar.gz").exists()  # archive removed after extraction
    assert not (target / "aclImdb_v1.tar.gz.part").exists()


def test_download_with_bad_checksum_stops_and_cleans_up(tmp_path, imdb_server):
    target = tmp_path / "data"
    with pytest.raises(UserError, match="MD5") as error:
        data.download_and_extract(imdb_server, "0" * 32, str(target))
    assert str(target / "aclImdb") in str(error.value)
    assert not (target / "aclImdb").exists()
    assert os.listdir(target) == []


def test_download_from_closed_port_says_where_to_put_the_data(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = tmp_path / "data"
    with pytest.raises(UserError, match="Could not download") as error:
        data.download_and_extract("http://127.0.0.1:%d/aclImdb_v1.tar.gz" % port, "",
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
        data.load_directory_data(str(tmp_path))
    assert name in str(error.value)


def test_missing_or_empty_class_folder_is_named(tmp_path):
    (tmp_path / "train" / "pos").mkdir(parents=True)
    (tmp_path / "train" / "pos" / "1_9.txt").write_text("Great.")
    with pytest.raises(UserError, match="neg is missing"):
        data.load_dataset(str(tmp_path / "train"), seed=0)
    (tmp_path / "train" / "neg").mkdir()
    with pytest.raises(UserError, match="neg is empty"):
        data.load_dataset(str(tmp_path / "train"), seed=0)
