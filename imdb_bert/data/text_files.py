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
                         args.text_pair_column, label_cells.parser(args),
                         args.allow_multiline_fields) if path else None
    train = read(args.train_file)
    train = train.sample(frac=1, random_state=args.seed).reset_index(drop=True)
    return train, read(args.test_file), read(args.validation_file)


def read_file(path, text_column, label_column, pair_column=None, parse_label=None,
              allow_multiline=False):
    """The file's rows as a DataFrame (sentence, polarity, and with `pair_column` its text
    in text_b), with a progress bar. `parse_label(cell, path, row number)` turns a label
    cell into the row's label (label_cells.py); without it, a label is text.
    `allow_multiline`: --allow-multiline-fields (table_rows)."""
    import pandas as pd  # here: predict.py reads its --file with read_cells, no pandas
    columns = [(text_column, "--text-column"), (label_column, "--label-column")]
    if pair_column:
        columns.append((pair_column, "--text-pair-column"))
    cells, numbers = read_cells(path, columns, allow_multiline)
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


def read_cells(path, columns, allow_multiline=False):
    """([cells of each of `columns`], row numbers) of a .csv, .tsv or .jsonl file, with a
    progress bar; `columns`: (name, flag) pairs, the flag for a message naming it.
    `allow_multiline`: --allow-multiline-fields (table_rows)."""
    extension = os.path.splitext(path)[1].lower()
    size = os.path.getsize(path)
    with open(path, "rb") as f, tqdm(total=size, desc="Loading %s" % path, unit="B",
                                     unit_scale=True, leave=False, mininterval=1.0,
                                     disable=size < (1 << 24)) as bar:
        lines = decoded_lines(f, path, bar.update)
        if extension == ".jsonl":
            return jsonl_rows(lines, path, columns)
        return table_rows(lines, path, DELIMITERS[extension], columns, allow_multiline)


def decoded_lines(binary_file, path, progress=None):
    """The file's lines (split at "\\n" only: U+0085 and the like stay inside a line),
    decoded from UTF-8, a BOM dropped; a line that is not UTF-8 is named. `progress` is
    called with each line's size in bytes."""
    for number, raw in enumerate(binary_file, 1):
        if progress:
            progress(len(raw))
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError("%s is not UTF-8: line %d, byte %d of the line (%s). Save the "
                            "file as UTF-8." % (path, number, e.start + 1, e.reason)) from None


def table_rows(lines, path, delimiter, columns, allow_multiline=False):
    """([cells of each of `columns`], row numbers) of a CSV or TSV file; a blank record is
    skipped but counted. `columns`: (name, flag) pairs. A quoted field that spans lines and
    holds the delimiter is refused unless `allow_multiline`: a stray quote merges rows so,
    and the row count alone would not show it."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    kind = "CSV" if delimiter == "," else "TSV"
    try:
        header = next(reader, None)
        if header is None:
            raise UserError("%s is empty: it needs a header row naming the columns %s."
                            % (path, " and ".join(repr(name) for name, _ in columns)))
        indices = [column_index(path, header, name, flag) for name, flag in columns]
        cells, numbers, misshapen, merged = [[] for _ in columns], [], [], []
        last_line = reader.line_num
        for row_number, record in enumerate(reader, 1):
            first_line, last_line = last_line + 1, reader.line_num
            if not record:
                continue
            if len(record) != len(header):
                misshapen.append(row_number)
                continue
            if first_line < last_line and any("\n" in field and delimiter in field
                                              for field in record):
                merged.append((first_line, last_line))
            for values, index in zip(cells, indices):
                values.append(record[index])
            numbers.append(row_number)
    except csv.Error as e:
        raise UserError(csv_error_message(path, reader.line_num, kind, e)) from None
    if misshapen:
        raise UserError("%s: %s another number of fields than the header row's %d: %s. "
                        "A delimiter or a quote out of place?" % (
                            path, rows_said(len(misshapen)), len(header),
                            first_rows(misshapen)))
    if merged and not allow_multiline:
        raise UserError(merged_rows_message(path, merged, delimiter, row_number,
                                            reader.line_num - 1))
    return cells, numbers


def csv_error_message(path, line_number, kind, error):
    """What csv.Error `error` at `line_number` means: a carriage return ("\\r") alone inside
    an unquoted field (a line break of old Macs, or a stray one), or a quote out of place."""
    if "new-line character seen in unquoted field" in str(error):
        return ("%s line %d holds a bare carriage return (\\r) inside an unquoted field. "
                "Remove it, or quote the field." % (path, line_number))
    return "%s line %d is not valid %s (%s): a quote out of place?" % (path, line_number, kind,
                                                                       error)


def merged_rows_message(path, merged, delimiter, rows_read, lines_read):
    """The quoted fields that span lines and hold the delimiter (`merged`: their first and
    last lines), with the count of rows read against the lines below the header."""
    shown = ", ".join("%d-%d" % lines for lines in merged[:SHOWN_ROWS])
    more = ", ..." if len(merged) > SHOWN_ROWS else ""
    return ("%s: %s a quoted field that spans lines and holds the delimiter (%s), at lines "
            "%s%s: %d rows read from %d lines below the header. A quote out of place merges "
            "rows so: fix it; if the file is meant so, pass --allow-multiline-fields."
            % (path, "1 row holds" if len(merged) == 1 else "%d rows hold" % len(merged),
               "tab" if delimiter == "\t" else repr(delimiter), shown, more, rows_read,
               lines_read))


def column_index(path, header, name, flag):
    """The index of column `name`, which the header must name once: with two, which one
    holds the data is a guess (csv readers take the first, JSON the last)."""
    if name not in header:
        raise UserError("%s has no column %r (%s); its columns are: %s." % (
            path, name, flag, ", ".join(repr(column) for column in header)))
    places = [str(index) for index, column in enumerate(header, 1) if column == name]
    if len(places) > 1:
        raise UserError("%s names the column %r (%s) %d times in its header row (columns %s): "
                        "rename or remove all but one." % (path, name, flag, len(places),
                                                           ", ".join(places)))
    return header.index(name)


class JsonObject(dict):
    """A JSON object (json's object_pairs_hook) that keeps the keys it held more than once:
    json.loads would silently keep the last one's value."""

    def __init__(self, pairs):
        super().__init__(pairs)
        keys = [key for key, _ in pairs]
        self.duplicates = {key for key in self if keys.count(key) > 1} \
            if len(self) < len(keys) else set()


def jsonl_rows(lines, path, columns):
    """([values of each of `columns`' keys, None where an object lacks it], line numbers) of
    a JSON Lines file; a blank line is skipped but counted."""
    cells, numbers, keys = [[] for _ in columns], [], {}
    for row_number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=JsonObject)
        except ValueError as e:
            raise UserError("%s line %d is not JSON (%s)." % (path, row_number, e)) from None
        if not isinstance(row, dict):
            raise UserError("%s line %d is not a JSON object ({...}) but %s." % (
                path, row_number, type(row).__name__))
        for name, flag in columns:
            if name in row.duplicates:
                raise UserError("%s line %d holds the key %r (%s) twice or more: remove all "
                                "but one (JSON readers keep the last)." % (path, row_number,
                                                                          name, flag))
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
