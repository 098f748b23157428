"""Small renderers for asset metadata a person reads in the Dagster UI."""

from __future__ import annotations

import base64
import io

import pandas as pd
from dagster import MetadataValue


def markdown_table(frame: pd.DataFrame, limit: int = 10) -> MetadataValue:
    """A preview of the first rows as a Markdown table (no extra dependency)."""
    if frame is None or frame.empty:
        return MetadataValue.md("_no rows_")
    shown = frame.head(limit)
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    body = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(index=False, name=None)
    ]
    more = f"\n\n_{len(frame) - limit} more rows_" if len(frame) > limit else ""
    return MetadataValue.md("\n".join([header, rule, *body]) + more)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:60]


def reasons_table(reasons: dict[str, int]) -> MetadataValue:
    frame = pd.DataFrame(sorted(reasons.items(), key=lambda kv: -kv[1]), columns=["reason", "files"])
    return markdown_table(frame, limit=20)


def png_markdown(figure) -> MetadataValue:
    """A matplotlib figure embedded in Markdown metadata."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")
