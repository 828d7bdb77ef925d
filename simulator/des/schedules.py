"""Pipeline schedules as pure data: for each stage, the ordered list of the ops it runs.

An op is ``(phase, microbatch, chunk)``: phase "F" (forward), "B" (backward; in every schedule
but ZB-H1 it includes the weight gradient) or "W" (weight gradient alone, ZB-H1); ``chunk`` is
the model chunk on that stage (0 unless interleaved), holding virtual stage ``chunk * pp + stage``.
The simulator only executes these orders; dependencies follow from the virtual stages.

- GPipe (Huang et al. 2019): all forwards, then all backwards.
- 1F1B (Narayanan et al. 2021, SC'21 Sec. 2.2, PipeDream-Flush): ``pp - stage - 1`` warm-up
  forwards, then one forward / one backward alternately, then the cool-down backwards.
- Interleaved 1F1B (SC'21 Sec. 2.2, Fig. 4; Megatron-LM ``forward_backward_pipelining_with_
  interleaving``): v chunks per stage, groups of pp micro-batches per chunk, warm-up
  ``2 (pp - stage - 1) + (v - 1) pp`` forwards.
- ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism", Sec. 3.1 and Fig. 3): 1F1B's
  F/B order with the backward split into B (input gradient) and W (weight gradient); stage i
  postpones ``i + 1`` W's to the cool-down so B's reach stage 0 earlier. Same activation memory
  as 1F1B; bubble (p-1)(t_F + t_B - t_W), a third of 1F1B's when t_F = t_B = t_W.

>>> one_f_one_b(pp=2, num_microbatches=3)[0]
[('F', 0, 0), ('F', 1, 0), ('B', 0, 0), ('F', 2, 0), ('B', 1, 0), ('B', 2, 0)]
"""

from __future__ import annotations

SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1")


def gpipe(pp: int, num_microbatches: int) -> list[list[tuple]]:
    """GPipe order per stage: m forwards, then m backwards."""
    m = num_microbatches
    return [[("F", j, 0) for j in range(m)] + [("B", j, 0) for j in range(m)] for _ in range(pp)]


def one_f_one_b(pp: int, num_microbatches: int) -> list[list[tuple]]:
    """1F1B (PipeDream-Flush) order per stage."""
    m = num_microbatches
    orders = []
    for s in range(pp):
        warm = min(pp - s - 1, m)
        ops = [("F", j, 0) for j in range(warm)]
        for j in range(m - warm):
            ops += [("F", warm + j, 0), ("B", j, 0)]
        ops += [("B", j, 0) for j in range(m - warm, m)]
        orders.append(ops)
    return orders


def _virtual_op(k: int, pp: int, vpp: int, forward: bool) -> tuple[int, int]:
    """(microbatch, chunk) of the k-th forward / backward virtual op on a stage (Megatron's
    get_model_chunk_id: micro-batches go in groups of pp through each chunk)."""
    group, within = divmod(k, pp * vpp)
    chunk = within // pp
    if not forward:
        chunk = vpp - 1 - chunk
    return group * pp + within % pp, chunk


def interleaved(pp: int, num_microbatches: int, vpp: int) -> list[list[tuple]]:
    """Interleaved 1F1B order per stage (needs num_microbatches % pp == 0)."""
    if num_microbatches % pp:
        raise ValueError(f"num_microbatches: interleaved needs num_microbatches={num_microbatches} "
                         f"divisible by pp={pp}")
    total = num_microbatches * vpp
    orders = []
    for s in range(pp):
        warm = min(2 * (pp - s - 1) + (vpp - 1) * pp, total)
        ops = [("F", *_virtual_op(k, pp, vpp, True)) for k in range(warm)]
        for k in range(total - warm):
            ops.append(("F", *_virtual_op(warm + k, pp, vpp, True)))
            ops.append(("B", *_virtual_op(k, pp, vpp, False)))
        ops += [("B", *_virtual_op(k, pp, vpp, False)) for k in range(total - warm, total)]
        orders.append(ops)
    return orders


def zb_h1(pp: int, num_microbatches: int) -> list[list[tuple]]:
    """ZB-H1 order per stage: 1F1B's F/B order; stage s runs W of micro-batch j after the
    B of micro-batch j + s + 1 (when there is one), the rest at the end."""
    orders = []
    for s, ops in enumerate(one_f_one_b(pp, num_microbatches)):
        out, next_w, delay = [], 0, s + 1
        for op in ops:
            out.append(op)
            if op[0] == "B" and op[1] - next_w >= delay:
                out.append(("W", next_w, 0))
                next_w += 1
        out += [("W", j, 0) for j in range(next_w, num_microbatches)]
        orders.append(out)
    return orders


def stage_orders(schedule: str | int, pp: int, num_microbatches: int, vpp: int = 1) -> list[list[tuple]]:
    """The per-stage op order of ``schedule`` (a name in SCHEDULES or a models.plan.Schedule)."""
    name = schedule if isinstance(schedule, str) else SCHEDULES[int(schedule)]
    if pp < 1 or num_microbatches < 1 or vpp < 1:
        raise ValueError(f"schedule: pp, num_microbatches and vpp must be >= 1 (got {pp}, {num_microbatches}, {vpp})")
    if name == "gpipe":
        return gpipe(pp, num_microbatches)
    if name == "1f1b":
        return one_f_one_b(pp, num_microbatches)
    if name == "interleaved":
        return interleaved(pp, num_microbatches, vpp)
    if name == "zb-h1":
        return zb_h1(pp, num_microbatches)
    raise ValueError(f"schedule: {schedule!r} unknown; choose one of {', '.join(SCHEDULES)}")


def dependency(op: tuple, stage: int, pp: int, vpp: int) -> tuple | None:
    """The (stage, op) whose output ``op`` on ``stage`` waits for, or None (first forward,
    or same-stage order suffices: the last virtual stage's B after its own F, W after B)."""
    phase, j, c = op
    v = c * pp + stage
    if phase == "F":
        return None if v == 0 else ((v - 1) % pp, ("F", j, (v - 1) // pp))
    if phase == "B":
        return None if v == pp * vpp - 1 else ((v + 1) % pp, ("B", j, (v + 1) // pp))
    return None
