"""Word-piece ids many times faster than run_classifier.convert_examples_to_features, with
exactly its input_ids, input_mask and segment_ids; without TensorFlow (predict.py's ONNX
path uses it too).

Two savings, both exact:
  - the `tokenizers` package's WordPiece (Rust) with bert's settings does the tokenizing;
    a text holding a character on which it was not seen to agree with bert's FullTokenizer
    (its Unicode tables are older than Python's: private-use characters, newer punctuation,
    some combining marks) goes to the FullTokenizer instead (wordpiece.py's copy of it,
    which needs no TensorFlow);
  - only the first max_seq_length - 2 word pieces are kept, so only a prefix of each review
    is tokenized: BERT tokenizes word by word, so the pieces of a prefix that ends before a
    space are the first pieces of the whole text. (--truncate tail and head+tail keep the
    last pieces too: those tokenize the whole text.)
"""
import functools

from tokenizers import BertWordPieceTokenizer

from imdb_bert.features import wordpiece
from imdb_bert.features.truncation import HEAD, keep, truncate_pair

# Printable ASCII, tab and newlines: the same in both (and checked by the tests).
SAFE = frozenset(chr(c) for c in range(0x20, 0x7F)) | {"\t", "\n", "\r"}
# Probes that put a character next to letters, spaces, digits, punctuation and itself.
PROBES = ("x{}y", "x {} y", "{}{}", "ab{}", "{}ab", "1{}.", "Ab{}cd")


class FastTokenizer:
    """Word-piece ids as bert's FullTokenizer(vocab_file, do_lower_case) gives them."""

    def __init__(self, vocab_file, do_lower_case):
        self.vocab_file = vocab_file
        # For printable-ASCII text bert's normalisation is only lowercasing (no accents, no
        # CJK, tabs and newlines split words like spaces): done by str.lower, the Rust
        # normalizer can be skipped.
        self.ascii = BertWordPieceTokenizer(vocab_file, lowercase=False, clean_text=False,
                                            handle_chinese_chars=False, strip_accents=False)
        self.ascii._tokenizer.normalizer = None
        self.ascii._tokenizer.model.max_input_chars_per_word = 200
        self.do_lower_case = do_lower_case
        self.agrees = {}  # character -> both tokenizers give the same ids around it
        self.fallbacks = 0  # texts that went to the FullTokenizer

    # The next two are made on first use: printable-ASCII text (most sentences) needs
    # neither, and each costs as much as self.ascii (the vocab read again), a one-sentence
    # predict.py's start-up.
    @functools.cached_property
    def reference(self):
        return wordpiece.FullTokenizer(self.vocab_file, self.do_lower_case)

    @functools.cached_property
    def fast(self):
        fast = BertWordPieceTokenizer(
            self.vocab_file, lowercase=self.do_lower_case, clean_text=True,
            handle_chinese_chars=True,
            strip_accents=None)  # None: accents go with lowercasing, as in bert
        fast._tokenizer.model.max_input_chars_per_word = 200  # bert's limit
        return fast

    def reference_ids(self, text):
        return self.reference.convert_tokens_to_ids(self.reference.tokenize(text))

    def fast_ids(self, texts):
        texts = list(texts)
        plain = [i for i, text in enumerate(texts) if SAFE.issuperset(text)]
        plain_set = set(plain)
        other = [i for i in range(len(texts)) if i not in plain_set]
        result = [None] * len(texts)
        lower = str.lower if self.do_lower_case else str
        for indices, ascii_only in ((plain, True), (other, False)):
            if not indices:
                continue  # self.fast is made only when a text needs it
            tokenizer, prepare = (self.ascii, lower) if ascii_only else (self.fast, str)
            # encode_batch_fast: the same ids as encode_batch, without character offsets.
            encodings = tokenizer._tokenizer.encode_batch_fast(
                [prepare(texts[i]) for i in indices], add_special_tokens=False)
            for i, encoding in zip(indices, encodings):
                result[i] = encoding.ids
        return result

    def is_safe(self, text):
        """Whether every character of `text` was seen to tokenize the same in both."""
        others = set(text) - SAFE
        unknown = others - self.agrees.keys()
        if unknown:
            probes = [(c, probe.format(c, c)) for c in unknown for probe in PROBES]
            fast = self.fast_ids(probe for _, probe in probes)
            for c in unknown:
                self.agrees[c] = True
            for (c, probe), ids in zip(probes, fast):
                if ids != self.reference_ids(probe):
                    self.agrees[c] = False
        return all(self.agrees[c] for c in others)

    def ids(self, texts, max_pieces, truncate=HEAD):
        """The first `max_pieces` word-piece ids of each text (with `truncate`, the ids
        that mode keeps)."""
        if truncate != HEAD:
            return [keep(ids, truncate, max_pieces) for ids in self.whole_ids(texts)]
        result = [None] * len(texts)
        heads, head_index = [], []
        for i, text in enumerate(texts):
            if self.is_safe(text):
                heads.append(head(text, max_pieces))
                head_index.append(i)
            else:
                self.fallbacks += 1
                result[i] = self.reference_ids(text)[:max_pieces]
        retry = []
        for i, text, ids in zip(head_index, heads, self.fast_ids(heads)):
            if len(ids) >= max_pieces or len(text) == len(texts[i]):
                result[i] = ids[:max_pieces]
            else:  # the head was too short (words with no pieces): the whole text
                retry.append(i)
        for i, ids in zip(retry, self.fast_ids(texts[i] for i in retry)):
            result[i] = ids[:max_pieces]
        return result

    def whole_ids(self, texts):
        """Every word-piece id of each text."""
        result, safe = [None] * len(texts), []
        for i, text in enumerate(texts):
            if self.is_safe(text):
                safe.append(i)
            else:
                self.fallbacks += 1
                result[i] = self.reference_ids(text)
        for i, ids in zip(safe, self.fast_ids(texts[i] for i in safe)):
            result[i] = ids
        return result


