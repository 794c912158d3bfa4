"""Progress of long inference: a tqdm bar on a terminal, a log line every N frames otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from cosinetrack.distributed import get_rank, get_world_size

__all__ = ["FrameProgress"]

logger = logging.getLogger("cosinetrack")
T = TypeVar("T")


class FrameProgress:
    """Frames done and frames per second of a long inference.

    When stderr is a terminal (or ``bar=True``), a ``tqdm`` progress bar; otherwise (a log file, a batch
    job) a ``logging`` line on the ``cosinetrack`` logger every ``log_every`` frames and at the end:
    ``<desc>: 120/500 frames, 3.1 frames/s``. Under ``torchrun`` each rank reports its own share,
    named ``[rank r/w]``.

    Args:
        desc: what is processed, e.g. ``"cell inference"``.
        total: the number of frames expected (``None``: unknown, only the count is shown).
        log_every: frames between two log lines (>= 1).
        bar: ``None`` = a bar exactly when stderr is a terminal.
    """

    def __init__(self, desc: str, total: int | None = None, log_every: int = 100, bar: bool | None = None) -> None:
        if int(log_every) < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        if get_world_size() > 1:
            desc = f"{desc} [rank {get_rank()}/{get_world_size()}]"
        self.desc = desc
        self.total = None if total is None else int(total)
        self.log_every = int(log_every)
        self.done = 0
        self.start = time.perf_counter()
        self._last_logged = 0
        self.bar: Any = None
        if bar if bar is not None else sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit="frame", position=get_rank(), leave=True)

    def rate(self) -> float:
        """Frames per second since the start."""
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def _log(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        logger.info("%s: %d%s frames, %.2f frames/s", self.desc, self.done, of, self.rate())
        self._last_logged = self.done

    def update(self, n: int = 1) -> None:
        """``n`` more frames are done."""
        self.done += int(n)
        if self.bar is not None:
            self.bar.update(int(n))
        elif self.done - self._last_logged >= self.log_every:
            self._log()

    def wrap(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, counting one frame as each next one is asked for (i.e. once the previous is done)."""
        first = True
        for item in items:
            if not first:
                self.update()
            first = False
            yield item
        if not first:
            self.update()

    def close(self) -> None:
        """End the bar, or log the final count (if not just logged)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.done != self._last_logged or self.done == 0:
            self._log()

    def __enter__(self) -> FrameProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
