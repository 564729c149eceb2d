"""rayling.data on a real local cluster: creation, transforms, consumption, writes, errors."""

from __future__ import annotations

import gc
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rayling
from rayling.api import _object_store_stats

from .conftest import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module", autouse=True)
def cluster(shared_cluster):
    rayling.data.DataContext.get_current().enable_progress_bars = False
    return shared_cluster


data = rayling.data


# -- creation ---------------------------------------------------------------------------------
def test_range_repr_count_take_show(capsys):
    ds = data.range(1000)
    assert repr(ds) == "Dataset(num_rows=1000, schema={id: int64})"
    assert ds.count() == 1000
    assert ds.take(3) == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert len(ds.take()) == 20
    ds.show(2)
    assert capsys.readouterr().out == "{'id': 0}\n{'id': 1}\n"
    assert ds.materialize().num_blocks() >= 2
    assert data.range(10, override_num_blocks=3).materialize().num_blocks() == 3


def test_from_items_and_friends():
    assert data.from_items([10, 20, 30]).take() == [{"item": 10}, {"item": 20}, {"item": 30}]
    ds = data.from_items([{"col1": i, "col2": i ** 2} for i in range(100)])
    assert ds.take(2) == [{"col1": 0, "col2": 0}, {"col1": 1, "col2": 1}]
    assert data.from_items([1, 2], override_num_blocks=2).materialize().num_blocks() == 2
    arrays = data.from_numpy(np.arange(12).reshape(4, 3))
    assert arrays.count() == 4 and arrays.take(1)[0]["data"].tolist() == [0, 1, 2]
    import pandas as pd

    frame = data.from_pandas(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert frame.take_all() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert data.from_arrow(pa.table({"z": [5]})).take() == [{"z": 5}]
    tensors = data.range_tensor(6, shape=(2, 2))
    assert tensors.count() == 6 and tensors.take(6)[5]["data"].tolist() == [[5, 5], [5, 5]]


def test_readers_on_files_directories_and_lists(tmp_path):
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": [3]}), tmp_path / "b.parquet")
    (tmp_path / "c.csv").write_text("p,q\n1,one\n2,two\n")
    (tmp_path / "d.jsonl").write_text('{"k": 1}\n{"k": 2}\n')
    (tmp_path / "e.json").write_text('[{"k": 3}, {"k": 4}]')
    (tmp_path / "f.txt").write_text("hello\nworld\n")
    np.save(tmp_path / "g.npy", np.ones((3, 2)))
    (tmp_path / "h.bin").write_bytes(b"\x00\x01")

    ds = data.read_parquet(str(tmp_path), include_paths=True)
    assert sorted(r["x"] for r in ds.take_all()) == [1, 2, 3]
    assert ds.take(1)[0]["path"].endswith("a.parquet")
    assert data.read_csv(str(tmp_path / "c.csv")).take_all() == [
        {"p": 1, "q": "one"}, {"p": 2, "q": "two"}]
    assert data.read_json([str(tmp_path / "d.jsonl"), str(tmp_path / "e.json")]
                          ).take_all() == [{"k": 1}, {"k": 2}, {"k": 3}, {"k": 4}]
    assert data.read_text(str(tmp_path / "f.txt")).take_all() == [
        {"text": "hello"}, {"text": "world"}]
    numpy_rows = data.read_numpy(str(tmp_path))
    assert numpy_rows.count() == 3 and numpy_rows.take(1)[0]["data"].tolist() == [1.0, 1.0]
    assert data.read_binary_files(str(tmp_path / "h.bin")).take() == [{"bytes": b"\x00\x01"}]


def test_reading_files_runs_one_task_per_file_in_parallel(tmp_path):
    for i in range(6):
        (tmp_path / f"{i}.txt").write_text(f"{i}\n")
    ds = data.read_text(str(tmp_path))
    assert ds.materialize().num_blocks() == 6
    pids = {r["pid"] for r in ds.map(lambda r: {"pid": os.getpid()}).take_all()}
    assert pids and os.getpid() not in pids  # read in workers, not in the driver


def test_images_read_resized_and_written(tmp_path):
    from PIL import Image

    (tmp_path / "in").mkdir()
    for i in range(4):
        Image.fromarray(np.full((30, 40, 3), i * 50, dtype=np.uint8)).save(
            tmp_path / "in" / f"{i}.png")
    ds = data.read_images(str(tmp_path / "in"))
    first = ds.take(1)[0]["image"]
    assert isinstance(first, np.ndarray) and first.shape == (30, 40, 3) and first.max() == 0
    small = data.read_images(str(tmp_path / "in"), size=(10, 20), mode="L")
    assert small.take(1)[0]["image"].shape == (10, 20)
    ds.map(lambda r: {"image": 255 - r["image"]}).write_images(str(tmp_path / "out"),
                                                               column="image")
    written = sorted(os.listdir(tmp_path / "out"))
    assert len(written) == 4 and all(w.endswith(".png") for w in written)
    values = sorted(int(np.asarray(Image.open(tmp_path / "out" / w)).max()) for w in written)
    assert values == [105, 155, 205, 255]


# -- transforms -------------------------------------------------------------------------------
def test_map_adds_or_replaces_keys_and_is_lazy(tmp_path):
    marker = tmp_path / "ran"

    def add_squares(row):
        marker.write_text("yes")
        row["square"] = row["id"] ** 2
        return row

    ds = data.range(100)
    b = ds.map(add_squares)
    assert not marker.exists()  # nothing ran yet
    assert repr(b) == "Map(add_squares)\n+- Dataset(num_rows=100, schema={id: int64})"
    assert b.take(3) == [{"id": 0, "square": 0}, {"id": 1, "square": 1},
                         {"id": 2, "square": 4}]
    assert ds.take(1) == [{"id": 0}]
    assert ds.map(lambda row: {"long": str(row["id"]) * 3}).take(2) == [
        {"long": "000"}, {"long": "111"}]


def test_consuming_twice_runs_twice_unless_materialized(tmp_path):
    log = tmp_path / "log"

    def record(row):
        with open(log, "a") as f:
            f.write("x")
        return row

    ds = data.range(10, override_num_blocks=2).map(record)
    ds.take_all()
    ds.take_all()
    assert len(log.read_text()) == 20
    kept = ds.materialize()
    kept.take_all()
    kept.count()
    assert len(log.read_text()) == 30


def test_numpy_arrays_in_rows_including_large_3d():
    n = 100_000
    ds = data.from_items([np.arange(n), n + np.arange(n)])
    out = ds.map(lambda row: {"squares": row["item"] ** 2}).take()
    assert len(out) == 2 and out[1]["squares"][0] == n ** 2
    b = data.from_items([(60, 60, 60), (60, 60, 60)])
    assert b.take(1)[0]["item"] == [60, 60, 60]

    def init_array(row):
        nx, ny, nz = row["item"]
        row["array"] = np.ones((nx, ny, nz))
        return row

    d = b.map(init_array).take()
    assert type(d[0]["array"]) is np.ndarray and d[0]["array"].shape == (60, 60, 60)
    assert d[1]["array"].sum() == 60 ** 3


def test_map_batches_formats_sizes_and_args():
    ds = data.range(10, override_num_blocks=2)
    sizes = []

    def double(batch, factor):
        return {"id": batch["id"] * factor}

    assert [r["id"] for r in ds.map_batches(double, fn_args=(2,)).take_all()] == \
        [2 * i for i in range(10)]
    out = ds.map_batches(lambda b: {"n": np.array([len(b["id"])] * len(b["id"]))},
                         batch_size=2).take_all()
    sizes = {r["n"] for r in out}
    assert sizes == {1, 2}  # 5-row blocks in batches of 2: 2, 2, 1
    pandas_out = ds.map_batches(lambda df: df.assign(x=df["id"] + 1), batch_format="pandas",
                                fn_kwargs={}).take(2)
    assert pandas_out == [{"id": 0, "x": 1}, {"id": 1, "x": 2}]
    arrow_out = ds.map_batches(lambda t: t.append_column("y", pa.array([0] * t.num_rows)),
                               batch_format="pyarrow").take(1)
    assert arrow_out == [{"id": 0, "y": 0}]


def test_callable_class_runs_on_an_actor_pool(tmp_path):
    class AddPid:
        """Each call waits until both actors of the pool exist, so one busy actor cannot
        take every batch before the other has started (as it may on a loaded machine)."""

        def __init__(self, offset, started):
            self.offset = offset
            self.pid = os.getpid()
            self.started = started
            open(os.path.join(started, str(self.pid)), "w").close()

        def __call__(self, batch):
            deadline = time.monotonic() + 60
            while len(os.listdir(self.started)) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            return {"id": batch["id"] + self.offset,
                    "pid": np.full(len(batch["id"]), self.pid)}

    first, second = tmp_path / "pool", tmp_path / "legacy"
    first.mkdir()
    second.mkdir()
    ds = data.range(40, override_num_blocks=8).map_batches(
        AddPid, concurrency=2, fn_constructor_args=(100, str(first)), batch_size=5)
    out = ds.take_all()
    assert [r["id"] for r in out] == list(range(100, 140))
    assert len({r["pid"] for r in out}) == 2
    legacy = data.range(8, override_num_blocks=4).map_batches(
        AddPid, compute=data.ActorPoolStrategy(size=2), fn_constructor_args=(0, str(second)))
    assert len({r["pid"] for r in legacy.take_all()}) == 2
    with pytest.raises(ValueError, match="concurrency"):
        data.range(3).map_batches(AddPid)


def test_flat_map_filter_columns_and_sample():
    ds = data.range(6)
    assert ds.flat_map(lambda r: [r, r]).count() == 12
    assert [r["id"] for r in ds.filter(lambda r: r["id"] % 2).take_all()] == [1, 3, 5]
    both = ds.map(lambda r: {"a": r["id"], "b": -r["id"]})
    assert both.select_columns(["b"]).take(1) == [{"b": 0}]
    assert both.drop_columns(["b"]).take(1) == [{"a": 0}]
    assert both.rename_columns({"a": "z"}).take(1) == [{"z": 0, "b": 0}]
    assert both.add_column("c", lambda df: df["a"] * 10).take(2)[1] == {"a": 1, "b": -1,
                                                                          "c": 10}
    assert both.columns() == ["a", "b"]
    sampled = data.range(1000).random_sample(0.5, seed=3).count()
    assert 350 < sampled < 650


def test_limit_union_zip_repartition():
    assert data.range(100).limit(7).count() == 7
    assert [r["id"] for r in data.range(100).limit(7).take_all()] == list(range(7))
    joined = data.range(3).union(data.from_items([{"id": 10}]), data.range(2))
    assert [r["id"] for r in joined.take_all()] == [0, 1, 2, 10, 0, 1]
    zipped = data.range(5).zip(data.range(5).map(lambda r: {"id": r["id"] * 2, "w": 1}))
    assert zipped.take(2) == [{"id": 0, "id_1": 0, "w": 1}, {"id": 1, "id_1": 2, "w": 1}]
    with pytest.raises(ValueError, match="different numbers of rows"):
        data.range(3).zip(data.range(4)).take_all()
    parts = data.range(10, override_num_blocks=5).repartition(3).materialize()
    assert parts.num_blocks() == 3
    assert [r["id"] for r in parts.take_all()] == list(range(10))


def test_random_shuffle_sort_and_groupby():
    shuffled = data.range(200).random_shuffle(seed=5)
    first = [r["id"] for r in shuffled.take_all()]
    assert sorted(first) == list(range(200)) and first != list(range(200))
    assert [r["id"] for r in shuffled.take_all()] == first  # same seed, same order
    rng = np.random.default_rng(0)
    values = rng.integers(0, 1000, 500).tolist()
    ds = data.from_items([{"v": v, "g": v % 3} for v in values])
    assert [r["v"] for r in ds.sort("v").take_all()] == sorted(values)
    assert [r["v"] for r in ds.sort("v", descending=True).take_all()] == \
        sorted(values, reverse=True)
    counts = ds.groupby("g").count().take_all()
    assert [c["g"] for c in counts] == [0, 1, 2]
    assert [c["count()"] for c in counts] == [sum(v % 3 == g for v in values)
                                              for g in range(3)]
    sums = ds.groupby("g").sum("v").take_all()
    assert [s["sum(v)"] for s in sums] == [sum(v for v in values if v % 3 == g)
                                           for g in range(3)]
    means = {r["g"]: r["mean(v)"] for r in ds.groupby("g").mean("v").take_all()}
    assert means[1] == pytest.approx(np.mean([v for v in values if v % 3 == 1]))
    std = {r["g"]: r["std(v)"] for r in ds.groupby("g").std("v").take_all()}
    assert std[2] == pytest.approx(np.std([v for v in values if v % 3 == 2], ddof=1))
    low = ds.groupby("g").min("v").take_all()
    assert [r["min(v)"] for r in low] == [min(v for v in values if v % 3 == g)
                                          for g in range(3)]
    assert ds.groupby("g").max("v").take(1)[0]["max(v)"] == max(v for v in values
                                                               if v % 3 == 0)
    tops = ds.groupby("g").map_groups(lambda b: {"g": b["g"][:1], "top": [b["v"].max()]})
    assert [r["top"] for r in tops.take_all()] == [max(v for v in values if v % 3 == g)
                                                   for g in range(3)]


def test_dataset_wide_aggregations():
    ds = data.range(101)
    assert ds.sum("id") == 5050
    assert (ds.min("id"), ds.max("id")) == (0, 100)
    assert ds.mean("id") == 50
    assert ds.std("id") == pytest.approx(np.std(np.arange(101), ddof=1))
    assert sorted(data.from_items([1, 2, 2, 3]).unique("item")) == [1, 2, 3]
    both = ds.map(lambda r: {"a": r["id"], "b": 2 * r["id"]})
    assert both.sum(["a", "b"]) == {"sum(a)": 5050, "sum(b)": 10100}
    assert data.range(0).sum("id") is None
    assert ds.aggregate(data.Count(), data.Max("id")) == {"count()": 101, "max(id)": 100}


# -- consumption ------------------------------------------------------------------------------
def test_iterators_batches_schema_and_pandas():
    ds = data.range(10, override_num_blocks=3)
    assert [r["id"] for r in ds.iter_rows()] == list(range(10))
    batches = list(ds.iter_batches(batch_size=4))
    assert [len(b["id"]) for b in batches] == [4, 4, 2]
    assert [len(b) for b in ds.iter_batches(batch_size=4, batch_format="pandas",
                                            drop_last=True)] == [4, 4]
    assert ds.take_batch(3)["id"].tolist() == [0, 1, 2]
    schema = ds.map(lambda r: {"x": float(r["id"]), "s": "a"}).schema()
    assert schema.names == ["x", "s"] and str(schema.types[0]) == "double"
    assert repr(schema) == "Column  Type\n------  ----\nx       double\ns       string"
    frame = ds.to_pandas()
    assert list(frame["id"]) == list(range(10))
    assert [r["id"] for r in ds.iterator().iter_rows()] == list(range(10))
    with pytest.raises(ValueError, match="empty"):
        data.range(0).take_batch()


def test_count_uses_metadata_without_running_row_transforms(tmp_path):
    marker = tmp_path / "ran"

    def touch(row):
        marker.write_text("x")
        return row

    assert data.range(50).map(touch).count() == 50
    assert not marker.exists()
    assert data.range(50).filter(lambda r: r["id"] < 5).count() == 5


def test_split_and_streaming_split():
    ds = data.range(20, override_num_blocks=4)
    parts = ds.split(2)
    assert sum(p.count() for p in parts) == 20
    equal = ds.split(3, equal=True)
    assert [p.count() for p in equal] == [6, 6, 6]
    iterators = ds.streaming_split(2)

    @rayling.remote
    def consume(it):
        return [r["id"] for r in it.iter_rows()]

    seen = rayling.get([consume.remote(it) for it in iterators])
    assert sorted(seen[0] + seen[1]) == list(range(20))


def test_stats_name_each_stage():
    ds = data.range(20, override_num_blocks=2).map(lambda r: r)
    assert "not run" in ds.stats()
    ds.take_all()
    text = ds.stats()
    assert "ReadRange->Map(<lambda>)" in text and "2 tasks" in text


def test_take_of_a_big_lazy_dataset_runs_only_a_little(tmp_path):
    log = tmp_path / "log"

    def record(batch):
        with open(log, "a") as f:
            f.write("x")
        return batch

    data.range(1_000_000, override_num_blocks=100).map_batches(record).take(5)
    assert len(log.read_text()) < 30


# -- writes -----------------------------------------------------------------------------------
def test_writers_make_one_file_per_block(tmp_path):
    ds = data.range(9, override_num_blocks=3).map(lambda r: {"id": r["id"], "s": str(r["id"])})
    ds.write_parquet(str(tmp_path / "pq"))
    ds.write_csv(str(tmp_path / "csv"))
    ds.write_json(str(tmp_path / "json"))
    for folder in ("pq", "csv", "json"):
        assert len(os.listdir(tmp_path / folder)) == 3
    assert sorted(r["id"] for r in data.read_parquet(str(tmp_path / "pq")).take_all()) == \
        list(range(9))
    assert sorted(r["id"] for r in data.read_csv(str(tmp_path / "csv")).take_all()) == \
        list(range(9))
    lines = [json.loads(line) for f in sorted(os.listdir(tmp_path / "json"))
             for line in (tmp_path / "json" / f).read_text().splitlines()]
    assert lines[0] == {"id": 0, "s": "0"}
    data.range_tensor(4, shape=(2,), override_num_blocks=2).write_numpy(
        str(tmp_path / "npy"), column="data")
    files = sorted(os.listdir(tmp_path / "npy"))
    assert len(files) == 2 and np.load(tmp_path / "npy" / files[1]).tolist() == [[2, 2], [3, 3]]


# -- errors -----------------------------------------------------------------------------------
def test_map_returning_a_non_dict_says_so():
    with pytest.raises(TypeError, match=r"map\(<lambda>\): the function must return a dict.*"
                                        r"returned a int: \d"):
        data.range(3).map(lambda r: r["id"]).take_all()


def test_batch_with_columns_of_different_lengths_says_so():
    with pytest.raises(ValueError, match=r"different lengths \('a': 2, 'b': 1\)"):
        data.range(2, override_num_blocks=1).map_batches(
            lambda b: {"a": b["id"], "b": b["id"][:1]}).take_all()


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError, match="broken.png"):
        data.read_images(str(tmp_path)).take_all()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.read_csv(str(tmp_path / "nowhere.csv"))


