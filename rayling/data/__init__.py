"""rayling.data: lazy, streaming datasets of dict rows, kept in blocks in the object store.

    import rayling as ray

    ds = ray.data.range(1000).map(lambda row: {"square": row["id"] ** 2})
    ds.take(3)      # [{'square': 0}, {'square': 1}, {'square': 4}]

It speaks Ray Data's API. Blocks are Arrow tables, so it needs pyarrow
(``pip install "rayling[data]"``); pandas and Pillow are needed only by the functions that
use them. How it is built: docs/architecture.md, "Datasets".
"""

try:
    import pyarrow  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "rayling.data needs pyarrow: pip install 'rayling[data]' (or pip install pyarrow)"
    ) from error

from ._datasource import FileReadError
from .aggregate import AggregateFn, Count, Max, Mean, Min, Std, Sum, Unique
from .context import DataContext
from .dataset import (
    ActorPoolStrategy,
    DataIterator,
    Dataset,
    GroupedData,
    MaterializedDataset,
    Schema,
)
from .read_api import (
    from_arrow,
    from_items,
    from_numpy,
    from_pandas,
    range,
    range_tensor,
    read_binary_files,
    read_csv,
    read_images,
    read_json,
    read_numpy,
    read_parquet,
    read_text,
)

__all__ = [
    "ActorPoolStrategy",
    "AggregateFn",
    "Count",
    "DataContext",
    "DataIterator",
    "Dataset",
    "FileReadError",
    "GroupedData",
    "MaterializedDataset",
    "Max",
    "Mean",
    "Min",
    "Schema",
    "Std",
    "Sum",
    "Unique",
    "from_arrow",
    "from_items",
    "from_numpy",
    "from_pandas",
    "range",
    "range_tensor",
    "read_binary_files",
    "read_csv",
    "read_images",
    "read_json",
    "read_numpy",
    "read_parquet",
    "read_text",
]
