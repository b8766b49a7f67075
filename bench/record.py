"""Record a run of `make demo` into one log that the README's tour quotes.

`make demo-record` runs `make demo` with every `hope` command wrapped by this script:

    python bench/record.py start LOG            header: date, commit, torch, threads, cores, load
    python bench/record.py run LOG -- CMD ...   run CMD, echo its output, and append to LOG
                                                "$ CMD" (as a user types it), the output
                                                (stdout and stderr in the order written) and
                                                "# exit RC after S s"
    python bench/record.py finish LOG           the whole run's wall time and the load after it

`run` exits with the command's code, so make stops where the command fails. The log is
plain text; bench/tour.py turns it into the README's blocks and tests/test_readme.py
checks the README against it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

STARTED = "# started "
FINISHED = "# finished after "
EXIT = "# exit "


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def shown(argv: list[str]) -> str:
    """The command as a user types it: the venv's `hope` is `hope`, its python `python`."""
    words = list(argv)
    if words and Path(words[0]).name == "hope":
        words[0] = "hope"
    elif words and Path(words[0]).name.startswith("python"):
        words[0] = "python"
    return shlex.join(words)


def start(log: Path) -> None:
    if log.exists():
        raise SystemExit(f"{log}: exists; a record is made by one fresh run (remove it, or the whole demo folder)")
    log.parent.mkdir(parents=True, exist_ok=True)
    import torch

    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    lines = [
        f"{STARTED}{datetime.now(timezone.utc).isoformat(timespec='seconds')} {time.time():.1f}",
        f"# commit {_git('rev-parse', '--short', 'HEAD')}{dirty}",
        f"# python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} cores",
        f"# HOPE_THREADS={os.environ.get('HOPE_THREADS', '(default)')}, "
        f"HOPE_COMPILE={os.environ.get('HOPE_COMPILE', '(default)')}",
        f"# load average before: {_load()}",
    ]
    log.write_text("\n".join(lines) + "\n")


def run(log: Path, argv: list[str]) -> int:
    if not log.exists():
        raise SystemExit(f"{log}: no record started (python bench/record.py start {log})")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ {shown(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            out.write(line.rstrip() + "\n")
        rc = proc.wait()
        out.write(f"{EXIT}{rc} after {time.perf_counter() - t0:.1f} s\n")
    return rc


def finish(log: Path) -> None:
    first = log.read_text().splitlines()[0]
    if not first.startswith(STARTED):
        raise SystemExit(f"{log}: not a record (its first line is not '{STARTED.strip()} ...')")
    seconds = round(time.time() - float(first.split()[-1]))
    with log.open("a") as out:
        out.write(f"{FINISHED}{seconds} s ({seconds // 60} min {seconds % 60} s); "
                  f"load average after: {_load()}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "run", "finish"])
    parser.add_argument("log", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.action == "run":
        if not command:
            parser.error("run needs a command after --")
        return run(args.log, command)
    if command:
        parser.error(f"{args.action} takes no command")
    start(args.log) if args.action == "start" else finish(args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
