"""The whole ``hf-skmm extract → select → export`` run on a tiny saved model, from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from datasets import Dataset, load_dataset, load_from_disk
from huggingface_hub import DatasetCard

from hf_skmm.cli.main import main
from hf_skmm.integrations.provenance import get_provenance
from hf_skmm.selection import SelectionResult
from hf_skmm.testing import tiny_bert_classifier, tiny_texts, tiny_tokenizer

N = 24


def _env(tmp) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["HF_DATASETS_CACHE"] = str(tmp / "hf_cache")  # keep the sketch cache inside the test folder
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _cli(tmp, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_skmm.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=_env(tmp),
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    tiny_bert_classifier(num_labels=2).save_pretrained(root / "model")
    tiny_tokenizer().save_pretrained(root / "model")
    Dataset.from_dict(tiny_texts(N, seed=4)).save_to_disk(root / "texts")
    return root


def test_extract_select_export_subprocess(workdir):
    extract = _cli(
        workdir,
        "extract",
        "--model_path", "model",
        "--dataset_path", "texts",
        "--output_dir", "sketches",
        "--dim", "8",
        "--seed", "1",
        "--batch_size", "8",
        "--cpu",
    )  # fmt: skip
    assert extract.returncode == 0, extract.stderr
    assert f"wrote sketches of {N} rows (m=8)" in extract.stdout
    sketched = load_from_disk(str(workdir / "sketches"))
    assert sketched.column_names == ["skmm_index", "skmm_sketch"] and len(sketched) == N
    provenance = get_provenance(sketched)
    assert provenance["source"]["fingerprint"] == load_from_disk(str(workdir / "texts"))._fingerprint
    assert provenance["sketch_config"]["dim"] == 8 and provenance["gradient_config"]["params"] == "head"

    select = _cli(workdir, "select", "--sketch_dir", "sketches", "--output_dir", "selection", "--n", "6")
    assert select.returncode == 0, select.stderr
    assert f"| N (source rows) | {N} |" in select.stdout and "| n (coreset) | 6 (25.00%) |" in select.stdout
    assert (workdir / "selection" / "spectrum.png").is_file()

    export = _cli(
        workdir,
        "export",
        "--dataset_path", "texts",
        "--selection_dir", "selection",
        "--output_dir", "coreset",
        "--hub_folder", "hub",
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    coreset = load_from_disk(str(workdir / "coreset"))
    result = SelectionResult.load(workdir / "selection")
    source = load_from_disk(str(workdir / "texts"))
    assert coreset["skmm_index"][:] == result.indices.tolist()
    assert coreset["text"][:] == source.select(result.indices.tolist())["text"][:]
    card = DatasetCard.load(workdir / "coreset" / "README.md")
    rec = card.data.hf_skmm
    assert rec["model"]["name"] == "model" and rec["sketch"]["m"] == 8 and rec["selection"]["N"] == N
    assert rec["reproduce"].startswith("hf-skmm extract --model_path model")
    hub = load_dataset(str(workdir / "hub"), split="train", cache_dir=str(workdir / "load_cache"))
    assert hub.to_dict() == coreset.to_dict()

    # the same command again: refused (the output exists), nothing overwritten
    again = _cli(workdir, "select", "--sketch_dir", "sketches", "--output_dir", "selection", "--n", "3")
    assert again.returncode != 0 and "already exists" in again.stderr
    np.testing.assert_array_equal(SelectionResult.load(workdir / "selection").indices, result.indices)


def test_extract_csv_with_lora_adapter_in_process(workdir, tmp_path, monkeypatch, capsys):
    """A csv dataset and a peft adapter on top of the saved model; params='lora' differentiates the adapter."""
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    load_from_disk(str(workdir / "texts")).to_csv(str(tmp_path / "texts.csv"))
    peft_model = get_peft_model(
        tiny_bert_classifier(num_labels=2),
        LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    argv = ["extract", "--model_path", str(workdir / "model"), "--adapter_path", str(tmp_path / "adapter")]
    argv += [
        "--dataset_path",
        str(tmp_path / "texts.csv"),
        "--output_dir",
        str(tmp_path / "sk"),
        "--params",
        "lora",
    ]
    argv += ["--dim", "4", "--batch_size", "12", "--cache_dir", str(tmp_path / "cache"), "--cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    provenance = get_provenance(load_from_disk(str(tmp_path / "sk")))
    assert provenance["adapter"]["adapters"]["default"]["peft_type"] == "LORA"
    assert provenance["gradient_config"]["params"] == "lora"
    assert (tmp_path / "sk" / "command.txt").read_text().startswith("hf-skmm extract --model_path")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model_path", "nope"], "model_path='nope' is not a directory"),
        (["--dataset_path", "nope"], "dataset_path='nope' does not exist"),
        (["--label_column", "nope"], "label_column='nope' is not a column"),
        (["--dim", "0"], "dim"),
        (["--batch_size", "0"], "batch_size must be a positive integer"),
    ],
)
def test_extract_bad_input(workdir, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    out = tmp_path / "sk"
    base = {"--model_path": "model", "--dataset_path": "texts", "--output_dir": str(out), "--cpu": None}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["extract"] + [
        item for flag, value in base.items() for item in ([flag] if value is None else [flag, value])
    ]
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0 and message in err, err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_extract_under_accelerate_launch_matches_one_process(workdir, tmp_path):
    """``accelerate launch --num_processes 2 -m hf_skmm.cli.main extract`` writes the sketches of one process."""
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    if not os.path.exists(launcher):
        pytest.skip("the accelerate launcher is not installed next to this Python")
    common = ["--model_path", str(workdir / "model"), "--dataset_path", str(workdir / "texts")]
    common += ["--dim", "8", "--batch_size", "4", "--rows_per_chunk", "4", "--cpu"]
    launch = [launcher, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    two = subprocess.run(
        [*launch, "-m", "hf_skmm.cli.main", "extract", *common, "--output_dir", "two"],
        capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path),
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one = _cli(tmp_path, "extract", *common, "--output_dir", "one", "--cache_dir", str(tmp_path / "cache1"))
    assert one.returncode == 0, one.stderr
    a, b = load_from_disk(str(tmp_path / "one")), load_from_disk(str(tmp_path / "two"))
    np.testing.assert_array_equal(a["skmm_index"][:], b["skmm_index"][:])
    np.testing.assert_allclose(
        np.asarray(a["skmm_sketch"][:]), np.asarray(b["skmm_sketch"][:]), rtol=1e-4, atol=1e-6
    )
    assert (
        json.loads(a.info.description)["hf_skmm"]["source"]
        == json.loads(b.info.description)["hf_skmm"]["source"]
    )
