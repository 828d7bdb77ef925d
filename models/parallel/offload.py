"""Offload to host memory or NVMe: ZeRO-Offload, ZeRO-Infinity, FSDP CPU offload, activation offload.

What moves (``offload``, a bitmask of OFFLOAD_KINDS) and what it costs per rank:
  optimizer    the optimizer states (and their step) live on the host; the step runs there as
               DeepSpeed CPU-Adam. Per step the gradients go down PCIe and the updated 16-bit weights
               come back (Ren et al. 2021, "ZeRO-Offload", Sec. 4.1 and Fig. 4: 2M bytes each way for
               M parameters); the host also holds the 16-bit gradients it steps with.
  gradients    the gradients accumulate on the host: each micro-batch's go down PCIe during backward.
  params       the 16-bit weights live on the host and are fetched for forward and backward (and
               the recompute) of every micro-batch; the GPU keeps the layer being computed and the
               prefetched one (ZeRO-Infinity, Rajbhandari et al. 2021 Sec. 5; FSDP CPUOffload).
  activations  checkpointed layer inputs go to the host in forward and come back in backward; the
               GPU keeps the current and the prefetched layer (ZeRO-R Pa+cpu, Rajbhandari et al.
               2020 Sec. 6.1).
With ``offload_to`` nvme the host-side bytes also stream to and from the node's NVMe drives
(ZeRO-Infinity's infinity offload engine), shared by the node's GPUs.

Overlap: per-micro-batch transfers run beside the compute of that micro-batch (exposed only when
longer); of the per-step ones, the gradient copy overlaps backward and the CPU step and the weight
upload follow it serially (ZeRO-Offload Sec. 4.1; its one-step delayed update, Sec. 4.2, is not
modelled).

PCIe rate per GPU (one direction) = lanes x the generation's per-lane rate (PCI-SIG: 0.985, 1.969,
3.938 GB/s for gen 3, 4, 5 after 128b/130b encoding) x PCIE_EFFICIENCY.
"""

from __future__ import annotations

import numpy as np

OFFLOAD_KINDS = ("optimizer", "params", "gradients", "activations")
OFFLOAD_TARGETS = ("cpu", "nvme")
PCIE_LANE_BYTES_PER_S = {3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.563e9}
# Pinned host<->device copies reach about 80% of the link rate (TLP headers and flow control;
# assumed: typical cudaMemcpy bandwidthTest results, ~25 of 31.5 GB/s on gen4 x16).
PCIE_EFFICIENCY = 0.8


def parse(text: str) -> str:
    """'params, optimizer' -> 'optimizer,params' (declaration order); 'none' stays; ValueError names the field.

    >>> parse("params, optimizer"), parse("none")
    ('optimizer,params', 'none')
    """
    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if names in ([], ["none"]):
        return "none"
    bad = [n for n in names if n not in OFFLOAD_KINDS]
    if bad:
        raise ValueError(f"plan.offload: {bad[0]!r} unknown; give none or a comma list of {', '.join(OFFLOAD_KINDS)}")
    return ",".join(k for k in OFFLOAD_KINDS if k in names)


def mask(text: str) -> int:
    """Bit i set when OFFLOAD_KINDS[i] is offloaded (the planner's array code).

    >>> mask("optimizer,gradients"), mask("none")
    (5, 0)
    """
    t = parse(text)
    return 0 if t == "none" else sum(1 << OFFLOAD_KINDS.index(k) for k in t.split(","))


def has(offload_mask, kind: str):
    """True where ``kind`` is offloaded (arrays ok)."""
    return ((np.asarray(offload_mask) >> OFFLOAD_KINDS.index(kind)) & 1).astype(bool)


def pcie_bytes_per_s(gen: int, lanes: int) -> float:
    """Achieved host<->GPU bytes/s of one GPU's PCIe link, one direction.

    >>> round(pcie_bytes_per_s(4, 16) / 1e9, 1)
    25.2
    """
    return PCIE_LANE_BYTES_PER_S.get(int(gen), 0.0) * lanes * PCIE_EFFICIENCY


