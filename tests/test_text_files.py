"""The user's files (imdb_bert/data/text_files.py) and their labels
(imdb_bert/data/labels.py), read without training: formats, quoting, encodings, columns, labels and every bad input."""
import argparse
import csv
import json
import os

import pytest

from imdb_bert.data import labels, text_files
from imdb_bert.errors import UserError

# Real-looking texts: quotes, commas, newlines inside quotes, tabs, emoji, accents, U+0085,
# U+2028, HTML, a control character.
MESSY = ['He said "wow, just wow", then left.',
         "Line one\nline two,\r\nand three \U0001F600",
         "caf\u00e9 na\u00efve \u00c9t\u00e9 \u2014 great\x85film <br /><br />loved it",
         "tab\tinside, \u2028 and a bell\x07",
         "'single' quotes ; semicolons | pipes"]
LABELS = ["pos", "neg", "pos", "neg", "mixed \u00e9"]


def write_table(path, rows, header=("sentence", "polarity"), delimiter=",", bom=False):
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)  # RFC 4180 quoting, \r\n records
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_jsonl(path, objects, bom=False):
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        for obj in objects:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return str(path)


def read(path, text_column="sentence", label_column="polarity", allow_multiline=False):
    df = text_files.read_file(path, text_column, label_column,
                              allow_multiline=allow_multiline)
    return list(df["sentence"]), list(df["polarity"])


@pytest.mark.parametrize("extension,delimiter,bom", [(".csv", ",", False),
                                                     (".csv", ",", True),
                                                     (".tsv", "\t", False),
                                                     (".TSV", "\t", True)])
def test_csv_and_tsv_keep_quoted_delimiters_newlines_and_messy_text(tmp_path, extension,
                                                                    delimiter, bom):
    path = write_table(tmp_path / ("data" + extension), zip(MESSY, LABELS),
                       delimiter=delimiter, bom=bom)
    # MESSY[1], a text with a line break and a comma, is refused in a CSV without the flag.
    assert read(path, allow_multiline=True) == (MESSY, LABELS)
    if delimiter == "\t":
        assert read(path) == (MESSY, LABELS)


@pytest.mark.parametrize("bom", [False, True])
def test_jsonl_reads_labels_as_text(tmp_path, bom):
    objects = [{"sentence": text, "polarity": label, "extra": [1, 2]}
               for text, label in zip(MESSY, [1, "1", " neg ", True, 2.5])]
    texts, labels_read = read(write_jsonl(tmp_path / "data.jsonl", objects, bom=bom))
    assert texts == MESSY
    assert labels_read == ["1", "1", "neg", "true", "2.5"]  # JSON 1 and "1": one label


def test_other_columns_and_blank_lines(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,review,stars\r\n1,"good, really",5\r\n\r\n2,bad,1\r\n\r\n',
                    encoding="utf-8")
    assert read(str(path), "review", "stars") == (["good, really", "bad"], ["5", "1"])


def bad(path, *columns):
    with pytest.raises(UserError) as error:
        text_files.read_file(str(path), *(columns or ("sentence", "polarity")))
    return str(error.value)


def test_missing_column_names_the_columns_found(tmp_path):
    path = write_table(tmp_path / "a.csv", [("t", "l")], header=("text", "label"))
    said = bad(path)
    assert "no column 'sentence' (--text-column)" in said and "'text', 'label'" in said
    said = bad(path, "text", "polarity")
    assert "no column 'polarity' (--label-column)" in said
    jsonl = write_jsonl(tmp_path / "a.jsonl", [{"review": "t", "label": "x"}])
    said = bad(jsonl, "review", "polarity")
    assert "no key 'polarity' (--label-column)" in said and "'review', 'label'" in said


def test_empty_or_missing_texts_and_labels_give_count_and_first_ten_rows(tmp_path):
    rows = [("fine", "a")] * 3 + [("  ", "a")] + [("fine", "b")] * 2 + [("", "b")] * 12
    said = bad(write_table(tmp_path / "a.csv", rows))
    assert "13 rows have an empty or missing text (column 'sentence')" in said
    assert "rows 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, ... (1-based, the header row not " \
           "counted)" in said
    said = bad(write_table(tmp_path / "b.tsv", [("a", "x"), ("b", " ")], delimiter="\t"))
    assert "1 row has an empty or missing label (column 'polarity'): row 2 (" in said
    objects = [{"sentence": "a", "polarity": 1}, {"sentence": "b"},
               {"sentence": "c", "polarity": None}]
    said = bad(write_jsonl(tmp_path / "c.jsonl", objects))
    assert "2 rows have an empty or missing label" in said and "rows 2, 3 (1-based)" in said