def test_user_errors_name_the_mistake():
    with pytest.raises(TypeError, match="function or a callable class"):
        data.range(3).map(5)
    with pytest.raises(ValueError, match="batch_format"):
        data.range(3).map_batches(lambda b: b, batch_format="torch")
    with pytest.raises(ValueError, match="limit"):
        data.range(3).limit(-1)


def test_an_early_stop_cancels_the_tasks_still_running():
    def slow_row(row):
        time.sleep(0.2)
        return row

    rows = data.range(400, override_num_blocks=40).map(slow_row).iter_rows()
    next(rows)
    rows.close()
    # Without cancelling, the ~10 tasks in flight would keep both CPUs busy for ~10 s.
    wait_until(lambda: _object_store_stats()["tasks"] == 0, timeout=4,
               what="the dataset's remaining tasks to be cancelled")


# -- edge cases: nulls, empty blocks, more parts than rows, early stops ------------------------
def test_sort_and_groupby_with_null_keys():
    rows = [{"k": None if i % 4 == 0 else i % 3, "s": None if i % 5 == 0 else str(i % 7),
             "v": 1} for i in range(40)]
    ds = data.from_items(rows, override_num_blocks=6)
    keys = [r["k"] for r in ds.sort("k").take_all()]
    assert keys[:30] == sorted(k for k in keys if k is not None) and keys[30:] == [None] * 10
    down = [r["k"] for r in ds.sort("k", descending=True).take_all()]
    assert down[:30] == sorted((k for k in down if k is not None), reverse=True)
    assert down[30:] == [None] * 10
    strings = [r["s"] for r in ds.sort("s").take_all()]
    assert strings[-8:] == [None] * 8 and strings[:32] == sorted(strings[:32])
    counts = {r["k"]: r["count()"] for r in ds.groupby("k").count().take_all()}
    assert counts == {0: 10, 1: 10, 2: 10, None: 10}
    all_null = data.from_items([{"k": None, "v": 1}] * 3 + [{"k": 0.5, "v": 2}] * 3,
                               override_num_blocks=2)
    assert {r["k"]: r["sum(v)"] for r in all_null.groupby("k").sum("v").take_all()} == \
        {0.5: 6, None: 3}
    with pytest.raises(ValueError, match="groupby: no column named 'nope'"):
        ds.groupby("nope").count().take_all()


