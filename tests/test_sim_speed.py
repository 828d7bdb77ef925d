"""The simulator's cost follows the work: component-wise max-min rates equal the global
recompute, and superseded completion timers do not pile up in the event queue (issue 19).
No timings here: benchmarks/bench_simulator.py prints those."""

import math
import random

import pytest
import simpy

from simulator.des.network import Network, max_min_rates


class _F:
    def __init__(self, links, cap):
        self.links, self.cap, self.rate = links, cap, 0.0


class _GlobalNetwork:
    """The reference: every start and end recomputes every flow's rate and schedules a new timer
    (the engine before issue 19)."""

    def __init__(self, env, capacity):
        self.env, self.capacity, self.flows, self.t_last, self.gen = env, capacity, [], 0.0, 0

    def transfer(self, nbytes, links, cap):
        ev = self.env.event()
        self._advance()
        f = _F(tuple(links), cap)
        f.remaining, f.nbytes, f.done = nbytes, nbytes, ev
        self.flows.append(f)
        self._reallocate()
        return ev

    def _advance(self):
        for f in self.flows:
            f.remaining -= f.rate * (self.env.now - self.t_last)
        self.t_last = self.env.now

    def _reallocate(self):
        max_min_rates(self.flows, self.capacity)
        self.gen += 1
        gen = self.gen
        t = min(f.remaining / f.rate for f in self.flows)
        self.env.timeout(max(t, 0.0)).callbacks.append(lambda _e: self._tick(gen))

    def _tick(self, gen):
        if gen != self.gen:
            return
        self._advance()
        res = 4 * math.ulp(max(self.env.now, 1e-9))
        done = [f for f in self.flows if f.remaining <= 1e-9 * f.nbytes or f.remaining <= f.rate * res]
        self.flows = [f for f in self.flows if f not in done]
        for f in done:
            f.done.succeed()
        if self.flows:
            self._reallocate()


def _random_flows(rng: random.Random, num_links: int, num_flows: int):
    caps = {f"L{i}": rng.uniform(1.0, 10.0) for i in range(num_links)}
    flows = []
    for _ in range(num_flows):
        links = tuple((f"L{rng.randrange(num_links)}", rng.choice((1, 1, 2, 3, 0.5)))
                      for _ in range(rng.randint(1, 3)))
        flows.append((links, rng.choice((rng.uniform(0.5, 8.0), 1e30))))
    return caps, flows


@pytest.mark.parametrize("seed", range(8))
def test_component_rates_equal_the_global_recompute(seed):
    # flows started one by one: each start recomputes only its component; at the end every flow's
    # rate must be what one global max-min over all flows gives
    rng = random.Random(seed)
    caps, specs = _random_flows(rng, num_links=rng.randint(1, 30), num_flows=rng.randint(1, 40))
    net = Network(simpy.Environment(), caps)
    for links, cap in specs:
        net.transfer(1.0, links, cap)
    ref = [_F(links, cap) for links, cap in specs]
    max_min_rates(ref, caps)
    assert [f.rate for f in net.flows] == pytest.approx([f.rate for f in ref], rel=1e-12)


def test_one_flow_alone_gets_its_cap_or_tightest_link():
    # the single-flow shortcut agrees with progressive filling, a link named twice counting twice
    cases = [(((("A", 1), ("B", 2)), 100.0), {"A": 10.0, "B": 8.0}),
             (((("A", 1), ("A", 1)), 100.0), {"A": 10.0}),
             (((("A", 3),), 1.0), {"A": 10.0})]
    for (links, cap), caps in cases:
        alone, with_other = _F(links, cap), _F(links, cap)
        max_min_rates([alone], caps)
        max_min_rates([with_other, _F((("Z", 1),), 1.0)], {**caps, "Z": 1.0})   # the general loop
        assert alone.rate == with_other.rate
    assert alone.rate == 1.0


def _run(net_cls, caps, specs, starts, sizes):
    env = simpy.Environment()
    net = net_cls(env, caps)
    ends = [None] * len(specs)

    def flow(i):
        yield env.timeout(starts[i])
        yield net.transfer(sizes[i], *specs[i])
        ends[i] = env.now
    for i in range(len(specs)):
        env.process(flow(i))
    env.run()
    return ends, net


@pytest.mark.parametrize("seed", range(6))
def test_completion_times_equal_the_global_recompute(seed):
    # flows starting and ending at random times, components merging and splitting
    rng = random.Random(100 + seed)
    caps, specs = _random_flows(rng, num_links=rng.randint(2, 12), num_flows=60)
    starts = [rng.choice((0.0, 1.0, rng.uniform(0, 5))) for _ in specs]
    sizes = [rng.uniform(0.1, 5.0) for _ in specs]
    ref, _ = _run(_GlobalNetwork, caps, specs, starts, sizes)
    got, net = _run(Network, caps, specs, starts, sizes)
    assert got == pytest.approx(ref, rel=1e-9)
    assert not net.flows


