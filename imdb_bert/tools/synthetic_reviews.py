"""Generated reviews in aclImdb's layout, whose class shows in a few planted sentiment
words: what the tests, `make gpu-check` and the benchmarks train and predict on where the
real reviews cannot be downloaded."""
import os
import random

POSITIVE_WORDS = ["great", "excellent", "wonderful", "fantastic", "brilliant", "loved",
                  "superb", "amazing", "enjoyable", "perfect"]
NEGATIVE_WORDS = ["awful", "terrible", "horrible", "boring", "worst", "waste", "poor",
                  "dull", "hated", "stupid"]
FILLER_WORDS = ["the", "movie", "film", "story", "plot", "acting", "was", "is", "a", "and",
                "of", "it", "this", "characters", "director", "music", "scene", "ending",
                "i", "watched", "really", "very", "people", "time", "cast", "script"]


PER_CLASS = {"train": 100, "test": 50}  # reviews per class folder


def synthetic_review(rng, polarity, learnable=True, filler_words=(8, 16)):
    """A review whose class shows in a few sentiment words among neutral filler (between
    the two `filler_words` counts); not `learnable`: the same words for both classes."""
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(*filler_words))]
    signal = POSITIVE_WORDS if polarity == 1 else NEGATIVE_WORDS
    if not learnable:
        signal = POSITIVE_WORDS + NEGATIVE_WORDS
    for _ in range(3):
        words.insert(rng.randrange(len(words) + 1), rng.choice(signal))
    text = " ".join(words)
    endings = ["Really!", "What a film.", "10/10" if polarity else "1/10"]
    return text[0].upper() + text[1:] + ". <br /><br />" + rng.choice(
        endings if learnable else endings[:2])


def make_imdb_tree(root, seed=0, per_class=None, learnable=True, filler_words=(8, 16)):
    """Write root/aclImdb in the real layout, `per_class` reviews per class folder of each
    split (default PER_CLASS), `learnable` or not, of `filler_words` neutral words and a
    few signal words each; returns root."""
    rng = random.Random(seed)
    base = os.path.join(root, "aclImdb")
    review_id = 0
    for split, count in (per_class or PER_CLASS).items():
        for folder, polarity, ratings in (("pos", 1, (7, 8, 9, 10)), ("neg", 0, (1, 2, 3, 4))):
            os.makedirs(os.path.join(base, split, folder))
            for _ in range(count):
                name = "%d_%d.txt" % (review_id, rng.choice(ratings))
                with open(os.path.join(base, split, folder, name), "w", encoding="utf-8") as f:
                    f.write(synthetic_review(rng, polarity, learnable, filler_words))
                review_id += 1
        with open(os.path.join(base, split, "labeledBow.feat"), "w") as f:
            f.write("0 0:1\n")
        for kind in ("pos", "neg"):
            with open(os.path.join(base, split, "urls_%s.txt" % kind), "w") as f:
                f.write("http://www.imdb.com/title/tt0000000/usercomments\n")
    os.makedirs(os.path.join(base, "train", "unsup"))
    with open(os.path.join(base, "train", "unsup", "0_0.txt"), "w") as f:
        f.write("An unlabelled review that loading must ignore.")
    with open(os.path.join(base, "imdb.vocab"), "w") as f:
        f.write("the\n")
    return root
