"""The README and docs/ hold together: the README stays a short front door, every relative link
and anchor resolves, docs/cli.md names every option of every script, and every code block tagged
as an example is run or quoted by a test.

docs/cli.md is generated from the scripts' own parsers: ``python tests/test_docs.py`` rewrites it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CLI_DOC = REPO / "docs" / "cli.md"
SCRIPT_FOLDERS = ("experiments", "benchmarks")
README_MAX_LINES = 250
# An example block: this comment on the line before a fenced block names the test that runs or quotes it.
EXAMPLE = re.compile(r"<!-- example: (?P<test>\S+) -->\n```[^\n]*\n(?P<code>.*?)```", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def docs() -> list[Path]:
    return [README, REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def scripts() -> list[Path]:
    """Every script of experiments/ and benchmarks/ (private helpers and cli_args.py aside), run.py first."""
    found = [path for folder in SCRIPT_FOLDERS for path in (REPO / folder).glob("*.py")
             if not path.name.startswith("_") and path.name != "cli_args.py"]
    return sorted(found, key=lambda p: (SCRIPT_FOLDERS.index(p.parent.name), p.name != "run.py", p.name))


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


def script_parser(path: Path) -> argparse.ArgumentParser:
    """The argparse parser a script builds: its ``make_parser()``, or the parser its ``parse_args``
    or ``main`` builds, caught when it starts parsing (so nothing else of the script runs)."""
    module = importlib.import_module(f"{path.parent.name}.{path.stem}")
    if hasattr(module, "make_parser"):
        return module.make_parser()

    def caught(parser, *args, **kwargs):
        raise _Parsed(parser)

    build = getattr(module, "parse_args", None) or module.main
    with mock.patch.object(argparse.ArgumentParser, "parse_args", caught), mock.patch.dict(os.environ):
        try:
            build([])
        except _Parsed as parsed:
            return parsed.parser
    raise AssertionError(f"{path.relative_to(REPO)} built no argparse parser")


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def _names(action: argparse.Action) -> list[str]:
    """What a reader types: the option strings, or a positional argument's metavar."""
    return list(action.option_strings) or [str(action.metavar or action.dest)]


# ----------------------------------------------------------------------------- docs/cli.md


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _shown_default(action: argparse.Action) -> str:
    value = action.default
    if value is None or value is argparse.SUPPRESS or "default" in (action.help or "").lower():
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "none"
    if isinstance(value, Path) and value.is_absolute():
        value = os.path.relpath(value, REPO)  # as a user in the checkout types it
    return str(value)


def _row(action: argparse.Action) -> str:
    formatter = argparse.HelpFormatter("")
    values = ""
    if action.option_strings and action.nargs != 0:
        values = " " + formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    names = ", ".join(f"`{name}{values}`" for name in _names(action))
    default = _cell(_shown_default(action))
    return f"| {names} | {default and f'`{default}`'} | {_cell(formatter._expand_help(action) if action.help else '')} |"


def _summary(module_doc: str | None) -> str:
    return " ".join((module_doc or "").strip().split("\n\n")[0].split())


GPU_SH = [
    "## benchmarks/gpu.sh", "",
    "The GPU measurements in one call (a shell script; [benchmarks.md](benchmarks.md#gpush-the-gpu-measurements-in-one-call)).",
    "", "| argument | default | what it does |", "|---|---|---|",
    "| `--prepared DIR` | `.gpu` | what `benchmarks/gpu_prepare.py` wrote: `model/`, `data/` and wheels |",
    "| `--out DIR` | `benchmarks/results` | where the results are copied (with `--smoke`: a new temporary folder) |",
    "| `--smoke` | `off` | tiny sizes, on a CPU (what the tests run) |", "",
]


