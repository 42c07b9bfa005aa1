"""What predict.py says of each input for a multi-label or regression model (the
single-label lines and objects are predict.py's own): the --json/--jsonl object and the
plain line."""
import numpy as np

from imdb_bert.tasks import MULTI_LABEL


def answer(task, sentence, outputs, settings):
    """The --json object of one input: multi-label `labels` (those at or above the
    threshold, possibly none) and every label's probability; regression `value`."""
    if task == MULTI_LABEL:
        threshold = settings["threshold"]
        names = settings["label_names"]
        return {"sentence": sentence,
                "labels": [name for name, p in zip(names, outputs) if p >= threshold],
                "probabilities": [float(p) for p in outputs], "label_names": list(names),
                "threshold": threshold}
    return {"sentence": sentence, "value": float(np.asarray(outputs).reshape(-1)[0])}


def plain_text(item):
    """The plain line's fields before the sentence: the labels with their probabilities
    ("-" for none), or the value."""
    if "value" in item:
        return "%.4f" % item["value"]
    shown = ["%s %.4f" % (name, p) for name, p in zip(item["label_names"],
                                                      item["probabilities"])
             if name in item["labels"]]
    return ", ".join(shown) or "-"
