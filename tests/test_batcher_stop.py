"""A stop of a several-pair run (``runtime/batcher.py``, ``runtime/multi.py``): the batch in
progress finishes, the frames waiting for theirs are dropped and counted, every pair finalises.

Judged by counts (runner calls, frames), not by clocks: the fake runner holds its call until
every other pair's frame waits in the batcher, so what a stop must drop is there to drop."""

from __future__ import annotations

import threading

import numpy as np

from fnet_deploy.runtime.batcher import Batcher, BatcherClosed
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.multi import BatchOptions, CameraPair, MultiStream
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions
from fnet_deploy.runtime.registration import Registrar
from tests.fake_streams import EchoRunner, MemorySink, Recording, wait_for

PAIRS = 24
MAX_BATCH = 2
STOP_IN_CALL = 3
SIZE = (32, 24)


def test_a_stop_runs_no_more_batches_drops_the_waiting_frames_and_finalises_every_pair() -> None:
    stop = StopFlag()
    sinks = [MemorySink(f"p{i}.mp4") for i in range(PAIRS)]
    pairs = [
        CameraPair(
            f"p{i}",
            Recording(f"vis{i}.avi", 100, SIZE, colour=True),
            Recording(f"ir{i}.avi", 100, SIZE, colour=False),
            sinks[i],
            Registrar(None),
            ThermalGain(),
            StreamOptions(),
        )
        for i in range(PAIRS)
    ]
    in_progress: list[int] = []

    def on_call(number: int, feed: dict[str, np.ndarray]) -> None:
        if number == STOP_IN_CALL:
            in_progress.append(len(feed["ir"]))
            others = PAIRS - len(feed["ir"])
            wait_for(lambda: len(run.batcher._pending) == others, "frame of every other pair")
            stop.set("test stop")  # as SIGTERM does, in the thread that runs the model

    runner = EchoRunner(on_call)
    with runner:
        run = MultiStream(pairs, runner, BatchOptions(timeout=5.0, max_batch=MAX_BATCH))
        stats = run.run(stop)

    # No runner call after the one the stop came in; its frames were fused and written.
    assert runner.calls == STOP_IN_CALL and in_progress == [MAX_BATCH]
    assert stats.batch["calls"] == STOP_IN_CALL
    assert stats.written == stats.batch["frames"] == STOP_IN_CALL * MAX_BATCH
    # Every other pair's waiting frame was dropped, and counted both in the batch and its pair.
    dropped = {name: pair.counts.dropped_on_stop for name, pair in stats.pairs.items()}
    assert stats.batch["dropped_on_stop"] == sum(dropped.values()) >= PAIRS - MAX_BATCH
    assert stats.stopped_by == "test stop"
    for sink, (name, pair) in zip(sinks, stats.pairs.items(), strict=True):
        c = pair.counts
        assert pair.stopped_by == "test stop", name
        assert sink.closed and sink.written == c.written, name
        assert c.infer_errors == 0
        assert c.paired == c.written + c.dropped_on_stop, (name, c)
        assert c.vis_read == c.paired + c.vis_unpaired + c.vis_dropped_live + c.vis_pending
        assert pair.to_dict()["frames"]["dropped_on_stop"] == c.dropped_on_stop
    assert stats.to_dict()["batch"]["dropped_on_stop"] == sum(dropped.values())


def test_frames_waiting_or_handed_in_after_a_stop_are_refused_and_counted() -> None:
    frame = np.zeros((1, 1, 24, 32), np.float32)
    runner = EchoRunner()
    with runner:
        batcher = Batcher(runner, timeout=60.0)
        first, second = batcher.lane("first"), batcher.lane("second")
        refused: list[str] = []

        def pair() -> None:
            """Hands in a frame that waits for the other lane's, then one after the stop."""
            for _ in range(2):
                try:
                    first.infer({"ir": frame, "vis": frame})
                except BatcherClosed as err:
                    refused.append(str(err))
            first.close()
            second.close()

        thread = threading.Thread(target=pair)
        thread.start()
        wait_for(lambda: len(batcher._pending) == 1, "frame waiting")
        batcher.serve(stopping=lambda: True)
        thread.join()
    assert refused == ["the run stopped before a frame of pair first was fused"] * 2
    assert runner.calls == 0 and batcher.dropped_on_stop == 2 and batcher.summary().frames == 0
