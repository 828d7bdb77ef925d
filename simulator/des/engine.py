"""The simpy engine: per-GPU compute and communication streams, links shared by flows.

The network (flows on shared links, max-min fair rates) is simulator.des.network.

Processes (module-level generators taking env, as SimPy's examples do): one per pipeline
stage walks its op order (from simulator.des.schedules), waiting for the neighbour's data,
running the compute, the inline TP/CP/EP collectives and the blocking p2p send; gradient
buckets run on the stage's DP stream, overlapping the backward.

Communication steals compute (models.collectives.stolen_compute_s): the compute stream loses
``Program.stolen_s_per_overlap_s`` times the seconds collectives ran beside its kernels, as simulated.
An op's overlapped TP/EP collectives: after the op has waited for them (exposed + stolen, as
models.comm charges them). The DP stream (gradient buckets, ZeRO gathers) runs apart: what it took
is paid at the stage's next compute op or before the optimizer step, as models.estimate adds it to
the compute, so it neither hides the DP tail nor delays the op's send. The ZeRO-1/2 weight gather
hidden behind the next iteration's first forward slows that forward.
"""

from __future__ import annotations

import heapq

import simpy

from simulator.des.network import Network
from simulator.des.program import Comm, Program, StageProgram
from simulator.des.schedules import dependency


class _Job:
    """One collective in a stream's line."""
    __slots__ = ("comm", "name", "mb", "layer", "then", "start_s", "end_s", "done")

    def __init__(self, comm: Comm, name: str, mb: int, layer: int, then):
        self.comm, self.name, self.mb, self.layer, self.then = comm, name, mb, layer, then
        self.start_s = self.end_s = self.done = None


class Stream:
    """A stage's DP stream (gradient reductions, ZeRO weight gathers): one collective at a time, first
    come first served from the time each is asked for (a gradient bucket: when its gradients are ready),
    as a simpy.Resource(env, 1) serves its requests. The stream runs its collectives itself, by event
    callbacks: a process per collective costs its start and end, its ready timeout and its request and
    release besides the collective's own events (issue 19: 8 events per gradient bucket, now 3-4)."""

    def __init__(self, sim: Sim, stage: int):
        self.sim, self.stage, self.env = sim, stage, sim.env
        self.busy = False
        self.line: list = []            # heap of (asked at s, order asked, job)
        self.asked = 0
        self.wake_s = None              # the time of the pending wake-up, when the stream waits for a ready time
        self.busy_s = 0.0               # seconds busy, finished collectives
        self.since = None               # start of the collective in flight, if any

    def busy_until_now_s(self) -> float:
        """Seconds the stream has been busy so far."""
        return self.busy_s + (self.env.now - self.since if self.since is not None else 0.0)

    def submit(self, c: Comm, at_s: float, name: str, mb: int, layer: int, then=None) -> _Job:
        """Line up collective ``c`` as asked for at ``at_s`` (>= now); ``then()`` runs when it ends."""
        job = _Job(c, name, mb, layer, then)
        self.asked += 1
        heapq.heappush(self.line, (at_s, self.asked, job))
        self._next()
        return job

    def chain(self, comms, mb: int, layer: int) -> simpy.Event | None:
        """Weight gathers one after another, each asked for when the one before ends (as a process that
        loops over them would); an event that fires when the last has ended, or None when none."""
        if not comms:
            return None
        done = self.env.event()

        def ask(k: int) -> None:
            then = (lambda: done.succeed()) if k == len(comms) - 1 else (lambda: ask(k + 1))
            self.submit(comms[k], self.env.now, "dp-all_gather", mb, layer, then)
        ask(0)
        return done

    def wait(self, job: _Job) -> simpy.Event | None:
        """An event that fires when ``job`` ends; None when it has."""
        if job.end_s is not None:
            return None
        if job.done is None:
            job.done = self.env.event()
        return job.done

    def _next(self) -> None:
        if self.busy or not self.line:
            return
        at_s, _, job = self.line[0]
        now = self.env.now
        if at_s > now:                  # free until the first in line is ready: wake up then
            if self.wake_s is None or at_s < self.wake_s:
                self.wake_s = at_s
                self.env.timeout(at_s - now).callbacks.append(self._wake)
            return
        heapq.heappop(self.line)
        self.busy = True
        job.start_s = self.since = now
        if job.comm.latency_s > 0:
            self.env.timeout(job.comm.latency_s).callbacks.append(lambda _e: self._transfer(job))
        else:
            self._transfer(job)

    def _wake(self, _event) -> None:
        if self.wake_s is not None and self.wake_s <= self.env.now:
            self.wake_s = None
        self._next()

    def _transfer(self, job: _Job) -> None:
        c = job.comm
        if c.wire_bytes > 0:
            self.sim.net.transfer(c.wire_bytes, c.links, c.cap_bytes_per_s).callbacks.append(lambda _e: self._end(job))
        else:
            self._end(job)

    def _end(self, job: _Job) -> None:
        now = job.end_s = self.env.now
        self.busy_s += now - job.start_s
        self.since, self.busy = None, False
        self.sim.records.append((self.stage, "dp", job.name, "dp", job.start_s, now, job.comm.wire_bytes, 0.0,
                                 job.mb, job.layer))
        if job.done is not None:
            job.done.succeed()
        if job.then is not None:
            job.then()
        self._next()


