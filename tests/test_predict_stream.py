"""predict.py on large files: output written batch by batch, --jsonl, a real SIGINT or
SIGTERM mid-file on each path, empty input, control characters (issue 23, section 3)."""
import json
import os
import random
import signal
import subprocess
import sys

import pytest

from conftest import ROOT
from test_predict import PLAIN_LINE, run_predict

SENTENCES = 5000
# What every line of the big file holds beside its words: non-ASCII, U+0085, an emoji.
MESSY_TAIL = " caf\u00e9\x85 \U0001F600"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """SENTENCES lines of the planted words: far more output than a pipe holds (64 KiB)."""
    rng = random.Random(0)
    words = ["great", "awful", "film", "plot", "the", "movie", "was", "boring", "superb"]
    path = tmp_path_factory.mktemp("big") / "reviews.txt"
    path.write_text("".join(" ".join(rng.choice(words) for _ in range(20)) + MESSY_TAIL + "\n"
                            for _ in range(SENTENCES)), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("flags, signum, jsonl", [
    ([], signal.SIGINT, False), ([], signal.SIGTERM, True),
    (["--no-onnx"], signal.SIGINT, True), (["--from-checkpoint"], signal.SIGINT, False)],
    ids=["onnx-sigint", "onnx-sigterm-jsonl", "savedmodel-sigint-jsonl",
         "checkpoint-sigint"])
def test_a_signal_mid_file_keeps_the_written_lines(trained, big_file, flags, signum, jsonl):
    """Lines come while the file is being classified; a real signal mid-file: every line
    written is whole and kept, stderr says how many of how many, exit 128 + the signal."""
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "predict.py"), "--output-dir", trained[0],
         "--file", big_file, "--batch-size", "8", *flags, *(["--jsonl"] if jsonl else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, cwd=ROOT)
    try:
        # Unbuffered, readline takes just these lines from the pipe: communicate() reads the
        # pipe itself and would never see what a buffered reader had taken beyond them.
        first = [process.stdout.readline().decode("utf-8") for _ in range(16)]  # streamed
        # Unread, the pipe is full long before the last sentence: predict.py is mid-file.
        assert process.poll() is None
        process.send_signal(signum)
        rest, stderr = (out.decode("utf-8") for out in process.communicate(timeout=120))
    finally:
        process.kill()
    lines = first + rest.splitlines(keepends=True)
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    assert ("%s: stopped. %d of %d sentences were classified and written.\n"
            % (signal.Signals(signum).name, len(lines), SENTENCES)) in stderr
    assert 16 <= len(lines) < SENTENCES
    for line in lines:
        assert line.endswith("\n")
        if jsonl:
            item = json.loads(line)
            assert item["sentence"].endswith(MESSY_TAIL)
            assert item["label"] in ("Positive", "Negative")
        else:
            assert PLAIN_LINE.match(line[:-1]).group(5).endswith(" caf\u00e9\\u0085 \U0001F600")


def test_jsonl_lines_are_the_json_list(trained, tmp_path):
    """--jsonl: one line per element of --json's list, the same keys and numbers, non-ASCII
    as it is and the line separators escaped; --json with --jsonl: exit 2."""
    sentences = ["great film", "awful caf\u00e9 \U0001F600", "loved it\u2028really\x85",
                 "boring\x07 plot\ttab"]
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    common = ["--output-dir", trained[0], "--file", str(reviews), "--batch-size", "3"]
    listed = run_predict("--json", *common)
    streamed = run_predict("--jsonl", *common)
    assert listed.returncode == streamed.returncode == 0, streamed.stderr[-3000:]
    lines = streamed.stdout.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(sentences)
    assert [json.loads(line) for line in lines[:-1]] == json.loads(listed.stdout)
    assert "caf\u00e9 \U0001F600" in lines[1] and "\\u2028" in lines[2]
    assert len(streamed.stdout.splitlines()) == len(sentences)
    both = run_predict("--json", "--jsonl", *common)
    assert both.returncode == 2 and "pass one of them" in both.stderr
    assert "Traceback" not in both.stderr and both.stdout == ""


