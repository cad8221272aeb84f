"""Stable segment IDs across runs and the drift report (issue 12): the pure rules against
references (scipy, scikit-learn), then the real job on the LocalCluster, run after run into
one output folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from kmeans_dask import KMeans
from kmeans_dask.exceptions import ConfigError
from kmeans_dask.io import latest_run, read_manifest
from kmeans_dask.job.config import ContinuitySpec, KNNSpec, config_hash, parse_config
from kmeans_dask.job.drift import describe
from kmeans_dask.job.pipeline import plan, run
from kmeans_dask.job.segment_ids import Matching, by_size, match_centres, segment_ids
from kmeans_dask.job.segmentation_model import SegmentationModel, load_model
from kmeans_dask.kernels.contingency import adjusted_rand_from_contingency

# --------------------------------------------------------------------------- pure rules


def test_match_centres_is_optimal_and_never_forces_a_far_pair():
    prev = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    cur = np.array([[0.1, 10.0], [50.0, 50.0], [0.0, 0.2], [10.0, 0.3]])  # one more
    m = match_centres(prev, cur, max_distance=1.0)
    assert m.current.tolist() == [0, 2, 3] and m.previous.tolist() == [2, 0, 1]
    np.testing.assert_allclose(m.distance, [0.1, 0.2, 0.3])
    # fewer current than previous: the unmatched previous one vanishes
    m = match_centres(prev, cur[[3, 0]], max_distance=1.0)
    assert m.current.tolist() == [0, 1] and m.previous.tolist() == [1, 2]
    # a pair beyond max_distance is dropped, not forced
    shifted = prev + np.array([2.0, 0.0])
    assert len(match_centres(prev, shifted, max_distance=1.0).current) == 0
    assert len(match_centres(prev, shifted, max_distance=np.inf).current) == 3
    # no previous centroids
    assert len(match_centres(np.zeros((0, 2)), cur, 1.0).current) == 0


def test_match_centres_prefers_more_pairs_within_reach_to_a_lower_total():
    # plain minimum-total assignment pairs a-x (0.0) and b-y (1.5 > reach): one pair kept;
    # within reach, a-y and b-x (0.9 each) keep both
    t = np.deg2rad(2 * np.rad2deg(np.arcsin(0.75 / 0.9)))
    a, x = [0.0, 0.0], [0.0, 0.0]
    b, y = [0.9, 0.0], [0.9 * np.cos(t), 0.9 * np.sin(t)]
    prev, cur = np.array([a, b]), np.array([x, y])
    assert np.isclose(np.linalg.norm(np.subtract(b, y)), 1.5)
    m = match_centres(prev, cur, max_distance=1.0)
    assert m.current.tolist() == [0, 1] and m.previous.tolist() == [1, 0]
    np.testing.assert_allclose(m.distance, [0.9, 0.9])


def test_segment_ids_by_size_then_matched_and_fresh():
    sizes = np.array([5, 9, 5, 1])
    assert by_size(sizes).tolist() == [1, 0, 2, 3]  # ties by raw index
    first = segment_ids(sizes, Matching.empty(), np.zeros(0, np.int64), 0)
    assert first.tolist() == [1, 0, 2, 3]
    # raw 0 and 3 match previous IDs 7 and 2; the others get 8, 9 (next free), largest first
    m = Matching(np.array([0, 3]), np.array([1, 0]), np.array([0.1, 0.2]))
    ids = segment_ids(sizes, m, np.array([2, 7]), next_id=8)
    assert ids.tolist() == [7, 8, 9, 2]


@pytest.mark.parametrize("seed", range(6))
def test_ari_from_contingency_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    a = rng.integers(0, int(rng.integers(1, 6)), n)
    b = (a + (rng.random(n) < 0.3) * rng.integers(0, 4, n)) % 5  # related, not equal
    table = np.zeros((a.max() + 1, b.max() + 2), dtype=np.int64)  # with an empty column
    np.add.at(table, (a, b), 1)
    assert np.isclose(adjusted_rand_from_contingency(table), adjusted_rand_score(a, b))


def test_ari_edge_cases_equal_sklearn():
    for a, b in [
        ([0, 0, 0], [1, 1, 1]),  # one cluster each
        ([0, 1, 2], [2, 0, 1]),  # all apart
        ([0, 0, 1, 1], [0, 1, 0, 1]),
        ([0], [0]),
    ]:
        table = pd.crosstab(pd.Series(a), pd.Series(b)).to_numpy()
        assert adjusted_rand_from_contingency(table) == pytest.approx(adjusted_rand_score(a, b))
    # no int64 overflow on huge counts: identical partitions still give 1, independent ~0
    assert adjusted_rand_from_contingency(np.diag([3_000_000_000] * 3)) == 1.0
    big = np.full((2, 2), 2_000_000_000)
    assert abs(adjusted_rand_from_contingency(big)) < 1e-9


def test_segmentation_model_predicts_ids_and_round_trips(tmp_path):
    from kmeans_dask.scale import StandardScaler

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.1, (50, 2)) for c in ([0, 0], [5, 5], [0, 5])])
    km = KMeans.from_centers(np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 5.0]]))
    ids = np.array([7, 2, 4])
    model = SegmentationModel(km, StandardScaler.from_stats([0, 0], [1, 1]), ["a", "b"], {}, ids)
    np.testing.assert_array_equal(model.predict(X), ids[km.predict(X)])
    back = SegmentationModel.from_documents(*model.to_documents())
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    frame = pd.DataFrame(X, columns=["a", "b"])
    np.testing.assert_array_equal(back.predict(frame), back.predict(X))
    with pytest.raises(ValueError, match="segment_ids: must be 3 distinct"):
        SegmentationModel(km, None, ["a", "b"], {}, np.array([1, 1, 2]))


def test_transitions_are_skipped_with_a_reason_when_rows_cannot_be_followed(tmp_path):
    from kmeans_dask.io import RunCommit
    from kmeans_dask.job.continuity import Continuity, PreviousRun
    from kmeans_dask.job.drift import transitions

    km = KMeans.from_centers(np.array([[0.0, 0.0], [5.0, 5.0]]))
    before = SegmentationModel(km, None, ["a", "b"])
    previous = PreviousRun("old", "/nowhere", {"config": {"input": {"id_column": "rid"}}}, before)
    cont = Continuity(np.array([1, 0]), np.array([5, 9]), previous, None)
    base = {"name": "x", "input": {"uri": "in/"}, "output": {"uri": str(tmp_path)}}
    commit = RunCommit(str(tmp_path), "x-1")
    none = transitions(parse_config(base), commit, cont)
    assert none == {
        "status": "skipped",
        "reason": "input.id_column is not set: rows cannot be followed across runs",
    }
    other = parse_config({**base, "input": {"uri": "in/", "id_column": "cid"}})
    assert "input.id_column is 'cid' here but 'rid' in run old" in transitions(
        other, commit, cont
    )["reason"]
    first = Continuity(np.array([1, 0]), np.array([5, 9]), None, "first run: ...")
    assert transitions(other, commit, first) == {"status": "skipped", "reason": "first run: ..."}


def test_transition_counts_equal_pandas_and_duplicate_ids_are_refused(client, tmp_path):
    from kmeans_dask.io import RunCommit
    from kmeans_dask.job.continuity import Continuity, PreviousRun
    from kmeans_dask.job.drift import transitions

    rng = np.random.default_rng(3)
    old = pd.DataFrame({"rid": np.arange(500), "segment": rng.choice([0, 2, 5], 500)})
    new = pd.DataFrame({"rid": np.arange(100, 700), "segment": rng.choice([0, 2, 5, 6], 600)})
    prev_folder = tmp_path / "prev"
    (prev_folder / "assignments").mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(500), 3)):
        old.iloc[part].to_parquet(prev_folder / "assignments" / f"part-{i}.parquet", index=False)
    km = KMeans.from_centers(np.zeros((3, 2)) + np.arange(3)[:, None])
    model = SegmentationModel(km, None, ["a", "b"], {}, np.array([0, 2, 5]))
    manifest = {
        "config": {"input": {"id_column": "rid"}},
        "continuity": {"ids": [0, 2, 5], "sizes": np.bincount(old.segment)[[0, 2, 5]].tolist()},
    }
    previous = PreviousRun("old", str(prev_folder), manifest, model)
    sizes = np.bincount(new.segment, minlength=7)[[0, 2, 5, 6]]
    cont = Continuity(np.array([0, 2, 5, 6]), sizes, previous, None)
    commit = RunCommit(str(tmp_path / "out"), "x-1")
    assert commit.begin()
    config = parse_config(
        {"name": "x", "input": {"uri": "in/", "id_column": "rid"}, "output": {"uri": "o/"}}
    )

    def write_new(frame):
        path = commit.path("assignments/part-0.parquet")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)

    write_new(new)
    t = transitions(config, commit, cont)
    both = old.merge(new, on="rid", suffixes=("_old", "_new"))
    expected = pd.crosstab(both.segment_old, both.segment_new).reindex(
        index=[0, 2, 5], columns=[0, 2, 5, 6], fill_value=0
    )
    assert t["counts"] == expected.to_numpy().tolist() and t["rows_in_both"] == 400
    assert t["adjusted_rand_index"] == pytest.approx(
        adjusted_rand_score(both.segment_old, both.segment_new)
    )
    write_new(pd.concat([new, new.iloc[:50]]))  # 50 ids twice
    t = transitions(config, commit, cont)
    assert t["status"] == "skipped" and "input.id_column 'rid' is not unique" in t["reason"]


def test_continuity_config_errors_name_the_key():
    base = {"name": "x", "input": {"uri": "in/"}, "output": {"uri": "out/"}}
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "continuity": {"max_match_distance": -1, "max_share_change": 2}})
    assert "continuity.max_match_distance: must be >= 0.0; got -1" in str(err.value)
    assert "continuity.max_share_change: must be <= 1.0; got 2" in str(err.value)


def test_continuity_settings_do_not_change_the_run_id():
    base = {"name": "x", "input": {"uri": "in/"}, "output": {"uri": "out/"}}
    other = {**base, "continuity": {"max_match_distance": 3, "max_shift": 1, "previous": "o/r"}}
    assert config_hash(parse_config(base)) == config_hash(parse_config(other))


# --------------------------------------------------------------------------- the job

FEATURES = ["f0", "f1", "f2"]
SCALE = np.array([1.0, 10.0, 100.0])  # features in very different units
#: well separated blob centres (in units of SCALE), within-blob std 1
CENTRES = {
    "A": [0.0, 0.0, 0.0],
    "B": [12.0, 0.0, 0.0],
    "C": [0.0, 12.0, 0.0],
    "D": [0.0, 0.0, 12.0],
    "E": [12.0, 12.0, 12.0],
}


def _blobs(sizes: dict[str, int], seed: int = 0, moved: dict | None = None) -> pd.DataFrame:
    """Rows of each blob (ids ``{blob}{i}``: the same rows in every data set), shuffled."""
    frames = []
    for blob, n in sizes.items():
        rng = np.random.default_rng([seed, ord(blob)])
        centre = np.add(CENTRES[blob], (moved or {}).get(blob, 0.0))
        X = (centre + rng.normal(size=(n, 3))) * SCALE
        f = pd.DataFrame(X, columns=FEATURES)
        f.insert(0, "rid", [f"{blob}{i:05d}" for i in range(n)])
        f["truth"] = blob
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _write(folder, df: pd.DataFrame, parts: int = 3) -> str:
    folder.mkdir(parents=True)
    bounds = np.linspace(0, len(df), parts + 1).astype(int)
    rows = df.drop(columns="truth")
    for i in range(parts):
        rows.iloc[bounds[i] : bounds[i + 1]].to_parquet(folder / f"part-{i}.parquet", index=False)
    return str(folder)


def _run(client, tmp_path, data: str, k: int, seed: int = 0, **continuity):
    config = {
        "name": "weekly",
        "input": {"uri": data, "id_column": "rid", "columns": FEATURES},
        "kmeans": {"k": k, "random_state": seed},
        "output": {"uri": str(tmp_path / "out")},
        "continuity": continuity,
    }
    res = run(parse_config(config), client=client)
    assert not res.skipped
    manifest = read_manifest(res.run_uri)
    drift = json.loads((_folder(res) / "drift.json").read_text())
    return res, manifest, drift


def _folder(res):
    from pathlib import Path

    return Path(res.results_uri)


def _segments(res, df: pd.DataFrame) -> pd.DataFrame:
    files = sorted((_folder(res) / "assignments").glob("*.parquet"))
    assign = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.merge(assign, on="rid", validate="one_to_one")


def _id_of(seg: pd.DataFrame) -> dict[str, int]:
    """The segment ID of each true blob (every blob is exactly one segment)."""
    pairs = seg.groupby("truth")["segment"].agg(["nunique", "first"])
    assert (pairs["nunique"] == 1).all(), pairs
    return pairs["first"].to_dict()


def test_first_run_numbers_by_size_and_a_reseeded_rerun_keeps_every_id(client, tmp_path):
    df = _blobs({"A": 300, "B": 900, "C": 500, "D": 700})
    data = _write(tmp_path / "in", df)
    first, m1, d1 = _run(client, tmp_path, data, k=4, seed=0)
    seg1 = _segments(first, df)
    # first run: numbered by size, largest = 0
    assert _id_of(seg1) == {"B": 0, "D": 1, "C": 2, "A": 3}
    section = m1["continuity"]
    assert section["previous_run"] is None and section["new"] == [0, 1, 2, 3]
    assert sorted(section["ids"]) == [0, 1, 2, 3] and sum(section["sizes"]) == len(df)
    assert section["used_ids"] == [0, 1, 2, 3] and section["next_id"] == 4
    assert d1["previous_run"] is None and d1["transitions"]["status"] == "skipped"
    assert [s["size"] for s in d1["segments"]] == [900, 700, 500, 300]
    # the saved model predicts the IDs of the assignments
    model = load_model(first.run_uri)
    np.testing.assert_array_equal(model.predict(seg1[FEATURES]), seg1["segment"])
    assert sorted(model.segment_ids.tolist()) == [0, 1, 2, 3]

    # another seed: a new run id, clusters found in another raw order, the same IDs
    second, m2, d2 = _run(client, tmp_path, data, k=4, seed=5)
    assert second.run_id != first.run_id
    assert m2["continuity"]["ids"] != m1["continuity"]["ids"]  # the raw order did change
    seg2 = _segments(second, df)
    assert (seg2["segment"].to_numpy() == seg1["segment"].to_numpy()).all()
    assert m2["continuity"]["previous_run"] == first.run_id
    assert m2["continuity"]["new"] == [] and m2["continuity"]["vanished"] == []
    t = d2["transitions"]
    assert t["status"] == "computed" and t["rows_in_both"] == len(df)
    assert t["previous_ids"] == t["current_ids"] == [0, 1, 2, 3]
    counts = np.array(t["counts"])
    assert (counts == np.diag(np.diag(counts))).all() and counts.trace() == len(df)
    assert t["adjusted_rand_index"] == 1.0
    assert not any(s["flags"] for s in d2["segments"])
    assert second.drift["adjusted_rand_index"] == 1.0 and second.drift["flagged"] == {}
    # the summary lines of the CLI and the Prefect artifact
    assert describe(first.drift) == [
        f"Segment IDs: numbered by size, largest = 0 (first run: no committed run under "
        f"{tmp_path / 'out'}/LATEST)"
    ]
    assert describe(second.drift) == [
        f"Segment IDs follow run {first.run_id}: new none, vanished none",
        "Drift flagged: none (details in drift.json)",
        "Rows in both runs: adjusted Rand index 1.0000",
    ]


def test_drift_flags_exactly_the_segment_that_doubled_and_the_one_that_moved(client, tmp_path):
    sizes = {"A": 1000, "B": 800, "C": 600, "D": 400, "E": 200}
    before = _blobs(sizes)
    after = _blobs({**sizes, "E": 400}, moved={"C": [4.0, 0.0, 0.0]})  # E doubled, C moved
    first, _, _ = _run(client, tmp_path, _write(tmp_path / "a", before), k=5)
    ids = _id_of(_segments(first, before))
    second, _, drift = _run(client, tmp_path, _write(tmp_path / "b", after), k=5)
    assert _id_of(_segments(second, after)) == ids  # the moved segment kept its ID
    flagged = {s["id"]: s["flags"] for s in drift["segments"] if s["flags"]}
    assert flagged == {ids["E"]: ["share"], ids["C"]: ["shift"]}
    by_id = {s["id"]: s for s in drift["segments"]}
    e, c = by_id[ids["E"]], by_id[ids["C"]]
    assert (e["size_before"], e["size"]) == (200, 400)
    assert e["share_change"] == pytest.approx(400 / 3200 - 200 / 3000)
    # the shift in original units: 4 of f0's units, nothing else (sampling noise aside)
    assert c["shift"]["f0"] == pytest.approx(4.0, abs=0.2)
    assert abs(c["shift"]["f2"]) < 0.2 * SCALE[2]
    assert 0.5 < c["shift_scaled"] < 1.0
    t = drift["transitions"]
    assert t["rows_in_both"] == 3000 and t["adjusted_rand_index"] == 1.0
    assert second.drift["flagged"] == {str(k): v for k, v in flagged.items()}


def test_new_segment_gets_a_fresh_id_and_a_vanished_id_is_never_reused(client, tmp_path):
    four = {"A": 500, "B": 450, "C": 400, "D": 350}
    five = {**four, "E": 300}
    runs = [(four, 4), (five, 5), (four, 4), (five, 5)]  # K 4 -> 5 -> 4 -> 5
    seen = []
    for i, (sizes, k) in enumerate(runs):
        df = _blobs(sizes, seed=i)  # other rows each time: a new input, a new run
        res, manifest, drift = _run(client, tmp_path, _write(tmp_path / f"in{i}", df), k=k)
        seen.append((_id_of(_segments(res, df)), manifest["continuity"], drift))
    (ids1, _, _), (ids2, c2, d2), (ids3, c3, d3), (ids4, c4, d4) = seen
    assert ids1 == {"A": 0, "B": 1, "C": 2, "D": 3}
    # K grew: four IDs kept, E new with the next ID
    assert ids2 == {**ids1, "E": 4} and c2["new"] == [4] and c2["vanished"] == []
    assert {s["id"]: s["status"] for s in d2["segments"]}[4] == "new"
    # K shrank: E's ID vanished
    assert ids3 == ids1 and c3["vanished"] == [4] and c3["new"] == [] and d3["vanished"] == [4]
    vanished = [s for s in d3["segments"] if s["status"] == "vanished"]
    assert [(s["id"], s["size"], s["size_before"]) for s in vanished] == [(4, 0, 300)]
    assert c3["used_ids"] == [0, 1, 2, 3, 4]  # carried forward although 4 is gone
    # E is back: a fresh ID; 4 is never given out again (the previous run only had 0-3)
    assert ids4 == {**ids1, "E": 5}
    assert c4["new"] == [5] and c4["used_ids"] == [0, 1, 2, 3, 4, 5] and c4["next_id"] == 6
    t = d4["transitions"]  # E's rows are not in the previous run
    assert t["previous_ids"] == [0, 1, 2, 3] and t["current_ids"] == [0, 1, 2, 3, 5]
    assert t["adjusted_rand_index"] == 1.0 and t["rows_in_both"] == sum(four.values())


def test_scores_use_the_ids_and_a_forced_rerun_follows_the_committed_run(client, tmp_path):
    df = _blobs({"A": 300, "B": 600, "C": 450})
    data = _write(tmp_path / "in", df)
    query = _write(tmp_path / "q", _blobs({"A": 40, "B": 30, "C": 20}, seed=9), parts=1)
    config = parse_config(
        {
            "name": "weekly",
            "input": {"uri": data, "id_column": "rid", "columns": FEATURES},
            "kmeans": {"k": 3, "random_state": 5},
            "knn": {"enabled": True, "n_neighbors": 5, "query": {"uri": query, "id_column": "rid"}},
            "output": {"uri": str(tmp_path / "out")},
        }
    )
    first = run(config, client=client)
    m1 = read_manifest(first.run_uri)
    assert m1["continuity"]["ids"] == [2, 0, 1]  # IDs differ from the raw cluster indices
    ids = _id_of(_segments(first, df))
    assert ids == {"B": 0, "C": 1, "A": 2}
    # scores: the KNN vote and the nearest centroid are segment IDs too
    files = sorted((_folder(first) / "scores").glob("*.parquet"))
    scores = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    expected = scores["rid"].str[0].map(ids)
    assert (scores["knn_label"] == expected).all()
    assert (scores["nearest_centroid"] == expected).all()

    forced = run(config, force=True, client=client)
    assert forced.run_id == first.run_id and forced.drift["previous_run"] == first.run_id
    assert forced.drift["adjusted_rand_index"] == 1.0
    assert read_manifest(forced.run_uri)["continuity"]["ids"] == m1["continuity"]["ids"]
    # another job's run in the same output folder: a first run for this one
    plain = config.model_copy(update={"knn": KNNSpec()})  # no scoring from here on
    other = run(plain.model_copy(update={"name": "other"}), client=client)
    assert latest_run(str(tmp_path / "out")) == other.run_id
    assert other.drift["previous_run"] is None and "of job 'weekly'" in other.drift["reason"]
    # a pinned previous run: followed whatever LATEST says; a wrong pin fails in the plan
    pinned = run(
        plain.model_copy(
            update={
                "name": "other",
                "kmeans": config.kmeans.model_copy(update={"random_state": 0}),
                "continuity": ContinuitySpec(previous=first.run_uri),
            }
        ),
        client=client,
    )
    assert pinned.drift["previous_run"] == first.run_id
    assert pinned.drift["adjusted_rand_index"] == 1.0
    assert _id_of(_segments(pinned, df)) == ids
    wrong = config.model_copy(update={"continuity": ContinuitySpec(previous=str(tmp_path))})
    with pytest.raises(ConfigError, match=r"continuity.previous: .* is not a committed run"):
        plan(wrong)
