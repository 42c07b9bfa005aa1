"""The docs stay true (issue 21): every relative link in README.md and docs/*.md resolves,
#anchors included; every --flag written after train.py, predict.py or python -m imdb_bert.X
in their commands is in that program's --help; every `make X` is a Makefile target.
No TensorFlow session: one `--help` subprocess per program, the rest reads files."""
import ast
import functools
import glob
import json
import os
import re
import subprocess
import sys

from conftest import ROOT

README_LIMIT = 14000
FENCE = re.compile(r"^```(\w*)\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# A program and what follows it on the line: train.py, predict.py (any path before them, but
# not tests/horovod_train.py) or python -m imdb_bert.X.
PROGRAM = re.compile(r"(?<![\w-])((?:train|predict)\.py|-m imdb_bert(?:\.\w+)+)\b(.*)")
FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
MAKE = re.compile(r"(?<![\w./-])make((?:\s+[A-Z_]+=\S+)*)\s+([a-z][\w.-]*)")
# make passes ARGS to these programs (see the Makefile).
MAKE_ARGS = re.compile(r"(?<![\w./-])make\s+(train|gpu-check)\s+ARGS=(.*)")
MAKE_PROGRAMS = {"train": "train.py", "gpu-check": "imdb_bert.tools.gpu_check"}


def doc_paths():
    pages = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return [os.path.join(ROOT, "README.md")] + pages


def split_blocks(text):
    """(prose lines, [(language, code lines)]): fenced code blocks taken out of the prose."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence and block is None:
            block = (fence.group(1), [])
        elif fence and line.strip() == "```":
            blocks.append(block)
            block = None
        elif block is not None:
            block[1].append(line)
        else:
            prose.append(line)
    return prose, blocks


def github_anchor(heading):
    """GitHub's anchor of a heading: markup gone, lowercase, every character but letters,
    digits, underscores, hyphens and spaces dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text):
    """Every heading's anchor, duplicates numbered as GitHub does (-1, -2, ...)."""
    seen, result = {}, set()
    for line in split_blocks(text)[0]:
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            anchor = github_anchor(heading.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            result.add(anchor if count == 0 else "%s-%d" % (anchor, count))
    return result


def broken_links(path):
    """Each relative link of the Markdown file at path that leads nowhere, as a message."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    prose = INLINE_CODE.sub("", "\n".join(split_blocks(text)[0]))
    broken = []
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
            if file_part else path
        where = "%s: %s" % (os.path.relpath(path, ROOT), target)
        if not os.path.exists(linked):
            broken.append(where + " (no such file)")
        elif anchor and linked.endswith(".md"):
            with open(linked, encoding="utf-8") as f:
                if anchor not in anchors(f.read()):
                    broken.append(where + " (no such heading)")
    return broken


def commands(text):
    """The command lines of a page: its sh blocks (comments cut off) and its inline code."""
    prose, blocks = split_blocks(text)
    lines = [re.sub(r"(^|\s)#.*", "", line) for language, block in blocks
             if language == "sh" for line in block]
    return lines + INLINE_CODE.findall("\n".join(prose))


def program_commands(text):
    """(program, what follows it up to a pipe, && or ;) for each program run on the page."""
    for line in commands(text):
        found = [(match.group(1).replace("-m ", ""), match.group(2))
                 for match in PROGRAM.finditer(line)]
        found += [(MAKE_PROGRAMS[match.group(1)], match.group(2))
                  for match in MAKE_ARGS.finditer(line)]
        for program, after in found:
            yield program, re.split(r"\s(?:\||&&|;)\s", after)[0]


def unknown_flags(text, help_of):
    """Each `program --flag` whose flag is not in help_of(program), as a message."""
    return ["%s %s" % (program, flag) for program, rest in program_commands(text)
            for flag in FLAG.findall(rest) if flag not in FLAG.findall(help_of(program))]


def unknown_make_targets(text, targets):
    return ["make " + target for line in commands(text)
            for _, target in MAKE.findall(line) if target not in targets]


def help_texts(programs):
    """`program --help` of each program, run side by side, once each."""
    running = {}
    for program in programs:
        argv = [program] if program.endswith(".py") else ["-m", program]
        running[program] = subprocess.Popen(
            [sys.executable, *argv, "--help"], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    helps = {}
    for program, process in running.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, (program, stderr[-2000:])
        helps[program] = stdout
    return helps


def makefile_targets():
    """The targets of rule lines (`train: ...`), not of variables (`VENV := .venv`)."""
    rules = re.findall(r"^([\w.][\w./ -]*):(?!=)", read(os.path.join(ROOT, "Makefile")), re.M)
    return {target for rule in rules for target in rule.split()}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_every_relative_link_and_anchor_resolves():
    assert [message for path in doc_paths() for message in broken_links(path)] == []


@functools.lru_cache(maxsize=None)
def docs_help_texts():
    """The --help of every program the docs run, and of train.py and predict.py."""
    programs = {program for path in doc_paths() for program, _ in program_commands(read(path))}
    return help_texts(programs | {"train.py", "predict.py"})


def test_every_flag_in_the_commands_is_in_its_programs_help():
    helps = docs_help_texts()
    assert "imdb_bert.tools.make_hub_module" in helps
    assert [message for path in doc_paths()
            for message in unknown_flags(read(path), helps.get)] == []


# Each program's options as its parser holds them: the parser's parse_args() prints them and
# ends the program before it does anything else.
DUMP_OPTIONS = """
import argparse, json, runpy, sys
def dump(parser, args=None, namespace=None):
    print(json.dumps([[action.option_strings, action.default,
                       isinstance(action, argparse._StoreTrueAction)]
                      for action in parser._actions if action.option_strings
                      and action.dest != "help"], default=str))
    sys.exit(0)
argparse.ArgumentParser.parse_args = dump
argparse.ArgumentParser.parse_intermixed_args = dump  # predict.py: sentences and --pair
program = sys.argv[1]
sys.argv = [program]
if program.endswith(".py"):
    runpy.run_path(program, run_name="__main__")
runpy.run_module(program, run_name="__main__", alter_sys=True)
"""
PROGRAMS = {"train.py": "train.py", "predict.py": "predict.py",
            "imdb_bert.tools.make_hub_module": "python -m imdb_bert.tools.make_hub_module",
            "imdb_bert.serving": "python -m imdb_bert.serving",
            "imdb_bert.tools.gpu_check": "python -m imdb_bert.tools.gpu_check"}


def program_options(program):
    """[(option strings, default, is a switch)] of the program's parser."""
    result = subprocess.run([sys.executable, "-c", DUMP_OPTIONS, program], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (program, result.stderr[-2000:])
    return json.loads(result.stdout.splitlines()[-1])


def flag_rows(section):
    """{flag: its table row's cells after the first} of a flags.md section."""
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        for flag in FLAG.findall(cells[0]) if line.startswith("| ") else []:
            rows[flag] = cells[1:]
    return rows


def default_forms(default, switch):
    """How flags.md may write a default: off for a switch, the value as Python or %g
    prints it (2e-5 for 2e-05); None for a default in words (none, the training labels)."""
    if switch:
        return {"off"}
    if default is None:
        return None
    forms = {str(default)}
    if isinstance(default, float):
        forms.add(re.sub(r"e([-+])0*(\d)", r"e\1\2", "%g" % default).replace("e+", "e"))
    return forms


def undocumented_options(flags_md, program, options):
    """The options of `program` that its section of flags.md lacks, or whose default cell
    does not hold the parser's default."""
    section = flags_md.split("\n## %s\n" % PROGRAMS[program], 1)[1].split("\n## ", 1)[0]
    rows = flag_rows(section)
    problems = []
    for strings, default, switch in options:
        flag = strings[-1]
        if flag not in rows:
            problems.append("%s %s: no row" % (program, flag))
            continue
        forms = default_forms(default, switch)
        cell = rows[flag][0] if len(rows[flag]) > 1 else ""
        if not cell or forms is not None and not any(
                re.search(r"(?<![\w.-])%s(?![\w-])" % re.escape(form), cell) for form in forms):
            problems.append("%s %s: default %r, flags.md says %r" % (program, flag, default,
                                                                     cell))
    return problems


def test_flags_md_documents_every_flag_of_every_program_with_its_default():
    flags_md = read(os.path.join(ROOT, "docs", "flags.md"))
    assert [problem for program in PROGRAMS
            for problem in undocumented_options(flags_md, program,
                                                program_options(program))] == []


def output_file_names():
    """The file and folder names output/files.py defines (its upper-case string constants),
    read from its source: {constant: name}."""
    tree = ast.parse(read(os.path.join(ROOT, "imdb_bert", "output", "files.py")))
    return {node.targets[0].id: node.value.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.isupper() and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)}


def test_output_md_names_every_file_the_output_folder_holds():
    names = output_file_names()
    assert {"MODEL_SETTINGS", "EVAL_RESULTS", "CHECKPOINT_PREFIX", "FEATURES_PREFIX"} <= set(names)
    output_md = read(os.path.join(ROOT, "docs", "output.md"))
    assert {constant: name for constant, name in names.items()
            if "`%s" % name not in output_md} == {}


def test_every_make_command_names_a_makefile_target():
    targets = makefile_targets()
    assert {"train", "test", "gpu-check", "horovod", "bench-peer"} <= targets
    assert [message for path in doc_paths()
            for message in unknown_make_targets(read(path), targets)] == []


def test_readme_is_short_and_every_page_starts_with_a_two_line_summary():
    assert len(read(os.path.join(ROOT, "README.md"))) < README_LIMIT
    for path in doc_paths()[1:]:
        lines = read(path).splitlines()
        assert lines[0].startswith("# ") and lines[1] == "", path
        assert lines[2] and lines[3] and (lines + [""])[4] == "", path


def test_code_cites_docs_pages_that_exist_not_readme_sections():
    sources = [os.path.join(ROOT, name) for name in (
        "train.py", "predict.py", "config.py", "Makefile", "requirements.txt")]
    sources += glob.glob(os.path.join(ROOT, "imdb_bert", "**", "*.py"), recursive=True)
    sources += glob.glob(os.path.join(ROOT, "bench", "*.py"))
    sources += [path for path in glob.glob(os.path.join(ROOT, "tests", "*.py"))
                if not path.endswith("test_docs.py")]
    cited, readme = set(), []
    for path in sources:
        text = read(path)
        cited |= set(re.findall(r"docs/[\w-]+\.md", text))
        readme += [os.path.relpath(path, ROOT) for _ in re.finditer(r"README", text)]
    assert cited and readme == []
    assert [page for page in sorted(cited) if not os.path.exists(os.path.join(ROOT, page))] == []


def test_every_test_the_docs_name_exists():
    defined = set(re.findall(r"^def (test_\w+)", "".join(
        read(path) for path in glob.glob(os.path.join(ROOT, "tests", "test_*.py"))), re.M))
    # Test names are sentences; `test_samples` is a settings key.
    named = {name for path in doc_paths()
             for name in re.findall(r"`(test_[a-z0-9]+_[a-z0-9]+_\w+)`", read(path))}
    assert len(named) > 10 and named - defined == set()


def test_anchors_follow_githubs_rule():
    text = ("# On a GPU box, run `make gpu-check` first\n## `--use-xla` and `--use-amp`\n"
            "## python -m imdb_bert.tools.make_hub_module\n## Notes\n## Notes\n"
            "## See [flags](flags.md): done!\n```sh\n# not a heading\n```\n")
    assert anchors(text) == {"on-a-gpu-box-run-make-gpu-check-first", "--use-xla-and---use-amp",
                             "python--m-imdb_berttoolsmake_hub_module", "notes", "notes-1",
                             "see-flags-done"}


def test_the_checks_catch_a_broken_link_a_bogus_flag_and_an_unknown_target(tmp_path):
    """The checkers themselves fail on planted faults (so the tests above can fail)."""
    (tmp_path / "other.md").write_text("# Other page\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n[ok](other.md#a-section) [gone](missing.md) "
                    "[bad anchor](other.md#no-section) [self](#page) [web](https://example.org)\n"
                    "`[not a link](nowhere.md)`\n")
    assert broken_links(str(page)) == [
        "%s: missing.md (no such file)" % os.path.relpath(str(page), ROOT),
        "%s: other.md#no-section (no such heading)" % os.path.relpath(str(page), ROOT)]
    commands_text = ("```sh\n.venv/bin/python train.py --epochs 1 --bogus  # --ignored\n"
                     "python -m imdb_bert.serving OUT --nope | grep x --count\n"
                     "make PYTHON=python3.11 train && make no-such-target\n"
                     'make train ARGS="--epochs 2 --unheard-of"\n```\n'
                     "Inline: `predict.py --json --wrong` and `tests/horovod_train.py --x`.\n")
    helps = {"train.py": "--epochs EPOCHS", "predict.py": "--json",
             "imdb_bert.serving": "usage: python -m imdb_bert.serving [-h] output_dir"}
    assert unknown_flags(commands_text, helps.get) == [
        "train.py --bogus", "imdb_bert.serving --nope", "train.py --unheard-of",
        "predict.py --wrong"]
    assert unknown_make_targets(commands_text, {"train", "test"}) == ["make no-such-target"]
