"""predict.py's sentence pairs and table files: the second texts of a model trained with
--text-pair-column, from --pair (one per sentence, in order) or from the run's pair column
of a --file with a .csv, .tsv or .jsonl suffix, whose text column (and pair column) are
read as train.py read them, so the user's own test file is classified as it is."""
import os

from imdb_bert.errors import UserError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")


def is_table(path):
    return bool(path) and path != "-" and os.path.splitext(path)[1].lower() in TABLE_SUFFIXES


def sentences_and_pairs(args, settings, sentences, pairs):
    """(sentences, their second texts or None): the command line's sentences with their
    --pair texts (`pairs`, None without), then the rows of a table --file."""
    pair_column = settings.get("text_pair_column")
    pairs = list(pairs or [])
    if pairs and not pair_column:
        raise UserError("--pair: the model in %s was trained on single texts; leave --pair "
                        "out." % args.output_dir)
    if pair_column and len(pairs) != len(sentences):
        raise UserError("The model in %s classifies sentence pairs: give one --pair after "
                        "each sentence (%d sentences, %d --pair)."
                        % (args.output_dir, len(sentences), len(pairs)))
    if pair_column and any(not text.strip() for text in sentences + pairs):
        raise UserError("A sentence pair with an empty text: give both texts of each pair.")
    if is_table(args.file):
        texts, table_pairs = read_table(args.file, settings)
        sentences, pairs = sentences + texts, pairs + (table_pairs or [])
    if not sentences:
        raise UserError("No sentences to classify: give them as arguments or with --file.")
    return sentences, pairs if pair_column else None


def read_table(path, settings):
    """(texts, second texts or None) of a .csv, .tsv or .jsonl file, in the columns the
    run was trained on (model_settings.json)."""
    from imdb_bert.data import text_files  # pandas: only for table files
    text_column = settings.get("text_column")
    if not text_column:
        raise UserError("--file %s: the model in this folder was trained on aclImdb, which "
                        "names no column; give a text file, one sentence per line." % path)
    columns = [(text_column, "the run's text column")]
    pair_column = settings.get("text_pair_column")
    if pair_column:
        columns.append((pair_column, "the run's --text-pair-column"))
    if not os.path.isfile(path):
        raise UserError("--file %s: no such file." % path)
    cells, numbers = text_files.read_cells(path, columns)
    texts = [text_files.as_text(cell) for cell in cells[0]]
    text_files.check_values(path, texts, numbers, "text", text_column)
    if not pair_column:
        return texts, None
    pairs = [text_files.as_text(cell) for cell in cells[1]]
    text_files.check_values(path, pairs, numbers, "second text", pair_column)
    return texts, pairs
