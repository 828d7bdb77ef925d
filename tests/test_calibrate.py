"""Calibration profile: reading, writing and applying it (no PyTorch needed)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from models.estimate import estimate
from models.inputs import build_inputs
from simulator.cli import main
from simulator.validation.calibrate import profile as prof


def _gemm(m, n, k, flops_per_s, dtype="bf16"):
    return {"m": m, "n": n, "k": k, "dtype": dtype, "time_s": 2.0 * m * n * k / flops_per_s,
            "flops_per_s": flops_per_s}


def synthetic(kind="cpu", name="AMD EPYC", gemm_rate=4e11, attn_rate=3e10, mem_rate=1e10):
    """A profile dict as `clustersim calibrate` writes it, with round numbers."""
    return {
        "format": prof.FORMAT, "device": {"kind": kind, "name": name, "num_threads": 1, "memory_bytes": 16 * 2**30},
        "software": {"torch": "2.13.0", "python": "3.11"}, "date": "2026-01-01T00:00:00+00:00", "host": "test",
        "dtype": "bf16", "target": dict(prof.DEFAULT_TARGET),
        "peak_flops_per_s": {"bf16": gemm_rate, "fp32": gemm_rate / 4, "fp16": gemm_rate},
        "gemm": [_gemm(1024, 1024, 1024, gemm_rate), _gemm(256, 256, 256, gemm_rate / 2),
                 _gemm(256, 256, 256, gemm_rate / 2), _gemm(64, 64, 64, gemm_rate / 8)],
        "attention": [{"seq_len": 512, "head_dim": 64, "num_heads": 4, "fwd_flops_per_s": attn_rate,
                       "bwd_flops_per_s": attn_rate / 2},
                      {"seq_len": 256, "head_dim": 64, "num_heads": 4, "fwd_flops_per_s": 1.0, "bwd_flops_per_s": 1.0}],
        "memory_ops": [{"op": op, "bytes_per_s": mem_rate} for op in ("layernorm", "gelu", "residual_add", "adam")]
        + [{"op": "copy", "bytes_per_s": 9e10}],
        "copy_bytes_per_s": 9e10, "kernel_overhead_s": 2e-6,
        "collectives": {"backend": "gloo", "world_size": 2,
                        "fit": {"all_reduce": {"alpha_s": 1e-4, "busbw_bytes_per_s": 1e9}}},
    }


def test_write_read_roundtrip(tmp_path):
    p = prof.write_profile(synthetic(), tmp_path / "p.yaml")
    assert prof.read_profile(p) == synthetic()


def test_gemm_table_merges_bins_and_is_relative_to_peak():
    hp = prof.hardware_profile(synthetic())
    # 2*64^3 = 2^19, 2*256^3 = 2^25, 2*1024^3 = 2^31 FLOPs; the two 256^3 GEMMs share a bin
    assert hp.gemm_log2_flops == (19.0, 25.0, 31.0)
    assert hp.gemm_efficiency == pytest.approx((0.125, 0.5, 1.0))
    assert hp.peak_flops_per_s == 4e11


def test_attention_taken_at_target_shape_and_memory_rate_median():
    hp = prof.hardware_profile(synthetic())
    assert hp.attn_fwd_efficiency == pytest.approx(3e10 / 4e11)     # seq 512, head dim 64 = the target
    assert hp.attn_bwd_efficiency == pytest.approx(1.5e10 / 4e11)
    assert hp.memory_bytes_per_s == 1e10                             # the copy is not a layer op
    assert hp.allreduce_busbw_bytes_per_s == 1e9 and hp.allreduce_alpha_s == 1e-4


def test_cpu_gpu_spec_describes_the_cpu():
    g = prof.cpu_gpu_spec(synthetic())
    assert g.peak_flops_per_s("bf16") == 4e11 and g.peak_flops_per_s("fp32") == 1e11
    assert g.hbm_bytes == 16 * 2**30 and g.hbm_bytes_per_s == 9e10
    assert g.nvlink_busbw_bytes_per_s == 1e9 and g.gemm_efficiency == 1.0
    assert "torch 2.13.0" in g.source


def test_apply_cpu_profile_keeps_world_size_and_uses_measured_rates(tmp_path):
    inp = build_inputs(model="gpt-tiny", gpu="h100", nodes=1)
    fast = prof.apply_profile(inp, prof.write_profile(synthetic(), tmp_path / "fast.yaml"))
    slow = prof.apply_profile(inp, prof.write_profile(synthetic(gemm_rate=2e11, attn_rate=1.5e10, mem_rate=5e9),
                                                      tmp_path / "slow.yaml"))
    assert fast.cluster.num_gpus == inp.cluster.num_gpus == 8
    assert fast.cluster.gpu.name == "cpu-1t" and fast.cluster.profile is not None
    t_fast = estimate(fast.model, fast.cluster, fast.plan)
    t_slow = estimate(slow.model, slow.cluster, slow.plan)
    # every kernel rate halved: compute (less the constant per-kernel overhead) doubles
    assert t_slow.compute_s / t_fast.compute_s == pytest.approx(2.0, rel=0.02)


def test_cuda_profile_applies_only_to_its_gpu(tmp_path):
    p = prof.write_profile(synthetic("cuda", "NVIDIA H100 80GB HBM3", gemm_rate=7.9e14, attn_rate=5e14,
                                     mem_rate=3e12), tmp_path / "h100.yaml")
    h100 = build_inputs(model="llama2-7b", gpu="h100", nodes=1)
    out = prof.apply_profile(h100, p)
    assert out.cluster.gpu.name == "h100-sxm-80gb" and out.cluster.profile.peak_flops_per_s == 7.9e14
    assert out.cluster.gpu.nvlink_busbw_bytes_per_s == 1e9      # the measured all-reduce bus bandwidth
    a100 = build_inputs(model="llama2-7b", gpu="a100", nodes=1)
    with pytest.raises(ValueError, match="measured on 'NVIDIA H100 80GB HBM3' but --gpu is a100-sxm-80gb"):
        prof.apply_profile(a100, p)
    assert prof.cluster_with_profile(a100.cluster, p) is a100.cluster
    assert prof.cluster_with_profile(h100.cluster, p).profile is not None
    cpu = prof.write_profile(synthetic(), tmp_path / "cpu.yaml")
    assert prof.cluster_with_profile(h100.cluster, [cpu, p]).profile.peak_flops_per_s == 7.9e14   # first match
    assert prof.cluster_with_profile(a100.cluster, [cpu, p]) is a100.cluster


@pytest.mark.parametrize("name,expected", [("NVIDIA H100 80GB HBM3", "h100-sxm-80gb"),
                                           ("NVIDIA H200", "h200-sxm-141gb"),
                                           ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"),
                                           ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
                                           ("Tesla T4", None)])
def test_catalog_gpu_name(name, expected):
    assert prof.catalog_gpu_name(name) == expected


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d.pop("gemm"), "missing field 'gemm'"),
    (lambda d: d["gemm"][0].update(time_s=0), "gemm: every entry needs time_s > 0"),
    (lambda d: d["device"].update(kind="tpu"), "device.kind"),
])
def test_read_profile_rejects_malformed_files(tmp_path, mutate, message):
    d = synthetic()
    mutate(d)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match=message):
        prof.read_profile(p)


def test_cli_estimate_with_bad_profile_is_one_error_line(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_text("format: nope\n")
    assert main(["estimate", "--model", "gpt-tiny", "--gpu", "h100", "--profile", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "format" in err[0]


def test_cli_estimate_with_cpu_profile(tmp_path, capsys):
    p = prof.write_profile(synthetic(), tmp_path / "p.yaml")
    assert main(["estimate", "--model", "gpt-tiny", "--gpu", "h100", "--profile", str(p), "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert math.isfinite(out["step_time_s"]) and out["step_time_s"] > 0


def test_cli_commands_need_torch_and_a_known_device(monkeypatch, capsys):
    from simulator.cli import calibrate as cli
    assert main(["calibrate", "--device", "tpu"]) == 2
    assert "device: 'tpu' unknown" in capsys.readouterr().err
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert main(["validate"]) == 2
    assert "needs PyTorch" in capsys.readouterr().err


def test_hardware_profile_is_a_valid_models_profile():
    hp = prof.hardware_profile(synthetic())
    again = dataclasses.replace(hp)
    assert again == hp and all(e > 0 for e in hp.gemm_efficiency)


def _with_alpha(d: dict, alpha_s: float) -> dict:
    d = dict(d)
    d["collectives"] = {"backend": "gloo", "world_size": 2, "fit": {
        kind: {"alpha_s": alpha_s, "busbw_bytes_per_s": 1e9}
        for kind in ("all_reduce", "all_gather", "reduce_scatter")}}
    return d


def test_measured_collective_latency_is_paid_once_per_collective(tmp_path):
    """The fitted alpha of every collective kind reaches the model: a TP=2 micro-batch of gpt-tiny
    runs 4 all-reduces per layer plus 2 outside the layers and the cross-entropy's 3 (Megatron-LM);
    ZeRO-3 gathers every layer twice and reduce-scatters it once. Raising alpha by 1 ms adds 1 ms
    per collective, so the step-time difference counts them."""
    inp = build_inputs(model="gpt-tiny", gpu="h100", nodes=1, tp=2, dp=4, micro_batch=1, global_batch=4)
    lo = prof.apply_profile(inp, prof.write_profile(_with_alpha(synthetic(), 0.0), tmp_path / "lo.yaml"))
    hi = prof.apply_profile(inp, prof.write_profile(_with_alpha(synthetic(), 1e-3), tmp_path / "hi.yaml"))
    assert hi.cluster.profile.latency_s("all_gather") == 1e-3
    layers = inp.model.num_layers
    e_lo, e_hi = (estimate(x.model, x.cluster, x.plan) for x in (lo, hi))
    tp_count = (e_hi.exposed_comm_by_kind_s["tp"] - e_lo.exposed_comm_by_kind_s["tp"]) / 1e-3
    assert tp_count == pytest.approx(4 * layers + 2 + 3)
    z3 = dataclasses.replace(inp.plan, tp=1, dp=8, global_batch_size=8, zero_stage=3, overlap_grad_reduce=False,
                             overlap_param_gather=False)
    d_lo, d_hi = (estimate(x.model, x.cluster, z3).exposed_comm_by_kind_s["dp"] for x in (lo, hi))
    assert (d_hi - d_lo) / 1e-3 == pytest.approx(3 * layers)


def test_simulator_uses_the_measured_latency_too(tmp_path):
    from simulator.des.simulate import simulate
    inp = build_inputs(model="gpt-tiny", gpu="h100", nodes=1, tp=2, dp=4, micro_batch=1, global_batch=4)
    hi = prof.apply_profile(inp, prof.write_profile(_with_alpha(synthetic(), 1e-3), tmp_path / "hi.yaml"))
    r = simulate(hi.model, hi.cluster, hi.plan)
    assert r.exposed_comm_by_kind_s["tp"] == pytest.approx(r.analytical.exposed_comm_by_kind_s["tp"], rel=1e-6)
    assert r.exposed_comm_by_kind_s["tp"] > (4 * inp.model.num_layers + 5) * 1e-3


def test_measured_collective_times_are_interpolated_for_the_measured_group(tmp_path):
    """Inside the measured sizes, a collective of the measured group size takes the measured time
    (log-log interpolation), not the alpha-beta line: gloo's 2-rank all-reduce jumps from ~0.3 ms
    at 64 KiB to ~3 ms at 256 KiB on a 2-core host, which no single alpha-beta line follows."""
    d = _with_alpha(synthetic(), 1e-4)
    d["collectives"]["results"] = [{"kind": "all_reduce", "num_bytes": 1 << 16, "time_s": 3e-4},
                                   {"kind": "all_reduce", "num_bytes": 1 << 18, "time_s": 3e-3},
                                   {"kind": "all_reduce", "num_bytes": 1 << 20, "time_s": 4e-3}]
    hp = prof.hardware_profile(d)
    m = hp.collective("all_reduce")
    assert m.world == 2 and m.log2_bytes == (16.0, 18.0, 20.0) and m.alpha_s == 1e-4
    from models import collectives as coll
    assert float(coll.collective_time_s("all_reduce", 1 << 18, 2, 1e9, False, m)) == pytest.approx(3e-3)
    assert float(coll.collective_time_s("all_reduce", 1 << 17, 2, 1e9, False, m)) == pytest.approx((3e-4 * 3e-3) ** 0.5)
    # another group size, a group across nodes, or a size outside the table: the alpha-beta line
    line = 1e-4 + 2 * 0.75 * (1 << 18) / 1e9
    assert float(coll.collective_time_s("all_reduce", 1 << 18, 4, 1e9, False, m)) == pytest.approx(line)
    assert float(coll.collective_time_s("all_reduce", 1 << 22, 2, 1e9, False, m)) == pytest.approx(1e-4 + (1 << 22) / 1e9)
    assert hp.collective("send_recv") is None
