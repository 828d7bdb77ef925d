"""Bounds on the work one simulation may do, checked before any of it (light: no pandas, no simpy)."""

from __future__ import annotations

# Compute ops one simulation may schedule: micro-batches x pipeline stages x model chunks x phases
# (forward, backward, and the weight-gradient pass of zero-bubble schedules); each op brings ~5-15
# engine events (its communication, memory records), ~100k events/s on a 2-core box.
MAX_SIM_OPS = 200_000


def simulation_ops(plan) -> int:
    """Compute ops one iteration of ``plan`` schedules per replica: num_microbatches x pp x vpp x
    phases (2, or 3 with the zero-bubble schedule's separate weight-gradient pass).

    >>> from models.plan import Plan
    >>> simulation_ops(Plan(pp=4, global_batch_size=32))
    256
    """
    from models.plan import Schedule
    phases = 3 if plan.schedule == Schedule.ZERO_BUBBLE else 2
    return int(plan.num_microbatches) * int(plan.pp) * int(plan.vpp) * phases


def check_simulation_size(plan, where: str = "global_batch_size") -> None:
    """ValueError when simulating ``plan`` would schedule more than MAX_SIM_OPS compute ops."""
    n = simulation_ops(plan)
    if n > MAX_SIM_OPS:
        raise ValueError(f"{where}: simulating plan {plan.plan_id} schedules {n:,} compute ops "
                         f"({plan.num_microbatches:,} micro-batches x {plan.pp} stages x {plan.vpp} chunks); more "
                         f"than the {MAX_SIM_OPS:,} one simulation may run: use a larger --micro-batch or a smaller "
                         "--global-batch (the analytical `estimate` has no such limit)")
