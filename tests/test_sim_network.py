"""Flow-level network: alone a collective takes the alpha-beta time; sharing a link slows it."""

import pytest
import simpy

from models import collectives as coll
from simulator.des.engine import Sim
from simulator.des.network import Network, max_min_rates
from simulator.des.program import Program, _comm

NIC_BYTES_PER_S = 47e9     # one 400 Gb/s NIC at NCCL efficiency (nccl-tests #290)


def _run_comms(comms, capacities):
    """Start all ``comms`` at t=0; return their finish times."""
    env = simpy.Environment()
    sim = Sim(env, Program((), 1, 1, 1, "1f1b", False, False, 0.0), capacities, [])
    ends = []

    def proc(c):
        yield from sim.comm(c)
        ends.append(env.now)
    for c in comms:
        env.process(proc(c))
    env.run()
    return ends


def test_alone_equals_alpha_beta():
    links = (("nic0", 1),)
    c = _comm("dp", "all_reduce", 1e9, 16, NIC_BYTES_PER_S, True, links)
    (t,) = _run_comms([c], {"nic0": NIC_BYTES_PER_S})
    assert t == pytest.approx(float(coll.collective_time_s("all_reduce", 1e9, 16, NIC_BYTES_PER_S, True)), rel=1e-9)


def test_two_collectives_sharing_one_nic_are_slower():
    links = (("nic0", 1),)
    c = _comm("dp", "all_reduce", 1e9, 16, NIC_BYTES_PER_S, True, links)
    (alone,) = _run_comms([c], {"nic0": NIC_BYTES_PER_S})
    both = _run_comms([c, c], {"nic0": NIC_BYTES_PER_S})
    # each gets half the NIC: bandwidth term doubles, latency does not
    assert min(both) > 1.9 * alone - c.latency_s
    assert max(both) == pytest.approx(c.latency_s + 2 * (alone - c.latency_s), rel=1e-6)


def test_separate_links_do_not_contend():
    a = _comm("dp", "all_reduce", 1e9, 16, NIC_BYTES_PER_S, True, (("nic0", 1),))
    b = _comm("dp", "all_reduce", 1e9, 16, NIC_BYTES_PER_S, True, (("nic1", 1),))
    ends = _run_comms([a, b], {"nic0": NIC_BYTES_PER_S, "nic1": NIC_BYTES_PER_S})
    assert ends[0] == pytest.approx(ends[1]) == pytest.approx(a.alone_s)


class _F:
    def __init__(self, links, cap):
        self.links, self.cap, self.rate = links, cap, 0.0


def test_max_min_fair_with_caps_and_weights():
    # link L of 10: a capped flow at 2 leaves 8 for the other; a weight-3 flow counts 3 times
    f1, f2 = _F((("L", 1),), 2.0), _F((("L", 1),), 100.0)
    max_min_rates([f1, f2], {"L": 10.0})
    assert (f1.rate, f2.rate) == (2.0, 8.0)
    g1, g2 = _F((("L", 3),), 100.0), _F((("L", 1),), 100.0)
    max_min_rates([g1, g2], {"L": 8.0})
    assert g1.rate == g2.rate == pytest.approx(2.0)


def test_a_late_flow_slows_the_running_one():
    env = simpy.Environment()
    net = Network(env, {"L": 1.0})
    done = {}

    def flow(name, start, nbytes):
        yield env.timeout(start)
        yield net.transfer(nbytes, (("L", 1),), 10.0)
        done[name] = env.now
    env.process(flow("a", 0.0, 2.0))
    env.process(flow("b", 1.0, 0.5))
    env.run()
    # a: 1 byte alone by t=1, then shares: b's 0.5 byte at 0.5/s ends t=2, a's last 0.5 at 1/s... ends t=2.5
    assert done == {"b": pytest.approx(2.0), "a": pytest.approx(2.5)}


def test_bad_capacity_is_one_line_error():
    with pytest.raises(ValueError, match="capacity must be > 0"):
        Network(simpy.Environment(), {"nic0": 0.0})


def test_max_min_terminates_when_rounding_leaves_load_on_a_frozen_link():
    # large weights whose sum does not subtract back to 0 (7e-12 is left): once every flow on L is
    # frozen, L must not be chosen as the bottleneck again (it was, forever, before users were counted)
    ws = [2834.747652200631, 83576.51039198697, 43276.70679050533]
    flows = [_F((("L", w),), 1e30) for w in ws] + [_F((("M", 1.0),), 1e30)]
    max_min_rates(flows, {"L": sum(ws), "M": 5.0})
    assert [f.rate for f in flows] == pytest.approx([1.0, 1.0, 1.0, 5.0])


def test_a_flow_shorter_than_the_clock_resolution_completes():
    # at t = 1e6 s a 1-byte flow at 1e12 B/s needs 1e-12 s, below the float clock's step there
    # (~1e-10 s): the network must finish it rather than schedule timeouts that never advance time
    env = simpy.Environment(initial_time=1e6)
    net = Network(env, {"L": 1e12})
    ev = net.transfer(1.0, (("L", 1),), 1e12)
    env.run(until=1e6 + 1.0)
    assert ev.triggered
