"""The ledger reads what workers wrote; one damaged object must not end the job (issue 12 item 9)."""

from __future__ import annotations

import time

from starburst_jupyter.backends import WorkerRef
from starburst_jupyter.core import events as ev
from starburst_jupyter.core.ledger import UNKNOWN_WORKER, ItemLedger
from starburst_jupyter.protocol import keys, serialize
from starburst_jupyter.protocol.jobfiles import ItemResult, JobFiles
from starburst_jupyter.stores.objects import LocalFolderStore


def ledger(tmp_path) -> tuple[ItemLedger, JobFiles, list[ev.Event]]:
    files = JobFiles(LocalFolderStore(tmp_path), "bj-test")
    seen: list[ev.Event] = []
    bus = ev.EventBus()
    bus.subscribe(seen.append)
    book = ItemLedger(files, bus, result_window=20.0)
    book.start([[0, 1], [2], [3]], ["a", "b", "c", "d"], open_job=False)
    return book, files, seen


def result(index: int, value: object, worker: int = 0) -> ItemResult:
    return ItemResult(index, True, serialize.encode(value), worker=worker)


def test_a_damaged_result_object_is_skipped_and_its_items_are_redone_when_the_worker_ends(tmp_path):
    book, files, seen = ledger(tmp_path)
    assert files.claim(0, worker=0) and files.claim(1, worker=1)
    files.write_results(1, 0, [result(2, "C", worker=1)])
    millis = int(time.time() * 1000)
    files.store.put(keys.result_key(files.prefix, 0, 0, millis), [b"not a starburst frame"])  # damaged
    book.scan_claims(full=True)
    assert book.collect_results(full=True)  # no exception: the good object is taken
    assert book.items[2].value == "C" and not book.items[0].final and not book.items[1].final
    assert any("could not be read" in getattr(e, "line", "") for e in seen)
    book.requeue(WorkerRef(0, 1, 0.0, exit_code=0, reason="finished"), retries=1, stopped_by_user=False)
    assert [book.items[i].block for i in (0, 1)] == [3, 4]  # each alone in a new block
    assert dict(files.read_block(3)) == {0: "a"} and dict(files.read_block(4)) == {1: "b"}


def test_a_damaged_claim_is_held_as_unknown_then_requeued_once_no_worker_is_left(tmp_path):
    book, files, _ = ledger(tmp_path)
    files.store.put(keys.claim_key(files.prefix, 2), [b"{not json"])  # block 2 holds item 3
    book.scan_claims(full=True)
    assert book.claims[2] == UNKNOWN_WORKER and book.unclaimed() == 2
    book.requeue_unknown()
    assert book.items[3].block == 3 and dict(files.read_block(3)) == {3: "d"} and book.unclaimed() == 3
    book.requeue_unknown()  # once
    assert len(book.blocks) == 4


def test_retries_mean_the_same_after_an_attach(tmp_path):
    """Issue 22: the attempts an item used lived in the driver that died; an attach counted from one again, so
    an item already retried ran once more than --retries allows. They are read back from its blocks."""
    book, files, _ = ledger(tmp_path)  # blocks: [0, 1], [2], [3]
    assert files.claim(1, worker=0)
    book.scan_claims(full=True)
    book.requeue(WorkerRef(0, 1, 0.0, exit_code=-9, reason="killed"), retries=1, stopped_by_user=False)
    assert book.items[2].block == 3  # item 2 (alone on worker 0, which died) was retried once: block 3

    again = ItemLedger(files, ev.EventBus(), result_window=20.0)  # the driver died; an attach rebuilds it
    again.reload(4)
    assert files.claim(3, worker=1)
    again.scan_claims(full=True)
    again.requeue(WorkerRef(1, 1, 0.0, exit_code=-9, reason="killed"), retries=1, stopped_by_user=False)
    assert again.items[2].final and "WorkerLost" in type(again.items[2].value).__name__, again.items[2]
    assert len(again.blocks) == 4, "not queued a third time"