def test_aggregations_with_nulls_and_empty_blocks():
    ds = data.from_items([{"x": 1}, {"x": None}, {"x": 3}], override_num_blocks=3)
    assert ds.sum("x") == 4 and ds.mean("x") == 2
    assert ds.sum("x", ignore_nulls=False) is None
    assert ds.max("x", ignore_nulls=False) is None
    assert sorted(ds.unique("x")) == [1, 3]
    assert np.isnan(data.from_items([{"x": 1.0}]).std("x"))
    sparse = data.range(10).flat_map(lambda r: [r] if r["id"] > 5 else [])
    assert sparse.aggregate(data.Count("id")) == {"count(id)": 4}
    keyed = data.from_items([{"g": g, "v": v} for g in "ab" for v in range(3)])
    first_keys = data.AggregateFn(init=lambda k: [k], accumulate_row=lambda a, r: a,
                                  merge=lambda a, b: a, name="key")
    assert [r["key"] for r in keyed.groupby("g").aggregate(first_keys).take_all()] == \
        [["a"], ["b"]]


def test_more_parts_than_rows():
    parts = data.range(3).split(5, equal=True)
    assert len(parts) == 5 and [p.count() for p in parts] == [0] * 5
    blocks = data.range(3).repartition(5).materialize()
    assert blocks.num_blocks() == 5 and blocks.count() == 3


