"""Expert parallelism (Lepikhin et al. 2020, GShard; Megatron-Core MoE).

Each MoE layer dispatches every token's hidden state to its top_k experts and combines
the results: 2 all-to-alls in forward and 2 in backward over the ep ranks, each of
b s k h elements (times the capacity factor when tokens are padded).

Expert tensor parallelism and parallel folding (Megatron-Core --expert-tensor-parallel-size; Liu et al.
2025, "MoE Parallel Folding", arXiv 2504.14960): the expert layers re-partition the tp x cp x dp ranks
of a pipeline stage as expert_tp x ep x expert-dp, so EP may take tensor-parallel ranks (expert_tp < tp)
instead of being carved out of data parallelism alone. With balanced routing, a rank's expert FLOPs and
activations per token stay those of expert_tp = tp; the GEMM shapes, the expert weights per rank, the
all-to-all volume and the groups change.
"""

from __future__ import annotations

from models import numeric as num


def all_to_all_bytes(micro_batch, seq_len, hidden, top_k, capacity_factor, cp=1, bytes_per_elem=2):
    """Bytes of one dispatch (or combine) all-to-all buffer per rank."""
    return bytes_per_elem * micro_batch * seq_len / cp * hidden * top_k * capacity_factor


def expert_tp(tp, etp):
    """The expert layers' tensor-parallel degree: ``etp``, or ``tp`` where it is 0 (Megatron-Core's default).

    >>> expert_tp(8, 0), expert_tp(8, 1)
    (8, 1)
    """
    return num.where(num.arr(etp) == 0, tp, etp)


def tokens_share(tp, etp):
    """Tokens an expert-parallel rank's expert_tp group routes, per token of its tensor-parallel group
    (T = micro-batch x seq / cp): the tp x cp x dp ranks hold dp x T distinct tokens, spread over
    ep x expert-dp groups of expert_tp ranks, so each group holds T x etp / tp of them.

    >>> float(tokens_share(8, 8)), float(tokens_share(8, 1))
    (1.0, 0.125)
    """
    return num.as_float(etp) / tp


def expert_dp_size(tp, cp, dp, ep, etp):
    """The expert-data-parallel degree: tp x cp x dp / (ep x expert_tp) (>= 1); dp x cp / ep when expert_tp = tp.

    >>> int(expert_dp_size(8, 1, 4, 8, 1)), int(expert_dp_size(8, 1, 4, 2, 8))
    (4, 2)
    """
    return num.maximum(tp * cp * dp // (ep * etp), 1)


def all_to_alls_per_moe_layer(recompute_full):
    return 4 + 2 * recompute_full