class Sim:
    """State shared by the processes of one simulated iteration."""

    def __init__(self, env: simpy.Environment, program: Program, capacities: dict, slowdown: list[float]):
        self.env, self.program = env, program
        self.net = Network(env, capacities)
        self.slowdown = slowdown
        self.records: list[tuple] = []       # (stage, stream, op, kind, start, end, bytes, flops, mb, layer)
        self.memory: list[tuple] = []        # (stage, time_s, activation bytes)
        self.acc = [{"compute": 0.0, "bubble": 0.0, "tp": 0.0, "cp": 0.0, "ep": 0.0, "pp": 0.0, "dp": 0.0}
                    for _ in program.stages]
        self.end_s = [0.0] * len(program.stages)
        self._ready: dict = {}
        self.ops = [[] for _ in program.stages]   # per stage: (op, start_s, ready_s, dependency waited on)
        self.dp_streams = [Stream(self, s) for s in range(len(program.stages))]
        self.dp_stolen_s = [0.0] * len(program.stages)   # compute the DP stream took, not yet paid

    def ready(self, key) -> simpy.Event:
        ev = self._ready.get(key)
        if ev is None:
            ev = self._ready[key] = self.env.event()
        return ev

    def comm(self, c: Comm):
        """Generator: one collective or send (latency, then its bytes as a flow)."""
        if c.latency_s > 0:
            yield self.env.timeout(c.latency_s)
        if c.wire_bytes > 0:
            yield self.net.transfer(c.wire_bytes, c.links, c.cap_bytes_per_s)


def _comms(env, sim: Sim, stage: int, comms, mb, layer):
    """Generator: ``comms`` one after another; returns when the last ended."""
    for c in comms:
        t0 = env.now
        yield from sim.comm(c)
        sim.records.append((stage, c.kind, f"{c.kind}-{c.op}", c.kind, t0, env.now, c.wire_bytes, 0.0, mb, layer))
    return env.now


def grad_bucket(sim: Sim, stage: int, c: Comm, ready_at_s: float, mb: int, layer: int) -> _Job:
    """One gradient bucket: ready at ``ready_at_s``, then reduced on the stage's DP stream."""
    return sim.dp_streams[stage].submit(c, ready_at_s, f"dp-{c.op}", mb, layer)


def _wait_for(stream: Stream, jobs: list):
    """Generator: wait until the last of ``jobs`` (lined up in this order) has ended: the stream serves
    them in that order, their ready times rising as the backward runs."""
    ev = stream.wait(jobs[-1]) if jobs else None
    if ev is not None:
        yield ev


def _last_grad_ops(sp: StageProgram, grad_phase: str) -> set:
    last = {}
    for op in sp.order:
        if op[0] == grad_phase:
            last[op[2]] = op
    return set(last.values())


def _wait_input(env, sim: Sim, s: int, op: tuple):
    """Generator: wait for the neighbour's data ``op`` needs; returns what it waited on (or None)."""
    prog = sim.program
    dep = dependency(op, s, prog.pp, prog.vpp)
    if dep is None:
        return None
    ev = sim.ready(dep)
    if ev.triggered:
        return None
    t0 = env.now
    yield ev
    sim.acc[s]["bubble"] += env.now - t0
    return dep


def _zero3_weights(env, sim: Sim, sp: StageProgram, op: tuple):
    """Generator: ZeRO-3 gathers the chunk's first layer before the op computes; returns the event
    of the gathers of the other layers (overlapped with compute when overlap_param_gather), or None."""
    s, (_, j, c) = sp.stage, op
    first, rest = sp.gather[c]
    t0 = env.now
    stream = sim.dp_streams[s]
    now = stream.chain(first, j, sp.first_layer[c])
    if now is not None:
        yield now
    later = stream.chain(rest, j, sp.first_layer[c])
    if later is not None and not sim.program.overlap_param_gather:
        yield later
    sim.acc[s]["dp"] += env.now - t0
    return later


