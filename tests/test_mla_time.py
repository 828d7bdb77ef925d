"""The layer-time model runs the GEMMs the FLOP count counts: with a kernel model whose GEMM 'time' is its FLOPs,
one layer's forward GEMMs equal models.flops' projection + FFN FLOPs, for MLA (DeepSeek-V2 eqs. 9-18: latent
down-projections, per-head up-projections; all split over TP as Megatron-Core's TEColumnParallelLinear
down-projections are) as for grouped-query attention. Before, MLA layers were timed as multi-head attention of the
value head dim: 2.5x DeepSeek-V3's projection FLOPs."""

import numpy as np
import pytest

from models import flops as fl
from models.estimate import estimate, plan_arrays
from models.hardware import make_cluster
from models.layer import layer_times
from models.plan import Plan
from models.transformer import get_model


class FlopsAsTime:
    """A kernel model whose GEMM time is the GEMM's FLOPs (and everything else free)."""
    attn_peak_flops_per_s, peak_flops_per_s = None, 1.0

    def gemm(self, m, n, k):
        return 2.0 * m * n * k

    def memory_bound(self, num_bytes, num_kernels=1):
        return 0.0

    def attention_efficiency(self, *args):
        return 1.0


@pytest.mark.parametrize("name", ["deepseek-v3", "llama3-70b"])
@pytest.mark.parametrize("tp", [1, 2, 8])
def test_layer_gemms_are_the_counted_flops(name, tp):
    m = get_model(name)
    a = {k: np.asarray(v) for k, v in plan_arrays(Plan(dp=8, tp=tp, micro_batch_size=1, global_batch_size=8,
                                                        sp=tp > 1)).items()}
    gemms = float(layer_times(m, FlopsAsTime(), a, moe=False)[3])
    T = m.seq_len
    ffn = 2.0 * T * m.hidden * m.ffn_hidden * (m.ffn_matrices) / tp
    assert gemms == pytest.approx(fl.attn_proj_flops(m, T) / tp + ffn, rel=1e-12)


def test_deepseek_v3_attention_projections_are_mla_sized():
    """DeepSeek-V3 per token: W_DQ 7168x1536, W_UQ 1536x(128x192), W_DKV 7168x576, W_UKV 512x(128x256), W_O
    16384x7168 = 187M weights, against 470M had the layer been 128 heads of 128 for q, k and v."""
    m = get_model("deepseek-v3")
    assert fl.attn_proj_flops(m, 1) / 2 == pytest.approx(7168 * 1536 + 1536 * 128 * 192 + 7168 * 576
                                                         + 512 * 128 * 256 + 128 * 128 * 7168)
    plan = Plan(dp=32, tp=1, pp=16, ep=32, micro_batch_size=1, global_batch_size=1024, zero_stage=1,
                recompute="full")
    e = estimate(m, make_cluster("h100", 64), plan)
    assert e.step_time_s > 0 and 0.05 < e.mfu < 0.6
