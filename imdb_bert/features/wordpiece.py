"""bert's FullTokenizer (tokenization.py of bert-tensorflow) without TensorFlow: the same
word pieces for the same vocab, text and casing (tests/test_wordpiece.py checks it against
bert's). bert's module imports TensorFlow only to read the vocab; predict.py's ONNX path,
which must not load TensorFlow, tokenizes with this one.

bert's steps, in order: drop NUL, U+FFFD and control characters, turn whitespace into
spaces, put spaces around CJK ideographs, split at whitespace; if uncased, lowercase and
strip accents (NFD, drop Mn); split off punctuation; then greedy longest-match word pieces
("##" inside a word), [UNK] for a word with no pieces or longer than 200 characters.
"""
import unicodedata

CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
MAX_WORD_CHARS = 200


def load_vocab(vocab_file):
    """{piece: id}: one piece a line, stripped, the first line of a repeated piece counts."""
    vocab = {}
    with open(vocab_file, encoding="utf-8", newline="\n") as f:
        for line in f:
            vocab.setdefault(line.strip(), len(vocab))
    return vocab


def is_whitespace(char):
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char):
    return char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")


def is_punctuation(char):
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_cjk(char):
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_RANGES)


def clean(text):
    """Control characters, NUL and U+FFFD dropped, whitespace made spaces, CJK spaced."""
    out = []
    for char in text:
        if char in "\x00\ufffd" or is_control(char):
            continue
        if is_whitespace(char):
            out.append(" ")
        elif is_cjk(char):
            out.append(" %s " % char)
        else:
            out.append(char)
    return "".join(out)


def strip_accents(word):
    return "".join(c for c in unicodedata.normalize("NFD", word)
                   if unicodedata.category(c) != "Mn")


def split_punctuation(word):
    pieces, current = [], []
    for char in word:
        if is_punctuation(char):
            if current:
                pieces.append("".join(current))
                current = []
            pieces.append(char)
        else:
            current.append(char)
    if current:
        pieces.append("".join(current))
    return pieces


class FullTokenizer:
    """tokenize() and convert_tokens_to_ids() as bert's FullTokenizer has them."""

    def __init__(self, vocab_file, do_lower_case=True):
        self.vocab = load_vocab(vocab_file)
        self.do_lower_case = do_lower_case

    def words(self, text):
        words = []
        for word in clean(text).split():
            if self.do_lower_case:
                word = strip_accents(word.lower())
            words += split_punctuation(word)
        return words

    def word_pieces(self, word):
        if len(word) > MAX_WORD_CHARS:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
            else:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        return [piece for word in self.words(text) for piece in self.word_pieces(word)]

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[token] for token in tokens]
