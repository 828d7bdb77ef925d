"""Every plan listed in scenarios/*.yaml: the simulation agrees with the analytical estimate
within 2% where nothing contends; the known exceptions are named with the reason."""

import pathlib

import pytest

TOLERANCE = 0.02
ROOT = pathlib.Path(__file__).resolve().parents[1]
# (scenario, plan) -> (why they differ, simulated / analytical bounds)
EXPECTED_DIFFERENCES = {
    ("llama3-405b-16k-h100-failures", "meta-interleaved"):
        ("126 layers over 112 virtual stages: 14 two-layer chunks pace the interleaved pipeline; ZeRO-2 "
         "reduce-scatters every micro-batch on the NICs the pipeline sends use", (1.05, 1.35)),
    ("llama3-405b-16k-h100-failures", "meta-1f1b"):
        ("ZeRO-2 waits for each micro-batch's reduce-scatters at the end of its backward; in the simulation "
         "the waits of the last micro-batches fall into the 1F1B cool-down, where the stage idles anyway; the "
         "analytical model adds them all; against that, a longer backward hides more of them in the analytical "
         "overlap window than the simulated waits shrink: measured 1.000 with a fused RMSNorm, 1.010 with the "
         "generic eager one (analytical exposed comm 1.28 s -> 1.18 s)", (0.93, 1.02)),
    ("deepseek-v3-moe-ep", "ep32-pp16"):
        ("61 layers over 16 stages (4, 3 and the output layer): on the first stage compute + exposed all-to-alls "
         "agree (16.05 s simulated vs 16.09 s), but the 1F1B warm-up and cool-down wait on the 4-layer stages "
         "and their all-to-alls: bubble 2.67 s simulated vs 1.93 s from the mean stage (measured 1.029)",
         (1.0, 1.08)),
    ("llama3-405b-h100-cp", "table4-interleaved"):
        ("uneven 3-4 layer chunks: the analytical bubble uses the mean stage time", (0.94, 1.0)),
}


def _plans():
    sc = pytest.importorskip("simulator.planning.scenario")
    out = []
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        scn = sc.load_scenario(path)
        for spec in scn.plans:
            out.append(pytest.param(path, spec, id=f"{path.stem}:{spec.name}"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path,spec", _plans())
def test_scenario_plan_agreement(path, spec):
    from simulator.des.simulate import simulate
    from simulator.planning import scenario as sc
    scn = sc.load_scenario(path)
    model, cluster = sc.build_model(scn), sc.build_cluster_spec(scn)
    fields = {k: v for k, v in spec.model_dump(exclude_none=True).items() if k != "name"}
    plan = sc.plan_from_spec(fields, model, cluster, scn.training)
    r = simulate(model, cluster, plan)
    ratio = r.step_time_s / r.analytical.step_time_s
    known = EXPECTED_DIFFERENCES.get((path.stem, spec.name))
    if known:
        lo, hi = known[1]
        assert lo <= ratio <= hi, known[0]
    else:
        assert ratio == pytest.approx(1.0, abs=TOLERANCE)
    assert r.peak_memory_bytes == pytest.approx(r.analytical.peak_memory_bytes, rel=TOLERANCE)