def test_misshapen_rows_and_bad_quoting_are_named(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("sentence,polarity\na,x\nb,x,extra\nc\n", encoding="utf-8")
    said = bad(path)
    assert "2 rows have another number of fields than the header row's 2: rows 2, 3" in said
    path.write_text('sentence,polarity\na,x\n"never closed,x\nmore,x\n', encoding="utf-8")
    assert "is not valid CSV" in bad(path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("sentence,polarity\ngood,1\n".encode() + "caf\u00e9,0\n".encode("latin-1"))
    said = bad(path)
    assert "is not UTF-8: line 3, byte 4 of the line" in said
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b'{"sentence": "a", "polarity": 1}\n{"sentence": "\xff"}\n')
    assert "line 2" in bad(jsonl)


def test_empty_files_and_bad_json(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    assert "is empty" in bad(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("sentence,polarity\n")
    assert "holds no rows" in bad(tmp_path / "header.csv")
    (tmp_path / "a.jsonl").write_text('{"sentence": "a", "polarity": 1}\n{"sentence": \n')
    assert "line 2 is not JSON" in bad(tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").write_text('["a", 1]\n')
    assert "line 1 is not a JSON object" in bad(tmp_path / "b.jsonl")


def file_args(tmp_path, **flags):
    values = dict(train_file=None, test_file=None, validation_file=None,
                  text_column="sentence", label_column="polarity", labels=None,
                  positive_label=None, seed=42, task="single-label", text_pair_column=None,
                  label_separator=None, threshold=None)
    values.update(flags)
    return argparse.Namespace(**values)


def test_missing_files_and_unknown_extensions_are_refused(tmp_path):
    (tmp_path / "data.xlsx").write_text("x")
    train = write_table(tmp_path / "train.csv", [("a", "b")])
    with pytest.raises(UserError, match="--test-file .*missing.csv: no such file"):
        text_files.check_paths(file_args(tmp_path, train_file=train,
                                         test_file=str(tmp_path / "missing.csv")))
    with pytest.raises(UserError, match=r"unknown extension '\.xlsx'; the data files must be "
                                        r"\.csv, \.tsv or \.jsonl"):
        text_files.check_paths(file_args(tmp_path, train_file=str(tmp_path / "data.xlsx")))


def test_do_delete_refuses_an_output_folder_holding_a_data_file(tmp_path):
    (tmp_path / "out" / "data").mkdir(parents=True)
    inside = write_table(tmp_path / "out" / "data" / "train.csv", [("a", "b")])
    outside = write_table(tmp_path / "test.csv", [("a", "b")])
    text_files.check_outside(str(tmp_path / "out"), file_args(tmp_path, test_file=outside))
    with pytest.raises(UserError, match="Refusing --do-delete .*train.csv"):
        text_files.check_outside(str(tmp_path / "out"),
                                 file_args(tmp_path, train_file=inside, test_file=outside))


def test_settings_record_each_files_sha256(tmp_path):
    train = write_table(tmp_path / "train.csv", [("a", "b")])
    test = write_jsonl(tmp_path / "test.jsonl", [{"sentence": "a", "polarity": "b"}])
    recorded = text_files.settings(file_args(tmp_path, train_file=train, test_file=test))
    assert recorded["train_file_sha256"] == text_files.file_sha256(train)
    assert recorded["test_file"] == os.path.abspath(test)
    assert recorded["validation_file"] is recorded["validation_file_sha256"] is None
    assert text_files.settings(file_args(tmp_path)) == {}  # aclImdb: no new keys


def frame(label_values):
    import pandas as pd
    return pd.DataFrame({"sentence": ["text"] * len(label_values), "polarity": label_values})


def test_label_list_is_sorted_or_given_and_checked(tmp_path, capsys):
    args = file_args(tmp_path, train_file="train.csv")
    found = labels.file_labels(args, frame(["b", "\u00e9t\u00e9", "a", "b"]), {})
    assert found.label_list == found.names == ["a", "b", "\u00e9t\u00e9"]
    numbers = labels.file_labels(args, frame(["10", "2", "-1", "2"]), {})
    assert numbers.label_list == ["-1", "2", "10"]  # integers sort as numbers
    given = labels.file_labels(file_args(tmp_path, train_file="t", labels="pos, neg, other"),
                               frame(["neg", "pos"]), {})
    assert given.label_list == ["pos", "neg", "other"]
    assert "'other', which the training file t lacks" in capsys.readouterr().out
    assert given.settings() == {"label_list": ["pos", "neg", "other"],
                                "label_names": ["pos", "neg", "other"], "positive_label": None}
    assert labels.imdb_labels().settings() == {"label_list": [0, 1],
                                               "label_names": ["Negative", "Positive"]}


def test_bad_label_sets_are_refused(tmp_path):
    args = file_args(tmp_path, train_file="train.csv")
    with pytest.raises(UserError, match="a single label .'same'. in column 'polarity'"):
        labels.file_labels(args, frame(["same"] * 5), {})
    with pytest.raises(UserError, match="1001 distinct labels .* Pass --labels"):
        labels.file_labels(args, frame([str(i) for i in range(1001)]), {})
    assert len(labels.file_labels(file_args(tmp_path, train_file="t", labels=",".join(
        str(i) for i in range(1001))), frame([str(i) for i in range(1001)]), {}).names) == 1001
    with pytest.raises(UserError, match="test.jsonl holds labels that the training file "
                                        "train.csv lacks: 'maybe', 'unsure'"):
        labels.file_labels(args, frame(["yes", "no"]),
                           {"test.jsonl": frame(["yes", "unsure", "maybe", "no"])})
    with pytest.raises(UserError, match="--labels yes lacks labels of the training file"):
        labels.file_labels(file_args(tmp_path, train_file="t", labels="yes"),
                           frame(["yes", "no"]), {})
    with pytest.raises(UserError, match="give each label once"):
        labels.file_labels(file_args(tmp_path, train_file="t", labels="yes,no,yes"),
                           frame(["yes", "no"]), {})


def test_positive_label_picks_the_class_of_the_binary_metrics(tmp_path):
    two = frame(["spam", "ham"])
    assert labels.file_labels(file_args(tmp_path, train_file="t"), two, {}).positive_index == 1
    chosen = labels.file_labels(file_args(tmp_path, train_file="t", positive_label="ham"),
                                two, {})
    assert chosen.positive_index == 0 and chosen.settings()["positive_label"] == "ham"
    with pytest.raises(UserError, match="--positive-label eggs is not one of"):
        labels.file_labels(file_args(tmp_path, train_file="t", positive_label="eggs"), two, {})
    with pytest.raises(UserError, match="--positive-label is for two labels; this run has 3"):
        labels.file_labels(file_args(tmp_path, train_file="t", positive_label="a"),
                           frame(["a", "b", "c"]), {})


def test_sample_counts_default_to_all_rows_of_files_and_stay_5000_for_aclimdb(tmp_path):
    import train
    imdb = train.parse_args([])
    assert (imdb.train_samples, imdb.test_samples) == (5000, 5000)
    assert type(imdb.train_samples) is int  # run_info.json and model_settings.json: 5000
    train_file = write_table(tmp_path / "train.csv", [("a", "b")])
    test_file = write_jsonl(tmp_path / "test.jsonl", [{"sentence": "a", "polarity": "b"}])
    files = train.parse_args(["--train-file", train_file, "--test-file", test_file,
                              "--test-samples", "10"])
    assert (files.train_samples, files.test_samples) == (None, 10)


def test_a_quoted_field_across_lines_with_the_delimiter_is_refused_unless_allowed(tmp_path):
    """A stray quote at the start of one row's text and one before the tab in the next
    merge two rows into one with the right number of fields (60 rows became 59)."""
    rows = ["%s\t%s" % (text, label) for text, label in zip(
        ["Great<br /><br />film \U0001F600", "caf\u00e9 na\u00efve\x85plot", "awful\x07 acting",
         "moving, \u2028 truly"] * 15, ["pos", "pos", "neg", "pos"] * 15)]
    rows[20] = '"' + rows[20]  # the stray quotes: rows 21 and 22 are read as one
    rows[21] = rows[21].replace("\t", '"\t', 1)
    path = tmp_path / "critics.tsv"
    path.write_text("sentence\tpolarity\n" + "\n".join(rows) + "\n", encoding="utf-8")
    said = bad(path)
    assert said == ("%s: 1 row holds a quoted field that spans lines and holds the delimiter "
                    "(tab), at lines 22-23: 59 rows read from 60 lines below the header. A "
                    "quote out of place merges rows so: fix it; if the file is meant so, pass "
                    "--allow-multiline-fields." % path)
    texts, labels_read = read(str(path), allow_multiline=True)
    assert len(texts) == 59 and texts[20].startswith("Great<br />") and "\tpos\n" in texts[20]
    # A line break alone, or the delimiter alone, in a quoted text is no sign of a merge.
    fine = write_table(tmp_path / "fine.csv", [("two\nlines", "a"), ("a, b", "b")])
    assert read(fine) == (["two\nlines", "a, b"], ["a", "b"])


def test_a_column_or_key_named_twice_is_refused(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("text,stars,text\r\nGreat film \U0001F600,5,Gro\u00dfartig\r\n",
                    encoding="utf-8-sig")
    assert bad(path, "text", "stars") == (
        "%s names the column 'text' (--text-column) 2 times in its header row (columns 1, 3): "
        "rename or remove all but one." % path)
    # Excel's empty columns after the data: named twice (""), but not read.
    excel = tmp_path / "excel.csv"
    excel.write_text("text,stars,,\r\nGreat film,5,,\r\n", encoding="utf-8-sig")
    assert read(str(excel), "text", "stars") == (["Great film"], ["5"])
    jsonl = tmp_path / "export.jsonl"
    jsonl.write_text('{"review": "fine<br />", "stars": "5"}\n'
                     '{"review": "first \\u0085", "stars": "1", "review": "second"}\n',
                     encoding="utf-8")
    assert bad(jsonl, "review", "stars") == (
        "%s line 2 holds the key 'review' (--text-column) twice or more: remove all but one "
        "(JSON readers keep the last)." % jsonl)


def test_a_bare_carriage_return_is_named_not_blamed_on_a_quote(tmp_path):
    path = tmp_path / "mac.csv"
    path.write_bytes("sentence,polarity\ngood \U0001F600,pos\nold\rmac text,neg\n".encode())
    assert bad(path) == ("%s line 3 holds a bare carriage return (\\r) inside an unquoted "
                         "field. Remove it, or quote the field." % path)
