"""FlashAttention v1 as llm-foundry and HF call it: through the unpadded interface, so every layer
packs q, k, v with flash_attn.bert_padding.unpad_input and scatters the output back with pad_input.
Byte counts read off bert_padding.py (IndexFirstAxis / IndexPutFirstAxis, forward and backward)."""

import dataclasses

import numpy as np
import pytest

from models.estimate import _layer_times, plan_arrays
from models.hardware import make_cluster
from models.plan import Plan
from models.profile import kernel_model
from models.transformer import get_model


def _times(model, km, attention, fused_elementwise=True):
    # fused elementwise ops: no eager SDPA copies around the v2 kernel, so v1 and v2 differ by v1's packing only
    a = {k: np.asarray(v) for k, v in plan_arrays(Plan(dp=8, zero_stage=3, micro_batch_size=4, global_batch_size=32,
                                                        attention=attention,
                                                        fused_elementwise=fused_elementwise)).items()}
    return [float(x) for x in _layer_times(model, km, a, moe=False)]


def test_flash1_adds_the_pack_and_unpack_traffic_per_token():
    model = get_model("llama2-7b")
    # attention kernels below the v1 cap, so v1 and v2 differ only by the packing copies
    km = kernel_model(make_cluster("a100-sxm-40gb"), "bf16", 0.2, 0.2)
    T, h = 4 * model.seq_len, model.hidden
    v2, v1 = _times(model, km, "flash"), _times(model, km, "flash1")
    # forward: gather q, k, v (r+w, 2 B each: 12 h) + zero-fill and index-put the output (6 h) = 18 h bytes
    assert v1[0] - v2[0] == pytest.approx(float(km.memory_bound(T * 18 * h, 4)), rel=1e-9)
    # backward: zero-fill + scatter the q, k, v gradients (18 h) + gather the output gradient (4 h)
    assert v1[1] - v2[1] == pytest.approx(float(km.memory_bound(T * 22 * h, 4)), rel=1e-9)


def test_flash1_packing_weighs_more_on_narrow_models():
    # the copies scale with h per token, the GEMMs with h^2: a 768-wide model pays ~2.7x the share of a 2048-wide one
    km = kernel_model(make_cluster("a100-sxm-40gb"), "bf16", 0.2, 0.2)
    share = []
    for h in (768, 2048):
        m = dataclasses.replace(get_model("llama2-7b"), hidden=h, num_heads=h // 64, num_kv_heads=h // 64,
                                ffn_hidden=4 * h)
        v2, v1 = _times(m, km, "flash"), _times(m, km, "flash1")
        share.append((v1[0] - v2[0]) / v2[3])
    assert share[0] / share[1] == pytest.approx(2048 / 768, rel=0.15)
