"""The numerical layers must stay free of the Hugging Face stack, and ``import hf_skmm`` must be cheap."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("transformers", "datasets", "peft", "accelerate", "evaluate", "huggingface_hub")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.split(".")[0] in HEAVY)


def test_sketch_and_selection_import_no_hf_stack():
    mods = _modules_after("import hf_skmm.sketch, hf_skmm.selection")
    assert "hf_skmm.sketch" in mods and "hf_skmm.selection" in mods
    assert _heavy(mods) == []


def test_gradients_import_no_datasets_or_trainer():
    mods = _modules_after("import hf_skmm.gradients")
    assert not any(m.split(".")[0] in ("datasets", "accelerate") for m in mods)
    assert "transformers.trainer" not in mods


def test_top_level_import_is_lazy():
    mods = _modules_after("import hf_skmm")
    assert "torch" not in mods
    assert _heavy(mods) == []


def test_lazy_attribute_resolves_and_unknown_raises():
    import hf_skmm

    assert hf_skmm.__version__
    try:
        hf_skmm.does_not_exist  # noqa: B018
    except AttributeError as err:
        assert "does_not_exist" in str(err)
    else:  # pragma: no cover
        raise AssertionError("unknown attribute should raise AttributeError")
