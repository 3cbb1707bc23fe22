"""``hf-skmm select / export / methods / extract`` in-process: outputs, bad inputs, YAML configs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from datasets import Dataset, Features, List, Value, load_dataset, load_from_disk
from huggingface_hub import DatasetCard

from hf_skmm.cli.main import main
from hf_skmm.integrations.provenance import attach_provenance
from hf_skmm.selection import SelectionResult, list_selectors
from hf_skmm.testing import gaussian_mixture, tiny_texts

N, M = 40, 6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Source dataset, two impostors (same size other rows; one row fewer) and a sketch dir of the source."""
    root = tmp_path_factory.mktemp("cli")
    Dataset.from_dict(tiny_texts(N, seed=1)).save_to_disk(root / "src")
    Dataset.from_dict(tiny_texts(N, seed=2)).save_to_disk(root / "other")
    Dataset.from_dict(tiny_texts(N - 1, seed=1)).save_to_disk(root / "small")
    source = load_from_disk(str(root / "src"))  # the fingerprint a later load gets
    x, _ = gaussian_mixture(num=N, dim=M, clusters=3, seed=0)
    features = Features({"skmm_index": Value("int64"), "skmm_sketch": List(Value("float32"), length=M)})
    sketched = Dataset.from_dict({"skmm_index": np.arange(N), "skmm_sketch": x.numpy()}, features=features)
    attach_provenance(
        sketched,
        {
            "source": {"fingerprint": source._fingerprint, "num_rows": N},
            "model": {"name_or_path": "tiny"},
            "gradient_config": {"params": "head"},
            "sketch_config": {"kind": "gaussian", "dim": M, "seed": 0},
            "sketch_dim": M,
        },
    )
    sketched.save_to_disk(root / "sk")
    (root / "sk" / "command.txt").write_text("hf-skmm extract --model_path tiny --dataset_path src\n")
    assert (
        main(["select", "--sketch_dir", str(root / "sk"), "--output_dir", str(root / "sel"), "--n", "8"]) == 0
    )
    return root


def _fails(capsys, argv, message, absent):
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, err
    assert message in err, err
    assert not absent.exists(), f"{absent} was left behind"


# --------------------------------------------------------------------------- select


def test_select_writes_result_report_and_plot(data, tmp_path, capsys):
    out = tmp_path / "sel"
    code = main(["select", "--sketch_dir", str(data / "sk"), "--output_dir", str(out), "--fraction", "0.25"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert {p.name for p in out.iterdir()} == {
        "selection.json",
        "indices.npy",
        "weights.npy",
        "report.md",
        "spectrum.png",
    }
    result = SelectionResult.load(out)
    assert len(result) == 10 and result.info["source_num_rows"] == N and result.info["method"] == "skmm"
    assert result.info["commands"][0].startswith("hf-skmm extract")
    assert result.info["commands"][1].startswith("hf-skmm select --sketch_dir")
    report = (out / "report.md").read_text()
    assert report == stdout
    c_s = result.info["c_s_achieved"]
    for fragment in (
        f"| N (source rows) | {N} |",
        "| n (coreset) | 10 (25.00%) |",
        "| method | skmm |",
        f"| c_S achieved | {'inf' if np.isinf(c_s) else format(c_s, '.4g')} |",
        "| spectrum coverage |",
        "| selection time |",
    ):
        assert fragment in report, fragment
    assert (out / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_select_is_deterministic_and_accepts_c_s(data, tmp_path):
    argv = [
        "select",
        "--sketch_dir",
        str(data / "sk"),
        "--n",
        "6",
        "--seed",
        "3",
        "--c_s",
        "0.9",
        "--no_plot",
    ]
    assert main([*argv, "--output_dir", str(tmp_path / "a")]) == 0
    assert main([*argv, "--output_dir", str(tmp_path / "b")]) == 0
    a, b = SelectionResult.load(tmp_path / "a"), SelectionResult.load(tmp_path / "b")
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.info["c_s_target"] == 0.9 and not (tmp_path / "a" / "spectrum.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", str(N + 1)], f"n={N + 1} is larger than the dataset (N={N} rows)"),
        (["--n", "0"], "n must be a positive number of examples, got n=0"),
        (["--n", "-2"], "n must be a positive number of examples, got n=-2"),
        (["--fraction", "0"], "fraction must be in (0, 1], got fraction=0.0"),
        (["--fraction", "1.5"], "fraction must be in (0, 1], got fraction=1.5"),
        (["--n", "3", "--fraction", "0.5"], "pass exactly one of --n or --fraction"),
        ([], "pass exactly one of --n or --fraction"),
        (["--n", "4", "--method", "nope"], "method='nope' is not a registered selector"),
        (["--n", "4", "--c_s", "1.5"], "c_s must be in (0, 1], got c_s=1.5"),
        (["--n", "4", "--c_s", "0.9", "--method", "uniform"], "c_s is a target of method='skmm' only"),
        (["--n", "4", "--method", "margin"], "method='margin' needs the model's outputs"),
        (["--n", "4", "--stratify_by", "label"], "pass --dataset_path SOURCE"),
    ],
)
def test_select_bad_input(data, tmp_path, capsys, args, message):
    out = tmp_path / "sel"
    _fails(
        capsys, ["select", "--sketch_dir", str(data / "sk"), "--output_dir", str(out), *args], message, out
    )


