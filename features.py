"""Steps 3-5 of the notebook: InputExamples, the tokenizer that comes with the Hub
module, and InputFeatures (input_ids, input_mask, segment_ids, label_id)."""
from tqdm import tqdm

from compat import hub, run_classifier, tf, tokenization


def tokenization_info(module_path):
    """(vocab_file, do_lower_case) from the module's "tokenization_info" signature."""
    with tf.Graph().as_default():
        bert_module = hub.Module(module_path)
        info = bert_module(signature="tokenization_info", as_dict=True)
        with tf.Session() as sess:
            vocab_file, do_lower_case = sess.run([info["vocab_file"], info["do_lower_case"]])
    return vocab_file.decode("utf-8"), bool(do_lower_case)


def create_tokenizer_from_hub_module(module_path):
    vocab_file, do_lower_case = tokenization_info(module_path)
    return tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)


def make_examples(sentences, labels):
    return [run_classifier.InputExample(guid=None, text_a=sentence, text_b=None, label=label)
            for sentence, label in zip(sentences, labels)]



def convert_examples_to_features(examples, label_list, max_seq_length, tokenizer,
                                 desc="Converting"):
    """run_classifier.convert_examples_to_features (the same per-example conversion and
    log lines), with a progress bar."""
    tf.logging.info("Writing example 0 of %d" % len(examples))
    return [run_classifier.convert_single_example(index, example, label_list, max_seq_length,
                                                  tokenizer)
            for index, example in enumerate(tqdm(examples, desc=desc, unit=" examples",
                                                 mininterval=1.0, leave=False,
                                                 disable=len(examples) < 1000))]
