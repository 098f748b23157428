"""Small renderers for asset metadata a person reads in the Dagster UI."""

from __future__ import annotations

import base64
import io

import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema


def table_preview(frame: pd.DataFrame, limit: int = 10) -> MetadataValue:
    """The first ``limit`` rows as a table the Dagster UI renders (typed, sortable columns)."""
    frame = pd.DataFrame() if frame is None else frame
    shown = frame.head(limit)
    columns = [TableColumn(str(name), _column_type(shown[name])) for name in shown.columns]
    records = [TableRecord({str(k): _cell(v) for k, v in row.items()}) for row in shown.to_dict("records")]
    return MetadataValue.table(records=records, schema=TableSchema(columns=columns))


def _column_type(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "bool"
    if pd.api.types.is_integer_dtype(column):
        return "int"
    if pd.api.types.is_float_dtype(column):
        return "float"
    return "string"


def _cell(value) -> str | int | float | bool | None:
    if value is None or (not isinstance(value, str | bytes) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item") and not isinstance(value, pd.Timestamp):  # numpy scalars
        return value.item()
    return str(value)


def reasons_table(reasons: dict[str, int]) -> MetadataValue:
    frame = pd.DataFrame(sorted(reasons.items(), key=lambda kv: -kv[1]), columns=["reason", "files"])
    return table_preview(frame, limit=20)


def png_markdown(figure) -> MetadataValue:
    """A matplotlib figure embedded in Markdown metadata."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")