def cpu_adam_s(params_per_node, cpu_adam_params_per_s):
    """Seconds of the host optimizer step over the parameters the node's GPUs offloaded (arrays ok);
    the rate is the node's (models.hardware.CPU_ADAM_PARAMS_PER_S: ZeRO-Offload Table 4, 10B in 2.57 s).

    >>> round(float(cpu_adam_s(10e9, 10e9 / 2.57)), 2)
    2.57
    """
    return params_per_node / cpu_adam_params_per_s


def traffic_bytes(offload_mask, weights_b, grads_b, optim_params, acts_b, num_microbatches, recompute_full,
                  bytes_per_grad=2.0, bytes_per_weight=2.0):
    """(per micro-batch, per step) PCIe bytes one rank moves, both directions together (arrays ok).

    ``weights_b``/``grads_b``: the rank's 16-bit weights / gradients; ``optim_params``: parameters whose
    step the host runs for this rank; ``acts_b``: its checkpointed activations of one micro-batch.
    >>> [float(x) for x in traffic_bytes(1, 0.0, 0.0, 1e9, 0.0, 4, False)]   # optimizer: grads down, weights up
    [0.0, 4000000000.0]
    """
    per_mb = (np.where(has(offload_mask, "params"), (2 + np.asarray(recompute_full, dtype=float)) * weights_b, 0.0)
              + np.where(has(offload_mask, "gradients"), grads_b, 0.0)
              + np.where(has(offload_mask, "activations"), 2 * acts_b, 0.0))
    per_step = np.where(has(offload_mask, "optimizer"),
                        optim_params * (np.where(has(offload_mask, "gradients"), 0.0, bytes_per_grad)
                                        + bytes_per_weight), 0.0)
    return per_mb, per_step + 0 * num_microbatches


def nvme_bytes(offload_mask, to_nvme, weights_b, optim_b, acts_b, num_microbatches, gpus_per_node):
    """NVMe bytes a node reads and writes per step when the host side lives on NVMe: the optimizer
    states read and written once, the weights read per micro-batch pass (forward, backward) and
    the activations written and read per micro-batch (arrays ok)."""
    per_rank = (np.where(has(offload_mask, "optimizer"), 2 * optim_b, 0.0)
                + np.where(has(offload_mask, "params"), 2 * weights_b * num_microbatches, 0.0)
                + np.where(has(offload_mask, "activations"), 2 * acts_b * num_microbatches, 0.0))
    return np.where(to_nvme, per_rank * gpus_per_node, 0.0)


def exposed_s(per_mb_bytes, per_step_bytes, num_microbatches, mb_compute_s, bwd_s, pcie_bw, cpu_step_s, nvme_s):
    """Offload seconds the step waits for, per iteration (arrays ok): per micro-batch, the transfer
    beyond that micro-batch's compute; per step, the gradient copy beyond the last backward, then
    the CPU step and the weight upload; NVMe traffic beyond the step's compute.

    >>> float(exposed_s(0.0, 2e9, 1, 1.0, 0.5, 1e9, 0.3, 0.0))   # 1 s down (0.5 hidden), 0.3 s step, 1 s up
    1.8
    """
    mb = num_microbatches * np.maximum(0.0, per_mb_bytes / pcie_bw - mb_compute_s)
    half = per_step_bytes / 2 / pcie_bw
    step = np.where(per_step_bytes > 0, np.maximum(0.0, half - bwd_s) + cpu_step_s + half, 0.0)
    return mb + step + np.maximum(0.0, nvme_s - num_microbatches * mb_compute_s)


def check(offload: str, offload_to: str, node) -> list[str]:
    """Why an offload cannot run on ``node`` (empty when it can)."""
    errs = []
    if offload != "none" and offload_to == "nvme" and node.nvme_bytes_per_s <= 0:
        errs.append(f"offload_to: nvme needs the node's NVMe bandwidth; {node.name} states none (no node "
                    "preset does): give it with --nvme-gb-per-s (nvme_gb_per_s in a scenario), or offload to cpu")
    if offload != "none" and node.host_memory_bytes <= 0 and offload_to == "cpu":
        errs.append(f"offload: {node.name} states no host memory; offload needs it")
    return errs
