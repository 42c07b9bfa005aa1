"""The labels a run learns: their list (the classifier head has one output per label, in
this order), the names predict.py and the reports show, and for two labels the positive
one, on which the notebook's precision, recall, F1 and counts are computed.

aclImdb: the notebook's label_list [0, 1] named Negative and Positive. The user's files:
the sorted set of the training file's labels (numerically when all are integers), or the
order --labels gives; the names are the labels themselves."""
import re

import config
from imdb_bert.errors import UserError

MAX_LABELS = 1000  # more distinct labels without --labels: most likely the wrong column
SHOWN = 10  # labels named in an error


class Labels:
    """`columns`: the text and label columns' names, for test_predictions.csv."""

    def __init__(self, label_list, names, positive_index=1, from_files=False,
                 columns=(config.DATA_COLUMN, config.LABEL_COLUMN)):
        self.label_list = list(label_list)
        self.names = list(names)
        self.positive_index = positive_index
        self.from_files = from_files
        self.columns = columns

    def settings(self):
        """What model_settings.json records (for aclImdb, the keys it always had)."""
        recorded = {"label_list": self.label_list, "label_names": self.names}
        if self.from_files:
            recorded["positive_label"] = (self.label_list[self.positive_index]
                                          if len(self.label_list) == 2 else None)
        return recorded


def imdb_labels():
    return Labels(config.label_list, config.LABEL_NAMES)


def file_labels(args, train, others):
    """The Labels of a run on files: `train` is the training DataFrame, `others` {path:
    DataFrame} the test and validation files, whose labels must all be in the list."""
    found = set(train[config.LABEL_COLUMN])
    if args.labels is not None:
        label_list = given_labels(args.labels, found, args.train_file)
    elif len(found) > MAX_LABELS:
        raise UserError("%s holds %d distinct labels in column %r (more than %d): is "
                        "--label-column the right column? Pass --labels to use them all."
                        % (args.train_file, len(found), args.label_column, MAX_LABELS))
    else:
        label_list = sorted(found, key=label_order(found))
    if len(found) < 2:
        raise UserError("%s holds a single label (%r) in column %r: a classifier needs at "
                        "least two." % (args.train_file, next(iter(found)), args.label_column))
    for path, df in others.items():
        if df is None:
            continue
        unknown = set(df[config.LABEL_COLUMN]) - set(label_list)
        if unknown:
            raise UserError("%s holds labels that the training file %s lacks: %s. The model "
                            "can only predict the training labels." % (
                                path, args.train_file, named(unknown, label_order(unknown))))
    return Labels(label_list, label_list, positive_index(args.positive_label, label_list),
                  from_files=True, columns=(args.text_column, args.label_column))


def label_order(labels):
    """Sort key: numerically when every label is an integer ("2" before "10"), else as
    text."""
    if all(re.fullmatch(r"[+-]?\d+", label) for label in labels):
        return lambda label: (int(label), label)
    return lambda label: label


def given_labels(flag_value, found, train_file):
    """--labels a,b,c: the list, which must hold every training label once."""
    label_list = [label.strip() for label in flag_value.split(",")]
    if "" in label_list or len(set(label_list)) != len(label_list):
        raise UserError("--labels %s: give each label once, separated by commas."
                        % flag_value)
    missing = found - set(label_list)
    if missing:
        raise UserError("--labels %s lacks labels of the training file %s: %s."
                        % (flag_value, train_file, named(missing, label_order(missing))))
    unused = [label for label in label_list if label not in found]
    if unused:
        print("Warning: --labels names %s, which the training file %s lacks: the model "
              "learns never to predict them." % (", ".join(map(repr, unused)), train_file))
    return label_list


def positive_index(positive_label, label_list):
    """The index of the positive label: the second of two, or --positive-label."""
    if positive_label is None:
        return 1
    if len(label_list) != 2:
        raise UserError("--positive-label is for two labels; this run has %d, and reports "
                        "per-class precision, recall and F1 instead." % len(label_list))
    if positive_label not in label_list:
        raise UserError("--positive-label %s is not one of the labels %s."
                        % (positive_label, ", ".join(map(repr, label_list))))
    return label_list.index(positive_label)


def named(labels, key):
    """The first SHOWN labels, sorted, quoted, and how many more."""
    shown = sorted(labels, key=key)[:SHOWN]
    more = " and %d more" % (len(labels) - SHOWN) if len(labels) > SHOWN else ""
    return ", ".join(map(repr, shown)) + more
