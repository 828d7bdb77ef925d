"""The Gantt timeline of a simulated iteration (the dashboard's Timeline page and the CLI): the rows, the
colours per op, thinning to what a browser draws, and the figure. Re-exported by ui.figures.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

# Fewest bars a Gantt draws before it aggregates: a browser draws ~5,000 SVG bars without stalling.
MAX_GANTT_BARS = 4000
MAX_GANTT_ROWS = 64


# ---------------------------------------------------------------- Gantt timeline
STREAM_ORDER = ("compute", "tp", "cp", "ep", "pp", "dp")
OP_NAMES = {"F": "forward", "B": "backward", "W": "weight grad", "R": "recompute"}


def _row_label(df: pd.DataFrame) -> pd.Series:
    lab = "GPU " + df["rank"].astype(str)
    if "stage" in df.columns:
        lab = lab + " (stage " + df["stage"].astype(str) + ")"
    if "stream" in df.columns:
        lab = lab + " · " + df["stream"].astype(str)
    return lab


def _row_key(label: str) -> tuple:
    rank = int(label.split()[1])
    stream = label.rsplit("· ", 1)[-1] if "· " in label else ""
    return rank, STREAM_ORDER.index(stream) if stream in STREAM_ORDER else len(STREAM_ORDER), stream


def _phase_col(df: pd.DataFrame) -> str:
    for c in ("phase", "op", "kind", "name"):
        if c in df.columns:
            return c
    raise ValueError("timeline: needs a 'phase' or 'op' column (forward, backward, recompute, collective names)")


PHASE_COLOURS = {"forward": "#1f77b4", "backward": "#ff7f0e", "recompute": "#2ca02c", "weight grad": "#9467bd",
                 "optimizer": "#7f7f7f"}
# collectives: one hue per kind (tp-, cp-, ...), a darker / lighter shade for each further op of that kind
KIND_SHADES = {"tp": ("#d62728", "#ff9896", "#8c1a1b"), "cp": ("#17becf", "#9edae5", "#0e7c87"),
               "ep": ("#bcbd22", "#dbdb8d", "#7a7b16"), "pp": ("#8c564b", "#c49c94", "#5a3730"),
               "dp": ("#e377c2", "#f7b6d2", "#a3448a")}
PALETTE = px.colors.qualitative.Plotly


def phase_colours(phases) -> dict:
    """A fixed colour per op: compute phases by name, collectives by their kind prefix (tp-, pp-, ...).

    >>> phase_colours(["backward", "dp-all_gather", "dp-reduce_scatter"])["dp-reduce_scatter"]
    '#f7b6d2'
    """
    out, seen = {}, {}
    for i, p in enumerate(sorted(set(map(str, phases)))):
        kind = p.split("-")[0]
        if p in PHASE_COLOURS:
            out[p] = PHASE_COLOURS[p]
        elif kind in KIND_SHADES:
            n = seen[kind] = seen.get(kind, -1) + 1
            out[p] = KIND_SHADES[kind][n % len(KIND_SHADES[kind])]
        else:
            out[p] = PALETTE[i % len(PALETTE)]
    return out


def tidy_timeline(df: pd.DataFrame) -> pd.DataFrame:
    """A timeline with ``duration_s`` (from ``end_s`` when missing) and readable op names."""
    d = df
    if "duration_s" not in d.columns:
        if "end_s" not in d.columns:
            raise ValueError("timeline: needs start_s and duration_s (or end_s) columns")
        d = d.assign(duration_s=d["end_s"] - d["start_s"])
    if "op" in d.columns and "phase" not in d.columns:
        d = d.assign(phase=d["op"].map(lambda o: OP_NAMES.get(o, o)))
    return d


def pick_ranks(df: pd.DataFrame, max_rows: int = MAX_GANTT_ROWS) -> list:
    """Ranks to draw when there are too many: the first rank of every pipeline stage first
    (the schedule stays visible), then more ranks in order up to ``max_rows`` rows."""
    ranks = sorted(df["rank"].unique())
    streams = df["stream"].nunique() if "stream" in df.columns else 1
    budget = max(1, max_rows // max(streams, 1))
    if len(ranks) <= budget:
        return ranks
    chosen = []
    if "stage" in df.columns:
        chosen = list(df.sort_values("rank").groupby("stage")["rank"].first().sort_values())[:budget]
    for r in ranks:
        if len(chosen) >= budget:
            break
        if r not in chosen:
            chosen.append(r)
    return sorted(chosen)


def _merge_bars(d: pd.DataFrame, phase: str, quantum: float, same_phase: bool) -> pd.DataFrame:
    """Join consecutive bars of a row closer than ``quantum`` seconds (only bars of one phase when
    ``same_phase``); a joined bar takes the phase that fills most of it and counts its ops."""
    d = d.sort_values(["row", "start_s"]).reset_index(drop=True)
    end = d["start_s"] + d["duration_s"]
    prev_end = end.groupby(d["row"]).cummax().groupby(d["row"]).shift()
    new = prev_end.isna() | (d["start_s"] - prev_end > quantum)
    if same_phase:
        new |= d[phase] != d.groupby("row")[phase].shift()
    grp = new.cumsum()
    keys = {c: "first" for c in ("row", "rank", "stage", "stream") if c in d.columns}
    merged = d.assign(end_s=end).groupby(grp).agg({**keys, "start_s": "min", "end_s": "max", "count": "sum"})
    merged[phase] = d.loc[d.groupby(grp)["duration_s"].idxmax(), phase].to_numpy()
    merged["duration_s"] = merged.pop("end_s") - merged["start_s"]
    return merged.reset_index(drop=True)


def aggregate_timeline(df: pd.DataFrame, max_bars: int = MAX_GANTT_BARS,
                       max_rows: int = MAX_GANTT_ROWS) -> tuple[pd.DataFrame, str]:
    """Reduce a timeline to what a browser can draw: at most ``max_rows`` GPU/stream rows and
    at most ``max_bars`` bars. Ops of one row closer than a time quantum (span x rows / max_bars)
    are joined: first those of the same phase, then, if still too many, any (the bar takes the
    phase that fills most of it; its ``count`` says how many ops it holds). Returns (frame, note)."""
    df = tidy_timeline(df)
    phase = _phase_col(df)
    notes = []
    total_ranks = df["rank"].nunique()
    ranks = pick_ranks(df, max_rows)
    d = df[df["rank"].isin(ranks)].copy()
    if len(ranks) < total_ranks:
        notes.append(f"showing {len(ranks)} of {total_ranks} GPUs (first GPU of each pipeline stage first)")
    d["row"] = _row_label(d)
    d["count"] = 1
    n_ops = len(d)
    span = float((d["start_s"] + d["duration_s"]).max() - d["start_s"].min()) or 1.0
    quantum = span * d["row"].nunique() / max_bars
    for same_phase in (True, False):
        if len(d) > max_bars:
            d = _merge_bars(d, phase, quantum, same_phase)
    if len(d) > max_bars:  # rows so dense that even joined bars overflow: widen the quantum
        while len(d) > max_bars:
            quantum *= 2
            d = _merge_bars(d, phase, quantum, False)
    if len(d) < n_ops:
        notes.append(f"joined {n_ops:,} ops into {len(d):,} bars (gaps under {quantum * 1e3:.3g} ms; "
                     "zoom shows the joined bars, raise 'most bars' for detail)")
    return d, "; ".join(notes)


def gantt_figure(timeline: pd.DataFrame, max_bars: int = MAX_GANTT_BARS,
                 max_rows: int = MAX_GANTT_ROWS) -> tuple[go.Figure, str]:
    """Gantt chart of a simulated iteration: one row per GPU and stream, bars coloured by phase
    (forward, backward, recompute, each collective). Aggregates big timelines (see
    aggregate_timeline). Returns (figure, note about what was aggregated)."""
    if timeline is None or len(timeline) == 0:
        raise ValueError("timeline: no operations to draw")
    timeline = tidy_timeline(timeline)
    phase = _phase_col(timeline)
    d, note = aggregate_timeline(timeline, max_bars, max_rows)
    d = d.assign(start_ms=d["start_s"] * 1e3, duration_ms=d["duration_s"] * 1e3)
    order = sorted(d["row"].unique(), key=_row_key)
    hover = [c for c in ("microbatch", "layer", "count") if c in d.columns]
    fig = px.bar(d, base="start_ms", x="duration_ms", y="row", color=phase, orientation="h",
                 hover_data=hover, category_orders={"row": order}, color_discrete_map=phase_colours(d[phase]),
                 labels={"duration_ms": "time (ms)", "row": ""}, title="Simulated iteration timeline")
    fig.update_layout(barmode="overlay", height=max(300, 22 * len(order) + 120), legend_title_text="",
                      margin={"l": 180})
    fig.update_traces(marker_line_width=0)
    return fig, note
