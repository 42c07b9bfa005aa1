"""The user's labelled texts (--train-file, --test-file, --validation-file) as the
DataFrames train.py otherwise takes from aclImdb: the text in `sentence`, the label, as
text, in `polarity`.

Formats, by extension: .csv and .tsv have a header row and RFC 4180 quoting (quoted fields
may hold the delimiter, doubled quotes and newlines; TSV only changes the delimiter to a
tab); .jsonl holds one JSON object per line. UTF-8, a BOM accepted. Labels are read as
text (a JSON 1 and "1" are the same label), without surrounding spaces.

A file that cannot be used stops the run (UserError, exit 2) saying what is wrong and
where: skipping a row would silently change the sample. Row numbers are 1-based and count
the records after the header (a blank line counts as a record, and is skipped)."""
import codecs
import csv
import hashlib
import json
import os
import sys

import pandas as pd
from tqdm import tqdm

from imdb_bert.data import label_cells
from imdb_bert.errors import UserError

DELIMITERS = {".csv": ",", ".tsv": "\t", ".jsonl": None}
SHOWN_ROWS = 10  # row numbers named in an error
TEXT_B = "text_b"  # the DataFrames' column of the second text (--text-pair-column)
# A review may be long, but a field of more than 64 MB is an unclosed quote.
csv.field_size_limit(min(sys.maxsize, 1 << 26))


def file_flags(args):
    """{flag: path} of the data files given."""
    return {flag: path for flag, path in (("--train-file", args.train_file),
                                          ("--test-file", args.test_file),
                                          ("--validation-file", args.validation_file))
            if path}


def check_paths(args):
    """Before anything else: each data file exists, with a known extension."""
    for flag, path in file_flags(args).items():
        extension = os.path.splitext(path)[1].lower()
        if not os.path.isfile(path):
            raise UserError("%s %s: no such file." % (flag, path))
        if extension not in DELIMITERS:
            raise UserError("%s %s: unknown extension %r; the data files must be .csv, .tsv "
                            "or .jsonl." % (flag, path, extension))


def check_outside(output_dir, args):
    """--do-delete: refuse an output folder that holds one of the data files."""
    folder = os.path.realpath(output_dir) + os.sep
    for flag, path in file_flags(args).items():
        if os.path.realpath(path).startswith(folder):
            raise UserError("Refusing --do-delete of %s: it holds %s (%s). Move the file out "
                            "of the output folder first." % (output_dir, path, flag))


def settings(args):
    """What model_settings.json records of the files (nothing for aclImdb): their paths,
    SHA-256 and columns; a resume stops when a SHA-256 changed."""
    if not args.train_file:
        return {}
    recorded = {"text_column": args.text_column, "label_column": args.label_column}
    for flag, path in (("train", args.train_file), ("test", args.test_file),
                       ("validation", args.validation_file)):
        recorded["%s_file" % flag] = os.path.abspath(path) if path else None
        recorded["%s_file_sha256" % flag] = file_sha256(path) if path else None
    return recorded


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_files(args):
    """(train, test, validation or None) DataFrames of the files; the training rows
    shuffled with the seed, as aclImdb's reviews are (the file may be sorted by label)."""
    def read(path):
        return read_file(path, args.text_column, args.label_column,
                         args.text_pair_column,
                         label_cells.parser(args)) if path else None
    train = read(args.train_file)
    train = train.sample(frac=1, random_state=args.seed).reset_index(drop=True)
    return train, read(args.test_file), read(args.validation_file)


def read_file(path, text_column, label_column, pair_column=None, parse_label=None):
    """The file's rows as a DataFrame (sentence, polarity, and with `pair_column` its text
    in text_b), with a progress bar. `parse_label(cell, path, row number)` turns a label
    cell into the row's label (label_cells.py); without it, a label is text."""
    columns = [(text_column, "--text-column"), (label_column, "--label-column")]
    if pair_column:
        columns.append((pair_column, "--text-pair-column"))
    cells, numbers = read_cells(path, columns)
    texts = [as_text(cell) for cell in cells[0]]
    check_values(path, texts, numbers, "text", text_column)
    table = {"sentence": texts}
    if pair_column:
        table[TEXT_B] = [as_text(cell) for cell in cells[2]]
        check_values(path, table[TEXT_B], numbers, "second text", pair_column)
    if parse_label:
        table["polarity"] = [parse_label(cell, path, number)
                             for cell, number in zip(cells[1], numbers)]
    else:
        table["polarity"] = [label_text(cell) for cell in cells[1]]
        check_values(path, table["polarity"], numbers, "label", label_column)
    return pd.DataFrame(table)


