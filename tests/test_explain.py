"""predict.py --explain (issue 33): occlusion in-process with a stand-in model, then a tiny
BERT trained on reviews decided by one word: that word ranks first, and the --html page
parses and holds every sentence, messy text included."""
import html.parser
import json

import numpy as np
import pytest

import predict
from conftest import run_train
from imdb_bert.serving import explain
from test_calibration import one_word_rows, write_csv
from test_own_data import training_flags
from test_predict import run_predict


def stand_in_log_probs(texts):
    """A model that says Positive with probability 0.9 when "great" is in the text, else
    0.2; "not" halves what it would say."""
    positive = np.array([(0.9 if "great" in text.split() else 0.2)
                         * (0.5 if "not" in text.split() else 1.0) for text in texts])
    return np.log(np.stack([1 - positive, positive], axis=1))


def explain_all(sentences, max_words=explain.MAX_WORDS, batch_size=3):
    """(log-probabilities, explanation) of each sentence, fed to Occlusion batch by batch."""
    occlusion = explain.Occlusion(sentences, max_words)
    inputs = occlusion.inputs
    done = []
    for start in range(0, len(inputs), batch_size):
        done += occlusion.add(stand_in_log_probs(inputs[start:start + batch_size]))
    assert len(done) == len(sentences) and occlusion.pending == []
    return done


def test_a_words_score_is_the_drop_of_the_predicted_labels_probability_without_it():
    [(log_probs, words)] = explain_all(["a  great\tfilm not"])
    assert np.exp(log_probs) == pytest.approx([0.55, 0.45])  # Negative: 1 - 0.9 * 0.5
    assert [word["word"] for word in words] == ["a", "great", "film", "not"]
    # Without "great": P(Negative) = 1 - 0.2 * 0.5 = 0.9, up 0.35; without "not": 0.1.
    assert [word["score"] for word in words] == pytest.approx([0, -0.35, 0, 0.45])
    assert explain.marked("a  great\tfilm not", words) == "a  great\tfilm **not**"
    assert explain_all(["", "   "]) == [(pytest.approx(np.log([0.8, 0.2])), [])] * 2


def test_long_sentences_leave_out_runs_of_words_and_cost_at_most_max_words_plus_one():
    sentence = " ".join(["filler"] * 8 + ["great", "end"])
    assert len(explain.Occlusion([sentence], 4).inputs) == 5  # runs of 3, 3, 3 and 1 words
    [(_, words)] = explain_all([sentence], max_words=4)
    assert [word["score"] for word in words] == pytest.approx([0] * 6 + [0.7] * 3 + [0])
    assert len(explain.Occlusion([sentence], 64).inputs) == 11


def test_the_plain_line_marks_the_top_words():
    words = [{"word": w, "score": s} for w, s in
             (("so", 0.01), ("great", 0.6), ("a", -0.2), ("\x1bfilm", 0.3), ("yes", 0.0))]
    item = predict.prediction("so great a \x1bfilm yes", np.log([0.1, 0.9]),
                              ["Negative", "Positive"], explanation=words)
    assert predict.plain_line(item) == ("Positive\t0.9000\t[-2.3026, -0.1054]\t"
                                        "**so** **great** a **\\u001bfilm** yes")


class Sentences(html.parser.HTMLParser):
    """The text of each <div class="sentence"> of a page, and whether any <script> is."""

    def __init__(self):
        super().__init__()
        self.texts, self.depth, self.scripts = [], 0, 0

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        if tag == "div" and ("class", "sentence") in attrs:
            self.texts.append("")
            self.depth = 1
        elif self.depth and tag == "div":
            self.depth += 1

    def handle_endtag(self, tag):
        if self.depth and tag == "div":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.texts[-1] += data


MESSY = ["great <br /><br />film & \"friends\" \U0001F600 caf\u00e9",
         "awful\x85next line, a bell\x07 and DEL\x7f </div><script>alert(1)</script>",
         "terrible &amp; &lt;not&gt; an entity\u2028x"]


def test_the_html_page_escapes_what_reviews_hold():
    sentence = MESSY[1] + " \udcff"  # a lone surrogate: an undecodable byte of an argument
    words = [{"word": w, "score": 0.1} for w in sentence.split()]
    page = explain.html_page([{"sentence": sentence, "label": "<neg>", "explanation": words,
                               "probabilities": [0.8, 0.2]}], temperature=1.5)
    page.encode("utf-8")  # writable as it is
    parsed = Sentences()
    parsed.feed(page)
    assert parsed.scripts == 0
    assert parsed.texts == ["<neg> 0.8000" + sentence.replace("\x85", "\\u0085").replace(
        "\x07", "\\u0007").replace("\x7f", "\\u007f").replace("\udcff", "\\udcff")]
    assert "temperature 1.5000" in page and "http" not in page and "<script" not in page


@pytest.fixture(scope="module")
def one_word_run(tiny_module, tmp_path_factory):
    """The output dir of a run on reviews whose one sentiment word decides the label: 300
    reviews, a third of them without one and labelled at random, so that without its word
    a review is a toss-up whichever its label (with every review holding a word, the model
    learnt one label as the default and a word of that label barely counted); 10 epochs at
    1.5e-3, which classify every test review right."""
    folder = tmp_path_factory.mktemp("explain")
    output_dir = str(folder / "OUTPUT_Bert")
    result = run_train(*training_flags(
        output_dir, tiny_module, "--train-file",
        write_csv(folder / "train.csv", one_word_rows(11, 300, wordless=1 / 3)),
        "--test-file", write_csv(folder / "test.csv", one_word_rows(12, 30)),
        learning_rate="1.5e-3"))
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


def test_the_deciding_word_ranks_first_and_the_page_holds_every_sentence(one_word_run,
                                                                         tmp_path):
    rows = one_word_rows(13, 40)
    sentences = [row[0] for row in rows] + MESSY
    page_path = tmp_path / "explained.html"
    result = run_predict("--output-dir", one_word_run, "--json", "--explain", "--html",
                         str(page_path), *sentences)
    assert result.returncode == 0, result.stderr[-3000:]
    items = json.loads(result.stdout)
    for item, sentence in zip(items, sentences):
        assert [word["word"] for word in item["explanation"]] == sentence.split()
    first = [max(item["explanation"], key=lambda word: word["score"])["word"] == row[2]
             for item, row in zip(items, rows)]
    assert sum(first) >= 0.9 * len(rows)
    parsed = Sentences()
    parsed.feed(page_path.read_text(encoding="utf-8"))
    assert len(parsed.texts) == len(sentences)
    for text, item in zip(parsed.texts, items):
        assert text == "%s %.4f%s" % (item["label"], max(item["probabilities"]),
                                      explain.NOT_IN_HTML.sub(
                                          lambda m: "\\u%04x" % ord(m.group()),
                                          item["sentence"]))


def test_html_needs_explain():
    result = run_predict("--html", "page.html", "great film")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --html writes the page of --explain: pass --explain too.")
