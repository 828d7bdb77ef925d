"""Fine-tuning records of dev_runs_2.yaml (issue 16): GPU memory within 10%, every stated fits/OOM
outcome reproduced, capacity claims within the model-state bound; skips name what the record lacks."""

from pathlib import Path

import pytest

from simulator.validation.finetune_records import (
    GPU_TOLERANCE,
    record_case,
    score_finetune_records,
    score_records,
)

DEV2 = Path(__file__).resolve().parents[2] / "shared" / "validation" / "dev_runs_2.yaml"


@pytest.fixture(scope="module")
def rows():
    if not DEV2.exists():
        pytest.skip(f"{DEV2} not present")
    return {r["id"]: r for r in score_finetune_records(DEV2)}


def test_every_stated_outcome_is_reproduced(rows):
    scored = [r for r in rows.values() if "skipped" not in r and r["fits_stated"] is not None]
    assert len(scored) >= 8
    bad = [r["id"] for r in scored if r["fits_stated"] != r["fits_predicted"]]
    assert not bad, bad


def test_lomo_table2_gpu_memory(rows):
    """LOMO (Lv et al. 2023) Table 2, peak memory per RTX 3090: within 10% except the 65B row (+16%, the
    ZeRO-3 gather buffers of two 65B layers; reported, not tuned)."""
    lomo = {k: r for k, r in rows.items() if k.startswith("finetune_lomo_t2") and "gpu_error" in r}
    assert len(lomo) == 7
    within = [k for k, r in lomo.items() if abs(r["gpu_error"]) <= GPU_TOLERANCE]
    assert len(within) >= 6, {k: round(r["gpu_error"], 3) for k, r in lomo.items()}


def test_skips_name_what_the_record_lacks(rows):
    assert "encoder-decoder" in rows["finetune_peft_readme_t0_3b_lora"]["skipped"]
    assert "seq_len" in rows["finetune_peft_readme_t0_3b_lora"]["skipped"]
    assert "lora.rank" in rows["finetune_qlora_paper_llama65b_single48gb"]["skipped"]
    assert "fp32" in rows["finetune_peft_readme_bloomz_7b1_lora"]["skipped"]


def test_zero_offload_capacity_claims_within_bound(rows):
    """ZeRO-Offload (Ren et al. 2021): 1.4B without offload and 13B with it on one 32 GB V100."""
    assert rows["offload_zero_offload_baseline_pytorch_1.4b_1xv100"]["ok"]
    assert rows["offload_zero_offload_max_model_1gpu"]["ok"]
    assert rows["offload_zero_offload_max_model_1gpu"]["predicted_max_params_bound"] < 20e9


def test_fp32_fits_record_is_not_scored_on_a_lower_bound():
    rec = {"id": "x", "training_method": "lora", "precision": "mixed_precision: no", "group": "g",
           "model": {"layers": 2, "hidden": 64, "heads": 4, "vocab": 100, "seq_len": 16},
           "hardware": {"gpu": "NVIDIA A100 80GB", "gpus_total": 1}, "batch": {"micro_batch": 1},
           "measured": {"memory_gib_per_gpu": 1.0, "outcome": "fits"}}
    with pytest.raises(ValueError, match="fp32"):
        record_case(rec)
    assert "skipped" in score_records([rec])[0]
