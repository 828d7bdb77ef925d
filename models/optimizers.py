"""Optimizers: state bytes per trainable parameter and the bytes their update streams.

State per trainable parameter, beside the 16-bit working weight and its gradient:
  adamw         m, v in fp32: 8 bytes (Loshchilov & Hutter 2019; ZeRO paper K = 12 with the master)
  adamw-8bit    m, v as 8-bit block-wise quantised values: 2 bytes + one fp32 absmax per 2,048-element
                block per state (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization",
                Sec. 2; bitsandbytes' block size 2,048)
  adafactor     factored second moment (one row and one column vector per matrix), no first moment
                (Shazeer & Stern 2018, Sec. 3-4; HF default beta1=None): O(rows + cols), ~0 per parameter
  sgd           nothing
  sgd-momentum  one fp32 momentum buffer: 4 bytes
  lomo          nothing; the update is fused into backward one tensor at a time, so no full gradient
                buffer either (Lv et al. 2023, "Full Parameter Fine-tuning for Large Language Models
                with Limited Resources", Sec. 3.1 and Table 1)
  adalomo       LOMO's fused update with Adafactor's factored second moment (Lv et al. 2023b, "AdaLomo")
plus a 4-byte fp32 master copy of every trainable weight when ``master_weights`` is fp32
(Micikevicius et al. 2018, mixed precision). LOMO Table 1 (LLaMA-7B, GiB): AdamW 75.31 of optimizer
state (12 bytes), SGD 25.10 (the 4-byte master), LOMO 0 (pure 16-bit weights).

Update traffic (HBM bytes per parameter of one step, memory-bound): the state read and written, the
gradient read for the step and for the norm clip, the 16-bit weight written (and read, without a
master copy): 2 state + 6 (+ 2). AdamW with an fp32 master: 2 x 12 + 6 = 30 (models.parallel.zero).
"""

from __future__ import annotations

import numpy as np

OPTIMIZERS = ("adamw", "adamw-8bit", "adafactor", "sgd", "sgd-momentum", "lomo", "adalomo")
MASTER_WEIGHTS = ("fp32", "none")
MASTER_BYTES = 4.0                       # fp32 master copy of a trainable weight
_8BIT_BLOCK = 2048                       # bitsandbytes block-wise quantisation block (Dettmers 2022)
# State bytes per trainable parameter, master copy excluded (module docstring).
STATE_BYTES = np.array([8.0, 2.0 + 2 * 4.0 / _8BIT_BLOCK, 0.0, 0.0, 4.0, 0.0, 0.0])
FUSED_UPDATE = np.array([False, False, False, False, False, True, True])   # LOMO / AdaLomo
GRAD_READS_AND_WEIGHT_WRITE = 6.0        # gradient read for the step and the clip, 16-bit weight write


def code(name: str) -> int:
    """The index of optimizer ``name`` (the planner's array code).

    >>> code("adamw"), code("lomo")
    (0, 5)
    """
    return OPTIMIZERS.index(name)


def default_master(optimizer: str) -> str:
    """The master-weight policy an optimizer implies when none is given: none for LOMO / AdaLomo
    (they update the 16-bit weights in place, Lv et al. 2023 Sec. 3.3), fp32 otherwise."""
    return "none" if optimizer in ("lomo", "adalomo") else "fp32"


def state_bytes_per_param(optimizer_code, master_fp32):
    """Optimizer bytes per trainable parameter: state + the fp32 master when kept (arrays ok).

    LOMO paper Table 1, LLaMA-7B (6.74e9 parameters): AdamW 75.31 GiB, SGD 25.10 GiB.
    >>> [round(float(state_bytes_per_param(code(o), True)) * 6.74e9 / 2**30, 2) for o in ("adamw", "sgd")]
    [75.33, 25.11]
    >>> float(state_bytes_per_param(code("lomo"), False))
    0.0
    """
    return STATE_BYTES[np.asarray(optimizer_code)] + np.where(master_fp32, MASTER_BYTES, 0.0)


def fused_update(optimizer_code):
    """True where the optimizer updates each tensor inside backward (no full gradient buffer)."""
    return FUSED_UPDATE[np.asarray(optimizer_code)]


def step_bytes_per_param(optimizer_code, master_fp32):
    """HBM bytes one optimizer step streams per parameter: 2 x state + 6 (+ 2 for the 16-bit weight
    read when there is no master copy). AdamW + fp32 master: 30 (models.parallel.zero).

    >>> float(step_bytes_per_param(code("adamw"), True)), float(step_bytes_per_param(code("sgd"), False))
    (30.0, 8.0)
    """
    return (2 * state_bytes_per_param(optimizer_code, master_fp32) + GRAD_READS_AND_WEIGHT_WRITE
            + np.where(master_fp32, 0.0, 2.0))
