"""Small evaluation charts as PNG bytes (matplotlib, Agg backend), and as inline markdown images.

Figures are 5x4 inches at 80 dpi, so each PNG stays well under 60 KB and its base64 can go
into Dagster metadata or an MLflow/markdown report.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

FIGSIZE = (5.0, 4.0)
DPI = 80


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, title: str = "chart") -> str:
    """``![title](data:image/png;base64,...)`` for a PNG."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def roc_curve_png(y: Any, scores_by_model: Mapping[str, np.ndarray]) -> bytes:
    """ROC curves of one or more models on the same labels, AUC in the legend."""
    y = np.asarray(y)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for name, scores in scores_by_model.items():
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {roc_auc_score(y, scores):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC curve")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def pr_curve_png(y: Any, scores_by_model: Mapping[str, np.ndarray]) -> bytes:
    """Precision-recall curves, average precision in the legend, the fraud rate as the random line."""
    y = np.asarray(y)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for name, scores in scores_by_model.items():
        precision, recall, _ = precision_recall_curve(y, scores)
        ax.step(recall, precision, where="post", lw=1.5,
                label=f"{name} (AP {average_precision_score(y, scores):.3f})")  # fmt: skip
    rate = float(np.mean(y))
    ax.axhline(rate, ls="--", lw=1, color="grey", label=f"random ({rate:.2%} fraud)")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def feature_importance_png(
    importance_df: pd.DataFrame, top_n: int = 20, title: str = "Feature importance"
) -> bytes:
    """Horizontal bars of the ``top_n`` rows of a [feature, importance] frame, largest on top."""
    df = importance_df.sort_values("importance", ascending=False).head(top_n).iloc[::-1]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.barh(df["feature"].astype(str), df["importance"], color="#3b6ea5")
    ax.set(xlabel="importance", title=title)
    ax.tick_params(axis="y", labelsize=max(5, 9 - len(df) // 8))
    return _png(fig)


def review_queue_png(days: pd.DataFrame, capacity: int) -> bytes:
    """The review queue day by day: its precision (known fraud cards among those listed) as a
    line, the listed cards whose label is still unknown as grey bars, and the expected cost on a
    second axis. ``days``: one row per day with day, precision, unknown_listed, expected_cost."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    x = pd.to_datetime(days["day"])
    listed = days["listed"].replace(0, np.nan)
    ax.bar(x, days["unknown_listed"] / listed, color="#d9d9d9", width=0.8, label="share not labelled yet")
    ax.plot(x, days["precision"], marker="o", lw=1.5, color="#3b6ea5", label="precision (known fraud)")
    ax.set(ylabel=f"share of the {capacity} cards listed", title="Review queue: Card Precision@k by day")
    ax.set_ylim(0, 1.01)
    cost = ax.twinx()
    cost.plot(x, days["expected_cost"], ls="--", lw=1, color="#b5473a", label="expected cost")
    cost.set_ylabel("expected cost")
    cost.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = cost.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=7)
    fig.autofmt_xdate()
    return _png(fig)
