"""Garbage collection that does not stop the media for long (hub/gcpolicy.py).

The policy's decisions on a fake collector and clock; what it relies on of CPython's
collector (frozen objects are not walked, their cycles survive until a thaw, reference
counting still frees them) in a fresh interpreter with the real ``gc``; and ``hub serve``
exporting it under ``jaga_gc``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import httpx

from hub.gcpolicy import IDLE_THAW_GAP_S, FreezeSurvivors, PauseClock
from tests.kit import REPO, HubProcess, timeout

THAW_BLOCKS = 1_000


class FakeCollector:
    """The ``gc`` calls the policy makes, recorded; ``live`` stands for the tracked objects
    outside the permanent generation, ``frozen`` for those in it, ``blocks`` for the heap."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.full = 0  # full collections so far (CPython's own and ours)
        self.frozen = 0
        self.live = 100
        self.garbage = 0  # of ``frozen``: cycles that a thaw's collection frees
        self.blocks = 300

    def get_stats(self) -> list[dict[str, Any]]:
        return [{"collections": 0}, {"collections": 0}, {"collections": self.full}]

    def collect(self, generation: int = 2) -> int:
        self.calls.append(f"collect({generation})")
        if generation != 2:
            return 0
        self.full += 1
        freed, self.garbage = self.garbage, 0
        self.live -= freed
        self.blocks -= freed
        return freed

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.frozen, self.live = self.frozen + self.live, 0

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")
        self.frozen, self.live = 0, self.live + self.frozen

    def get_freeze_count(self) -> int:
        self.calls.append("get_freeze_count")
        return self.frozen

    def heap_blocks(self) -> int:
        return self.blocks

    def cpython_full_collection(self, promoted: int, garbage: int = 0) -> None:
        """What the interpreter does on its own: promote (and find nothing to free in what is
        frozen: ``garbage`` of the promoted objects die later, in cycles), then count it."""
        self.live += promoted
        self.blocks += promoted
        self.garbage += garbage
        self.full += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def started(idle: bool = False) -> tuple[FreezeSurvivors, FakeCollector, Clock, list[bool]]:
    collector, clock, state = FakeCollector(), Clock(), [idle]
    policy = FreezeSurvivors(collector, lambda: state[0], clock, THAW_BLOCKS)
    policy.start()
    collector.calls.clear()
    return policy, collector, clock, state


def test_start_collects_then_freezes_what_start_up_built() -> None:
    collector = FakeCollector()
    policy = FreezeSurvivors(collector, lambda: False, Clock(), THAW_BLOCKS)
    policy.start()
    assert collector.calls == ["collect(2)", "freeze", "get_freeze_count"]
    assert policy.frozen_after_thaw == collector.frozen == 100


def test_nothing_to_do_until_cpython_runs_a_full_collection_and_the_heap_is_not_walked() -> None:
    policy, collector, _, _ = started()
    assert [policy.tick() for _ in range(5)] == [None] * 5
    assert collector.calls == []  # get_freeze_count walks a million objects: never on a tick


def test_the_survivors_of_a_full_collection_are_frozen_once_young_ones_are_promoted() -> None:
    policy, collector, _, _ = started()
    collector.cpython_full_collection(promoted=50)
    assert policy.tick() == "freeze"
    assert collector.calls == ["collect(1)", "freeze"]  # young survivors first, then freeze
    assert (collector.frozen, collector.live) == (150, 0)
    assert policy.tick() is None  # one freeze per full collection
    assert policy.freezes == 1


def test_thaws_once_idle_reclaiming_the_cycles_of_sessions_that_ended() -> None:
    policy, collector, clock, idle = started()
    collector.cpython_full_collection(promoted=50, garbage=30)
    policy.tick()
    idle[0] = True  # the last publisher stopped
    collector.calls.clear()
    assert policy.tick() == "thaw"
    assert collector.calls == ["unfreeze", "collect(2)", "freeze", "get_freeze_count"]
    assert policy.frozen_after_thaw == collector.frozen == 120  # 150 frozen, 30 of them garbage
    assert policy.tick() is None  # nothing frozen since
    # the next busy stretch freezes again; once idle, the next thaw waits for the gap
    idle[0] = False
    collector.cpython_full_collection(promoted=10)
    assert policy.tick() == "freeze"
    idle[0] = True
    clock.now += IDLE_THAW_GAP_S / 2
    assert policy.tick() is None
    clock.now += IDLE_THAW_GAP_S / 2
    assert policy.tick() == "thaw"
    assert policy.thaws == 2


def test_no_thaw_while_stations_publish_below_the_bound() -> None:
    policy, collector, _, _ = started()
    for _ in range(6):  # 300 + 6 * 100 = 900 blocks, below THAW_BLOCKS
        collector.cpython_full_collection(promoted=100)
        assert policy.tick() == "freeze"
    assert "unfreeze" not in collector.calls


