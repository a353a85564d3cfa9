"""Plots for search results (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path


def pareto_plot(rows_by_space: dict[str, list[dict]], path: Path, title: str = "held-out distillation loss vs MACs",
                marks: dict[str, dict] | None = None) -> None:
    """Scatter every subnet (MACs vs loss) per space, the Pareto front as a line, and optional marked points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in rows_by_space.items():
        xs = [r["macs"] / 1e9 for r in rows]
        ys = [r["loss"] for r in rows]
        points = ax.scatter(xs, ys, s=10, alpha=0.5, label=f"{name} ({len(rows)} subnets)")
        front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["macs"])
        if front:
            ax.plot([r["macs"] / 1e9 for r in front], [r["loss"] for r in front], color=points.get_facecolor()[0], lw=1.2)
    for label, point in (marks or {}).items():
        ax.scatter([point["macs"] / 1e9], [point["loss"]], marker="*", s=140, edgecolor="k", zorder=5)
        ax.annotate(label, (point["macs"] / 1e9, point["loss"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("GMACs per 128-token sequence")
    ax.set_ylabel("held-out relation loss (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