def test_select_missing_paths_and_existing_output(data, tmp_path, capsys):
    out = tmp_path / "sel"
    _fails(
        capsys,
        ["select", "--sketch_dir", str(tmp_path / "nope"), "--output_dir", str(out), "--n", "3"],
        "is not a sketch dataset directory",
        out,
    )
    _fails(capsys, ["select", "--output_dir", str(out), "--n", "3"], "sketch_dir is required", out)
    existing = data / "sel"
    before = SelectionResult.load(existing).indices
    code = main(["select", "--sketch_dir", str(data / "sk"), "--output_dir", str(existing), "--n", "3"])
    assert code != 0 and "already exists" in capsys.readouterr().err
    np.testing.assert_array_equal(SelectionResult.load(existing).indices, before)  # untouched


def test_select_stratified_by_a_source_column(data, tmp_path, capsys):
    argv = ["select", "--sketch_dir", str(data / "sk"), "--n", "10", "--stratify_by", "label", "--no_plot"]
    assert main([*argv, "--dataset_path", str(data / "src"), "--output_dir", str(tmp_path / "sel")]) == 0
    result = SelectionResult.load(tmp_path / "sel")
    labels = np.asarray(load_from_disk(str(data / "src"))["label"][:])
    assert result.info["stratify_by"] == "label" and result.info["stratified"] is True
    assert set(labels[result.indices]) == set(labels)  # every class is represented
    _fails(
        capsys,
        [*argv, "--dataset_path", str(data / "other"), "--output_dir", str(tmp_path / "x")],
        "fingerprint",
        tmp_path / "x",
    )
    _fails(
        capsys,
        [
            "select",
            "--sketch_dir",
            str(data / "sk"),
            "--n",
            "4",
            "--stratify_by",
            "nope",
            "--dataset_path",
            str(data / "src"),
            "--output_dir",
            str(tmp_path / "y"),
        ],
        "stratify_by='nope' is not a column of dataset_path",
        tmp_path / "y",
    )


# --------------------------------------------------------------------------- export


def test_export_writes_coreset_card_and_hub_folder(data, tmp_path, capsys):
    out, hub = tmp_path / "coreset", tmp_path / "hub"
    argv = ["export", "--dataset_path", str(data / "src"), "--selection_dir", str(data / "sel")]
    argv += ["--dataset_name", "tiny/texts", "--dataset_revision", "v1.0"]
    assert main([*argv, "--output_dir", str(out), "--hub_folder", str(hub)]) == 0
    assert "wrote a coreset of 8 rows" in capsys.readouterr().out
    coreset = load_from_disk(str(out))
    result = SelectionResult.load(data / "sel")
    source = load_from_disk(str(data / "src"))
    assert coreset["skmm_index"][:] == result.indices.tolist()
    assert coreset["text"][:] == source.select(result.indices.tolist())["text"][:]
    card = DatasetCard.load(out / "README.md")
    rec = card.data.hf_skmm
    assert rec["source"]["dataset"] == "tiny/texts" and rec["source"]["fingerprint"] == source._fingerprint
    assert rec["source"]["revision"] == "v1.0"
    assert rec["selection"]["n"] == 8 and rec["selection"]["N"] == N and rec["sketch"]["m"] == M
    commands = rec["reproduce"].split(" && \\\n")
    assert [c.split()[1] for c in commands] == ["extract", "select", "export"]
    hub_loaded = load_dataset(str(hub), split="train", cache_dir=str(tmp_path / "cache"))
    assert hub_loaded.to_dict() == coreset.to_dict()


