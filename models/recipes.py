"""Layouts a framework's own performance scripts launch a model with: what a run of those scripts did
where a published record of it leaves a setting out.

NeMo's performance scripts (``scripts/llm/performance/pretrain_<model>.py``) read their parallel layout
from ``recommended_model_configs/model_configs_<system>.csv`` (``utils.get_user_configs``: task, model,
size and dtype select the row). The rows below are the ``pre_train`` rows of NVIDIA/NeMo@v2.2.0
(7192a2c, 2025-03-12; the NeMo of the 25.02 containers), H100 and B200 files, columns as there:
(model, size, system, dtype, num_gpus, seq_len, tp, pp, cp, ep, vp, mbs, gbs).
"""

from __future__ import annotations

import re

NEMO_PERF_SOURCE = ("NVIDIA/NeMo scripts/llm/performance/recommended_model_configs/model_configs_{system}.csv@v2.2.0 "
                    "(7192a2c)")

NEMO_PERF_PRETRAIN = (
    ("gpt3", "175b", "h100", "fp8", 512, 2048, 4, 8, 1, 1, 6, 2, 2048),
    ("gpt3", "175b", "h100", "fp8", 128, 2048, 4, 8, 1, 1, 6, 1, 256),
    ("gpt3", "175b", "h100", "bf16", 128, 2048, 4, 8, 1, 1, 6, 1, 256),
    ("llama31", "405b", "h100", "fp8", 576, 8192, 8, 9, 2, 1, 7, 1, 252),
    ("llama31", "405b", "h100", "bf16", 576, 8192, 8, 9, 2, 1, 7, 1, 252),
    ("llama3", "70b", "h100", "fp8", 64, 8192, 4, 8, 1, 1, 5, 1, 128),
    ("llama3", "70b", "h100", "bf16", 64, 8192, 4, 4, 2, 1, 5, 1, 128),
    ("llama3", "8b", "h100", "fp8", 8, 8192, 1, 1, 2, 1, 1, 1, 128),
    ("llama3", "8b", "h100", "bf16", 8, 8192, 1, 1, 2, 1, 1, 1, 128),
    ("mixtral", "8x7b", "h100", "fp8", 64, 4096, 1, 4, 1, 8, 8, 1, 256),
    ("mixtral", "8x7b", "h100", "bf16", 64, 4096, 1, 4, 1, 8, 8, 1, 256),
    ("mixtral", "8x22b", "h100", "bf16", 256, 65536, 4, 4, 8, 8, 14, 1, 256),
    ("mixtral", "8x22b", "h100", "fp8", 256, 65536, 4, 4, 8, 8, 14, 1, 256),
    ("nemotron3", "22b", "h100", "bf16", 16, 4096, 2, 4, 1, 1, 10, 1, 32),
    ("nemotron3", "22b", "h100", "fp8", 64, 4096, 2, 4, 1, 1, 10, 2, 256),
    ("nemotron3", "8b", "h100", "bf16", 8, 4096, 2, 1, 1, 1, 1, 2, 32),
    ("nemotron3", "8b", "h100", "fp8", 64, 4096, 2, 1, 1, 1, 1, 4, 256),
    ("nemotron4", "15b", "h100", "bf16", 64, 4096, 4, 1, 1, 1, 1, 4, 256),
    ("nemotron4", "15b", "h100", "fp8", 64, 4096, 4, 1, 1, 1, 1, 4, 256),
    ("nemotron4", "340b", "h100", "bf16", 128, 4096, 8, 8, 2, 1, 12, 1, 32),
    ("nemotron4", "340b", "h100", "fp8", 128, 4096, 8, 8, 1, 1, 12, 1, 32),
    ("gpt3", "175b", "b200", "bf16", 128, 2048, 4, 4, 1, 1, 12, 2, 256),
    ("gpt3", "175b", "b200", "fp8", 128, 2048, 4, 4, 1, 1, 12, 2, 256),
    ("llama3", "8b", "b200", "bf16", 8, 8192, 1, 1, 1, 1, 1, 2, 128),
    ("llama3", "8b", "b200", "fp8", 8, 8192, 1, 1, 1, 1, 1, 2, 128),
    ("llama3", "70b", "b200", "fp8", 64, 8192, 2, 4, 2, 1, 5, 1, 128),
    ("llama3", "70b", "b200", "bf16", 64, 8192, 2, 4, 2, 1, 5, 1, 128),
    ("llama31", "405b", "b200", "bf16", 144, 8192, 4, 9, 2, 1, 7, 1, 36),
    ("llama31", "405b", "b200", "fp8", 144, 8192, 4, 9, 2, 1, 7, 1, 36),
    ("mixtral", "8x7b", "b200", "bf16", 64, 4096, 1, 1, 1, 8, 1, 2, 256),
    ("mixtral", "8x7b", "b200", "fp8", 64, 4096, 1, 1, 1, 8, 1, 2, 256),
    ("mixtral", "8x22b", "b200", "bf16", 256, 65536, 2, 4, 8, 8, 14, 1, 64),
    ("mixtral", "8x22b", "b200", "fp8", 256, 65536, 2, 4, 8, 8, 14, 1, 64),
    ("nemotron4", "15b", "b200", "bf16", 64, 4096, 1, 1, 1, 1, 1, 2, 256),
    ("nemotron4", "340b", "b200", "bf16", 128, 4096, 8, 4, 1, 1, 12, 1, 32),
    ("nemotron4", "340b", "b200", "fp8", 128, 4096, 8, 4, 1, 1, 12, 1, 32),
    ("nemotron4", "15b", "b200", "fp8", 64, 4096, 1, 1, 1, 1, 1, 2, 256),
)


def _key(text: str) -> str:
    """Lower-case letters and digits only: 'Nemotron-4 340B' -> 'nemotron4340b'."""
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def nemo_perf_vp(model_name: str, system: str, tp: int, pp: int) -> tuple[int, str] | None:
    """(vp, source) of the NeMo performance-script layout for a model called ``model_name`` on ``system``
    (h100, b200) with ``tp`` x ``pp``, when a row of that model, size and system has that tp and pp (the
    interleaving is a property of the pipeline layout: every such row agrees); None otherwise.

    >>> nemo_perf_vp("Nemotron-4 340B", "h100", 8, 8)[0]
    12
    >>> nemo_perf_vp("Nemotron-4 340B", "h100", 8, 4) is None
    True
    """
    name = _key(model_name)
    vps = {row[10] for row in NEMO_PERF_PRETRAIN
           if row[2] == system and _key(row[0] + row[1]) in name and (row[6], row[7]) == (tp, pp)}
    if len(vps) != 1:
        return None
    return vps.pop(), NEMO_PERF_SOURCE.format(system=system)