def read_cells(path, columns):
    """([cells of each of `columns`], row numbers) of a .csv, .tsv or .jsonl file, with a
    progress bar; `columns`: (name, flag) pairs, the flag for a message naming it."""
    extension = os.path.splitext(path)[1].lower()
    size = os.path.getsize(path)
    with open(path, "rb") as f, tqdm(total=size, desc="Loading %s" % path, unit="B",
                                     unit_scale=True, leave=False, mininterval=1.0,
                                     disable=size < (1 << 24)) as bar:
        lines = decoded_lines(f, path, bar)
        if extension == ".jsonl":
            return jsonl_rows(lines, path, columns)
        return table_rows(lines, path, DELIMITERS[extension], columns)


def decoded_lines(binary_file, path, bar):
    """The file's lines (split at "\\n" only: U+0085 and the like stay inside a line),
    decoded from UTF-8; a line that is not UTF-8 is named."""
    for number, raw in enumerate(binary_file, 1):
        bar.update(len(raw))
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError("%s is not UTF-8: line %d, byte %d of the line (%s). Save the "
                            "file as UTF-8." % (path, number, e.start + 1, e.reason)) from None


def table_rows(lines, path, delimiter, columns):
    """([cells of each of `columns`], row numbers) of a CSV or TSV file; a blank record is
    skipped but counted. `columns`: (name, flag) pairs."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise UserError("%s is empty: it needs a header row naming the columns %s."
                            % (path, " and ".join(repr(name) for name, _ in columns)))
        indices = [column_index(path, header, name, flag) for name, flag in columns]
        cells, numbers, misshapen = [[] for _ in columns], [], []
        for row_number, record in enumerate(reader, 1):
            if not record:
                continue
            if len(record) != len(header):
                misshapen.append(row_number)
                continue
            for values, index in zip(cells, indices):
                values.append(record[index])
            numbers.append(row_number)
    except csv.Error as e:
        raise UserError("%s line %d is not valid %s (%s): a quote out of place?"
                        % (path, reader.line_num, "CSV" if delimiter == "," else "TSV", e))
    if misshapen:
        raise UserError("%s: %s another number of fields than the header row's %d: %s. "
                        "A delimiter or a quote out of place?" % (
                            path, rows_said(len(misshapen)), len(header),
                            first_rows(misshapen)))
    return cells, numbers


def column_index(path, header, name, flag):
    if name not in header:
        raise UserError("%s has no column %r (%s); its columns are: %s." % (
            path, name, flag, ", ".join(repr(column) for column in header)))
    return header.index(name)


def jsonl_rows(lines, path, columns):
    """([values of each of `columns`' keys, None where an object lacks it], line numbers) of
    a JSON Lines file; a blank line is skipped but counted."""
    cells, numbers, keys = [[] for _ in columns], [], {}
    for row_number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise UserError("%s line %d is not JSON (%s)." % (path, row_number, e)) from None
        if not isinstance(row, dict):
            raise UserError("%s line %d is not a JSON object ({...}) but %s." % (
                path, row_number, type(row).__name__))
        if len(keys) < 50:
            keys.update(dict.fromkeys(row))
        for values, (name, _) in zip(cells, columns):
            values.append(row.get(name))
        numbers.append(row_number)
    for (name, flag), values in zip(columns, cells):
        if numbers and all(value is None for value in values):
            raise UserError("%s has no key %r (%s) in any object; its keys are: %s." % (
                path, name, flag, ", ".join(repr(key) for key in keys)))
    return cells, numbers


def label_text(cell):
    """A single-label cell as the label: text without surrounding spaces."""
    label = as_text(cell)
    return label.strip() if label is not None else None


def as_text(value):
    """A JSON value as text: strings as they are, numbers and booleans as written in JSON
    (1 -> "1"), null as missing."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def check_values(path, values, numbers, kind, column):
    """Stop on rows with an empty or missing text or label, naming the first ones."""
    if not values:
        raise UserError("%s holds no rows." % path)
    header = not path.lower().endswith(".jsonl")
    empty = [number for number, value in zip(numbers, values)
             if value is None or not value.strip()]
    if empty:
        raise UserError("%s: %s an empty or missing %s (column %r): %s. Fill them in or "
                        "remove them (train.py does not skip rows: that would silently "
                        "change the sample)." % (path, rows_said(len(empty)), kind, column,
                                                 first_rows(empty, header)))


def rows_said(count):
    return "1 row has" if count == 1 else "%d rows have" % count


def first_rows(numbers, header=True):
    """"rows 3, 7, 12 (1-based, ...)": the first SHOWN_ROWS row numbers."""
    shown = ", ".join(str(number) for number in numbers[:SHOWN_ROWS])
    more = ", ..." if len(numbers) > SHOWN_ROWS else ""
    return "row%s %s%s (1-based%s)" % ("s" if len(numbers) > 1 else "", shown, more,
                                       ", the header row not counted" if header else "")
