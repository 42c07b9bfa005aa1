"""The label cell of a row of the user's files, per --task: single-label reads it as text
(text_files.py), multi-label as a list of labels, regression as a number. A cell that does
not parse stops the run naming the file, the row and the cell: skipping the row would
silently change the sample.

Multi-label: in JSON Lines a JSON list (`["a", "b"]`, `[]` for no label); in CSV and TSV
one cell with the labels separated by --label-separator (`a|b`; an empty cell is no label).
No label may hold the separator (it could not be written back to a CSV cell).
"""
import json
import math

from imdb_bert.errors import UserError
from imdb_bert.tasks import MULTI_LABEL, REGRESSION

DEFAULT_SEPARATOR = "|"


def parser(args):
    """parse(cell, path, row number) -> the row's label for args.task, or None for
    single-label (a label is text)."""
    if args.task == MULTI_LABEL:
        return lambda cell, path, number: label_set(cell, path, number, args.label_column,
                                                    args.label_separator)
    if args.task == REGRESSION:
        return lambda cell, path, number: number_in(cell, path, number, args.label_column)
    return None


def where(path, number):
    """"train.csv row 7" (1-based, the header row not counted) or "train.jsonl line 7"."""
    return "%s %s %d" % (path, "line" if path.lower().endswith(".jsonl") else "row", number)


def label_set(cell, path, number, column, separator):
    """The sorted tuple of a multi-label cell's labels."""
    jsonl = path.lower().endswith(".jsonl")
    if jsonl and not isinstance(cell, list):
        raise UserError("%s: the labels (key %r) are %s, not a JSON list; write them as "
                        "[\"a\", \"b\"] ([] for no label)." % (
                            where(path, number), column,
                            "missing" if cell is None else json.dumps(cell, ensure_ascii=False)))
    parts = cell if jsonl else ([] if not cell.strip() else cell.split(separator))
    labels = [part.strip() if isinstance(part, str) else None for part in parts]
    if None in labels or "" in labels:
        raise UserError("%s: the labels cell %s (column %r) does not parse: %s. Separate "
                        "labels with %r (--label-separator), in JSON Lines as a list of "
                        "strings." % (where(path, number), json.dumps(cell, ensure_ascii=False), column,
                                      "an empty label" if "" in labels else "not text",
                                      separator))
    for label in labels:
        check_separator_free(label, separator, where(path, number))
    return tuple(sorted(set(labels)))


def check_separator_free(label, separator, source):
    if separator in label:
        raise UserError("%s: the label %r holds the label separator %r; pass another "
                        "--label-separator." % (source, label, separator))


def number_in(cell, path, number, column):
    """A regression cell as a float: a JSON number, or text that is one."""
    value = None
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        value = float(cell)
    elif isinstance(cell, str):
        try:
            value = float(cell.strip())
        except ValueError:
            pass
    if value is None or not math.isfinite(value):
        raise UserError("%s: the label %s (column %r) is not a number; --task regression "
                        "needs a number in every row." % (where(path, number),
                                                          json.dumps(cell, ensure_ascii=False), column))
    return value
