"""Step 2 of the notebook: the IMDB Large Movie Review Dataset (aclImdb v1) as DataFrames.

Layout: aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt; the other folders and files of
the real archive (train/unsup, *.feat, urls_*.txt) are ignored.
"""
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

import pandas as pd
from tqdm import tqdm

from imdb_bert.compat import tf
from imdb_bert.errors import UserError

FILE_NAME = re.compile(r"\d+_(\d+)\.txt")
REVIEWS_PER_CLASS = 12500  # in each of train/pos, train/neg, test/pos, test/neg
EXTRACTING_PREFIX = ".aclImdb-extracting-"


def load_directory_data(directory):
    """All reviews of one class folder: the file's text as `sentence`, the rating from
    the file name (a string, as in the notebook) as `sentiment`. Names starting with "."
    (.DS_Store and the like) are skipped and counted in one line."""
    if not tf.io.gfile.isdir(directory):
        raise UserError("%s is missing: the dataset folder must hold "
                        "{train,test}/{pos,neg}/<id>_<rating>.txt." % directory)
    data = {"sentence": [], "sentiment": []}
    names = sorted(tf.io.gfile.listdir(directory))
    hidden = [name for name in names if name.startswith(".")]
    if hidden:
        print("Skipped %d name%s starting with \".\" in %s: %s" % (
            len(hidden), "" if len(hidden) == 1 else "s", directory,
            ", ".join(hidden[:MAX_NAMES_SAID]) + (", ..." if len(hidden) > MAX_NAMES_SAID
                                                  else "")))
        names = [name for name in names if not name.startswith(".")]
    if not names:
        raise UserError("%s is empty: the dataset folder must hold "
                        "{train,test}/{pos,neg}/<id>_<rating>.txt." % directory)
    bad = []  # (path, what is wrong): all of them are said at the end
    for file_name in tqdm(names, desc="Loading %s" % directory, unit=" reviews",
                          leave=False, mininterval=1.0):
        path = os.path.join(directory, file_name)
        match = FILE_NAME.fullmatch(file_name)
        text, problem = read_review(path) if match else (None, "not named "
                                                         "<id>_<rating>.txt like the reviews "
                                                         "of the dataset")
        if problem:
            bad.append((path, problem))
            continue
        data["sentence"].append(text)
        data["sentiment"].append(match.group(1))
    if bad:
        raise bad_reviews_error(directory, bad)
    return pd.DataFrame.from_dict(data)


MAX_NAMES_SAID = 10  # bad or skipped files named in a message; the rest are counted


def read_review(path):
    """(text, None) of a review file, or (None, what is wrong with it)."""
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, "not valid UTF-8 (%s)" % e
    if not text.strip():
        return None, "an empty review"
    return text, None


def bad_reviews_error(directory, bad):
    """The UserError for the files of `directory` that are not reviews: the first
    MAX_NAMES_SAID named with what is wrong, and a count. A damaged review stops the run:
    skipping it would silently change the sample."""
    lines = ["  %s is %s" % (path, problem) for path, problem in bad[:MAX_NAMES_SAID]]
    if len(bad) > MAX_NAMES_SAID:
        lines.append("  and %d more" % (len(bad) - MAX_NAMES_SAID))
    one = len(bad) == 1
    return UserError("%d file%s of %s %s; fix %s or move %s out of that folder:\n%s"
                     % (len(bad), "" if one else "s", directory,
                        "is not a review" if one else "are not reviews",
                        "it" if one else "them", "it" if one else "them", "\n".join(lines)))


def load_dataset(directory, seed):
    """pos (polarity 1) and neg (polarity 0) reviews of one split, shuffled."""
    pos_df = load_directory_data(os.path.join(directory, "pos"))
    neg_df = load_directory_data(os.path.join(directory, "neg"))
    pos_df["polarity"] = 1
    neg_df["polarity"] = 0
    return pd.concat([pos_df, neg_df]).sample(frac=1, random_state=seed).reset_index(drop=True)


def sample(df, n, seed):
    """`n` rows of `df` (all of them when n is None), as the notebook's df.sample(n)."""
    if n is None:
        return df
    if n > len(df):
        raise UserError("Asked for %d samples but only %d reviews were loaded; pass a "
                        "smaller --train-samples/--test-samples or 'all'." % (n, len(df)))
    return df.sample(n, random_state=seed).reset_index(drop=True)


