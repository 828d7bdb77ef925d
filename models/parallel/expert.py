"""Expert parallelism (Lepikhin et al. 2020, GShard; Megatron-Core MoE).

Each MoE layer dispatches every token's hidden state to its top_k experts and combines
the results: 2 all-to-alls in forward and 2 in backward over the ep ranks, each of
b s k h elements (times the capacity factor when tokens are padded).
"""

from __future__ import annotations


def all_to_all_bytes(micro_batch, seq_len, hidden, top_k, capacity_factor, cp=1, bytes_per_elem=2):
    """Bytes of one dispatch (or combine) all-to-all buffer per rank."""
    return bytes_per_elem * micro_batch * seq_len / cp * hidden * top_k * capacity_factor


def all_to_alls_per_moe_layer(recompute_full):
    return 4 + 2 * recompute_full
