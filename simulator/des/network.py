"""The flow-level network of the simpy engine (simulator.des.engine): links shared by flows.

Network (flow level): every transfer is a flow with a byte count, the links it loads (each
with a weight: how many identical flows of the symmetric ranks it stands for) and a rate cap
(the group's bus bandwidth). Rates are weighted max-min fair (progressive filling, Bertsekas &
Gallager, "Data Networks", Sec. 6.5.2) and recomputed whenever a flow starts or ends, over
the links and flows connected to it; one timer per connected component drives completions.
Alone on its links a flow runs at its cap, so the engine reproduces models/collectives.py
exactly; sharing a link slows every flow on it.
"""

from __future__ import annotations

import heapq
import math

import simpy


class _Flow:
    __slots__ = ("remaining", "nbytes", "links", "cap", "done", "rate", "seq", "t_last", "timer")

    def __init__(self, nbytes, links, cap, done, seq, now):
        self.remaining, self.nbytes, self.links, self.cap, self.done, self.rate = nbytes, nbytes, links, cap, done, 0.0
        self.seq, self.t_last, self.timer = seq, now, None   # arrival order; when remaining was last brought up to date


class _Timer:
    """The pending completion timeout of one connected component of flows."""
    __slots__ = ("flows", "event", "live")

    def __init__(self, flows, event):
        self.flows, self.event, self.live = flows, event, True


class Network:
    """Links with capacities (bytes/s) shared max-min fairly by the flows on them.

    Flows that share no link, directly or through other flows, do not affect each other's rates:
    a start or an end recomputes only the connected component (links joined by flows) it
    touches, and each component has one completion timer. A recomputed component's old timer
    is superseded: it does nothing when it fires, and once superseded timers outnumber the live
    ones by STALE_SLACK they are dropped from the event queue, so they do not pile up.
    """

    STALE_SLACK = 64     # superseded timers tolerated in the queue beyond the live ones

    def __init__(self, env: simpy.Environment, capacities: dict):
        for k, v in capacities.items():
            if not v > 0:
                raise ValueError(f"topology: link {k} capacity must be > 0 bytes/s, got {v}")
        self.env, self.capacity = env, dict(capacities)
        self._on_link: dict = {}        # link -> {flow: None} of the flows loading it, in arrival order
        self._seq = 0
        self._stale: set = set()        # superseded timer events still in the event queue
        self._live = 0                  # timers that will complete flows
        self.num_reallocations = 0      # component recomputations
        self.num_superseded = 0         # timers superseded by a later recomputation
        self.num_purges = 0             # times superseded timers were dropped from the queue

    @property
    def flows(self) -> list:
        """The flows in progress, in arrival order."""
        return sorted({f for fs in self._on_link.values() for f in fs}, key=lambda f: f.seq)

    @property
    def num_stale_timers(self) -> int:
        """Superseded timers still in the event queue."""
        return len(self._stale)

    def transfer(self, nbytes: float, links, cap_bytes_per_s: float) -> simpy.Event:
        """An event that fires when ``nbytes`` have crossed ``links`` ((name, weight), ...)."""
        ev = self.env.event()
        if nbytes <= 0:
            return ev.succeed()
        self._seq += 1
        f = _Flow(nbytes, tuple(links), cap_bytes_per_s, ev, self._seq, self.env.now)
        for link, _ in f.links:
            self._on_link.setdefault(link, {})[f] = None
        self._reallocate(self._component(f))
        return ev

    def _component(self, start: _Flow) -> list:
        """The flows connected to ``start`` through shared links, in arrival order."""
        if all(len(self._on_link[link]) == 1 for link, _ in start.links):
            return [start]              # alone on its links (the common case)
        seen, todo, links = {start: None}, [start], set()
        while todo:
            for link, _ in todo.pop().links:
                if link not in links:
                    links.add(link)
                    for g in self._on_link.get(link, ()):
                        if g not in seen:
                            seen[g] = None
                            todo.append(g)
        return sorted(seen, key=lambda f: f.seq)

    def _advance(self, flows) -> None:
        now = self.env.now
        for f in flows:
            dt = now - f.t_last
            if dt > 0:
                f.remaining -= f.rate * dt
            f.t_last = now

    def _reallocate(self, flows: list) -> None:
        """New max-min rates for one component ``flows``, and its one completion timer."""
        self.num_reallocations += 1
        self._advance(flows)
        max_min_rates(flows, self.capacity)
        for f in flows:
            old = f.timer
            if old is not None and old.live:
                old.live = False
                self._live -= 1
                self._stale.add(old.event)
                self.num_superseded += 1
        t = min(f.remaining / f.rate for f in flows)
        ev = self.env.timeout(max(t, 0.0))
        timer = _Timer(flows, ev)
        ev.callbacks.append(lambda _e: self._fire(timer))
        self._live += 1
        for f in flows:
            f.timer = timer
        if len(self._stale) > self._live + self.STALE_SLACK:
            self._purge()

    def _purge(self) -> None:
        """Drop the superseded timers from simpy's event queue (a heap ordered by time and event
        id, so the other events keep their order); without access to it they fire as no-ops."""
        queue = getattr(self.env, "_queue", None)
        if not isinstance(queue, list):
            return
        queue[:] = [e for e in queue if e[-1] not in self._stale]
        heapq.heapify(queue)
        self._stale.clear()
        self.num_purges += 1

    def _fire(self, timer: _Timer) -> None:
        if not timer.live:
            self._stale.discard(timer.event)
            return
        timer.live = False
        self._live -= 1
        self._advance(timer.flows)
        still = []
        # done: all but a rounding residue of the bytes, or what is left would take less than the
        # clock can resolve at this time (a timeout that short would not advance it: no progress)
        resolution_s = 4 * math.ulp(max(self.env.now, 1e-9))
        for f in timer.flows:
            if f.remaining <= 1e-9 * f.nbytes or f.remaining <= f.rate * resolution_s:
                f.timer = None
                for link, _ in f.links:
                    on = self._on_link.get(link)
                    if on is not None:      # None: a link the flow names twice, already left
                        on.pop(f, None)
                        if not on:
                            del self._on_link[link]
                f.done.succeed()
            else:
                still.append(f)
        placed = set()
        for f in still:                 # the component may have split where a flow ended
            if f not in placed:
                comp = self._component(f)
                placed.update(comp)
                self._reallocate(comp)


