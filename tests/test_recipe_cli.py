"""``hf-skmm run`` and ``hf-skmm train`` on a tiny model saved with save_pretrained (real VADER data, small)."""

from __future__ import annotations

import json

import datasets
import pytest

from hf_skmm.cli.main import main
from hf_skmm.testing import tiny_bert_classifier, tiny_texts, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_bert_classifier(num_labels=1).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.mark.parametrize("command", ["run", "train"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--weighted" in out


def test_run_on_vader_with_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code = main(
        [
            "run",
            "--model_path", str(tiny_model_dir),
            "--pool_size", "80",
            "--n", "10",
            "--seeds", "0",
            "--sketch_dim", "8",
            "--min_steps", "10",
            "--num_epochs", "1",
            "--output_dir", str(out_dir),
            "--cache_dir", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    assert code == 0
    screen = capsys.readouterr().out
    assert "skmm vs uniform" in screen and "c_S achieved" in screen and str(out_dir) in screen
    results = json.loads((out_dir / "report" / "results.json").read_text())
    assert results["dataset"] == "VADER lexicon (regression)"
    assert results["num_train"] == 80 and results["num_test"] == 1502
    assert (out_dir / "coresets" / "skmm-n10-seed0" / "selection").is_dir()
    # the exported coreset trains again with `hf-skmm train` (default eval data: the VADER test split)
    trained = tmp_path / "trained"
    argv = [
        "train",
        "--coreset_dir",
        str(out_dir / "coresets" / "skmm-n10-seed0"),
        "--model_path",
        str(tiny_model_dir),
    ]
    assert (
        main([*argv, "--min_steps", "5", "--num_epochs", "1", "--weighted", "--output_dir", str(trained)])
        == 0
    )
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["num_train"] == 10 and metrics["num_test"] == 1502


def test_train_on_an_exported_coreset(tiny_model_dir, tmp_path, capsys):
    data = (
        datasets.Dataset.from_dict(tiny_texts(40, seed=0))
        .remove_columns("label")
        .rename_column("score", "label")
    )
    coreset = data.select(range(12)).add_column("skmm_index", list(range(12)))
    coreset = coreset.add_column("skmm_weight", [0.5 + i / 12 for i in range(12)])
    coreset.save_to_disk(str(tmp_path / "coreset"))
    data.select(range(12, 40)).save_to_disk(str(tmp_path / "test"))
    out = tmp_path / "trained"
    argv = [
        "train",
        "--coreset_dir", str(tmp_path / "coreset"),
        "--eval_dataset_path", str(tmp_path / "test"),
        "--model_path", str(tiny_model_dir),
        "--min_steps", "5",
        "--weighted",
        "--output_dir", str(out),
        "--cache_dir_unused_flag_is_rejected",
    ]  # fmt: skip
    assert main(argv) == 2  # an unknown flag is a user error, reported in one line
    assert main(argv[:-1]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["num_train"] == 12 and metrics["num_test"] == 28 and metrics["train_steps"] == 10
    )  # max(min_steps, 1 batch x 10 epochs)
    assert (out / "head.safetensors").is_file() and not (out / "trainer").exists()
    assert "mse" in capsys.readouterr().out
    # the output exists now: a second run refuses to overwrite it
    assert main(argv[:-1]) == 2
    assert main(["train"]) == 2  # coreset_dir is required
    assert "coreset_dir is required" in capsys.readouterr().err


def test_sweep_report_writes_table_and_plot(tmp_path):
    """The sweep's report step (mean ± std table + error-bar plot) on synthetic run rows."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "sweep_vader.py"
    spec = importlib.util.spec_from_file_location("sweep_vader", script)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    rows = []
    for seed in range(3):
        rows.append(dict(method="full", weighted=False, n=100, seed=seed, mse=1.0 + seed, pearson=0.8))
        for n in (10, 20):
            for method, weighted in (("skmm", False), ("skmm", True), ("uniform", False)):
                rows.append(
                    dict(
                        method=method,
                        weighted=weighted,
                        n=n,
                        seed=seed,
                        mse=float(n + seed),
                        pearson=0.5,
                        c_s_achieved=2.0,
                    )
                )
    (tmp_path / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = sweep.report(tmp_path, "regression")
    assert "| skmm | 11.0000 ± 1.0000 | 21.0000 ± 1.0000 |" in text
    assert "| skmm+weighted |" in text and "| full data (N=100) | 2.0000 ± 1.0000" in text
    assert (tmp_path / "table.md").read_text() == text
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
