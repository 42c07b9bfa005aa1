"""The labels a run learns: their list (the classifier head has one output per label, in
this order), the names predict.py and the reports show, and for two labels the positive
one, on which the notebook's precision, recall, F1 and counts are computed.

aclImdb: the notebook's label_list [0, 1] named Negative and Positive. The user's files:
the sorted set of the training file's labels (numerically when all are integers), or the
order --labels gives; the names are the labels themselves."""
import re

import config
from imdb_bert.data.label_cells import check_separator_free
from imdb_bert.errors import UserError
from imdb_bert.tasks import MULTI_LABEL, REGRESSION, SINGLE_LABEL

MAX_LABELS = 1000  # more distinct labels without --labels: most likely the wrong column
SHOWN = 10  # labels named in an error


class Labels:
    """`columns`: the text and label columns' names, for test_predictions.csv; `task`
    (tasks.py); `multi_label`: (threshold, label separator) of a multi-label run."""

    def __init__(self, label_list, names, positive_index=1, from_files=False,
                 columns=(config.DATA_COLUMN, config.LABEL_COLUMN), task=SINGLE_LABEL,
                 pair_column=None, multi_label=(None, None)):
        self.label_list = list(label_list)
        self.names = list(names)
        self.positive_index = positive_index
        self.from_files = from_files
        self.columns = columns
        self.task = task
        self.pair_column = pair_column  # --text-pair-column, for test_predictions.csv
        self.threshold, self.separator = multi_label  # --threshold, --label-separator

    def targets(self, labels):
        """What the model learns for each of `labels` (a DataFrame's label column): the
        label itself (single-label: bert maps it to its index), a 0/1 tuple in label_list's
        order (multi-label), the number (regression)."""
        if self.task == MULTI_LABEL:
            return [tuple(int(label in row) for label in self.label_list) for row in labels]
        return list(labels)

    def settings(self):
        """What model_settings.json records (for aclImdb, the keys it always had)."""
        recorded = {"label_list": self.label_list, "label_names": self.names}
        if self.from_files:
            recorded["positive_label"] = (self.label_list[self.positive_index]
                                          if len(self.label_list) == 2
                                          and self.task == SINGLE_LABEL else None)
        return recorded


def imdb_labels():
    return Labels(config.label_list, config.LABEL_NAMES)


def file_labels(args, train, others):
    """The Labels of a run on files: `train` is the training DataFrame, `others` {path:
    DataFrame} the test and validation files, whose labels must all be in the list."""
    if args.task == REGRESSION:  # a number per text: no label list
        return Labels([], [], from_files=True, columns=(args.text_column, args.label_column),
                      task=REGRESSION, pair_column=args.text_pair_column)
    if args.task == MULTI_LABEL:
        return multi_labels(args, train, others)
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
    check_known(others, label_list, args.train_file, set)
    return Labels(label_list, label_list, positive_index(args.positive_label, label_list),
                  from_files=True, columns=(args.text_column, args.label_column),
                  pair_column=args.text_pair_column)


def multi_labels(args, train, others):
    """The Labels of a multi-label run: every label of the training file, sorted (or
    --labels); the other files may hold no other label."""
    found = set().union(*train[config.LABEL_COLUMN])
    if args.labels is not None:
        label_list = given_labels(args.labels, found, args.train_file)
        for label in label_list:
            check_separator_free(label, args.label_separator, "--labels")
    elif not found:
        raise UserError("%s holds no label in column %r: every row's list is empty."
                        % (args.train_file, args.label_column))
    else:
        label_list = sorted(found, key=label_order(found))
    check_known(others, label_list, args.train_file, lambda rows: set().union(*rows))
    return Labels(label_list, label_list, from_files=True,
                  columns=(args.text_column, args.label_column), task=MULTI_LABEL,
                  pair_column=args.text_pair_column,
                  multi_label=(args.threshold, args.label_separator))


def check_known(others, label_list, train_file, labels_in):
    """Every label of the other files ({path: DataFrame or None}) is in label_list;
    `labels_in(label column)` is the set of a file's labels."""
    for path, df in others.items():
        if df is None:
            continue
        unknown = labels_in(df[config.LABEL_COLUMN]) - set(label_list)
        if unknown:
            raise UserError("%s holds labels that the training file %s lacks: %s. The model "
                            "can only predict the training labels." % (
                                path, train_file, named(unknown, label_order(unknown))))


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