def test_an_actor_pool_larger_than_the_cluster_runs_on_the_actors_it_has():
    class Same:
        def __call__(self, batch):
            return batch

    out = data.from_items(list(range(40)), override_num_blocks=8).map_batches(
        Same, concurrency=3, num_cpus=1).take_all()
    assert [r["item"] for r in out] == list(range(40))


def test_stopping_early_releases_the_blocks():
    gc.collect()  # what earlier tests left in reference cycles goes now, not during the test
    before = _object_store_stats()["store_used"]
    ds = data.range_tensor(40, shape=(64, 1024), override_num_blocks=20)  # 512 KiB blocks
    batches = ds.iter_batches(batch_size=2)
    next(batches)
    assert _object_store_stats()["store_used"] > before
    batches.close()
    wait_until(lambda: _object_store_stats()["store_used"] == before, timeout=10,
               what="the blocks of a stopped run to be freed")


def test_streaming_split_epochs_equal_shares_and_errors():
    iterators = data.range(30, override_num_blocks=3).streaming_split(2)

    @rayling.remote
    def epochs(it, n):
        return [sorted(r["id"] for r in it.iter_rows()) for _ in range(n)]

    first, second = rayling.get([epochs.remote(it, 2) for it in iterators])
    for epoch in range(2):
        assert sorted(first[epoch] + second[epoch]) == list(range(30))
    equal = data.range(31, override_num_blocks=3).streaming_split(2, equal=True)
    counts = rayling.get([epochs.remote(it, 1) for it in equal])
    assert [len(c[0]) for c in counts] == [15, 15]

    def fail(row):
        if row["id"] == 25:
            raise KeyError("row 25")
        return row

    failing = data.range(30, override_num_blocks=3).map(fail).streaming_split(2)
    results = [epochs.remote(it, 1) for it in failing]
    for ref in results:
        with pytest.raises(KeyError, match="row 25"):
            rayling.get(ref)