def head(text, max_pieces):
    """A prefix of `text` ending before a space and holding at least `max_pieces` words
    (each word gives at least one piece, except words of control characters only)."""
    parts = text.split(" ", max_pieces + 1)
    if len(parts) <= max_pieces + 1:
        return text
    return text[:len(text) - len(parts[-1]) - 1]


def encode(texts, max_seq_length, tokenizer, truncate=HEAD):
    """(input_ids, input_mask) of each text as run_classifier builds them for a single
    sentence ([CLS] pieces [SEP], zero padding); its segment_ids are all 0. `tokenizer` is
    a FastTokenizer; `truncate` the pieces a longer text keeps (truncation.py)."""
    vocab = tokenizer.reference.vocab
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    encoded = []
    for ids in tokenizer.ids(texts, max_seq_length - 2, truncate):
        input_ids = [cls_id] + ids + [sep_id]
        padding = [0] * (max_seq_length - len(input_ids))
        encoded.append((input_ids + padding, [1] * len(input_ids) + padding))
    return encoded


def encode_inputs(texts, pairs, max_seq_length, tokenizer, truncate=HEAD):
    """(input_ids, input_mask, segment_ids), each a list over the texts: of single texts
    (`pairs` None) or of pairs, as the model's inputs take them."""
    if pairs is None:
        encoded = [(ids, mask, [0] * max_seq_length)
                   for ids, mask in encode(texts, max_seq_length, tokenizer, truncate)]
    else:
        encoded = encode_pairs(texts, pairs, max_seq_length, tokenizer)
    return tuple(list(column) for column in zip(*encoded))


def encode_pairs(texts_a, texts_b, max_seq_length, tokenizer):
    """(input_ids, input_mask, segment_ids) of each pair as run_classifier builds them:
    [CLS] a [SEP] b [SEP], segment ids 0 up to the first [SEP] and 1 after it, the pair cut
    by truncate_pair to max_seq_length - 3 pieces. As in bert, a second text without pieces
    ("", None, only spaces) leaves a single text, cut to max_seq_length - 2."""
    vocab = tokenizer.reference.vocab
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    # Each text keeps at most these pieces, and truncate_pair only drops last ones: the
    # first pieces of each are enough.
    all_a = tokenizer.ids(texts_a, max_seq_length - 2)
    with_b = [i for i, text in enumerate(texts_b) if text]
    all_b = dict(zip(with_b, tokenizer.ids([texts_b[i] for i in with_b], max_seq_length - 3)))
    encoded = []
    for i, ids_a in enumerate(all_a):
        ids_b = all_b.get(i) or []
        if ids_b:
            ids_a = list(ids_a)
            truncate_pair(ids_a, ids_b, max_seq_length - 3)
            input_ids = [cls_id] + ids_a + [sep_id] + ids_b + [sep_id]
            segment_ids = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
        else:
            input_ids = [cls_id] + ids_a + [sep_id]
            segment_ids = [0] * len(input_ids)
        padding = [0] * (max_seq_length - len(input_ids))
        encoded.append((input_ids + padding, [1] * len(input_ids) + padding,
                        segment_ids + padding))
    return encoded
