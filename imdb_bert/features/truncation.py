"""--truncate: which word pieces of a text longer than the window the features keep.

With n = max_seq_length - 2 pieces of room ([CLS] and [SEP] take the other two):
  head       the first n (the notebook's: what run_classifier does by itself);
  tail       the last n;
  head+tail  the first floor(n / 4) and the last n - floor(n / 4) (31 + 95 at 128).
A text of n pieces or fewer is kept whole in every mode. Sun et al. 2019, "How to
Fine-Tune BERT for Text Classification?", found head+tail best on IMDB. Sentence pairs
(--text-pair-column) take bert's cut only (truncate_pair): head, the longer text first.

Nothing here imports TensorFlow: predict.py's ONNX path uses it too.
"""
HEAD = "head"
MODES = (HEAD, "tail", "head+tail")


def truncate_pair(pieces_a, pieces_b, max_pieces):
    """Sentence pairs, in place: bert's run_classifier._truncate_seq_pair (here without
    TensorFlow, for predict.py's ONNX path), which drops the last piece of the longer text
    (of the second when they are as long) until both fit in `max_pieces`."""
    while len(pieces_a) + len(pieces_b) > max_pieces:
        if len(pieces_a) > len(pieces_b):
            pieces_a.pop()
        else:
            pieces_b.pop()


def keep(pieces, mode, max_pieces):
    """The pieces (or ids) of `pieces` that `mode` keeps in a window of `max_pieces`."""
    if len(pieces) <= max_pieces:
        return list(pieces)
    first = {"head": max_pieces, "tail": 0, "head+tail": max_pieces // 4}[mode]
    last = max_pieces - first
    return list(pieces[:first]) + list(pieces[len(pieces) - last:])


class TruncatingTokenizer:
    """A tokenizer whose tokenize() returns only the pieces `mode` keeps: given to
    run_classifier.convert_single_example, it builds (and logs) the features of those
    pieces, since it cuts only what is longer than the window, and these are not."""

    def __init__(self, tokenizer, mode, max_pieces):
        self.tokenizer = tokenizer
        self.mode = mode
        self.max_pieces = max_pieces
        self.vocab = tokenizer.vocab

    def tokenize(self, text):
        return keep(self.tokenizer.tokenize(text), self.mode, self.max_pieces)

    def convert_tokens_to_ids(self, tokens):
        return self.tokenizer.convert_tokens_to_ids(tokens)


def truncating(tokenizer, mode, max_seq_length):
    """`tokenizer` for run_classifier under `mode`: itself for head (bert keeps the
    head), else a TruncatingTokenizer."""
    if mode == HEAD:
        return tokenizer
    return TruncatingTokenizer(tokenizer, mode, max_seq_length - 2)
