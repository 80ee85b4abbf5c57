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
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    blocks: list[list[int]]
    workers: int
    concurrency: int
    budget: int  # items of one worker's share of a wave (progress only); 0 = one wave

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