def test_export_push_to_hub_wiring(data, tmp_path, monkeypatch, capsys):
    """``--push-to-hub`` calls push_coreset_to_hub (private by default) with the coreset and its card."""
    import hf_skmm.integrations.coreset as coreset_module

    calls = []
    monkeypatch.setattr(
        coreset_module,
        "push_coreset_to_hub",
        lambda coreset, card, repo, private: calls.append((coreset, card, repo, private)),
    )
    out = tmp_path / "coreset"
    argv = ["export", "--dataset_path", str(data / "src"), "--selection_dir", str(data / "sel")]
    assert main([*argv, "--output_dir", str(out), "--push-to-hub", "me/tiny-coreset"]) == 0
    assert "pushed to https://huggingface.co/datasets/me/tiny-coreset" in capsys.readouterr().out
    ((coreset, card, repo, private),) = calls
    assert repo == "me/tiny-coreset" and private is True and len(coreset) == 8
    assert str(card) == (out / "README.md").read_text()
    _fails(
        capsys,
        [*argv, "--output_dir", str(tmp_path / "x"), "--push_to_hub", "a/b/c"],
        "USER/NAME",
        tmp_path / "x",
    )


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("other", "fingerprint"),  # same size, other rows
        ("small", f"made from a dataset of {N} rows but dataset has {N - 1} rows"),
        ("missing", "does not exist"),
    ],
)
def test_export_refuses_another_dataset(data, tmp_path, capsys, dataset, message):
    out = tmp_path / "coreset"
    argv = ["export", "--dataset_path", str(data / dataset), "--selection_dir", str(data / "sel")]
    _fails(capsys, [*argv, "--output_dir", str(out)], message, out)


def test_export_missing_selection(data, tmp_path, capsys):
    out = tmp_path / "coreset"
    argv = ["export", "--dataset_path", str(data / "src"), "--selection_dir", str(tmp_path / "nope")]
    _fails(capsys, [*argv, "--output_dir", str(out)], "selection_dir=", out)
    _fails(
        capsys,
        ["export", "--dataset_path", str(data / "src"), "--output_dir", str(out)],
        "selection_dir is required",
        out,
    )


# --------------------------------------------------------------------------- methods, help


def test_methods_lists_every_selector(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    for (name, description), line in zip(list_selectors().items(), lines):
        assert line.split()[0] == name and line.endswith(description)
    assert len(lines) == len(list_selectors())


def test_top_level_help_imports_nothing_heavy():
    """``hf-skmm --help`` stays fast because no command module (nor torch / the HF stack) is imported."""
    code = (
        "import sys\nfrom hf_skmm.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'datasets', 'accelerate', 'peft', 'numpy') or m.startswith('hf_skmm.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['hf_skmm.cli.main']"


# --------------------------------------------------------------------------- YAML configs


def _config_classes():
    from hf_skmm.cli.export import ExportArguments
    from hf_skmm.cli.extract import ExtractArguments
    from hf_skmm.cli.select import SelectArguments
    from hf_skmm.gradients import GradientConfig
    from hf_skmm.integrations.extract import ExtractConfig
    from hf_skmm.sketch import SketchConfig

    return {
        SelectArguments: {
            "sketch_dir": "sk",
            "output_dir": "out",
            "fraction": 0.3,
            "method": "uniform",
            "seed": 4,
        },
        ExportArguments: {
            "dataset_path": "d",
            "selection_dir": "s",
            "output_dir": "o",
            "push_to_hub": "me/core",
            "private": False,
        },
        ExtractArguments: {"model_path": "m", "dataset_path": "d", "output_dir": "o", "adapter_path": "a"},
        GradientConfig: {
            "params": "names",
            "param_names": ["classifier", "bert.pooler.dense"],
            "target": "output",
        },
        SketchConfig: {"kind": "sparse_sign", "dim": 32, "seed": 7, "nnz": 2},
        ExtractConfig: {"batch_size": 4, "max_length": 16, "text_column": "text"},
    }


@pytest.mark.parametrize("cls", list(_config_classes()), ids=lambda c: c.__name__)
def test_config_yaml_round_trip(tmp_path, cls):
    from hf_skmm.cli.parsing import parse_dataclasses

    config = cls(**_config_classes()[cls])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(dataclasses.asdict(config)))
    (parsed,), _ = parse_dataclasses([cls], ["--config", str(path)], prog="t", description="t")
    assert parsed == config
    # a flag on the command line overrides the file
    name = {"ExportArguments": "split", "ExtractArguments": "split", "GradientConfig": "last_k"}.get(
        cls.__name__, "batch_size" if cls.__name__ == "ExtractConfig" else "seed"
    )
    (overridden,), _ = parse_dataclasses(
        [cls], ["--config", str(path), f"--{name}", "11"], prog="t", description="t"
    )
    assert str(getattr(overridden, name)) == "11"
    assert dataclasses.replace(overridden, **{name: getattr(config, name)}) == config
    assert json.loads(json.dumps(dataclasses.asdict(overridden)))  # JSON-able, as the card needs


def test_select_from_yaml_config(data, tmp_path):
    config = tmp_path / "select.yaml"
    out = tmp_path / "sel"
    config.write_text(
        yaml.safe_dump({"sketch_dir": str(data / "sk"), "output_dir": str(out), "n": 5, "plot": False})
    )
    assert main(["select", "--config", str(config)]) == 0
    assert len(SelectionResult.load(out)) == 5


def test_unknown_yaml_key_is_an_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("sketch_dir: a\nnumber: 3\n")
    with pytest.raises(SystemExit, match="unknown key"):
        main(["select", "--config", str(config)])
