"""Timeline as a tidy pandas DataFrame, and Chrome Trace Event JSON (opens in ui.perfetto.dev).

Chrome format (Trace Event Format spec, "Complete events"): ``{"name", "ph": "X", "ts", "dur",
"pid", "tid", "args"}`` with ts and dur in microseconds; ``ph: "M"`` metadata names the tracks,
``ph: "s"/"f"`` flow events draw arrows (pipeline send -> receiving op), ``ph: "C"`` counter
events plot a value over time (memory). One process per simulated GPU (the representative rank
of each pipeline stage), one thread per stream that has events (compute, tp, cp, ep, pp, dp).
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


def chrome_trace(timeline: pd.DataFrame, title: str = "clustersim", memory: pd.DataFrame | None = None) -> dict:
    """The Chrome Trace Event JSON object for ``timeline`` (ph "X", microseconds).

    One process per simulated GPU, named once ("GPU r: pipeline stage s"; the title goes to
    ``otherData``, not onto process 0); a thread per stream that has events (no empty tracks);
    flow arrows (ph "s" -> "f", one id per message) from each pipeline send to the compute op
    that consumes it on the neighbouring stage; with ``memory`` (SimResult.memory_timeline), a
    counter track per GPU (ph "C") of allocated and activation GiB.
    """
    events = []
    streams_of = timeline.groupby("rank")["stream"].unique() if len(timeline) else {}
    tid_of = {s: i for i, s in enumerate(STREAMS)}
    for s in timeline["stream"].unique() if len(timeline) else ():
        tid_of.setdefault(s, len(tid_of))
    for rank, stage in timeline[["rank", "stage"]].drop_duplicates().itertuples(index=False):
        pid = int(rank)
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": f"GPU {rank}: pipeline stage {stage}"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"sort_index": int(stage)}})
        for stream in sorted(streams_of[rank], key=tid_of.get):
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid_of[stream],
                           "args": {"name": stream}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid_of[stream],
                           "args": {"sort_index": tid_of[stream]}})
    cols = ["rank", "stream", "op", "kind", "start_s", "end_s", "bytes", "flops", "microbatch", "stage", "layer"]
    for r, stream, op, kind, start, end, nbytes, flops, mb, stage, layer in timeline[cols].itertuples(index=False):
        name = op if mb < 0 else f"{op} mb{mb}"
        events.append({"name": name, "cat": kind, "ph": "X", "ts": start * 1e6, "dur": (end - start) * 1e6,
                       "pid": int(r), "tid": tid_of[stream],
                       "args": {"microbatch": int(mb), "stage": int(stage), "layer": int(layer),
                                "bytes": float(nbytes), "flops": float(flops)}})
    events += pipeline_flows(timeline, tid_of)
    if memory is not None:
        events += memory_counters(memory)
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"title": title, "note": "one GPU per pipeline stage is simulated: its TP/CP peers and "
                                                  "the other DP replicas run the same timeline"}}


def pipeline_flows(timeline: pd.DataFrame, tid_of: dict) -> list[dict]:
    """Flow events (ph "s" on the send, ph "f" on the receiver's compute op, same id) for pipeline sends.

    A forward send ``pp-send-F`` of micro-batch m from stage s feeds the first forward op of m on
    stage (s + 1) mod pp that starts once the send has ended (mod pp: interleaved chunks wrap to
    stage 0); a backward send ``pp-send-B`` feeds the first backward op of m on stage (s - 1) mod pp.
    """
    if not len(timeline):
        return []
    num_stages = int(timeline["stage"].max()) + 1
    sends = timeline[timeline["op"].isin(("pp-send-F", "pp-send-B"))]
    compute = timeline[timeline["stream"] == "compute"]
    by_key = {k: g.sort_values("start_s") for k, g in compute.groupby(["stage", "op", "microbatch"])}
    out = []
    for i, snd in enumerate(sends.itertuples(index=False)):
        fwd = snd.op == "pp-send-F"
        dest = (snd.stage + (1 if fwd else -1)) % num_stages
        cand = by_key.get((dest, "F" if fwd else "B", snd.microbatch))
        if cand is None:
            continue
        after = cand[cand["start_s"] >= snd.end_s - 1e-12]
        if not len(after):
            continue
        rcv = after.iloc[0]
        common = {"name": snd.op, "cat": "pp", "id": i}
        out.append(common | {"ph": "s", "ts": snd.start_s * 1e6, "pid": int(snd.rank), "tid": tid_of[snd.stream]})
        out.append(common | {"ph": "f", "bp": "e", "ts": float(rcv["start_s"]) * 1e6, "pid": int(rcv["rank"]),
                             "tid": tid_of["compute"]})
    return out


def memory_counters(memory: pd.DataFrame) -> list[dict]:
    """A counter track per GPU (ph "C"): allocated and activation GiB after each change."""
    return [{"name": "memory", "ph": "C", "ts": t * 1e6, "pid": int(r),
             "args": {"allocated_gib": float(total) / 2**30, "activations_gib": float(act) / 2**30}}
            for r, t, act, total in memory[["rank", "time_s", "activation_bytes", "allocated_bytes"]].itertuples(
                index=False)]
