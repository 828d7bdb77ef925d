"""Timeline as a tidy pandas DataFrame, and Chrome Trace Event JSON (opens in ui.perfetto.dev).

Chrome format (Trace Event Format spec, "Complete events"): ``{"name", "ph": "X", "ts", "dur",
"pid", "tid", "args"}`` with ts and dur in microseconds; ``ph: "M"`` metadata names the tracks.
One process per simulated GPU (the representative rank of each pipeline stage), one thread per
stream (compute, tp, cp, ep, pp, dp).
"""

from __future__ import annotations

import pandas as pd

COLUMNS = ("rank", "stream", "op", "kind", "start_s", "end_s", "bytes", "flops", "microbatch", "stage", "layer")
STREAMS = ("compute", "tp", "cp", "ep", "pp", "dp")


def timeline_frame(records: list[tuple], stage_ranks: list[int]) -> pd.DataFrame:
    """Records (stage, stream, op, kind, start, end, bytes, flops, mb, layer) -> DataFrame in COLUMNS order."""
    df = pd.DataFrame.from_records(records, columns=["stage", "stream", "op", "kind", "start_s", "end_s", "bytes",
                                                     "flops", "microbatch", "layer"])
    df["rank"] = [stage_ranks[s] for s in df["stage"]] if len(df) else pd.Series(dtype=int)
    df = df[list(COLUMNS)].sort_values(["rank", "start_s", "stream"], kind="stable").reset_index(drop=True)
    return df


def memory_frame(memory: list[tuple], stage_ranks: list[int], static_bytes: list[float], total_fn) -> pd.DataFrame:
    """Allocated bytes over time per rank: one row per change (stage, time_s, activation bytes)."""
    df = pd.DataFrame.from_records(memory, columns=["stage", "time_s", "activation_bytes"])
    df["rank"] = [stage_ranks[s] for s in df["stage"]]
    df["allocated_bytes"] = total_fn(df["stage"].map(lambda s: static_bytes[s]).astype(float), df["activation_bytes"])
    return df[["rank", "stage", "time_s", "activation_bytes", "allocated_bytes"]].sort_values(
        ["rank", "time_s"], kind="stable").reset_index(drop=True)


def chrome_trace(timeline: pd.DataFrame, title: str = "clustersim") -> dict:
    """The Chrome Trace Event JSON object for ``timeline`` (ph "X", microseconds)."""
    events = [{"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": title}}]
    for rank, stage in timeline[["rank", "stage"]].drop_duplicates().itertuples(index=False):
        events.append({"name": "process_name", "ph": "M", "pid": int(rank), "tid": 0,
                       "args": {"name": f"GPU {rank}: pipeline stage {stage} (its TP/CP peers and the other "
                                        "DP replicas run the same timeline)"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": int(rank), "tid": 0,
                       "args": {"sort_index": int(stage)}})
        for tid, stream in enumerate(STREAMS):
            events.append({"name": "thread_name", "ph": "M", "pid": int(rank), "tid": tid, "args": {"name": stream}})
    tid_of = {s: i for i, s in enumerate(STREAMS)}
    cols = ["rank", "stream", "op", "kind", "start_s", "end_s", "bytes", "flops", "microbatch", "stage", "layer"]
    for r, stream, op, kind, start, end, nbytes, flops, mb, stage, layer in timeline[cols].itertuples(index=False):
        name = op if mb < 0 else f"{op} mb{mb}"
        events.append({"name": name, "cat": kind, "ph": "X", "ts": start * 1e6, "dur": (end - start) * 1e6,
                       "pid": int(r), "tid": tid_of.get(stream, len(STREAMS)),
                       "args": {"microbatch": int(mb), "stage": int(stage), "layer": int(layer),
                                "bytes": float(nbytes), "flops": float(flops)}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}
