"""The dataset card of a coreset: where it comes from and how to make it again.

:func:`build_card` returns a :class:`huggingface_hub.DatasetCard` whose YAML metadata carries the
machine-readable record under the ``hf_skmm`` key (source dataset + fingerprint / revision, model and
adapter, gradient target and parameters, sketch kind and m, method, n / N, c_S target and achieved,
seed, package version, the command that reproduces it) and whose text says the same for a human.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hf_skmm import __version__

# the paper, cited in every card
_CITATION = """@inproceedings{dong2024sketchy,
  title     = {Sketchy Moment Matching: Toward Fast and Provable Data Selection for Finetuning},
  author    = {Dong, Yijun and Phan, Hoang and Pan, Xiang and Lei, Qi},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2024},
  eprint    = {2407.06120},
}"""


def _size_category(num_rows: int) -> str:
    # the Hub's size_categories buckets
    for bound, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if num_rows < bound:
            return name
    return "1M<n<10M" if num_rows < 10_000_000 else "n>1M"


def _adapter_name(adapter: Any) -> Any:
    # provenance stores peft's {"active_adapter": ..., "adapters": {name: config}}
    if isinstance(adapter, Mapping):
        configs = adapter.get("adapters") or {}
        active = adapter.get("active_adapter")
        cfg = configs.get(active) if isinstance(active, str) else None
        kind = (cfg or {}).get("peft_type") if isinstance(cfg, Mapping) else None
        return f"{active} ({kind})" if kind else str(active)
    return adapter


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"`{value}`" if isinstance(value, str) else str(value)


def card_record(
    result: Any,
    *,
    source_dataset: str | None = None,
    source_fingerprint: str | None = None,
    source_revision: str | None = None,
    num_source_rows: int | None = None,
    provenance: Mapping[str, Any] | None = None,
    reproduce_command: str | None = None,
) -> dict[str, Any]:
    """The machine-readable record stored under ``hf_skmm`` in the card's YAML (JSON/YAML-able dict).

    Missing values come from ``result.info`` (``source_num_rows``, ``source_fingerprint``, ``provenance``
    written by :func:`hf_skmm.integrations.coreset.select_from_sketches`) and are ``None`` when unknown.
    """
    info = dict(getattr(result, "info", {}) or {})
    prov = dict(provenance if provenance is not None else info.get("provenance") or {})
    prov_source = dict(prov.get("source") or {})
    num_source_rows = num_source_rows if num_source_rows is not None else info.get("source_num_rows")
    n = len(result.indices)
    sketch_cfg = dict(prov.get("sketch_config") or {})
    model = dict(prov.get("model") or {})
    adapter = prov.get("adapter")
    return {
        "source": {
            "dataset": source_dataset,
            "fingerprint": source_fingerprint
            or info.get("source_fingerprint")
            or prov_source.get("fingerprint"),
            "revision": source_revision,
            "num_rows": num_source_rows,
        },
        "model": {
            "name": model.get("name_or_path") or None,  # "" for a model built in code
            "class": model.get("class"),
            "revision": model.get("revision"),
            "weights_hash": model.get("weights_hash"),
            "adapter": adapter,
        },
        "gradients": dict(prov.get("gradient_config") or {}),
        "sketch": {
            "kind": sketch_cfg.get("kind"),
            "m": prov.get("sketch_dim", sketch_cfg.get("dim")),
            "config": sketch_cfg,
        },
        "selection": {
            "method": info.get("method"),
            "n": n,
            "N": num_source_rows,
            "fraction": (n / num_source_rows) if num_source_rows else None,
            "c_s_target": info.get("c_s_target"),
            "c_s_achieved": info.get("c_s_achieved"),
            # when n < rank(Σ̃) the full-range value is inf: the top-k one is the informative number
            "top_k": info.get("top_k"),
            "c_s_achieved_top_k": info.get("c_s_achieved_top_k"),
            "spectrum_coverage": info.get("spectrum_coverage"),
            "seed": info.get("seed"),
            "stratify_by": info.get("stratify_by"),
        },
        "version": __version__,
        "extraction_version": prov.get("hf_skmm_version"),
        "extraction_fingerprint": prov.get("fingerprint"),
        "reproduce": reproduce_command,
    }


def build_card(
    result: Any,
    *,
    source_dataset: str | None = None,
    source_fingerprint: str | None = None,
    source_revision: str | None = None,
    num_source_rows: int | None = None,
    provenance: Mapping[str, Any] | None = None,
    reproduce_command: str | None = None,
    pretty_name: str | None = None,
):
    """Build the dataset card of a coreset.

    Args:
        result: the :class:`hf_skmm.selection.SelectionResult` the coreset was cut with.
        source_dataset: how the source dataset is named (a Hub id or a local path).
        source_fingerprint: the source ``Dataset``'s fingerprint (defaults to the one recorded in ``result``).
        source_revision: the source dataset's Hub revision, when it came from the Hub.
        num_source_rows: N, the size of the source dataset (defaults to the one recorded in ``result``).
        provenance: the sketch dataset's provenance (model, adapter, gradient and sketch configs);
            defaults to ``result.info["provenance"]``.
        reproduce_command: a shell command that reproduces the coreset.
        pretty_name: the card's title.

    Returns:
        A ``huggingface_hub.DatasetCard``; its ``data.hf_skmm`` holds :func:`card_record`.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    record = card_record(
        result,
        source_dataset=source_dataset,
        source_fingerprint=source_fingerprint,
        source_revision=source_revision,
        num_source_rows=num_source_rows,
        provenance=provenance,
        reproduce_command=reproduce_command,
    )
    src, sel, model, sketch = record["source"], record["selection"], record["model"], record["sketch"]
    method = sel["method"] or "unknown"
    label = "SkMM" if method == "skmm" else method
    title = pretty_name or (f"{label} coreset of {src['dataset']}" if src["dataset"] else f"{label} coreset")
    if method == "skmm":
        how = (
            "Sketchy Moment Matching (Dong et al., NeurIPS 2024): per-example gradients of the model are\n"
            "sketched to m dimensions and n examples are chosen so that their second moment matches the full data's."
        )
    else:
        how = (
            f"the `{method}` selector (a baseline shipped with hf_skmm) run on the model's per-example\n"
            "gradients sketched to m dimensions."
        )
    data = DatasetCardData(
        pretty_name=title,
        size_categories=_size_category(sel["n"]),
        source_datasets=[src["dataset"]] if src["dataset"] else None,
        tags=["hf-skmm", "coreset", "data-selection", f"selection-{sel['method']}"],
        hf_skmm=record,
    )
    grad_rows = (
        "\n".join(f"| {k} | {_fmt(v)} |" for k, v in sorted(record["gradients"].items())) or "| — | — |"
    )
    fraction = f"{sel['fraction']:.2%}" if sel["fraction"] is not None else "—"
    if record["reproduce"]:
        reproduce_block = f"```bash\n{record['reproduce']}\n```"
    else:  # made from Python: show the call, with the recorded configs
        args = f"n={sel['n']}, method={sel['method']!r}, seed={sel['seed']!r}"
        if sel["stratify_by"]:
            args += f", stratify_by={sel['stratify_by']!r}"
        if sel["c_s_target"] is not None:
            args += f", c_s={sel['c_s_target']!r}"
        reproduce_block = (
            "```python\n"
            "from hf_skmm import GradientConfig, SketchConfig, extract_sketches, select_coreset\n\n"
            "# dataset, model: the source dataset and model named above; rec = this card's YAML `hf_skmm` record\n"
            "sketched = extract_sketches(\n"
            "    model, dataset, GradientConfig(**rec['gradients']), SketchConfig(**rec['sketch']['config'])\n"
            ")\n"
            f"coreset, result = select_coreset(dataset, sketched, {args})\n"
            "```"
        )
    body = f"""
# {title}

A coreset of **{sel["n"]}** of **{_fmt(sel["N"])}** examples ({fraction}) selected by
[hf_skmm](https://arxiv.org/abs/2407.06120) {record["version"]} with {how}

Each row is a row of the source dataset plus two columns: `skmm_index` (its row in the source) and
`skmm_weight` (its weight in the selection).

## Source

| | |
|---|---|
| dataset | {_fmt(src["dataset"])} |
| fingerprint | {_fmt(src["fingerprint"])} |
| revision | {_fmt(src["revision"])} |
| rows (N) | {_fmt(src["num_rows"])} |

## Selection

| | |
|---|---|
| model | {_fmt(model["name"])} |
| model revision | {_fmt(model["revision"])} |
| adapter | {_fmt(_adapter_name(model["adapter"]))} |
| sketch | {_fmt(sketch["kind"])}, m = {_fmt(sketch["m"])} |
| method | {_fmt(sel["method"])} |
| n / N | {sel["n"]} / {_fmt(sel["N"])} |
| c_S target | {_fmt(sel["c_s_target"])} |
| c_S achieved | {_fmt(sel["c_s_achieved"])} |
| c_S achieved, top-{_fmt(sel["top_k"])} directions | {_fmt(sel["c_s_achieved_top_k"])} |
| spectrum coverage | {_fmt(sel["spectrum_coverage"])} |
| seed | {_fmt(sel["seed"])} |

c_S achieved is the smallest c with Σ̃ ⪯ c·Σ̃_S on the sketched gradients Σ̃ (full data) and Σ̃_S
(coreset): the variance term of the excess risk is bounded by c_S σ² r / n (the paper's Theorem 3.1).

### Gradients

| parameter | value |
|---|---|
{grad_rows}

## How to reproduce

{reproduce_block}

## Citation

```bibtex
{_CITATION}
```
"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")
