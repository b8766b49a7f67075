"""Ctrl-C and SIGTERM during training: finish the step, checkpoint it, exit 130 / 143.

While `stop_on_signals` is active, SIGINT and SIGTERM only ask the run to stop: the step
loop looks at the request before every step, saves a checkpoint at the step reached (a
step is never cut in half, so the checkpoint is one the run would have written anyway) and
raises TrainingInterrupted; `--resume` then continues exactly from there. A second signal
aborts at once (KeyboardInterrupt), keeping the checkpoints already on disk. Handlers can
only be installed from the main thread; elsewhere signals keep their usual effect.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from hopecli.errors import HopeError

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number


class TrainingInterrupted(HopeError):
    """Training stopped on SIGINT / SIGTERM after checkpointing the step it had reached."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + int(self.signum))


class StopRequest:
    """The signal that asked the run to stop (None while none has)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT / SIGTERM into a StopRequest for the duration of the block."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.signum = signum
        # async-signal-safe: no Rich console here
        os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint "
                    "(send it again to abort at once)\n".encode())

    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Terminated(BaseException):
    """SIGINT or SIGTERM outside a training loop: unwind (temporary files are removed on the
    way, as for Ctrl-C) and exit 130 / 143. A BaseException, so that no `except Exception`
    on the way swallows it and Click does not turn it into "Aborted!" with exit 1."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + int(self.signum))


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


def exit_on_signals() -> None:
    """From start-up on, SIGINT and SIGTERM raise Terminated (the CLI exits 130 / 143);
    `stop_on_signals` replaces this during training and puts it back afterwards."""
    if threading.current_thread() is threading.main_thread():
        for s in EXIT_CODES:
            signal.signal(s, _terminate)
