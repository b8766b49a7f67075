"""The README's tour from one recorded `make demo` run: refresh its blocks, or check them.

`make demo-record` leaves a log of every command of `make demo` (bench/record.py). In
README.md, a block of recorded output is a fenced code block right after a marker

    <!-- record: hope eval demo_out/vit_naive | lines 1-12,30- -->

naming the command (the start of its line in the log, unique there) and, optionally, the
output lines to show (1-based, inclusive; "30-" runs to the end; "..." marks a gap). The
block holds "$ command" (wrapped as a user would type it) and those lines.

    python bench/tour.py demo_out/demo.log    keep the log as bench/demo_record.log and
                                              rewrite every recorded block of README.md
    python bench/tour.py --check              exit 1, naming each block, where README.md
                                              differs from bench/demo_record.log
    python bench/tour.py --api                run the README's Python API example on the
                                              demo's runs (make demo-record records it)

tests/test_readme.py runs the check, and also checks that every measured number the tour's
prose quotes (a decimal or a percentage) appears in the log; so must the numbers of regions
elsewhere marked "<!-- numbers from the record -->" ... "<!-- end of numbers from the record -->".
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "bench" / "demo_record.log"
README = ROOT / "README.md"
MARK = re.compile(r"^<!-- record: (?P<select>.+?)(?: \| lines (?P<lines>[0-9,\- ]+))? -->$")
WIDTH = 92  # a recorded command wraps here, as the README's other commands do
TOUR = ("## A tour", "## ")  # the tour: from its heading to the next section of that level


@dataclass
class Entry:
    command: str
    output: list[str] = field(default_factory=list)
    rc: int | None = None
    seconds: float | None = None


def entries(text: str) -> list[Entry]:
    """The commands of a record with their output, exit code and seconds."""
    found: list[Entry] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            found.append(Entry(line[2:]))
        elif line.startswith("# exit ") and found:
            words = line.split()
            found[-1].rc, found[-1].seconds = int(words[2]), float(words[4])
        elif found and found[-1].rc is None:
            found[-1].output.append(line)
    return found


def find(record: list[Entry], select: str) -> Entry:
    hits = [e for e in record if e.command.startswith(select)]
    if len(hits) != 1:
        raise ValueError(f"'{select}' names {len(hits)} commands of the record, not one")
    return hits[0]


def pick(lines: list[str], spec: str | None) -> list[str]:
    """Lines of an output by a spec such as "1-12,30-"; "..." between ranges that do not touch."""
    if not spec:
        return lines
    shown: list[str] = []
    last = 0
    for part in spec.replace(" ", "").split(","):
        first, _, end = part.partition("-")
        a = int(first)
        b = (int(end) if end else len(lines)) if "-" in part else a
        if not 1 <= a <= b <= len(lines):
            raise ValueError(f"lines {part} outside the output's {len(lines)} lines")
        if last and a > last + 1:
            shown.append("...")
        shown.extend(lines[a - 1:b])
        last = b
    if last < len(lines):
        shown.append("...")
    return shown


def wrapped(command: str) -> list[str]:
    lines = textwrap.wrap(command, WIDTH - 2, break_long_words=False, break_on_hyphens=False,
                          subsequent_indent="    ")
    return [f"$ {lines[0]}" + (" \\" if len(lines) > 1 else "")] + [
        line + (" \\" if i < len(lines) - 2 else "") for i, line in enumerate(lines[1:])]


def render(record: list[Entry], select: str, spec: str | None) -> str:
    entry = find(record, select)
    return "\n".join(wrapped(entry.command) + pick(entry.output, spec))


def blocks(readme: str) -> list[tuple[int, int, str, str | None]]:
    """(first line, end line, command, lines spec) of every recorded block's body."""
    lines = readme.splitlines()
    found = []
    for i, line in enumerate(lines):
        mark = MARK.match(line.strip())
        if not mark:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise ValueError(f"README line {i + 1}: a record marker must be followed by a fenced block")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        found.append((i + 2, end, mark["select"], mark["lines"]))
    return found


def refresh(readme: str, record: list[Entry]) -> str:
    lines = readme.splitlines()
    for first, end, select, spec in reversed(blocks(readme)):
        lines[first:end] = render(record, select, spec).splitlines()
    return "\n".join(lines) + "\n"


def differences(readme: str, record: list[Entry]) -> list[str]:
    """Each recorded block of the README that its record does not give, by its command."""
    lines = readme.splitlines()
    wrong = []
    for first, end, select, spec in blocks(readme):
        try:
            if "\n".join(lines[first:end]) != render(record, select, spec):
                wrong.append(f"README line {first}: the block of '{select}' differs from the record")
        except ValueError as err:
            wrong.append(f"README line {first}: {err}")
    return wrong


REGION = re.compile(r"<!-- numbers from the record -->(.*?)<!-- end of numbers from the record -->", re.S)


def tour(readme: str) -> str:
    """The README's text that quotes the record: the tour's section, and regions elsewhere
    between "<!-- numbers from the record -->" and "<!-- end of numbers from the record -->"."""
    start = readme.index(TOUR[0])
    end = readme.find("\n" + TOUR[1], start + len(TOUR[0]))
    return "\n".join([readme[start:end if end > 0 else len(readme)], *REGION.findall(readme)])


def prose(text: str) -> str:
    """Text outside fenced blocks and HTML comments."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return "\n".join(part for i, part in enumerate(re.split(r"^```.*$", text, flags=re.M)) if i % 2 == 0)


NUMBER = re.compile(r"(?<![\w.])[-+]?(\d[\d,]*\.\d+%?|\d+%)")


def quoted_numbers(text: str) -> list[str]:
    """The measured numbers of a text: decimals and percentages, without their sign."""
    return [m.group(1) for m in NUMBER.finditer(prose(text))]


def api_example(readme: str) -> str:
    """The README's Python API example."""
    section = readme.split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", nargs="?", type=Path, help="a log of make demo-record (kept as bench/demo_record.log)")
    parser.add_argument("--check", action="store_true", help="only check README.md against bench/demo_record.log")
    parser.add_argument("--api", action="store_true", help="run the README's Python API example here")
    args = parser.parse_args()
    readme = README.read_text()
    if args.api:
        exec(compile(api_example(readme), "README.md", "exec"), {})
        return 0
    if args.check == (args.log is not None):
        parser.error("give a log to refresh from, or --check")
    if args.check:
        record = entries(RECORD.read_text())
        wrong = differences(readme, record)
        for line in wrong:
            print(line, file=sys.stderr)
        return 1 if wrong else 0
    text = args.log.read_text()
    failed = [e.command for e in entries(text) if e.rc != 0]
    if failed or "# finished after " not in text:
        raise SystemExit(f"{args.log}: not a finished record of a run that passed ({failed or 'no finish line'})")
    if args.log.resolve() != RECORD:
        shutil.copyfile(args.log, RECORD)
    README.write_text(refresh(readme, entries(text)))
    print(f"{RECORD.relative_to(ROOT)} <- {args.log}; {len(blocks(readme))} blocks of README.md refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
