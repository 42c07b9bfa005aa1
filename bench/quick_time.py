"""How long `make quick` takes, without the network to Google's checkpoints: the real
`make quick` on a random checkpoint of BERT-Mini's shape (4 layers, hidden 256, 4 heads,
BERT's vocab size 30,522), zipped as Google zips it, and generated reviews of IMDB's length
(every one fills the 128 word pieces, as most real reviews do) in aclImdb's layout. The
time depends on the model's shape and the sequence length, not on the weights or the words.

    python bench/quick_time.py                # what make quick runs, then the same again
    python bench/quick_time.py INSTALLED=     # in a checkout whose .venv is installed already

Arguments of the form NAME=VALUE go to make as they are.
"""
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile

from predict_startup import machine, real_length_review

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BERT_MINI = dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4,
                 intermediate_size=1024, max_position_embeddings=512, type_vocab_size=2)
BERT_VOCAB_SIZE = 30522
# What make quick samples (2,000 and 1,000), with the reviews split evenly by class.
REVIEWS_PER_CLASS = {"train": 1000, "test": 500}


def write_checkpoint_zip(folder):
    """folder/uncased_L-4_H-256_A-4.zip: random weights, its files at the top as in the
    small BERTs' zips; the exporter's tiny vocab padded to BERT's size."""
    from imdb_bert.compat import modeling, tf
    from imdb_bert.tools.make_hub_module import tiny_vocab
    vocab = tiny_vocab()
    vocab += ["[unused%d]" % i for i in range(99, 99 + BERT_VOCAB_SIZE - len(vocab))]
    bert_config = modeling.BertConfig(vocab_size=len(vocab), **BERT_MINI)
    files = {"vocab.txt": "\n".join(vocab) + "\n", "bert_config.json": bert_config.to_json_string()}
    checkpoint = os.path.join(folder, "checkpoint")
    os.makedirs(checkpoint)
    for name, text in files.items():
        with open(os.path.join(checkpoint, name), "w") as f:
            f.write(text)
    with tf.Graph().as_default():
        modeling.BertModel(bert_config, is_training=False,
                           input_ids=tf.placeholder(tf.int32, [None, None]))
        with tf.Session(config=tf.ConfigProto(device_count={"GPU": 0})) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, os.path.join(checkpoint, "bert_model.ckpt"))
    path = os.path.join(folder, "uncased_L-4_H-256_A-4.zip")
    with zipfile.ZipFile(path, "w") as archive:
        for name in os.listdir(checkpoint):
            archive.write(os.path.join(checkpoint, name), name)
    return path


def write_reviews(folder):
    """folder/aclImdb with real-length generated reviews; returns folder (--data-dir)."""
    rng = random.Random(0)
    for split, count in REVIEWS_PER_CLASS.items():
        for label, polarity, rating in (("pos", 1, 9), ("neg", 0, 2)):
            class_dir = os.path.join(folder, "aclImdb", split, label)
            os.makedirs(class_dir)
            for number in range(count):
                with open(os.path.join(class_dir, "%d_%d.txt" % (number, rating)), "w") as f:
                    f.write(real_length_review(rng, polarity))
    return folder


def megabytes(folder):
    return sum(os.path.getsize(os.path.join(parent, name))
               for parent, _, names in os.walk(folder) for name in names) / 1e6


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_make_quick(make_variables):
    """(seconds, CPU seconds) of one make quick. The CPU seconds say more than the seconds
    on a machine that other work shares."""
    start, cpu_start = time.perf_counter(), children_cpu_seconds()
    subprocess.run(["make", "--no-print-directory", "quick", *make_variables], cwd=ROOT,
                   check=True)
    return time.perf_counter() - start, children_cpu_seconds() - cpu_start


def main():
    started_on = machine()
    with tempfile.TemporaryDirectory() as tmp:
        make_variables = [
            "QUICK_MODEL=%s" % write_checkpoint_zip(tmp),
            "QUICK_HUB=%s" % os.path.join(tmp, "hub"),
            "QUICK_OUTPUT=%s" % os.path.join(tmp, "OUTPUT_Bert_quick"),
            "ARGS=--data-dir %s" % write_reviews(os.path.join(tmp, "data")),
            *sys.argv[1:]]
        seconds, cpu_seconds = timed_make_quick(make_variables)
        again, _ = timed_make_quick(make_variables)
        disk = (megabytes(os.path.join(tmp, "OUTPUT_Bert_quick")),
                megabytes(os.path.join(tmp, "hub")))
    print("make quick: %.0f s (%.1f min), %.0f CPU seconds; run again (module made, training "
          "done): %.0f s; disk: output dir %.0f MB, Hub module %.0f MB. %s"
          % (seconds, seconds / 60, cpu_seconds, again, *disk, started_on))


if __name__ == "__main__":
    main()
