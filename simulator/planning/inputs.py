"""Build (model, cluster, plan) from the flags shared by estimate, simulate and search."""

from __future__ import annotations

from dataclasses import dataclass

from models.hardware import Cluster, make_cluster
from models.plan import Plan
from models.transformer import Transformer, resolve_model


@dataclass(frozen=True, slots=True)
class Inputs:
    model: Transformer
    cluster: Cluster
    plan: Plan


def build_cluster(gpu: str, nodes: int = 1, node: str | None = None, gpus_per_node: int | None = None,
                  price_per_gpu_hour: float | None = None, oversubscription: float = 1.0,
                  nic_gbit_per_s: float | None = None) -> Cluster:
    over = {}
    if gpus_per_node:
        over["gpus_per_node"] = gpus_per_node
    if nic_gbit_per_s:
        over["nic_bytes_per_s_per_gpu"] = nic_gbit_per_s * 1e9 / 8
    return make_cluster(gpu, nodes, node, price_usd_per_gpu_hour=price_per_gpu_hour,
                        oversubscription=oversubscription, **over)


def build_inputs(model: str, gpu: str, nodes: int = 1, tp: int = 1, pp: int = 1, dp: int | None = None,
                 cp: int = 1, ep: int = 1, vpp: int = 1, micro_batch: int = 1, global_batch: int | None = None,
                 seq_len: int | None = None, sp: bool = False, recompute: str = "none", zero: int = 0,
                 schedule: str | None = None, dtype: str = "bf16", attention: str = "flash",
                 overlap_grad_reduce: bool = True, overlap_param_gather: bool = True, overlap_tp_comm: bool = False,
                 overlap_ep_comm: bool = False, placement: str = "tp-cp-dp-pp",
                 node: str | None = None, gpus_per_node: int | None = None, price_per_gpu_hour: float | None = None,
                 oversubscription: float = 1.0, nic_gbit_per_s: float | None = None) -> Inputs:
    """Resolve names and defaults: dp fills the cluster, global batch defaults to dp*micro_batch,
    schedule defaults to interleaved when vpp > 1 and 1F1B otherwise."""
    m = resolve_model(model, seq_len)
    cl = build_cluster(gpu, nodes, node, gpus_per_node, price_per_gpu_hour, oversubscription, nic_gbit_per_s)
    if dp is None:
        denom = tp * pp * cp
        if cl.num_gpus % denom:
            raise ValueError(f"dp: the cluster's {cl.num_gpus} GPUs are not divisible by tp*pp*cp = {denom}")
        dp = cl.num_gpus // denom
    gb = global_batch or dp * micro_batch
    sched = schedule or ("interleaved" if vpp > 1 else "1f1b")
    plan = Plan(dp=dp, tp=tp, pp=pp, cp=cp, ep=ep, vpp=vpp, micro_batch_size=micro_batch, global_batch_size=gb,
                sp=sp, zero_stage=zero, recompute=recompute, schedule=sched, dtype=dtype, attention=attention,
                overlap_grad_reduce=overlap_grad_reduce, overlap_param_gather=overlap_param_gather,
                overlap_tp_comm=overlap_tp_comm, overlap_ep_comm=overlap_ep_comm, placement=placement)
    return Inputs(m, cl, plan)