def _compute(env, sim: Sim, sp: StageProgram, op: tuple, grads: bool, buckets: list, act: list, weights=None):
    """Generator: the op's kernels, then (or overlapped with them) its TP/CP/EP collectives.
    ``grads``: this op produces gradients to reduce, bucket by bucket as the backward runs."""
    s, (phase, j, c) = sp.stage, op
    acc, layer, cost = sim.acc[s], sp.first_layer[c], sp.costs[(op[0], op[2])]
    t_rec = env.now
    steal, owed = sim.program.stolen_s_per_overlap_s, sim.dp_stolen_s[s]
    stream = sim.dp_streams[s]
    dp_busy0 = stream.busy_until_now_s() if steal else 0.0
    if owed > 0:                # the compute the DP stream took beside the earlier ops
        sim.dp_stolen_s[s] = 0.0
        yield env.timeout(owed)
        acc["compute"] += owed
    t0, dur = env.now, cost.compute_s * sim.slowdown[s]
    act[0] += max(cost.act_bytes, 0.0)
    sim.memory.append((s, t0, act[0] + cost.transient_bytes))
    hidden_kinds = {k for k, on in (("tp", sim.program.overlap_tp_comm), ("ep", sim.program.overlap_ep_comm)) if on}
    hidden = tuple(cm for cm in cost.comms if cm.kind in hidden_kinds)
    inline = tuple(cm for cm in cost.comms if cm not in hidden)
    overlapped = env.process(_comms(env, sim, s, hidden, j, layer)) if hidden else None
    if grads:
        bs = sp.grad_buckets[c]
        for k, b in enumerate(bs):   # gradients appear layer by layer over the backward (reduced after it
            # without overlap_grad_reduce): models.parallel.zero.exposed_s charges the same
            ready = t0 + ((k + 1) / len(bs) if sim.program.overlap_grad_reduce else 1.0) * dur
            buckets.append(grad_bucket(sim, s, b, ready, j, layer))
    yield env.timeout(dur)
    stolen = 0.0
    if steal:   # the collectives that ran beside the kernels slowed them (models.collectives.stolen_compute_s)
        sim.dp_stolen_s[s] += steal * (stream.busy_until_now_s() - dp_busy0)
        if overlapped is not None:
            stolen = steal * ((min(overlapped.value, env.now) if overlapped.triggered else env.now) - t0)
    t_kernels = env.now
    if weights is not None and not weights.triggered:   # ZeRO-3: the last layers' weights still on the way
        yield weights
        acc["dp"] += env.now - t_kernels
    t1 = env.now
    if overlapped is not None:                # TP / EP collectives overlapped with the kernels
        if not overlapped.triggered:
            yield overlapped
        acc[hidden[-1].kind] += env.now - t1  # the wait is for the tail of the sequence: its last collective
    if env.now > t_kernels:   # waited for collectives that outlasted the kernels: the stolen seconds follow
        # (models.comm / models.parallel.zero charge exposed + stolen: the hiding window is the kernels' time)
        sim.records.append((s, "compute", phase, "compute", t_rec, t_kernels, 0.0, cost.flops, j, layer))
        if stolen > 0:
            t1 = env.now
            yield env.timeout(stolen)
            sim.records.append((s, "compute", phase, "compute", t1, env.now, 0.0, 0.0, j, layer))
    else:
        if stolen > 0:
            yield env.timeout(stolen)
        sim.records.append((s, "compute", phase, "compute", t_rec, env.now, 0.0, cost.flops, j, layer))
    acc["compute"] += dur + stolen
    for cm in inline:
        t1 = env.now
        yield from sim.comm(cm)
        sim.records.append((s, cm.kind, f"{cm.kind}-{cm.op}", cm.kind, t1, env.now, cm.wire_bytes, 0.0, j, layer))
        acc[cm.kind] += env.now - t1
    act[0] += min(cost.act_bytes, 0.0)
    sim.memory.append((s, env.now, act[0]))


def _send(env, sim: Sim, sp: StageProgram, op: tuple):
    """Generator: the blocking send of the op's output to the neighbouring stage, if any."""
    s, (phase, j, c) = sp.stage, op
    pp, vpp = sim.program.pp, sim.program.vpp
    v = c * pp + s
    send = sp.send.get(phase) if (phase == "F" and v < pp * vpp - 1) or (phase == "B" and v > 0) else None
    if send is not None:
        t1 = env.now
        yield from sim.comm(send)
        sim.records.append((s, "pp", f"pp-send-{phase}", "pp", t1, env.now, send.wire_bytes, 0.0, j, sp.first_layer[c]))
        sim.acc[s]["pp"] += env.now - t1


