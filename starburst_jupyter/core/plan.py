"""JobSpec -> plan: blocks of items and waves of workers under a concurrency quota.

Blocks shrink as the queue drains (guided self-scheduling): big first blocks keep per-item
overhead low, single-item last blocks keep workers from idling while one holds a long chunk.
When more workers are asked for than the quota allows, the job runs in waves of `concurrency` workers,
each wave's worker taking a share (`budget`) of the items. The waves are progress, not tasks: a worker that
finished its share carries on into the next wave's (core/decisions.decide_launches, wave_progress), so a job
of k waves pays one cold start per slot, not k, and its waves still start and finish in the record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    blocks: list[Sequence[int]]  # each a range of item indices (a slice of a list is a list)
    workers: int
    concurrency: int
    budget: int  # items of one worker's share of a wave (progress only); 0 = one wave

    @property
    def waves(self) -> int:
        return max(1, math.ceil(self.workers / self.concurrency))

    def wave_of(self, worker: int) -> int:
        return min(worker // self.concurrency, self.waves - 1) + 1


def guided_blocks(indices: Sequence[int], workers: int) -> list[Sequence[int]]:
    blocks, start, remaining = [], 0, len(indices)
    while remaining > 0:
        size = max(1, math.ceil(remaining / (2 * workers)))
        blocks.append(indices[start : start + size])
        start += size
        remaining -= size
    return blocks


def ramped_blocks(indices: Sequence[int], workers: int, concurrency: int) -> list[Sequence[int]]:
    """Guided blocks with a bounded start: the first `concurrency` blocks hold two items each, the next four,
    then eight, ... until the guided size is smaller. A worker's first claim can then never trap several long
    items at the front of a list behind it (5 x 2 s items then 195 x 20 ms: the guided first block of 50 held
    all five, 1.57x the lower bound), while a million no-ops pay only ~2 log2(N) more claims. (Two, not one:
    an item alone in its block is surely what a dead worker was running, so it counts as lost without a retry
    left; a first item cut short by a SIGTERM is redone instead.)"""
    blocks, start, remaining, k = [], 0, len(indices), 0
    while remaining > 0:
        size = max(1, min(math.ceil(remaining / (2 * workers)), 2 ** (1 + k // max(1, concurrency))))
        blocks.append(indices[start : start + size])
        start += size
        remaining -= size
        k += 1
    return blocks


def make_plan(n_items: int, workers: int, concurrency: int) -> Plan:
    workers = max(1, min(workers, n_items)) if n_items else max(1, workers)
    concurrency = max(1, min(concurrency, workers))
    budget = math.ceil(n_items / workers) if workers > concurrency else 0
    return Plan(ramped_blocks(range(n_items), workers, concurrency), workers, concurrency, budget)
