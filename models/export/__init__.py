"""A plan as the framework's own launch settings: pure writers, plan + model + cluster + framework -> text.

One writer per :attr:`models.frameworks.Profile.export`:

- ``megatron``: a bash launch script whose ``MEGATRON_ARGS`` array holds Megatron-LM / Megatron-Core
  command-line arguments (``pretrain_gpt.py``);
- ``nemo``: a YAML override of a NeMo 2.0 / Megatron-Bridge recipe (``recipe.trainer.strategy.*``,
  ``recipe.data.*``, ``recipe.optim.config.*``, ``recipe.model.config.*``), the same keys as dotted
  ``nemo llm pretrain`` overrides in its header;
- ``torchtitan``: a torchtitan job TOML (``[parallelism]``, ``[training]``, ``[activation_checkpoint]``,
  ``[model] converters``, ``[float8]``);
- ``deepspeed``: a DeepSpeed JSON config (``zero_optimization``, batch sizes, ``bf16``/``fp16``,
  ``activation_checkpointing``);
- ``fsdp``: a PyTorch FSDP (FSDP1) Python snippet (``ShardingStrategy``, ``BackwardPrefetch``,
  ``MixedPrecision``, ``CPUOffload``, activation checkpointing).

Each writer's docstring names the file and version its key names were read from. A plan the framework
cannot run (its profile's limits, :func:`models.frameworks.framework_errors`) or that the framework's
settings cannot express is refused with a ``ValueError`` naming the field and the reason; nothing is
silently dropped: settings that do not apply are stated in :attr:`Export.notes` (and as comments where
the format has them).

    >>> from models.hardware import make_cluster
    >>> from models.plan import Plan
    >>> from models.transformer import get_model
    >>> e = export_plan(Plan(dp=4, tp=2, global_batch_size=8), get_model("gpt-tiny"), make_cluster("a100", 1),
    ...                 "torchtitan")
    >>> e.suffix, e.keys["tp"]
    ('.toml', 'parallelism.tensor_parallel_degree')
"""

from __future__ import annotations

import shlex

from models.export.common import MARKER, SUFFIXES, Export, _placement_errors, _refuse
from models.export.deepspeed import deepspeed_json
from models.export.fsdp import fsdp_snippet
from models.export.megatron import megatron_args
from models.export.nemo import nemo_recipe
from models.export.torchtitan import torchtitan_toml
from models.frameworks import framework_errors, get_profile
from models.plan import Plan

WRITERS = {"megatron": megatron_args, "nemo": nemo_recipe, "torchtitan": torchtitan_toml,
           "deepspeed": deepspeed_json, "fsdp": fsdp_snippet}


def export_plan(plan: Plan, model, cluster, framework: str) -> Export:
    """``plan`` as ``framework``'s launch settings (writer chosen by the profile's ``export``); ValueError
    naming the field and the reason when the framework cannot run the plan or its settings cannot say it."""
    prof = get_profile(framework)
    if prof is None:
        raise ValueError(f"framework: give one to export for ({', '.join(p for p in WRITER_FRAMEWORKS)})")
    if prof.export not in WRITERS:
        raise ValueError(f"framework: no launch-config writer for {prof.name}; export writes "
                         f"{', '.join(WRITER_FRAMEWORKS)}")
    _refuse(framework_errors(plan, prof.name))
    if prof.export in ("megatron", "nemo"):
        _refuse(_placement_errors(plan, prof.name))
    return WRITERS[prof.export](plan, model, cluster, prof)


def _writer_frameworks() -> tuple:
    from models.frameworks import PROFILES
    return tuple(p.name for p in PROFILES.values() if p.export in WRITERS)


WRITER_FRAMEWORKS = _writer_frameworks()


def suffix_for(framework: str) -> tuple:
    """The file suffixes a framework's export may be written to (the first is its natural one)."""
    prof = get_profile(framework)
    return SUFFIXES.get(prof.export if prof else "", ())


def shell_args(text: str) -> list[str]:
    """The arguments of a Megatron export's ``MEGATRON_ARGS=( ... )`` array (for tests and tools)."""
    body = text.split("MEGATRON_ARGS=(", 1)[1].split("\n)", 1)[0]
    return shlex.split(body, comments=True)


__all__ = ["Export", "export_plan", "megatron_args", "nemo_recipe", "torchtitan_toml", "deepspeed_json",
           "fsdp_snippet", "WRITERS", "WRITER_FRAMEWORKS", "SUFFIXES", "suffix_for", "shell_args", "MARKER"]
