"""rayling.data's pure parts, with no cluster: blocks, transforms, aggregations, planning,
file listing and the sort/shuffle cuts."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from rayling.data import _block as B, _plan as P, _tasks, _transforms as T, aggregate as A
from rayling.data._datasource import (
    FileReadError,
    FileReadTask,
    RangeTask,
    expand_paths,
    group_files,
    split_range,
)

pytestmark = pytest.mark.timeout(30)


# -- blocks -----------------------------------------------------------------------------------
def test_rows_round_trip_with_scalars_strings_lists_and_objects():
    class Thing:
        def __init__(self, x):
            self.x = x

    rows = [{"i": i, "f": i / 2, "s": str(i), "l": [i, i], "o": Thing(i), "n": None}
            for i in range(5)]
    block = B.block_from_rows(rows)
    assert block.schema.field("i").type == pa.int64()
    assert block.schema.field("s").type == pa.string()
    back = B.block_to_rows(pickle.loads(pickle.dumps(block)))
    assert [r["i"] for r in back] == list(range(5))
    assert back[3]["s"] == "3" and back[3]["l"] == [3, 3] and back[3]["f"] == 1.5
    assert back[4]["o"].x == 4 and back[0]["n"] is None
    assert type(back[0]["i"]) is int


def test_rows_with_different_keys_get_nulls():
    block = B.block_from_rows([{"a": 1}, {"b": 2}])
    assert B.block_to_rows(block) == [{"a": 1, "b": None}, {"a": None, "b": 2}]


def test_tensor_columns_fixed_and_variable_shapes_read_back_as_arrays():
    same = B.block_from_rows([{"x": np.full((2, 3), i)} for i in range(4)])
    assert isinstance(same.schema.field("x").type, pa.FixedShapeTensorType)
    arrays = B.block_to_batch(same)["x"]
    assert arrays.shape == (4, 2, 3) and arrays[2].sum() == 12
    varied = B.block_from_rows([{"x": np.arange(n)} for n in (1, 3, 2)])
    assert isinstance(varied.schema.field("x").type, B.VarTensorType)
    values = [r["x"] for r in B.block_to_rows(varied.slice(1, 2))]
    assert [v.tolist() for v in values] == [[0, 1, 2], [0, 1]]
    mixed = B.concat([same.slice(0, 1), B.block_from_rows([{"x": np.ones((3, 3))}])])
    assert [r["x"].shape for r in B.block_to_rows(mixed)] == [(2, 3), (3, 3)]


def test_a_large_array_row_is_not_copied_when_read():
    big = np.arange(1_000_000, dtype=np.float64).reshape(100, 100, 100)
    block = B.block_from_rows([{"array": big}])
    first = B.block_to_rows(block)[0]["array"]
    second = B.block_to_rows(block)[0]["array"]
    assert first.shape == (100, 100, 100) and np.shares_memory(first, second)


def test_batches_in_each_format_and_back():
    block = pa.table({"id": np.arange(4), "s": ["a", "b", "c", "d"]})
    numpy_batch = B.block_to_batch(block, "numpy")
    assert numpy_batch["id"].tolist() == [0, 1, 2, 3] and numpy_batch["s"][1] == "b"
    frame = B.block_to_batch(block, "pandas")
    assert list(frame.columns) == ["id", "s"] and frame["id"].sum() == 6
    assert B.block_to_rows(B.block_from_batch(frame)) == B.block_to_rows(block)
    assert B.block_to_batch(block, "pyarrow") is block
    with pytest.raises(ValueError, match="batch_format"):
        B.block_to_batch(block, "torch")


def test_bad_function_outputs_say_what_is_wrong():
    with pytest.raises(TypeError, match=r"must return a dict.*returned a int: 5"):
        B.block_from_rows([5], "map(f)")
    with pytest.raises(ValueError, match=r"different lengths \('a': 3, 'b': 2\)"):
        B.block_from_batch({"a": np.arange(3), "b": [1, 2]})
    with pytest.raises(TypeError, match=r"column 'squares' .* is a int \(1\)"):
        B.block_from_batch({"squares": 1})
    with pytest.raises(TypeError, match="returned a list"):
        B.block_from_batch([1, 2])


def test_compact_drops_the_parent_buffers_of_a_slice():
    block = pa.table({"a": np.arange(1_000_000)})
    part = block.slice(10, 5)
    assert len(pickle.dumps(part)) > 1_000_000
    small = B.compact(part)
    assert len(pickle.dumps(small)) < 2_000 and small.column("a").to_pylist() == list(range(10, 15))


# -- transforms -------------------------------------------------------------------------------
def test_map_flat_map_filter_and_batches_chain():
    chain = T.Chain([
        T.MapRows(lambda r: {"x": r["id"] * 2}),
        T.FlatMap(lambda r: [r, r]),
        T.Filter(lambda r: r["x"] % 4 == 0),
        T.MapBatches(lambda b: {"x": b["x"], "y": b["x"] + 1}, 3, "numpy"),
    ])
    out = chain(RangeTask(0, 5)(), 0)
    assert B.block_to_rows(out) == [{"x": x, "y": x + 1} for x in (0, 0, 4, 4, 8, 8)]


def test_map_batches_may_yield_several_batches_and_takes_fn_args():
    def gen(batch, k):
        for _ in range(k):
            yield {"v": batch["id"]}

    transform = T.MapBatches(gen, None, "default", fn_args=(3,))
    assert transform(RangeTask(0, 2)(), 0).num_rows == 6


def test_callable_class_is_constructed_once_per_setup():
    class Adder:
        built = 0

        def __init__(self, k):
            Adder.built += 1
            self.k = k

        def __call__(self, batch):
            return {"v": batch["id"] + self.k}

    transform = T.MapBatches(Adder, None, "numpy", fn_constructor_args=(10,))
    transform.setup()
    for _ in range(3):
        out = transform(RangeTask(0, 2)(), 0)
    assert Adder.built == 1 and out.column("v").to_pylist() == [10, 11]


def test_flat_map_must_return_a_list():
    with pytest.raises(TypeError, match="flat_map.*list of dict rows.*dict"):
        T.FlatMap(lambda r: r)(RangeTask(0, 2)(), 0)


def test_column_functions_name_missing_columns():
    block = pa.table({"a": [1], "b": [2]})
    assert T.select_columns(block, ["b"]).column_names == ["b"]
    assert T.drop_columns(block, ["b"]).column_names == ["a"]
    assert T.rename_columns(block, {"a": "z"}).column_names == ["z", "b"]
    with pytest.raises(ValueError, match="no column named 'c'"):
        T.select_columns(block, ["c"])


# -- aggregations -----------------------------------------------------------------------------
def test_aggregations_merge_across_blocks_exactly():
    data = np.random.default_rng(0).normal(size=1000)
    blocks = [pa.table({"x": part}) for part in np.array_split(data, 7)]
    aggs = [A.Count(), A.Sum("x"), A.Min("x"), A.Max("x"), A.Mean("x"), A.Std("x"),
            A.Std("x", ddof=0)]
    count, total, low, high, mean, std, std0 = A.merge_all(
        aggs, [A.accumulate(aggs, b) for b in blocks])
    assert count == 1000 and total == pytest.approx(data.sum())
    assert (low, high) == (data.min(), data.max()) and mean == pytest.approx(data.mean())
    assert std == pytest.approx(data.std(ddof=1)) and std0 == pytest.approx(data.std())
    assert [a.name for a in aggs[:3]] == ["count()", "sum(x)", "min(x)"]


def test_aggregations_of_nothing_are_none_and_nulls_are_skipped():
    empty = pa.table({"x": pa.array([], type=pa.float64())})
    assert A.merge_all([A.Sum("x"), A.Mean("x")], [[A.Sum("x").accumulate_block(empty),
                                                     A.Mean("x").accumulate_block(empty)]]) \
        == [None, None]
    with_null = pa.table({"x": [1.0, None, 3.0]})
    assert A.merge_all([A.Mean("x")], [[A.Mean("x").accumulate_block(with_null)]]) == [2.0]
    strict = A.Sum("x", ignore_nulls=False)
    assert strict.finalize(strict.accumulate_block(with_null)) is None


def test_group_aggregation_of_a_sorted_block():
    block = pa.table({"k": ["a", "a", "b", "c", "c", "c"], "v": [1, 2, 3, 4, 5, 6]})
    out = A.aggregate_groups(block, ["k"], [A.Count(), A.Sum("v")])
    assert B.block_to_rows(out) == [{"k": "a", "count()": 2, "sum(v)": 3},
                                    {"k": "b", "count()": 1, "sum(v)": 3},
                                    {"k": "c", "count()": 3, "sum(v)": 15}]


def test_user_aggregate_fn():
    agg = A.AggregateFn(init=lambda k: 0, accumulate_row=lambda a, r: a + r["v"],
                        merge=lambda a, b: a + b, name="total")
    parts = [agg.accumulate_block(pa.table({"v": [1, 2]})), agg.accumulate_block(
        pa.table({"v": [3]}))]
    assert A.merge_all([agg], [[p] for p in parts]) == [6]


# -- sort and shuffle cuts --------------------------------------------------------------------
@pytest.mark.parametrize("descending", [False, True])
def test_partitions_hold_key_ranges_in_output_order_and_keep_equal_keys_together(descending):
    rng = np.random.default_rng(1)
    blocks = [pa.table({"k": rng.integers(0, 20, 50)}) for _ in range(4)]
    boundaries = [5, 10, 15]
    parts = [_tasks.partition_sorted(b, ["k"], descending, boundaries, "sort") for b in blocks]
    merged = [_tasks.reduce_sorted(["k"], descending, *[p[j] for p in parts])[0]
              for j in range(4)]
    keys = [v for m in merged for v in m.column("k").to_pylist()]
    assert keys == sorted(keys, reverse=descending) and len(keys) == 200
    seen_in = {}
    for j, m in enumerate(merged):
        for v in set(m.column("k").to_pylist()):
            assert seen_in.setdefault(v, j) == j


def test_shuffle_keeps_every_row_once():
    block = pa.table({"i": np.arange(100)})
    *parts, metas = _tasks.shuffle_partition(block, 3, seed=7, index=0)
    assert sum(m.num_rows for m in metas) == 100
    out, _ = _tasks.reduce_shuffled(7, 0, *parts)
    assert sorted(out.column("i").to_pylist()) == list(range(100))
    assert out.column("i").to_pylist() != list(range(100))


# -- planning ---------------------------------------------------------------------------------
def _read(n: int, blocks: int = 4) -> P.Read:
    return P.Read("ReadRange", tasks=[RangeTask(a, b) for a, b in split_range(n, blocks)],
                  schema=pa.schema([("id", pa.int64())]))


def _map(below: P.Op, name: str, **kwargs) -> P.MapOp:
    return P.MapOp(name, [below], transform=T.MapRows(lambda r: r), **kwargs)


def test_maps_with_the_same_resources_fuse_into_the_read():
    op = _map(_map(_read(10), "Map(f)", keeps_rows=True), "Map(g)", keeps_rows=True)
    stage = P.plan_stages(op)
    assert stage.kind == "read" and stage.name == "ReadRange->Map(f)->Map(g)"
    assert len(stage.transforms) == 2


def test_different_resources_and_actor_pools_start_new_stages():
    gpu = _map(_read(10), "Map(gpu)", remote_args={"num_gpus": 1})
    stage = P.plan_stages(gpu)
    assert stage.kind == "tasks" and stage.inputs[0].kind == "read"
    pool = _map(_map(_read(10), "MapBatches(Model)", pool_size=2), "Map(after)")
    stage = P.plan_stages(pool)
    assert stage.kind == "pool" and stage.name == "MapBatches(Model)->Map(after)"
    limited = P.Limit("Limit[3]", [_read(10)], limit=3)
    assert [s.kind for s in P.stage_list(P.plan_stages(limited))] == ["read", "limit"]


def test_counts_and_schemas_known_without_running():
    read = _read(1000)
    assert P.known_num_rows(read) == 1000
    assert P.known_num_rows(_map(read, "Map", keeps_rows=True)) == 1000
    assert P.known_num_rows(_map(read, "Filter")) is None
    assert P.known_num_rows(P.Limit("L", [read], limit=5)) == 5
    assert P.known_num_rows(P.Union("U", [read, _read(10)])) == 1010
    assert P.known_schema(_map(read, "Map")) is None
    assert P.describe(read) == "Dataset(num_rows=1000, schema={id: int64})"
    assert P.describe(_map(read, "Map(f)")) == \
        "Map(f)\n+- Dataset(num_rows=1000, schema={id: int64})"


def test_split_range_and_file_groups():
    assert split_range(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert split_range(2, 8) == [(0, 1), (1, 2)]
    assert split_range(0, 4) == [(0, 0)]
    assert group_files(["a", "b", "c"], 2) == [["a"], ["b", "c"]]


def test_expand_paths_walks_directories_and_filters(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.png", "sub/c.png", "notes.txt", ".hidden.png", "_SUCCESS"):
        (tmp_path / name).write_bytes(b"")
    found = expand_paths(str(tmp_path), ("png",), "read_images")
    assert [p[len(str(tmp_path)) + 1:] for p in found] == ["a.png", "b.png", "sub/c.png"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_paths(str(tmp_path / "missing"), None, "read_csv")
    with pytest.raises(NotImplementedError, match="s3://"):
        expand_paths("s3://bucket/x.csv", None, "read_csv")


def test_a_file_that_cannot_be_read_is_named(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(FileReadError, match="bad.parquet"):
        FileReadTask([str(bad)], "parquet")()
