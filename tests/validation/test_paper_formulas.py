"""Reproductions of published analytic results; each test cites its source."""

import math

import numpy as np
import pytest

from models import flops as fl
from models import memory as mem
from models.estimate import estimate
from models.hardware import make_cluster
from models.parallel import pipeline
from models.plan import Plan
from models.transformer import Transformer, get_model

TOLERANCE = 0.01  # relative


def gpt(L=24, h=2048, a=16, s=2048, V=51200, dropout=True):
    return Transformer("gpt", L, h, a, a, 4 * h, V, s, "gelu", tied_embeddings=True, dropout=dropout)


# ZeRO paper (Rajbhandari et al. 2020), Sec. 3 / Fig. 1: 7.5B model, N_d = 64, K = 12:
# baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB per device.
ZERO_PAPER_GB = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_paper_model_states(stage):
    total = sum(mem.model_state_bytes(7.5e9, 64, stage)) / 1e9
    assert total == pytest.approx(ZERO_PAPER_GB[stage], rel=0.03)


# Korthikanti et al. 2022, Table 2: activation bytes per layer.
@pytest.mark.parametrize("t", [1, 2, 8])
def test_korthikanti_closed_forms_match_generalised_model(t):
    s, b, h, a = 2048, 4, 12288, 96
    m = Transformer("g", 96, h, a, a, 4 * h, 51200, s, "gelu", dropout=True)
    cases = [  # (sp, recompute, flash) -> closed form
        (False, 0, "none", s * b * h * (10 + 24 / t + 5 * a * s / (h * t))),
        (True, 0, "none", s * b * h / t * (34 + 5 * a * s / h)),
        (True, 1, "selective", s * b * h / t * 34),
        (False, 2, "full", 2 * s * b * h),
    ]
    for sp, rc, rc_name, expected in cases:
        got = float(mem.layer_activation_bytes(m, b, s, t, sp, rc, False))
        assert got == pytest.approx(expected, rel=TOLERANCE), (sp, rc_name)
        assert mem.korthikanti_layer_activation_bytes(s, b, h, a, t, sp, rc_name) == pytest.approx(expected)


def test_korthikanti_no_parallelism_34_plus_5as_over_h():
    s, b, h, a = 2048, 1, 4096, 32
    m = Transformer("g", 32, h, a, a, 4 * h, 51200, s, "gelu", dropout=True)
    assert float(mem.layer_activation_bytes(m, b, s, 1, False, 0, False)) == pytest.approx(
        s * b * h * (34 + 5 * a * s / h))


def test_flash_attention_drops_the_score_term():
    m = gpt()
    with_scores = float(mem.layer_activation_bytes(m, 1, 2048, 1, False, 0, False))
    flash = float(mem.layer_activation_bytes(m, 1, 2048, 1, False, 0, True))
    assert with_scores - flash == pytest.approx(5 * m.num_heads * 2048**2)


# Narayanan et al. SC'21 eq. (3): F = 96 B s l h^2 (1 + s/6h + V/16lh) per iteration with full recompute.
@pytest.mark.parametrize("name", ["gpt3-175b", "megatron-530b", "megatron-1t"])
def test_megatron_flops_formula_equals_our_count(name):
    m = get_model(name)
    B = 1536
    ours = float(fl.hardware_flops_per_iteration(m, B, recompute=2, causal=False))  # eq. 3: full square
    formula = fl.megatron_flops_formula(B, m.seq_len, m.num_layers, m.hidden, m.vocab)
    assert ours == pytest.approx(formula, rel=TOLERANCE)


def test_model_flops_are_six_n_d_plus_attention():
    # Kaplan et al. 2020 / PaLM App. B: ~6 N D for the weights plus 12 L h s per token for attention.
    m = get_model("llama2-7b")
    tokens = m.seq_len
    expected = 6 * (m.num_params - m.embedding_params) * tokens + 12 * m.num_layers * m.hidden * m.seq_len * tokens
    assert float(fl.model_flops_per_iteration(m, 1, causal=False)) == pytest.approx(expected, rel=0.01)


# Narayanan et al. SC'21 Sec. 2.2: bubble (p-1)/m for 1F1B, (p-1)/(v m) interleaved.
@pytest.mark.parametrize("p,m,v", [(4, 8, 1), (8, 64, 1), (16, 96, 3), (4, 8, 2)])
def test_pipeline_bubble(p, m, v):
    sched = 2 if v > 1 else 1
    assert float(pipeline.bubble_ratio(p, m, v, sched)) == pytest.approx((p - 1) / (v * m))


def test_bubble_zero_without_pipeline():
    assert float(pipeline.bubble_ratio(1, 37)) == 0.0
    assert float(pipeline.bubble_frac(4, 8)) == pytest.approx(3 / 11)


def test_gpt3_parameter_count_is_175b():
    # Brown et al. 2020 Table 2.1: 175.0B parameters.
    assert get_model("gpt3-175b").num_params / 1e9 == pytest.approx(175.0, rel=0.01)


@pytest.mark.parametrize("name,billions", [("llama2-7b", 6.74), ("llama2-70b", 68.98), ("llama3-8b", 8.03),
                                           ("llama3-405b", 405.9), ("mixtral-8x7b", 46.7)])
def test_published_parameter_counts(name, billions):
    # Public model cards / config.json parameter counts.
    assert get_model(name).num_params / 1e9 == pytest.approx(billions, rel=0.01)


def test_interleaved_first_stage_memory_factor():
    # Korthikanti et al. 2022 Sec. 4.2.3: first stage holds L(1 + (p-1)/(pv)) layers' activations.
    p, v, m = 16, 3, 192
    inflight = float(mem.inflight_microbatches(0, p, v, m, 2))
    assert inflight == pytest.approx(p * (1 + (p - 1) / (p * v)))


def test_gemm_wave_model_against_measured_h100_sweep():
    # hardware_measured.yaml: square bf16 matmul on H100 (torch-performance-test-data #79):
    # 176.6 / 676.6 / 788.7 / 797.5 TFLOP/s at N = 1024 / 2048 / 4096 / 8192.
    from models.efficiency import gemm_time_s
    measured = {1024: 176.62, 2048: 676.59, 4096: 788.72, 8192: 797.51}
    for n, tflops in measured.items():
        model = 2 * n**3 / float(gemm_time_s(n, n, n, 989e12, 0.803, 132, 3.35e12)) / 1e12
        assert model == pytest.approx(tflops, rel=0.20), n


def test_one_estimate_is_consistent():
    m = get_model("gpt3-175b")
    c = make_cluster("a100-sxm-80gb", 128)
    p = Plan(dp=8, tp=8, pp=16, vpp=3, micro_batch_size=1, global_batch_size=1536, sp=True,
             recompute="selective", zero_stage=1, schedule="interleaved")
    e = estimate(m, c, p)
    assert e.step_time_s == pytest.approx(e.compute_s + e.exposed_comm_s + e.bubble_s, rel=1e-9)
    assert 0 < e.mfu <= e.hfu < 1
    assert e.fits and e.peak_memory_bytes == pytest.approx(max(s.total_bytes for s in e.memory_by_stage))
    assert math.isclose(e.tokens_per_s, 1536 * 2048 / e.step_time_s)
    assert np.isfinite(e.tflops_per_gpu)