def test_plain_output_escapes_control_characters(trained, tmp_path):
    """Every C0 control but tab, and DEL, as \\u00XX: one visible line per sentence."""
    controls = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n") + "\x7f"
    reviews = tmp_path / "reviews.txt"
    reviews.write_bytes(("great\t%s film\n" % controls).encode("utf-8"))
    result = run_predict("--output-dir", trained[0], "--file", str(reviews))
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = result.stdout.split("\n")[:-1]
    escaped = "".join("\\u%04x" % ord(c) for c in controls)
    assert PLAIN_LINE.match(line).group(5) == "great\t%s film" % escaped
    argument = run_predict("--output-dir", trained[0], "two\nlines\x1b[31m")
    assert argument.stdout.split("\t")[-1] == "two\\u000alines\\u001b[31m\n"


def test_an_empty_input_names_its_source(trained, tmp_path):
    blank = tmp_path / "reviews.txt"
    blank.write_text("\n  \n\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    for args, stdin, said in [
            (["--file", str(blank)], None, "%s holds no sentences (only blank lines)" % blank),
            (["--file", str(empty)], None, "%s holds no sentences: give one" % empty),
            (["--file", "-"], "", "stdin holds no sentences")]:
        result = run_predict("--output-dir", trained[0], *args, stdin=stdin)
        assert result.returncode == 2, result.stderr
        assert said in result.stderr and "Traceback" not in result.stderr


def test_a_closed_stdout_stops_without_a_traceback(trained, big_file):
    """The reader of stdout ends, as `predict.py --file big | head -1` does."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "predict.py"),
                                "--output-dir", trained[0], "--file", big_file],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    assert PLAIN_LINE.match(process.stdout.readline()[:-1])
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE, stderr[-3000:]
    assert "stdout was closed: stopped." in stderr and "Traceback" not in stderr


def test_blank_sentences_are_skipped_alike_as_arguments_and_lines(trained, tmp_path):
    """One rule: an empty or whitespace-only sentence is skipped and counted on stderr,
    given as an argument or as a line of --file; nothing left is the empty-input error."""
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great<br /><br />film \U0001F600\n \t\nawful\x85plot\n",
                       encoding="utf-8")
    result = run_predict("--output-dir", trained[0], "--jsonl", "", " \u3000",
                         "boring\x07 film", "--file", str(reviews))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads(line)["sentence"] for line in result.stdout.splitlines()] == [
        "boring\x07 film", "great<br /><br />film \U0001F600", "awful\x85plot"]
    assert "Skipped 2 blank arguments\n" in result.stderr
    assert "Skipped 1 blank lines of %s\n" % reviews in result.stderr
    only_blank = run_predict("--output-dir", trained[0], "")
    assert only_blank.returncode == 2 and only_blank.stdout == ""
    assert "No sentences to classify: give them as arguments or with --file." \
        in only_blank.stderr and "Traceback" not in only_blank.stderr


def test_a_bom_is_dropped_and_a_line_that_is_not_utf8_is_named(trained, tmp_path):
    """Excel's "Unicode text" and Notepad save a BOM; an old editor saves Latin-1."""
    with_bom = tmp_path / "bom.txt"
    with_bom.write_text("great film \U0001F600\r\nawful plot\r\n", encoding="utf-8-sig")
    for args, stdin in ((["--file", str(with_bom)], None), (["--file", "-"], None)):
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "predict.py"), "--output-dir", trained[0],
             "--json", *args], capture_output=True, cwd=ROOT, timeout=300,
            input=with_bom.read_bytes() if args[1] == "-" else None)
        assert result.returncode == 0, result.stderr[-3000:]
        assert [item["sentence"] for item in json.loads(result.stdout)] == [
            "great film \U0001F600", "awful plot"]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("great film\nnice\x85 plot\n".encode("utf-8")
                       + "caf\u00e9 cr\u00e8me, awful\n".encode("latin-1"))
    result = run_predict("--output-dir", trained[0], "--file", str(latin1))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("error: %s is not UTF-8: line 3, byte 4 of the line (invalid "
                             "continuation byte). Save the file as UTF-8.\n" % latin1)


def test_json_into_a_closed_pipe_says_the_list_was_cut_short(trained, big_file):
    """--json prints its list at the end; the reader goes after its first line."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "predict.py"),
                                "--output-dir", trained[0], "--file", big_file, "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    assert process.stdout.readline() == "[\n"
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE, stderr[-3000:]
    assert ("stdout was closed: stopped. %d of %d sentences were classified; --json's list "
            "was being printed and is cut short.\n" % (SENTENCES, SENTENCES)) in stderr
    assert "nothing was printed" not in stderr and "Traceback" not in stderr
