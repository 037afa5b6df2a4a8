"""The micro-batcher on its own (no HTTP): merging, order, kinds never mixed, failures isolated."""

from __future__ import annotations

import asyncio
from typing import Any

from squeezebert.batcher import MicroBatcher
from squeezebert.infer import Prediction, TextInput


def run(coro_fn: Any) -> Any:
    return asyncio.run(coro_fn())


def test_batcher_never_mixes_texts_and_pairs_and_keeps_fifo_order() -> None:
    seen: list[list[TextInput]] = []

    def predict(inputs: list[TextInput]) -> list[Prediction]:
        seen.append(list(inputs))
        return [Prediction(label=str(x)) for x in inputs]

    async def main() -> list[list[Prediction]]:
        batcher = MicroBatcher(predict, max_batch_size=4, max_wait_s=0.05)
        await batcher.start()
        futures = [
            batcher.submit(["t1"]),
            batcher.submit([("p1", "q1")]),
            batcher.submit(["t2", "t3"]),
            batcher.submit(["t4", "t5"]),  # does not fit after t1..t3: opens the next batch
        ]
        results = await asyncio.gather(*futures)
        await batcher.close()
        return results

    results = run(main)
    assert [[p.label for p in r] for r in results] == [["t1"], [str(("p1", "q1"))], ["t2", "t3"], ["t4", "t5"]]
    # All four were queued before the batcher ran: t1 takes t2, t3 (skipping the pair), t4 + t5 would
    # overflow the batch of 4; the pair then runs on its own, t4 + t5 last.
    assert seen == [["t1", "t2", "t3"], [("p1", "q1")], ["t4", "t5"]]


def test_the_batcher_isolates_a_failing_request_from_the_others_in_its_batch() -> None:
    calls: list[list[TextInput]] = []

    def predict(inputs: list[TextInput]) -> list[Prediction]:
        calls.append(list(inputs))
        if "poison" in inputs:
            raise ValueError("cannot tokenize")
        return [Prediction(label=str(x)) for x in inputs]

    async def main() -> list[Any]:
        batcher = MicroBatcher(predict, max_batch_size=8, max_wait_s=0.05)
        await batcher.start()
        futures = [batcher.submit(["a"]), batcher.submit(["poison", "b"]), batcher.submit(["c", "d"])]
        results = await asyncio.gather(*futures, return_exceptions=True)
        await batcher.close()
        return results

    first, second, third = run(main)
    assert [p.label for p in first] == ["a"] and [p.label for p in third] == ["c", "d"]
    assert isinstance(second, ValueError)
    assert calls[0] == ["a", "poison", "b", "c", "d"]  # one merged call failed, then one call per request
    assert sorted(map(tuple, calls[1:])) == [("a",), ("c", "d"), ("poison", "b")]