def max_min_rates(flows, capacity: dict) -> None:
    """Set ``f.rate`` for each flow: weighted max-min fair shares of link capacity, each flow
    at most ``f.cap`` (progressive filling). A flow of weight w uses w x rate of each link."""
    if len(flows) == 1:                 # alone: its cap or its tightest link (what the loop below gives)
        (f,) = flows
        load = {}
        for link, w in f.links:
            load[link] = load.get(link, 0.0) + w
        level = math.inf
        for link, w in load.items():
            if w > 1e-12 and capacity[link] / w < level:
                level = capacity[link] / w
        f.rate = max(min(f.cap, level), 1e-30)
        return
    rem, load, users = {}, {}, {}
    for f in flows:
        for link, w in f.links:
            rem[link] = capacity[link]
            load[link] = load.get(link, 0.0) + w
            users[link] = users.get(link, 0) + 1
    unfrozen = list(flows)
    while unfrozen:
        level, bottleneck = math.inf, None
        for link, w in load.items():
            # a link none of the unfrozen flows uses is skipped even when rounding left load > 0
            if users[link] and w > 1e-12:
                x = rem[link] / w
                if x < level:
                    level, bottleneck = x, link
        cap = min(f.cap for f in unfrozen)
        if cap <= level:
            freeze = [f for f in unfrozen if f.cap <= cap]
            level = cap
        else:
            freeze = [f for f in unfrozen if any(link == bottleneck for link, _ in f.links)]
        for f in freeze:
            f.rate = max(level, 1e-30)
            for link, w in f.links:
                rem[link] = max(0.0, rem[link] - w * level)
                load[link] -= w
                users[link] -= 1
        frozen = set(map(id, freeze))
        unfrozen = [f for f in unfrozen if id(f) not in frozen]
