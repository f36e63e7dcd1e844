"""Plotly figures shared by the evaluation report and the app."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go


def _band(fig: go.Figure, x: Sequence[float], mean: float, std: float, label: str) -> None:
    lo, hi = min(x), max(x)
    fig.add_trace(go.Scatter(x=[lo, hi, hi, lo], y=[mean - std, mean - std, mean + std, mean + std],
                             fill="toself", fillcolor="rgba(255,140,0,0.15)", line={"width": 0},
                             name=f"{label} ± 1 sd", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[mean, mean], mode="lines", line={"color": "darkorange"},
                             name=f"{label} mean {mean:.2f}"))


def command_figure(commands: Sequence[float], means: Sequence[float], stds: Sequence[float], *,
                   quantity: str, unit: str = "", teacher_mean: float | None = None,
                   teacher_std: float = 0.0, title: str = "") -> go.Figure:
    """Achieved mean (± sd over samples) against the commanded value, the y = x line and the teacher band."""
    fig = go.Figure()
    if teacher_mean is not None:
        _band(fig, commands, teacher_mean, teacher_std, "teacher")
    lo, hi = min(commands), max(commands)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dash", "color": "gray"},
                             name="y = x (perfect following)"))
    fig.add_trace(go.Scatter(x=list(commands), y=list(means), mode="lines+markers", name="student",
                             line={"color": "royalblue"},
                             error_y={"type": "data", "array": list(stds), "visible": True}))
    suffix = f" ({unit})" if unit else ""
    fig.update_layout(title=title or f"Achieved vs commanded {quantity}",
                      xaxis_title=f"commanded {quantity}{suffix}", yaxis_title=f"achieved {quantity}{suffix}",
                      template="plotly_white", height=380, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def relevance_figure(sweep: Sequence[dict], teacher: dict | None = None, title: str = "") -> go.Figure:
    """Figure of a relevance sweep (``relevance_command``, ``relevance_mean``, ``relevance_std``)."""
    return command_figure([s["relevance_command"] for s in sweep], [s["relevance_mean"] for s in sweep],
                          [s["relevance_std"] for s in sweep], quantity="relevance", unit="cosine",
                          teacher_mean=teacher["relevance_mean"] if teacher else None,
                          teacher_std=teacher.get("relevance_std", 0.0) if teacher else 0.0, title=title)


def length_figure(sweep: Sequence[dict], teacher: dict | None = None, title: str = "") -> go.Figure:
    """Figure of a length sweep (``length_command``, ``length_mean``, ``length_std``)."""
    return command_figure([s["length_command"] for s in sweep], [s["length_mean"] for s in sweep],
                          [s["length_std"] for s in sweep], quantity="length", unit="words",
                          teacher_mean=teacher["length_mean"] if teacher else None,
                          teacher_std=teacher.get("length_std", 0.0) if teacher else 0.0, title=title)


def reward_histogram(values_by_task: dict[str, Sequence[float]], reward: str) -> go.Figure:
    """Overlaid histograms of one reward per task (the data card's figure)."""
    fig = go.Figure()
    for task, values in values_by_task.items():
        fig.add_trace(go.Histogram(x=list(values), name=task, opacity=0.6, nbinsx=40))
    fig.update_layout(barmode="overlay", title=f"{reward} of teacher samples", xaxis_title=reward,
                      yaxis_title="samples", template="plotly_white")
    return fig