def test_batches_writable_copies_local_shuffle_and_text_lines(tmp_path):
    def bump(batch):
        batch["id"] += 1
        return batch

    assert data.range(3).map_batches(bump, zero_copy_batch=False).take_all() == [
        {"id": 1}, {"id": 2}, {"id": 3}]
    ds = data.range(100, override_num_blocks=2)
    shuffled = [int(x) for b in ds.iter_batches(batch_size=10, local_shuffle_buffer_size=30,
                                                local_shuffle_seed=1) for x in b["id"]]
    assert sorted(shuffled) == list(range(100)) and shuffled != list(range(100))
    (tmp_path / "t.txt").write_text("a\n\nb\r\nc")
    assert [r["text"] for r in data.read_text(str(tmp_path / "t.txt")).take_all()] == \
        ["a", "b", "c"]
    assert data.read_text(str(tmp_path / "t.txt"), drop_empty_lines=False).count() == 4


def test_from_pandas_missing_values_are_nulls():
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0],
                          "n": pd.array([1, None, 2], dtype="Int64")})
    ds = data.from_pandas(frame)
    assert ds.mean("x") == 2.0
    assert [r["n"] for r in ds.take_all()] == [1, None, 2]


def test_take_records_stats():
    ds = data.range(10).map(lambda r: r)
    ds.take(2)
    assert "Map(<lambda>)" in ds.stats()


