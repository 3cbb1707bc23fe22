"""select_coreset / save_coreset / the Hub folder (hf_skmm.integrations.coreset)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset, Features, List, Value, load_dataset, load_from_disk
from huggingface_hub import DatasetCard

from hf_skmm.integrations.card import build_card
from hf_skmm.integrations.coreset import (
    coreset_from_selection,
    load_coreset,
    push_coreset_to_hub,
    resolve_n,
    save_coreset,
    select_coreset,
    sketch_matrix,
    write_hub_folder,
)
from hf_skmm.integrations.provenance import attach_provenance
from hf_skmm.selection import SelectionResult, list_selectors, select
from hf_skmm.testing import gaussian_mixture, tiny_texts

N, M = 48, 6


def make_sketched(source: Dataset, matrix: np.ndarray, order: np.ndarray | None = None, provenance=True):
    """A sketch dataset as extraction writes it; ``order`` permutes the rows (multi-process output)."""
    order = np.arange(len(matrix)) if order is None else order
    features = Features({"skmm_index": Value("int64"), "skmm_sketch": List(Value("float32"), length=M)})
    sketched = Dataset.from_dict(
        {"skmm_index": order, "skmm_sketch": matrix[order].astype(np.float32)}, features=features
    )
    if provenance:
        attach_provenance(
            sketched,
            {
                "format": 1,
                "source": {"fingerprint": source._fingerprint, "num_rows": len(source)},
                "model": {
                    "name_or_path": "tiny-bert",
                    "class": "BertForSequenceClassification",
                    "revision": None,
                },
                "adapter": None,
                "gradient_config": {"params": "head", "target": "loss"},
                "sketch_config": {"kind": "gaussian", "dim": M, "seed": 0},
                "sketch_dim": M,
                "hf_skmm_version": "0.1.0",
            },
        )
    return sketched


@pytest.fixture(scope="module")
def source() -> Dataset:
    return Dataset.from_dict(tiny_texts(N, seed=1))


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    x, _ = gaussian_mixture(num=N, dim=M, clusters=3, seed=0)
    return x.numpy()


@pytest.fixture(scope="module")
def sketched(source, matrix) -> Dataset:
    return make_sketched(source, matrix)


def test_select_coreset_cuts_the_selected_rows(source, sketched, matrix):
    coreset, result = select_coreset(source, sketched, n=10, method="skmm", seed=0)
    expected = select(matrix, 10, method="skmm", seed=0)  # the selection layer on the same matrix
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_allclose(result.weights, expected.weights)
    assert len(coreset) == 10
    assert coreset.column_names == [*source.column_names, "skmm_index", "skmm_weight"]
    assert coreset.features["skmm_index"] == Value("int64") and coreset.features["skmm_weight"] == Value(
        "float64"
    )
    assert coreset["skmm_index"][:] == result.indices.tolist()
    np.testing.assert_allclose(coreset["skmm_weight"][:], result.weights)
    rows = source.select(result.indices.tolist())
    assert coreset["text"][:] == rows["text"][:] and coreset["label"][:] == rows["label"][:]
    info = result.info
    assert info["source_num_rows"] == N and info["source_fingerprint"] == source._fingerprint
    assert info["method"] == "skmm" and info["seed"] == 0
    assert info["provenance"]["sketch_dim"] == M
    assert np.isfinite(info["c_s_achieved"]) or info["c_s_achieved"] == float("inf")


def test_top_level_export():
    import hf_skmm

    assert hf_skmm.select_coreset is select_coreset


def test_rows_are_aligned_by_skmm_index_not_position(source, sketched, matrix):
    shuffled = make_sketched(source, matrix, order=np.random.default_rng(0).permutation(N))
    np.testing.assert_array_equal(sketch_matrix(shuffled), matrix.astype(np.float32))
    a, ra = select_coreset(source, sketched, n=8, seed=3)
    b, rb = select_coreset(source, shuffled, n=8, seed=3)
    np.testing.assert_array_equal(ra.indices, rb.indices)
    assert a["text"][:] == b["text"][:]


def test_same_seed_same_coreset_and_fraction(source, sketched):
    a, _ = select_coreset(source, sketched, fraction=0.25, seed=7)
    b, _ = select_coreset(source, sketched, fraction=0.25, seed=7)
    assert len(a) == 12 and a.to_dict() == b.to_dict()
    assert resolve_n(None, 1.0, N) == N and resolve_n(None, 0.001, N) == 1


@pytest.mark.parametrize("method", sorted(list_selectors()))
def test_every_registered_method_runs(source, sketched, method):
    from hf_skmm.selection.registry import get_selector

    # per-row inputs (e.g. class probabilities for the uncertainty baselines) go in source row order
    probs = np.random.default_rng(0).dirichlet(np.ones(2), size=N)
    kwargs = {name: probs for name in get_selector(method).row_kwargs if name == "probs"}
    coreset, result = select_coreset(source, sketched, n=6, method=method, seed=0, **kwargs)
    assert len(coreset) == 6 and result.info["method"] == method
    if kwargs and method == "least_confidence":  # the n least confident rows, whatever the sketches
        np.testing.assert_array_equal(np.sort(result.indices), np.sort(np.argsort(probs.max(axis=1))[:6]))


def test_stratify_by_column(source, sketched):
    coreset, result = select_coreset(source, sketched, n=12, stratify_by="label", seed=0)
    assert result.info["stratify_by"] == "label" and len(coreset) == 12
    assert set(coreset["label"][:]) == set(source["label"][:])  # both classes are represented
    with pytest.raises(ValueError, match="stratify_by='nope' is not a column"):
        select_coreset(source, sketched, n=4, stratify_by="nope")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": N + 1}, r"n=49 is larger than the dataset \(N=48"),
        ({"n": 0}, "n must be a positive number of examples, got n=0"),
        ({"n": -3}, "n must be a positive number of examples, got n=-3"),
        ({"fraction": 0.0}, r"fraction must be a number in \(0, 1\], got fraction=0.0"),
        ({"fraction": 1.5}, r"fraction must be a number in \(0, 1\], got fraction=1.5"),
        ({"n": 3, "fraction": 0.5}, "pass exactly one of n"),
        ({}, "pass exactly one of n"),
        ({"n": 4, "method": "nope"}, "method='nope' is not a registered selector"),
    ],
)
def test_bad_arguments(source, sketched, kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_coreset(source, sketched, **kwargs)


def test_n_must_be_an_int(source, sketched):
    with pytest.raises(TypeError, match="n must be an int"):
        select_coreset(source, sketched, n=2.5)


def test_sketches_of_another_dataset_are_refused(source, sketched, matrix):
    with pytest.raises(ValueError, match="made from a dataset of 48 rows but dataset has 47 rows"):
        select_coreset(source.select(range(N - 1)), sketched, n=4)
    other = Dataset.from_dict(tiny_texts(N, seed=99))  # same size, other rows: only the fingerprint differs
    with pytest.raises(ValueError, match=r"fingerprint .* but dataset has fingerprint"):
        select_coreset(other, sketched, n=4)
    # without provenance only the row count can be checked, and it passes
    coreset, _ = select_coreset(other, make_sketched(source, matrix, provenance=False), n=4)
    assert len(coreset) == 4


def test_malformed_sketch_datasets(source, matrix):
    with pytest.raises(ValueError, match=r"sketched lacks column\(s\) \['skmm_sketch'\]"):
        select_coreset(source, Dataset.from_dict({"skmm_index": list(range(N))}), n=3)
    dup = Dataset.from_dict({"skmm_index": [0] * N, "skmm_sketch": matrix.tolist()})
    with pytest.raises(ValueError, match=r"must be a permutation of 0\.\.N-1"):
        select_coreset(source, dup, n=3)


def test_coreset_of_a_coreset_needs_renaming(source, sketched):
    coreset, _ = select_coreset(source, sketched, n=5)
    with pytest.raises(ValueError, match=r"already has column\(s\) \['skmm_index', 'skmm_weight'\]"):
        coreset_from_selection(coreset, SelectionResult(np.arange(2), np.full(2, 0.5)))
    with pytest.raises(ValueError, match=r"result.indices span \[0, 99\] but dataset has 48 rows"):
        coreset_from_selection(source, SelectionResult(np.array([0, 99]), np.full(2, 0.5)))


# --------------------------------------------------------------------------- save / load


def test_save_and_load_coreset(tmp_path, source, sketched):
    coreset, result = select_coreset(source, sketched, n=9, seed=1)
    card = build_card(result, source_dataset="tiny_texts")
    path = save_coreset(coreset, result, tmp_path / "coreset", card=card)
    assert {"README.md", "selection", "state.json"} <= {p.name for p in path.iterdir()}
    back, back_result = load_coreset(path)
    assert back.to_dict() == coreset.to_dict()
    np.testing.assert_array_equal(back_result.indices, result.indices)
    assert back_result.info["source_fingerprint"] == source._fingerprint
    assert load_from_disk(str(path)).to_dict() == coreset.to_dict()  # plain datasets reads it too
    assert DatasetCard.load(path / "README.md").data.hf_skmm["selection"]["n"] == 9
    with pytest.raises(FileExistsError, match="already exists"):
        save_coreset(coreset, result, path)


def test_save_coreset_leaves_nothing_on_failure(tmp_path, source, sketched, monkeypatch):
    coreset, result = select_coreset(source, sketched, n=4)

    def broken_save(directory):
        raise OSError("disk full")

    monkeypatch.setattr(result, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_coreset(coreset, result, tmp_path / "coreset")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the Hub


def test_hub_folder_loads_back_with_load_dataset(tmp_path, source, sketched):
    coreset, result = select_coreset(source, sketched, n=11, seed=2)
    card = build_card(result, source_dataset="tiny_texts")
    files = write_hub_folder(coreset, card, tmp_path / "repo")
    assert [str(f) for f in files] == ["data/train-00000-of-00001.parquet", "README.md"]
    loaded = load_dataset(str(tmp_path / "repo"), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == ["train"]
    assert loaded["train"].features == coreset.features
    assert loaded["train"].to_dict() == coreset.to_dict()
    hub_readme = DatasetCard.load(tmp_path / "repo" / "README.md")
    assert hub_readme.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
    ]
    assert hub_readme.data.dataset_info["splits"] == [
        {
            "name": "train",
            "num_bytes": hub_readme.data.dataset_info["splits"][0]["num_bytes"],
            "num_examples": 11,
        }
    ]
    assert hub_readme.data.hf_skmm == card.data.hf_skmm  # the provenance survives
    assert card.text.strip() in hub_readme.text


def test_hub_folder_shards_like_push_to_hub(tmp_path, source, sketched):
    coreset, result = select_coreset(source, sketched, n=11, seed=2)
    files = write_hub_folder(coreset, build_card(result), tmp_path / "repo", num_shards=3, split="coreset")
    assert [str(f) for f in files[:3]] == [f"data/coreset-0000{i}-of-00003.parquet" for i in range(3)]
    loaded = load_dataset(str(tmp_path / "repo"), split="coreset", cache_dir=str(tmp_path / "cache"))
    assert loaded["skmm_index"][:] == coreset["skmm_index"][:]


def test_push_coreset_to_hub_calls(monkeypatch, source, sketched):
    """The Hub is unreachable here: record the real API calls push_coreset_to_hub makes, in order."""
    import huggingface_hub
    from datasets import Dataset as HFDataset

    calls = []
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "create_repo",
        lambda self, repo_id, **kw: calls.append(("create_repo", repo_id, kw)),
    )
    monkeypatch.setattr(
        DatasetCard, "push_to_hub", lambda self, repo_id, **kw: calls.append(("card", repo_id, str(self), kw))
    )
    monkeypatch.setattr(
        HFDataset, "push_to_hub", lambda self, repo_id, **kw: calls.append(("data", repo_id, kw))
    )
    coreset, result = select_coreset(source, sketched, n=5)
    card = build_card(result)
    push_coreset_to_hub(coreset, card, "user/coreset")
    assert [c[0] for c in calls] == [
        "create_repo",
        "card",
        "data",
    ]  # card first: datasets then adds its metadata
    assert calls[0][2]["private"] is True and calls[0][2]["repo_type"] == "dataset"
    assert calls[1][3]["repo_type"] == "dataset"
    pushed = DatasetCard(calls[1][2])
    assert pushed.data.hf_skmm == card.data.hf_skmm and pushed.data.configs
    assert calls[2][2]["private"] is True and calls[2][2]["split"] == "train"