def cli_reference() -> str:
    """docs/cli.md: each script's summary and a table of its arguments, from its own parser."""
    lines = ["# Command-line reference", "",
             "Every flag of every script in `experiments/` and `benchmarks/`, generated from the scripts' own",
             "parsers by `python tests/test_docs.py` (`tests/test_docs.py` checks that none is missing).",
             "`python SCRIPT --help` prints the same with each script's longer description.",
             "Bad flags end in one `error:` line and exit status 2.", "",
             *[f"- [`{p.relative_to(REPO)}`](#{slug(str(p.relative_to(REPO)))})" for p in scripts()],
             "- [`benchmarks/gpu.sh`](#benchmarksgpush)", ""]
    seen: dict[tuple, str] = {}
    for path in scripts():
        name = str(path.relative_to(REPO))
        parser = script_parser(path)
        module = importlib.import_module(f"{path.parent.name}.{path.stem}")
        lines += [f"## {name}", "", _summary(module.__doc__), ""]
        signature = tuple((tuple(_names(a)), a.help) for a in _arguments(parser))
        if signature in seen:
            lines += [f"Takes every flag of [`{seen[signature]}`](#{slug(seen[signature])}).", ""]
            continue
        seen[signature] = name
        untitled = ("options", "optional arguments", "positional arguments")
        groups = [[a for g in parser._action_groups if g.title in untitled for a in g._group_actions]]
        groups += [g for g in parser._action_groups if g.title not in untitled]
        for group in groups:
            actions = [a for a in getattr(group, "_group_actions", group) if a in _arguments(parser)]
            if not actions:
                continue
            if not isinstance(group, list):
                lines += [f"*{group.title}*", ""]
            lines += ["| argument | default | what it does |", "|---|---|---|", *map(_row, actions), ""]
    lines += GPU_SH
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- helpers


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks, dots, slashes) dropped,
    spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def section_of(text: str, position: int) -> str:
    """The heading line of the section ``position`` is in (code blocks' comments are not headings)."""
    headings = [m for m in re.finditer(r"^#{1,6} .+$", FENCE.sub(lambda m: " " * len(m.group(0)), text), re.M)
                if m.start() < position]
    return headings[-1].group(0) if headings else ""


# ----------------------------------------------------------------------------- tests


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("doc", docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links to nothing: {broken}"


def test_cli_doc_names_every_option_of_every_script():
    sections = {m.group(1): m.group(2) for m in re.finditer(r"^## (\S+)\n(.*?)(?=^## |\Z)",
                                                            CLI_DOC.read_text(encoding="utf-8"), re.S | re.M)}
    missing = []
    for path in scripts():
        name = str(path.relative_to(REPO))
        section = sections.get(name)
        if section is None:
            missing.append(name)
            continue
        referred = re.search(r"Takes every flag of \[`(\S+)`\]", section)
        if referred:
            assert {n for a in _arguments(script_parser(path)) for n in _names(a)} == {
                n for a in _arguments(script_parser(REPO / referred.group(1))) for n in _names(a)}, name
            section = sections[referred.group(1)]
        missing += [f"{name} {n}" for a in _arguments(script_parser(path)) for n in _names(a) 
                    if not re.search(f"`{re.escape(n)}[` ]", section)]
    assert not missing, f"docs/cli.md lacks {missing}; regenerate it with python tests/test_docs.py"


def test_every_example_is_run_or_quoted_by_a_test():
    examples = [(doc, m) for doc in docs() for m in EXAMPLE.finditer(doc.read_text(encoding="utf-8"))]
    assert any(doc == README for doc, _ in examples), "the README shows no tested example"
    for doc, match in examples:
        test = REPO / match.group("test")
        assert test.is_file() and test.name.startswith("test_"), f"{doc.name}: no test file {match.group('test')}"
        source = test.read_text(encoding="utf-8")
        heading = section_of(doc.read_text(encoding="utf-8"), match.start())
        doc_name = str(doc.relative_to(REPO))
        reads_it = doc_name.split("/")[-1] in source and heading in source
        assert reads_it or match.group("code").strip() in source, (
            f"{test.name} neither reads {doc_name}'s {heading!r} example nor quotes it")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    CLI_DOC.parent.mkdir(exist_ok=True)
    CLI_DOC.write_text(cli_reference(), encoding="utf-8")
    print(f"wrote {CLI_DOC.relative_to(REPO)}")
