"""Progress of a long operator command (import, backfill, purge, dead-letter replay).

On a terminal: a live bar (``tqdm``) on stderr. Otherwise (a pipe, a log file, cron): one JSON line
on stderr every ``PROGRESS_EVERY_SECONDS`` (5) and a last one with ``"finished": true``, so a
supervisor can follow it and stdout stays the command's own result.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    def __init__(
        self, what: str, total: int | None = None, unit: str = "events", stream: TextIO | None = None,
        every_s: float | None = None,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s if every_s is not None else float(os.environ.get("PROGRESS_EVERY_SECONDS", 5))
        self.done = 0
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self._last = self.started
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = tqdm(total=total, unit=f" {unit}", desc=what, file=self.stream, dynamic_ncols=True) if isatty else None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: int = 1, **counts: int) -> None:
        """``n`` more units done; ``counts`` (e.g. ``rejected=2``) add up beside them."""
        self.done += n
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        if self.bar is not None:
            self.bar.update(n)
            if counts:
                self.bar.set_postfix(self.counts, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line(finished=False)

    def _line(self, finished: bool) -> None:
        elapsed = time.monotonic() - self.started
        line: dict[str, Any] = {"progress": self.what, "done": self.done, "total": self.total,
                                "unit": self.unit, **self.counts, "elapsed_s": round(elapsed, 1),
                                "per_s": round(self.done / elapsed, 1) if elapsed > 0 else None}
        if finished:
            line["finished"] = True
        print(json.dumps(line), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            return
        if self.every_s >= 0:
            self._line(finished=True)
            self.every_s = -1.0  # closed: once