def test_past_the_bound_it_thaws_while_busy_and_then_waits_for_the_heap_to_double() -> None:
    policy, collector, _, _ = started()
    collector.cpython_full_collection(promoted=THAW_BLOCKS, garbage=100)  # 1,300 blocks
    assert policy.tick() == "thaw"  # frozen, then past THAW_BLOCKS (and twice the start-up heap)
    assert collector.blocks == 1_200  # the thaw freed the garbage
    collector.cpython_full_collection(promoted=600)  # 1,800: past THAW_BLOCKS, not twice 1,200
    assert policy.tick() == "freeze"
    collector.cpython_full_collection(promoted=700)  # 2,500
    assert policy.tick() == "thaw"


def test_the_pause_clock_times_full_collections_only() -> None:
    pauses = PauseClock()
    pauses("start", {"generation": 0})
    pauses("stop", {"generation": 0})
    assert pauses.longest_s == 0.0
    pauses("start", {"generation": 2})
    pauses("stop", {"generation": 2})
    assert pauses.longest_s > 0.0
    assert pauses.last_s == pauses.longest_s


# What the policy relies on of CPython's collector, in an interpreter of its own (a freeze is
# the whole process's: never in the test process).
REAL_GC = textwrap.dedent("""
    import gc, json, weakref
    from hub.gcpolicy import FreezeSurvivors, RealCollector

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return a

    state = {"idle": False}
    policy = FreezeSurvivors(RealCollector(), lambda: state["idle"], lambda: 0.0, 10**12)
    policy.start()
    kept = cycle()
    dropped = cycle()
    lone = Node()
    watch = {name: weakref.ref(obj) for name, obj in (("kept", kept), ("dropped", dropped), ("lone", lone))}
    gc.collect()  # a full collection, as CPython would run one
    policy.tick()  # freezes its survivors: the three objects above among them
    frozen = policy.freezes
    del dropped, lone
    gc.collect()
    after_collect = {name: ref() is not None for name, ref in watch.items()}
    state["idle"] = True
    thawed = policy.tick()
    after_thaw = {name: ref() is not None for name, ref in watch.items()}
    print(json.dumps({"frozen": frozen, "after_collect": after_collect, "thawed": thawed,
                      "after_thaw": after_thaw, "frozen_after": policy.frozen_after_thaw}))
""")


def test_with_the_real_collector_frozen_cycles_wait_for_the_thaw_and_lone_objects_do_not() -> None:
    done = subprocess.run([sys.executable, "-c", REAL_GC], capture_output=True, text=True, timeout=timeout(60),
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["frozen"] == 1
    # a full collection does not walk frozen objects: the dropped cycle survives it ...
    assert seen["after_collect"] == {"kept": True, "dropped": True, "lone": False}
    # ... while a frozen object without a cycle went with its last reference; the thaw
    # (unfreeze, full collection, freeze) reclaims the cycle and keeps what is alive
    assert seen["thawed"] == "thaw"
    assert seen["after_thaw"] == {"kept": True, "dropped": False, "lone": False}
    assert seen["frozen_after"] > 0


METRICS_TOKEN = "gc-policy-test"


async def gc_figures(tmp_path: Any, gc_freeze: bool) -> dict[str, float]:
    """``jaga_gc`` from the /metrics of a ``jaga-hub serve`` just started."""
    hub = HubProcess(tmp_path, hub={"metrics_token": METRICS_TOKEN, "gc_freeze": gc_freeze})
    await hub.start()
    try:
        async with httpx.AsyncClient(timeout=timeout(10)) as http:
            reply = await http.get(f"http://127.0.0.1:{hub.port}/metrics",
                                   headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert reply.status_code == 200
        return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
                for line in reply.text.splitlines() if line.startswith("jaga_gc{")}
    finally:
        hub.stop()


async def test_hub_serve_freezes_at_start_up_and_exports_jaga_gc(tmp_path: Any) -> None:
    figures = await gc_figures(tmp_path, gc_freeze=True)
    assert figures["frozen_after_thaw"] > 10_000  # the modules and the registry start-up built
    assert {"freezes", "thaws", "full_collections", "heap_blocks", "longest_full_collection_seconds",
            "last_full_collection_seconds", "full_collection_seconds"} <= figures.keys()


async def test_gc_freeze_off_leaves_the_collector_alone_and_still_times_it(tmp_path: Any) -> None:
    figures = await gc_figures(tmp_path, gc_freeze=False)
    assert "freezes" not in figures and "frozen_after_thaw" not in figures
    assert figures["heap_blocks"] > 0 and "longest_full_collection_seconds" in figures
