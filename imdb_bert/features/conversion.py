"""Steps 3-5 of the notebook: InputExamples, the tokenizer that comes with the Hub
module, and InputFeatures (input_ids, input_mask, segment_ids, label_id)."""
from tqdm import tqdm

from imdb_bert import device
from imdb_bert.compat import hub, run_classifier, tf, tokenization
from imdb_bert.features.fast_tokenizer import FastTokenizer, encode_inputs
from imdb_bert.features.truncation import HEAD, truncating
from imdb_bert.tasks import SINGLE_LABEL


def tokenization_info(module_path):
    """(vocab_file, do_lower_case) from the module's "tokenization_info" signature."""
    with tf.Graph().as_default():
        bert_module = hub.Module(module_path)
        info = bert_module(signature="tokenization_info", as_dict=True)
        with tf.Session(config=device.base_session_config()) as sess:
            vocab_file, do_lower_case = sess.run([info["vocab_file"], info["do_lower_case"]])
    return vocab_file.decode("utf-8"), bool(do_lower_case)


def create_tokenizer(vocab_file, do_lower_case, fast=False):
    """bert's FullTokenizer, or with `fast` a FastTokenizer that gives the same ids."""
    if fast:
        return FastTokenizer(vocab_file, do_lower_case)
    return tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)


def create_tokenizer_from_hub_module(module_path, fast=False):
    vocab_file, do_lower_case = tokenization_info(module_path)
    return create_tokenizer(vocab_file, do_lower_case, fast)


def make_examples(sentences, labels, pairs=None):
    """InputExamples of single sentences, or with `pairs` of sentence pairs (text_b)."""
    pairs = [None] * len(labels) if pairs is None else pairs
    return [run_classifier.InputExample(guid=None, text_a=sentence, text_b=pair, label=label)
            for sentence, pair, label in zip(sentences, pairs, labels)]


def convert_examples(examples, label_list, max_seq_length, tokenizer, desc="Converting",
                     truncate=HEAD, task=SINGLE_LABEL):
    """Step 5: run_classifier.convert_examples_to_features, with a progress bar; with a
    FastTokenizer the same features, many times faster. Either way the first examples are
    converted (and logged, as in the notebook) by run_classifier itself. `truncate`: the
    pieces a longer text keeps (truncation.py). Multi-label and regression (`task`): each
    example's label is what the model learns (a 0/1 tuple, a number), kept as it is."""
    if task != SINGLE_LABEL:
        features = convert_examples(
            [run_classifier.InputExample(guid=None, text_a=example.text_a,
                                         text_b=example.text_b, label=0)
             for example in examples], [0], max_seq_length, tokenizer, desc, truncate)
        for feature, example in zip(features, examples):
            feature.label_id = example.label
        return features
    tf.logging.info("Writing example 0 of %d" % len(examples))
    fast = isinstance(tokenizer, FastTokenizer)
    reference = truncating(tokenizer.reference if fast else tokenizer, truncate,
                           max_seq_length)
    logged = [run_classifier.convert_single_example(index, example, label_list,
                                                    max_seq_length, reference)
              for index, example in enumerate(examples[:5])]
    chunk = 2000 if fast else 1
    rest = examples[len(logged):]
    converted = []
    with tqdm(total=len(rest), desc=desc, unit=" examples", mininterval=1.0, leave=False,
              disable=len(examples) < 1000) as bar:
        for start in range(0, len(rest), chunk):
            part = rest[start:start + chunk]
            if fast:
                converted += fast_convert_examples(part, label_list, max_seq_length,
                                                   tokenizer, truncate)
            else:
                converted += [run_classifier.convert_single_example(
                    len(logged) + start, part[0], label_list, max_seq_length, reference)]
            bar.update(len(part))
    return logged + converted


def fast_convert_examples(examples, label_list, max_seq_length, tokenizer, truncate=HEAD):
    """The same InputFeatures as run_classifier.convert_examples_to_features (single
    sentences, or pairs with text_b); `tokenizer` is a FastTokenizer."""
    label_map = {label: i for i, label in enumerate(label_list)}
    pairs = [example.text_b for example in examples]
    encoded = encode_inputs([example.text_a for example in examples],
                            None if all(pair is None for pair in pairs) else pairs,
                            max_seq_length, tokenizer, truncate)
    return [run_classifier.InputFeatures(
        input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids,
        label_id=label_map[example.label], is_real_example=True)
        for example, input_ids, input_mask, segment_ids in zip(examples, *encoded)]