def _finish(env, sim: Sim, sp: StageProgram, buckets: list):
    """Generator: wait for the gradient reductions, step the optimizer, gather updated weights."""
    s, acc, prog = sp.stage, sim.acc[sp.stage], sim.program
    t1 = env.now
    yield from _wait_for(sim.dp_streams[s], buckets)
    acc["dp"] += env.now - t1
    t0 = env.now
    owed, sim.dp_stolen_s[s] = sim.dp_stolen_s[s], 0.0   # the compute the DP stream took beside the last ops
    yield env.timeout(sp.optimizer_s * sim.slowdown[s] + owed)
    sim.records.append((s, "compute", "optimizer", "compute", t0, env.now, 0.0, 0.0, -1, -1))
    acc["compute"] += env.now - t0
    sim.end_s[s] = env.now
    if sp.param_gather:                       # ZeRO-1/2: gather the updated weights
        t0 = env.now
        yield sim.dp_streams[s].chain(sp.param_gather, -1, -1)
        gather_s = exposed = env.now - t0
        if prog.overlap_param_gather:          # hidden behind the next iteration's first forward, slowing it
            exposed = max(0.0, exposed - prog.first_fwd_s)
        stolen = prog.stolen_s_per_overlap_s * (gather_s - exposed)
        acc["dp"] += exposed
        acc["compute"] += stolen
        sim.end_s[s] = t0 + exposed + stolen


def stage_process(env, sim: Sim, sp: StageProgram):
    """Run stage ``sp.stage``'s ops in schedule order; then wait for gradients, step the optimizer."""
    s = sp.stage
    grad_phase = "W" if sim.program.schedule == "zb-h1" else "B"
    last_grads = _last_grad_ops(sp, grad_phase)
    buckets, act = [], [0.0]
    for op in sp.order:
        waited = yield from _wait_input(env, sim, s, op)
        t_op = env.now
        weights = (yield from _zero3_weights(env, sim, sp, op)) if sp.gather and op[0] != "W" else None
        grads = op[0] == grad_phase and bool(sp.grad_buckets.get(op[2])) and (
            sp.grad_every_microbatch or (op in last_grads and sim.program.overlap_grad_reduce))
        n_before = len(buckets)
        yield from _compute(env, sim, sp, op, grads, buckets, act, weights)
        if grads and sp.grad_every_microbatch and len(buckets) > n_before:
            # ZeRO-2/3 reduce-scatter every micro-batch, and the backward returns only once they are
            # done (PyTorch FSDP's post-backward wait on its reduce-scatter stream; DeepSpeed ZeRO-2's
            # gradient-partition epilogue): the next op starts after this micro-batch's reductions
            t1 = env.now
            yield from _wait_for(sim.dp_streams[s], buckets[n_before:])
            sim.acc[s]["dp"] += env.now - t1
        yield from _send(env, sim, sp, op)
        sim.ready((s, op)).succeed()
        sim.ops[s].append((op, t_op, env.now, waited))
    if not sim.program.overlap_grad_reduce and not sp.grad_every_microbatch:
        # DDP / ZeRO-1 without overlap_grad_reduce reduce every bucket after the whole backward
        # (Megatron's finalize_model_grads), one after another on the DP stream
        buckets += [grad_bucket(sim, s, b, env.now, -1, sp.first_layer[c])
                    for c, bs in sp.grad_buckets.items() for b in bs]
    yield from _finish(env, sim, sp, buckets)


def run(program: Program, capacities: dict, slowdown: list[float] | None = None) -> Sim:
    """Simulate one iteration of ``program``; returns the Sim with records and accumulators."""
    env = simpy.Environment()
    sim = Sim(env, program, capacities, slowdown or [1.0] * len(program.stages))
    procs = [env.process(stage_process(env, sim, sp)) for sp in program.stages]
    env.run()
    stuck = [p for p in procs if not p.triggered]
    if stuck:
        raise RuntimeError(f"schedule deadlock: {len(stuck)} stage(s) never finished")  # a bug, not bad input
    return sim


def critical_path(sim: Sim, stage: int) -> list[tuple]:
    """Ops on the critical path ending at ``stage``'s last op, first to last: (stage, op, start_s, ready_s).
    Walk back: an op that waited for a neighbour's data continues at that neighbour's op,
    otherwise at the previous op on the same stage."""
    index = {(s, rec[0]): (s, i) for s, recs in enumerate(sim.ops) for i, rec in enumerate(recs)}
    path, cur = [], (stage, len(sim.ops[stage]) - 1) if sim.ops[stage] else None
    while cur is not None and cur[1] >= 0:
        s, i = cur
        op, start, ready, waited = sim.ops[s][i]
        path.append((s, op, start, ready))
        cur = index[waited] if waited is not None else (s, i - 1)
    return path[::-1]