def sample_train_and_validation(df, n_train, n_validation, seed):
    """(training sample, validation sample or None) of the training split `df`. The
    validation reviews are never in the training sample: they are drawn from the rest, so
    the training sample is the one without validation; with n_train None ('all') the
    training sample is every review that is not a validation review."""
    if not n_validation:
        return sample(df, n_train, seed), None
    wanted = n_validation + (n_train or 0)
    if wanted > len(df) or (n_train is None and n_validation >= len(df)):
        raise UserError("Asked for %d training and %d validation reviews but only %d were "
                        "loaded; pass a smaller --train-samples or --validation-samples."
                        % (n_train or 0, n_validation, len(df)))
    if n_train is None:
        validation = df.sample(n_validation, random_state=seed)
        train = df.drop(validation.index)
    else:
        train = df.sample(n_train, random_state=seed)
        validation = df.drop(train.index).sample(n_validation, random_state=seed)
    return train.reset_index(drop=True), validation.reset_index(drop=True)


def download_and_load_datasets(data_dir, url, md5, seed):
    """The train and test DataFrames from data_dir/aclImdb, downloading it first when it
    is not there."""
    dataset_dir = os.path.join(data_dir, "aclImdb")
    if not tf.io.gfile.isdir(dataset_dir):
        download_and_extract(url, md5, data_dir)
    train_df = load_dataset(os.path.join(dataset_dir, "train"), seed)
    test_df = load_dataset(os.path.join(dataset_dir, "test"), seed)
    warn_unless_complete(dataset_dir, {"train": train_df, "test": test_df})
    return train_df, test_df


def warn_unless_complete(dataset_dir, splits):
    """One line when the tree does not hold aclImdb v1's 12,500 reviews per class and
    split: a hand-made or partial tree stays usable, but never silently."""
    counts = {(split, polarity): int((df["polarity"] == polarity).sum())
              for split, df in splits.items() for polarity in (1, 0)}
    if set(counts.values()) != {REVIEWS_PER_CLASS}:
        print("Warning: %s holds %s reviews, not the %d per class and split of the IMDB "
              "dataset (a partial or hand-made copy?)." % (dataset_dir, ", ".join(
                  "%s/%s %d" % (split, "pos" if polarity else "neg", count)
                  for (split, polarity), count in counts.items()), REVIEWS_PER_CLASS))


def download_and_extract(url, md5, data_dir):
    """Download the archive at `url` into `data_dir` (with a progress bar), check its MD5
    unless `md5` is empty, and extract it there. An archive already in `data_dir` (put
    there by hand, or from an earlier interrupted run) is used instead of downloading."""
    os.makedirs(data_dir, exist_ok=True)
    archive = os.path.join(data_dir, os.path.basename(url.split("?")[0]) or "aclImdb.tar.gz")
    if not os.path.exists(archive):
        download(url, archive, data_dir)
    actual = file_md5(archive)
    if md5 and actual != md5:
        os.remove(archive)
        raise UserError("%s has MD5 %s, expected %s: the download is damaged or not the "
                        "dataset (it was deleted). Run again to retry, or pass --data-md5 '' to "
                        "skip the check. %s" % (archive, actual, md5, where_to_put(data_dir)))
    extract(archive, data_dir)
    os.remove(archive)


def where_to_put(data_dir):
    return ("Put the extracted folder at %s (so that %s exists), or pass --data-dir to "
            "the folder that holds aclImdb/."
            % (os.path.join(data_dir, "aclImdb"),
               os.path.join(data_dir, "aclImdb", "train", "pos")))


def download(url, archive, data_dir):
    """Download `url` to `archive` through archive.part, which no failure or interruption
    leaves behind."""
    partial = archive + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True,
                      desc="Downloading %s" % url) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        if total and bar.n != total:
            raise OSError("the connection closed after %d of %d bytes" % (bar.n, total))
        os.replace(partial, archive)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise UserError("Could not download the IMDB dataset from %s (%s). %s"
                        % (url, getattr(e, "reason", e), where_to_put(data_dir)))
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def extract(archive, data_dir):
    """Extract `archive` into a temporary folder beside data_dir/aclImdb, renamed into
    place when complete: the tree is whole or absent, whatever stops the extraction."""
    for name in os.listdir(data_dir):  # what a killed extraction left
        if name.startswith(EXTRACTING_PREFIX):
            shutil.rmtree(os.path.join(data_dir, name), ignore_errors=True)
    print("Extracting %s into %s" % (archive, data_dir))
    tmp = tempfile.mkdtemp(prefix=EXTRACTING_PREFIX, dir=data_dir)
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, links out of the folder and the like.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)
        if not os.path.isdir(os.path.join(tmp, "aclImdb")):
            raise UserError("%s holds no aclImdb/ folder. %s" % (archive, where_to_put(data_dir)))
        os.rename(os.path.join(tmp, "aclImdb"), os.path.join(data_dir, "aclImdb"))
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise UserError("%s is damaged (%s) and was not extracted. Delete it and run again to "
                        "download it anew. %s" % (archive, e, where_to_put(data_dir)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
