"""The PyTorch peer of bench/vs_pytorch.py, run in the peer's own virtualenv (.venv-peer,
make bench-peer), never in the project's: Hugging Face BertForSequenceClassification with
a random config of the module's shape, trained and evaluated as its users run it (default
threads, torch.inference_mode for evaluation, the default attention, torch.autocast for
bf16). Prints one JSON line: train and eval examples/s.

    .venv-peer/bin/python bench/peer_hf.py --vocab-file V --data-dir D --layers 6 ...

With --eval-file (bench/short_texts.py) it evaluates that CSV's rows (text, label and, for
pairs, text_b) instead of the aclImdb tree's, each batch padded to its longest member as
its users run short texts (the tokenizer's padding="longest", DataCollatorWithPadding's
way), and trains only with --train-steps above 0.
"""
import argparse
import csv
import json
import os
import time

import torch
from transformers import (BertConfig, BertForSequenceClassification, BertTokenizerFast,
                          get_linear_schedule_with_warmup)


def reviews(data_dir, split, count):
    """`count` (text, label) pairs of the aclImdb tree, alternating the classes."""
    folders = [os.path.join(data_dir, "aclImdb", split, kind) for kind in ("neg", "pos")]
    names = [sorted(os.listdir(folder)) for folder in folders]
    pairs = []
    for i in range(count):
        label = i % 2
        with open(os.path.join(folders[label], names[label][i // 2 % len(names[label])]),
                  encoding="utf-8") as f:
            pairs.append((f.read(), label))
    return pairs


def file_rows(path):
    """(text or (text, text_b), label) of each row of the CSV file at `path`."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [((row["text"], row["text_b"]) if "text_b" in row else row["text"],
             int(row["label"])) for row in rows]


def batches(tokenizer, pairs, batch_size, max_seq_length, padding="max_length"):
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        texts = [text for text, _ in chunk]
        if isinstance(texts[0], tuple):  # sentence pairs: the tokenizer's two arguments
            texts = [list(column) for column in zip(*texts)]
        else:
            texts = [texts]
        inputs = tokenizer(*texts, truncation=True, padding=padding,
                           max_length=max_seq_length, return_tensors="pt")
        yield inputs, torch.tensor([label for _, label in chunk])


def train_rate(model, data, steps, bf16):
    """Examples/s of `steps` training steps, timed from the second step on; the notebook's
    optimiser: AdamW 2e-5, weight decay 0.01, epsilon 1e-6, 10 % warm-up, clip 1.0."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01, eps=1e-6)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    model.train()
    examples, start = 0, None
    for step, (inputs, labels) in enumerate(data[:steps]):
        if step == 1:
            examples, start = 0, time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        examples += len(labels)
    return examples / (time.perf_counter() - start)


def eval_rate(model, data, bf16):
    model.eval()
    examples, start = 0, time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for inputs, labels in data:
            model(**inputs).logits.argmax(-1)
            examples += len(labels)
    return examples / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("layers", "hidden", "heads", "intermediate_size", "max_position_embeddings",
                 "train_steps", "eval_examples", "batch_size", "max_seq_length"):
        p.add_argument("--" + name.replace("_", "-"), type=int, required=True)
    p.add_argument("--vocab-file", required=True)
    p.add_argument("--data-dir", help="the aclImdb tree (not needed with --eval-file and "
                                       "--train-steps 0)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--eval-file", help="evaluate this CSV's rows, each batch padded to its "
                                       "longest (see above)")
    args = p.parse_args()
    torch.manual_seed(42)
    tokenizer = BertTokenizerFast(vocab_file=args.vocab_file, do_lower_case=True)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings, num_labels=2))
    if args.eval_file:
        test = list(batches(tokenizer, file_rows(args.eval_file), args.batch_size,
                            args.max_seq_length, padding="longest"))
    else:
        test = list(batches(tokenizer, reviews(args.data_dir, "test", args.eval_examples),
                            args.batch_size, args.max_seq_length))
    rates = {}
    if args.train_steps:
        train = list(batches(tokenizer, reviews(args.data_dir, "train",
                                                args.train_steps * args.batch_size),
                             args.batch_size, args.max_seq_length))
        rates["train"] = train_rate(model, train, args.train_steps, args.bf16)
    rates["eval"] = eval_rate(model, test, args.bf16)
    print(json.dumps(dict(rates, torch=torch.__version__, threads=torch.get_num_threads())))


if __name__ == "__main__":
    main()
