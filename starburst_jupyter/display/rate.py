"""Items per second and time left, as tqdm shows them: pure functions and a tiny smoothed meter.

Every face (widget, terminal line, %burst_status text and table) shows the same numbers, so they come from
here. The meter is fed (count, now) pairs; nothing here reads a clock, so tests give it the time.
"""

from __future__ import annotations

from dataclasses import dataclass

SMOOTHING = 0.3  # tqdm's default: weight of the newest interval in the moving average
MIN_INTERVAL = 0.2  # s; closer samples are merged into the next one (a burst of events is one sample)


@dataclass
class RateMeter:
    """An exponential moving average of items/s over display refreshes, with tqdm's bias correction
    (the first samples are not pulled towards zero)."""

    smoothing: float = SMOOTHING
    _count: float | None = None
    _at: float = 0.0
    _dn: float = 0.0
    _dt: float = 0.0
    _calls: int = 0

    def update(self, count: float, now: float) -> float | None:
        """Record that `count` items had finished at time `now`; returns the smoothed rate (None: unknown)."""
        if self._count is None:
            self._count, self._at = count, now
            return self.rate
        dt = now - self._at
        if dt < MIN_INTERVAL:
            return self.rate
        dn = count - self._count
        beta = 1.0 - self.smoothing
        self._dn = self.smoothing * dn + beta * self._dn
        self._dt = self.smoothing * dt + beta * self._dt
        self._calls += 1
        self._count, self._at = count, now
        return self.rate

    @property
    def rate(self) -> float | None:
        if self._calls == 0 or self._dt <= 0:
            return None
        return self._dn / self._dt  # (both carry the same bias factor: it cancels)


def average_rate(finished: float, elapsed: float) -> float | None:
    """The whole run's rate (what a record, read once, can tell)."""
    return finished / elapsed if elapsed > 0 and finished > 0 else None


def eta(remaining: float, rate: float | None) -> float | None:
    """Seconds left at `rate`; None when it cannot be told (no rate yet, or nothing moves)."""
    if remaining <= 0:
        return 0.0
    if not rate or rate <= 0:
        return None
    return remaining / rate


def format_rate(rate: float | None) -> str:
    """'12.3 items/s', or for slow items tqdm's inverse '4.2 s/item'; '? items/s' before the first."""
    if rate is None or rate <= 0:
        return "? items/s"
    if rate < 1.0:
        return f"{1.0 / rate:.1f} s/item"
    return f"{rate:.1f} items/s" if rate < 100 else f"{rate:.0f} items/s"


def format_eta(seconds: float | None) -> str:
    """'0:42', '12:05', '1:02:03' (tqdm's clock), '?' when unknown."""
    if seconds is None:
        return "?"
    total = int(round(max(0.0, seconds)))
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate_and_eta(rate: float | None, remaining: float) -> str:
    """'12.3 items/s, 0:42 left' - the phrase every face shows."""
    return f"{format_rate(rate)}, {format_eta(eta(remaining, rate))} left"
