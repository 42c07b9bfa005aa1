"""predict.py --explain: which words decided each prediction, by occlusion. Every sentence
goes to the model again once per word, with that word left out, in the same batches and
through the same model (ONNX, SavedModel or checkpoint) as the sentences themselves; a
word's score is how much the predicted label's probability drops without it (negative:
the label is surer without it).

A sentence of n words costs n + 1 model inputs. Above `max_words` words, runs of
ceil(n / max_words) consecutive words are left out together (each word of a run gets the
run's score), so no sentence costs more than max_words + 1 inputs.

Nothing here knows the model: Occlusion makes the inputs and turns their log-probabilities
into explanations; marked() and html_page() show them.
"""
import re

import numpy as np

WORD = re.compile(r"\S+")
TOP_WORDS = 3  # the words the plain output marks
# --explain-max-words: a review of IMDB's mean length (about 230 words) costs 65 inputs, in
# runs of 4 words; the notebook's sentences, a word each.
MAX_WORDS = 64

# Characters HTML does not allow as text (C0 and C1 controls but tab and newline, DEL) and
# lone surrogates (from undecodable bytes in a command-line argument): shown as \uXXXX, as
# predict.py's plain output shows controls.
NOT_IN_HTML = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>predict.py --explain</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; line-height: 1.8; }}
.sentence {{ border-top: 1px solid #ccc; padding: 0.6em 0; white-space: pre-wrap; }}
.label {{ font-weight: bold; margin-right: 1em; }}
.word {{ border-radius: 3px; padding: 0 1px; }}
</style>
</head>
<body>
<h1>Which words decided</h1>
<p>Each word's background: <span style="background: rgba(0, 160, 0, 0.6)">green</span> when
the predicted label's probability drops without it, <span style="background: rgba(220, 0,
0, 0.6)">red</span> when it rises; the stronger, the larger that change, relative to the
sentence's largest. Hover over a word for its score.{note}</p>
{sentences}
</body>
</html>
"""


def word_spans(sentence):
    """(start, end) of each word (a run of non-space characters) of `sentence`."""
    return [match.span() for match in WORD.finditer(sentence)]


def left_out_runs(spans, max_words):
    """The runs of word spans left out together: one word each, or for more than
    `max_words` words, ceil(n / max_words) consecutive words each."""
    size = max(1, -(-len(spans) // max_words))
    return [spans[i:i + size] for i in range(0, len(spans), size)]


def without(sentence, run):
    """`sentence` with the words of `run` (consecutive spans) left out."""
    return sentence[:run[0][0]] + sentence[run[-1][1]:]


class Occlusion:
    """The model inputs of --explain (each sentence, then each of its copies with a run of
    words left out), and as their log-probabilities come in, in input order, each
    sentence's log-probabilities and explanation."""

    def __init__(self, sentences, max_words):
        self.sentences = sentences
        self.runs = [left_out_runs(word_spans(sentence), max_words) for sentence in sentences]
        self.inputs = [text for sentence, runs in zip(sentences, self.runs)
                       for text in [sentence] + [without(sentence, run) for run in runs]]
        self.pending = []  # log-probabilities of the inputs of the next, unfinished sentence
        self.explained = 0

    def add(self, log_probs):
        """[(log-probabilities, explanation)] of the sentences whose inputs these
        log-probabilities (of the next inputs) complete."""
        self.pending.extend(log_probs)
        done = []
        while self.explained < len(self.sentences) and \
                len(self.pending) > len(self.runs[self.explained]):
            runs = self.runs[self.explained]
            rows, self.pending = self.pending[:len(runs) + 1], self.pending[len(runs) + 1:]
            done.append((rows[0], explanation(self.sentences[self.explained], runs, rows[0],
                                              rows[1:])))
            self.explained += 1
        return done


def explanation(sentence, runs, log_probs, left_out_log_probs):
    """[{"word", "score"}] of every word in text order: the drop of the predicted label's
    probability when the word's run is left out."""
    predicted = int(np.argmax(log_probs))
    probability = float(np.exp(log_probs[predicted]))
    return [{"word": sentence[start:end],
             "score": probability - float(np.exp(without_run[predicted]))}
            for run, without_run in zip(runs, left_out_log_probs) for start, end in run]


def top_words(words):
    """The indexes of the TOP_WORDS highest-scoring words whose score is above 0."""
    ranked = sorted(range(len(words)), key=lambda i: -words[i]["score"])
    return {i for i in ranked[:TOP_WORDS] if words[i]["score"] > 0}


def marked(sentence, words):
    """`sentence` with its top words (by their `words` scores) between ** and **."""
    top = top_words(words)
    pieces, end = [], 0
    for i, (start, stop) in enumerate(word_spans(sentence)):
        pieces.append(sentence[end:start])
        pieces.append("**%s**" % sentence[start:stop] if i in top else sentence[start:stop])
        end = stop
    return "".join(pieces) + sentence[end:]


def html_text(text):
    """`text` as HTML text: markup characters escaped, what HTML does not allow shown as
    \\uXXXX."""
    import html  # imported here: its entity tables cost predict.py's start-up 5-15 ms
    return html.escape(NOT_IN_HTML.sub(lambda m: "\\u%04x" % ord(m.group()), text))


def html_sentence(item):
    """One sentence's <div>: its label and probability, then its words coloured by score
    with the text between them as it is."""
    words = item["explanation"]
    largest = max([abs(word["score"]) for word in words] + [1e-12])
    pieces, end = [], 0
    sentence = item["sentence"]
    for word, (start, stop) in zip(words, word_spans(sentence)):
        colour = "0, 160, 0" if word["score"] >= 0 else "220, 0, 0"
        pieces.append(html_text(sentence[end:start]))
        pieces.append('<span class="word" style="background: rgba(%s, %.2f)" '
                      'title="score %.4f">%s</span>'
                      % (colour, 0.7 * abs(word["score"]) / largest, word["score"],
                         html_text(sentence[start:stop])))
        end = stop
    pieces.append(html_text(sentence[end:]))
    return '<div class="sentence"><span class="label">%s %.4f</span>%s</div>' % (
        html_text(str(item["label"])), max(item["probabilities"]), "".join(pieces))


def html_page(items, temperature=None):
    """The page of --explain --html FILE: every item's sentence, self-contained."""
    note = "" if temperature is None else (
        " Probabilities calibrated with the temperature %.4f." % temperature)
    return PAGE.format(note=note, sentences="\n".join(html_sentence(item) for item in items))