def test_superseded_timers_do_not_pile_up_in_the_queue():
    # 500 flows start one after another on one link before any ends: each start supersedes the
    # link's completion timer. The global engine left all 500 in the queue; here the queue holds
    # at most the live timer, the starter's timeout and STALE_SLACK superseded ones.
    n, env = 500, simpy.Environment()
    net = Network(env, {"L": 1.0})
    sizes, longest = [1.0 + i for i in range(n)], []

    def starter():
        for i in range(n):
            yield env.timeout(1e-3)
            net.transfer(sizes[i], (("L", 1),), 1e30)
            longest.append(len(env._queue))
    env.process(starter())
    env.run()
    assert net.num_superseded >= n - 1 and net.num_purges >= 1
    assert max(longest) <= net.STALE_SLACK + 3
    assert net.num_stale_timers <= net.STALE_SLACK and not net.flows
    ref_env = simpy.Environment()
    ref = _GlobalNetwork(ref_env, {"L": 1.0})
    ref_longest = []

    def ref_starter():
        for i in range(n):
            yield ref_env.timeout(1e-3)
            ref.transfer(sizes[i], (("L", 1),), 1e30)
            ref_longest.append(len(ref_env._queue))
    ref_env.process(ref_starter())
    ref_env.run()
    assert max(ref_longest) >= n            # what the global engine did
    assert env.now == pytest.approx(ref_env.now, rel=1e-9)


def test_disjoint_components_do_not_touch_each_other():
    # a start on link B neither recomputes nor re-times the flow alone on link A
    env = simpy.Environment()
    net = Network(env, {"A": 1.0, "B": 1.0})
    net.transfer(4.0, (("A", 1),), 10.0)
    (fa,) = net.flows
    timer_a, n = fa.timer, net.num_reallocations
    net.transfer(1.0, (("B", 1),), 10.0)
    assert net.num_reallocations == n + 1 and fa.timer is timer_a and net.num_superseded == 0
    net.transfer(1.0, (("A", 1), ("B", 1)), 10.0)        # joins both: one component of three
    assert net.num_superseded == 2 and len({f.timer for f in net.flows}) == 1


class _StreamSim:
    """What simulator.des.engine.Stream uses of the Sim: env, net, records."""

    def __init__(self):
        self.env = simpy.Environment()
        self.net = Network(self.env, {"link": 1e9})
        self.records = []


def _resource_reference(jobs):
    """The engine before issue 19: a process per collective that waits for its ready time, then takes
    a simpy.Resource(env, 1); (start, end) per job."""
    env = simpy.Environment()
    net, stream, out = Network(env, {"link": 1e9}), simpy.Resource(env, 1), {}

    def job(k, at_s, c):
        yield env.timeout(at_s - env.now)
        with stream.request() as req:
            yield req
            t0 = env.now
            yield env.timeout(c.latency_s)
            yield net.transfer(c.wire_bytes, c.links, c.cap_bytes_per_s)
        out[k] = (t0, env.now)

    for k, (at_s, c) in enumerate(jobs):
        env.process(job(k, at_s, c))
    env.run()
    return out


@pytest.mark.parametrize("seed", range(5))
def test_dp_stream_serves_in_the_order_asked_as_a_resource_does(seed):
    """The DP stream runs its collectives by callbacks (fewer simpy events than a process each, issue 19)
    and serves them first come first served from their ready times, as a simpy.Resource did."""
    from simulator.des.engine import Stream
    from simulator.des.program import Comm
    rng = random.Random(seed)
    jobs = sorted(((rng.uniform(0, 5), Comm("dp", "all_reduce", rng.uniform(1e8, 2e9), rng.choice([0.0, 1e-3]),
                                             (("link", 1.0),), 1e9)) for _ in range(30)), key=lambda j: j[0])
    sim = _StreamSim()
    stream = Stream(sim, 0)
    done = [stream.submit(c, at_s, "dp-all_reduce", k, 0) for k, (at_s, c) in enumerate(jobs)]
    waited = []

    def waiter():
        yield stream.wait(done[-1])
        waited.append(sim.env.now)
    sim.env.process(waiter())
    sim.env.run()
    ref = _resource_reference(jobs)
    for k, job in enumerate(done):
        assert job.start_s == pytest.approx(ref[k][0], abs=1e-12) and job.end_s == pytest.approx(ref[k][1], abs=1e-12)
    assert waited == [done[-1].end_s] and stream.wait(done[-1]) is None
    assert len(sim.records) == len(jobs) and stream.busy_until_now_s() == pytest.approx(
        sum(j.end_s - j.start_s for j in done))
