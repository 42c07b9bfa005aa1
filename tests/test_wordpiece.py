"""imdb_bert.features.wordpiece (no TensorFlow) gives the word pieces of bert's FullTokenizer."""
import pytest

from imdb_bert.compat import tokenization
from imdb_bert.features import wordpiece
from imdb_bert.tools.make_hub_module import tiny_vocab
from test_fast_features import POOL, VARIED_TEXTS, random_texts


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    """The tiny vocab plus a piece and a ##piece for every character the texts hold, some
    longer pieces, a repeated line and a piece with spaces around it."""
    chars = sorted(set("".join(VARIED_TEXTS + POOL)) - set(" \n"))
    pieces = (tiny_vocab() + chars + ["##" + c for c in chars]
              + ["caf", "##e\u0301", "great", "##est", "film", "good", "\u00fcber", "[CLS]",
                 "  spaced  ", "\u4e2d\u6587"])
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return str(path)


def sweep_texts():
    """Every character up to U+3000 and every 17th beyond, between letters, spaces and
    itself."""
    codes = list(range(0x3000)) + list(range(0x3000, 0x30000, 17))
    return ["x{0}y {0}{0} ab{0}".format(chr(c)) for c in codes if not 0xD800 <= c < 0xE000]


@pytest.mark.parametrize("do_lower_case", [True, False], ids=["uncased", "cased"])
def test_same_pieces_and_ids_as_bert(vocab_file, do_lower_case):
    bert = tokenization.FullTokenizer(vocab_file, do_lower_case)
    mine = wordpiece.FullTokenizer(vocab_file, do_lower_case)
    assert mine.vocab == dict(bert.vocab)
    texts = VARIED_TEXTS + random_texts(300, seed=1) + sweep_texts()
    unknown = 0
    for text in texts:
        pieces = bert.tokenize(text)
        assert mine.tokenize(text) == pieces, repr(text)
        assert mine.convert_tokens_to_ids(pieces) == bert.convert_tokens_to_ids(pieces)
        unknown += "[UNK]" in pieces
    # The texts reach both outcomes of the word-piece search.
    assert 0 < unknown < len(texts)