def test_split_at_indices_proportions_and_train_test():
    ds = data.range(10, override_num_blocks=3)
    parts = ds.split_at_indices([2, 5, 20])
    assert [[r["id"] for r in p.take_all()] for p in parts] == [
        [0, 1], [2, 3, 4], list(range(5, 10)), []]
    shares = ds.split_proportionately([0.2, 0.5])
    assert [p.count() for p in shares] == [2, 5, 3]
    train, test = ds.train_test_split(0.3)
    assert (train.count(), [r["id"] for r in test.take_all()]) == (7, [7, 8, 9])
    train, test = ds.train_test_split(4, shuffle=True, seed=1)
    assert sorted(r["id"] for r in train.take_all() + test.take_all()) == list(range(10))
    assert test.count() == 4
    with pytest.raises(ValueError, match="ascending"):
        ds.split_at_indices([5, 2])


def test_pandas_and_numpy_refs():
    ds = data.range(6, override_num_blocks=2)
    frames = rayling.get(ds.to_pandas_refs())
    assert [list(f["id"]) for f in frames] == [[0, 1, 2], [3, 4, 5]]
    arrays = rayling.get(ds.to_numpy_refs(column="id"))
    assert [a.tolist() for a in arrays] == [[0, 1, 2], [3, 4, 5]]
    assert len(ds.to_arrow_refs()) == 2


def test_map_batches_bundles_small_blocks_into_whole_batches():
    class Sizes:
        def __call__(self, batch):
            return {"n": np.full(len(batch["id"]), len(batch["id"]))}

    ds = data.range(100, override_num_blocks=20)  # blocks of 5 rows
    sizes = [r["n"] for r in ds.map_batches(Sizes, batch_size=16, concurrency=1).take_all()]
    assert sizes == [16] * 96 + [4] * 4  # across block edges, as in Ray
    after_a_map = ds.map(lambda r: r).map_batches(lambda b: {"n": np.full(len(b["id"]),
                                                                          len(b["id"]))},
                                                  batch_size=10, num_cpus=0.5)
    assert {r["n"] for r in after_a_map.take_all()} == {10}


def test_a_big_block_is_batched_in_one_task():
    # num_cpus keeps map_batches out of the read's stage, so its input comes as blocks.
    ds = data.range(1000, override_num_blocks=1).map_batches(
        lambda b: {"n": np.full(len(b["id"]), len(b["id"]))}, batch_size=100, num_cpus=0.5)
    out = ds.materialize()
    # Ten batches of 100 rows, all made by one task from the one 1000-row block.
    assert out.num_blocks() == 1 and {r["n"] for r in out.take_all()} == {100}
