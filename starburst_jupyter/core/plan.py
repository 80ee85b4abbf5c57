"""JobSpec -> plan: blocks of items and waves of workers under a concurrency quota.

Blocks shrink as the queue drains (guided self-scheduling): big first blocks keep per-item
overhead low, single-item last blocks keep workers from idling while one holds a long chunk.
When more workers are asked for than the quota allows, they run in waves: each worker takes a
share of the items and exits, and the next wave's worker starts in the freed slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    blocks: list[list[int]]
    workers: int
    concurrency: int
    budget: int  # items a worker takes before exiting; 0 = no limit

    @property
    def waves(self) -> int:
        return max(1, math.ceil(self.workers / self.concurrency))

    def wave_of(self, worker: int) -> int:
        return min(worker // self.concurrency, self.waves - 1) + 1


def guided_blocks(indices: list[int], workers: int) -> list[list[int]]:
    blocks, start, remaining = [], 0, len(indices)
    while remaining > 0:
        size = max(1, math.ceil(remaining / (2 * workers)))
        blocks.append(indices[start : start + size])
        start += size
        remaining -= size
    return blocks


def make_plan(n_items: int, workers: int, concurrency: int) -> Plan:
    workers = max(1, min(workers, n_items)) if n_items else max(1, workers)
    concurrency = max(1, min(concurrency, workers))
    budget = math.ceil(n_items / workers) if workers > concurrency else 0
    return Plan(guided_blocks(list(range(n_items)), workers), workers, concurrency, budget)
