"""Which parameters are differentiated, and how their gradients are laid out in one vector.

The *layout* is defined once here and shared by both engines and by the sketch: the gradient vector
``g ∈ R^r`` is the concatenation, in ``model.named_parameters()`` order (shared parameters listed once,
under their first name), of every selected parameter's gradient flattened row-major. For an
``nn.Linear`` weight ``W ∈ R^{d_out×d_in}`` that is ``vec_row(ΔW)``; for a GPT-2 ``Conv1D`` weight
``[d_in, d_out]`` it is ``vec_row`` of that ``[d_in, d_out]`` matrix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from hf_skmm.gradients.config import GradientConfig


@dataclass(frozen=True)
class ParamBlock:
    """One selected parameter in the gradient layout.

    Attributes:
        name: parameter name as ``model.named_parameters()`` gives it.
        shape: parameter shape.
        offset: start of its block in the flattened gradient vector.
        module_name: name of the module owning it (``""`` for the root).
        role: ``"weight"`` / ``"bias"`` of a supported linear layer (structured engine), else ``"other"``.
        layer: ``"linear"`` (``nn.Linear``: weight [d_out, d_in]), ``"conv1d"`` (GPT-2 ``Conv1D``: weight
            [d_in, d_out]) or ``None``.
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    module_name: str
    role: str
    layer: str | None

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "role": self.role, "layer": self.layer}


def _is_conv1d(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D (GPT-2): y = x @ W + b with W [nx, nf]; matched by duck typing so
    # this module does not import transformers.
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def linear_kind(module: nn.Module) -> str | None:
    """``"linear"`` for ``nn.Linear``, ``"conv1d"`` for transformers' ``Conv1D``, else ``None``."""
    if isinstance(module, nn.Linear):
        return "linear"
    if _is_conv1d(module):
        return "conv1d"
    return None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The underlying transformers / torch model of a peft ``PeftModel`` (the model itself otherwise)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base) and hasattr(model, "peft_config"):
        return get_base()
    return model


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in name for name, _ in model.named_parameters())


def find_head(model: nn.Module, head_name: str | None = None) -> str:
    """Name of the head module: ``head_name`` if given, else the last ``nn.Linear`` / ``Conv1D`` registered.

    For ``*ForSequenceClassification`` / ``*ForTokenClassification`` / ``*LMHeadModel`` that is the output
    projection (``classifier``, ``score``, ``classifier.out_proj``, ``lm_head``). LoRA sub-layers and the
    frozen original copy peft keeps for ``modules_to_save`` are skipped.
    """
    modules = dict(model.named_modules())
    if head_name is not None:
        candidates = [head_name] + [n for n in modules if n.endswith("." + head_name)]
        for name in candidates:
            if name in modules and list(modules[name].parameters()):
                return name
        raise ValueError(
            f"GradientConfig.head_name: got {head_name!r}, which is not a module with parameters in "
            f"{type(model).__name__}; pass one of {_module_names_with_params(model)[-8:]} (module names)."
        )
    last = None
    for name, module in model.named_modules():
        if linear_kind(module) is None:
            continue
        parts = name.split(".")
        if any(p.startswith("lora_") for p in parts) or "original_module" in parts:
            continue
        last = name
    if last is None:
        raise ValueError(
            f"GradientConfig.params: got 'head' but {type(model).__name__} has no nn.Linear / Conv1D layer; "
            "set head_name to the head module, or use params='names' with param_names."
        )
    return last


def _module_names_with_params(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and list(m.parameters(recurse=False))]


def _params_of_module(model: nn.Module, module_name: str) -> list[str]:
    prefix = module_name + "." if module_name else ""
    return [n for n, _ in model.named_parameters() if n.startswith(prefix)]


def find_blocks(model: nn.Module) -> list[str]:
    """Module names of the model's blocks, first to last.

    The blocks are the children of the longest ``nn.ModuleList`` (``encoder.layer``, ``transformer.h``);
    a model without one (a plain MLP) counts each parametrised ``nn.Linear`` / ``Conv1D`` except the head
    as a block.
    """
    best: tuple[int, str] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            parts = name.split(".")
            if any(p.startswith("lora_") for p in parts):
                continue
            if best is None or len(module) > best[0]:
                best = (len(module), name)
    if best is not None:
        return [f"{best[1]}.{i}" for i in range(best[0])]
    head = find_head(model)
    return [n for n, m in model.named_modules() if linear_kind(m) is not None and n != head]


def select_parameter_names(model: nn.Module, config: GradientConfig) -> list[str]:
    """Resolve ``config.params`` to parameter names of ``model`` (in ``named_parameters`` order).

    Raises:
        ValueError: naming the field, the value and the fix when nothing (or something unknown) matches.
    """
    all_names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    if config.params == "head":
        head = find_head(model, config.head_name)
        chosen = set(_params_of_module(model, head))
        # a head tied to the input embedding (GPT-2 lm_head) is listed under the embedding's name
        module = dict(model.named_modules())[head]
        ids = {id(p) for p in module.parameters()}
        chosen |= {n for n in all_names if id(params[n]) in ids}
    elif config.params == "lora":
        if not has_lora(model):
            raise ValueError(
                f"GradientConfig.params: got 'lora' but {type(model).__name__} has no LoRA adapter parameters; "
                "wrap it with peft.get_peft_model(model, LoraConfig(target_modules=[...])) first, or use "
                "params='head' / 'last_k'."
            )
        chosen = {n for n in all_names if params[n].requires_grad and "modules_to_save" not in n.split(".")}
        if not chosen:
            raise ValueError(
                "GradientConfig.params: got 'lora' but no LoRA parameter requires grad (inference-mode "
                "adapter?); load the adapter with is_trainable=True."
            )
    elif config.params == "last_k":
        blocks = find_blocks(model)
        if config.last_k > len(blocks):
            raise ValueError(
                f"GradientConfig.last_k: got {config.last_k} but {type(model).__name__} has only {len(blocks)} "
                f"blocks ({blocks[0] if blocks else 'none'} ... ); use last_k <= {len(blocks)}."
            )
        first = blocks[-config.last_k]
        first_params = _params_of_module(model, first)
        if not first_params:
            raise ValueError(f"GradientConfig.last_k: block {first!r} has no parameters; lower last_k.")
        start = all_names.index(first_params[0])
        chosen = {n for n in all_names[start:] if params[n].requires_grad}
        if not chosen:
            raise ValueError(
                f"GradientConfig.last_k: got {config.last_k} but no parameter of the last blocks requires "
                "grad; unfreeze them or use params='names'."
            )
    else:
        chosen = set()
        modules = set(dict(model.named_modules()))
        for entry in config.param_names:
            if entry in params:
                hit = {entry}
            elif entry in modules:
                hit = set(_params_of_module(model, entry))
            else:
                try:
                    pattern = re.compile(entry)
                except re.error as err:
                    raise ValueError(
                        f"GradientConfig.param_names: entry {entry!r} is neither a parameter/module name nor a "
                        f"valid regex ({err}); fix the entry."
                    ) from err
                hit = {n for n in all_names if pattern.fullmatch(n)}
            if not hit:
                raise ValueError(
                    f"GradientConfig.param_names: entry {entry!r} matches no parameter of "
                    f"{type(model).__name__}; use a name from model.named_parameters() (e.g. "
                    f"{all_names[-2:]}) or a regex that fully matches one."
                )
            chosen |= hit
    return [n for n in all_names if n in chosen]


def build_layout(model: nn.Module, names: Iterable[str]) -> list[ParamBlock]:
    """The ordered :class:`ParamBlock` list for ``names`` (must be ``named_parameters`` names)."""
    wanted = set(names)
    owner: dict[str, tuple[str, nn.Module, str]] = {}
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            owner[full] = (mname, module, pname)
    # how many modules hold each parameter object (tied weights are used twice in the forward)
    uses: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        for _, p in module.named_parameters(recurse=False):
            uses[id(p)] = uses.get(id(p), 0) + 1
    layout: list[ParamBlock] = []
    offset = 0
    for name, p in model.named_parameters():
        if name not in wanted:
            continue
        mname, module, pname = owner[name]
        kind = linear_kind(module)
        role = "other"
        if kind is not None and pname in ("weight", "bias") and uses[id(p)] == 1:
            role = pname
        layout.append(
            ParamBlock(name, tuple(p.shape), offset, mname, role, kind if role != "other" else None)
        )
        offset += p.numel()
    missing = wanted - {b.name for b in layout}
    if missing:
        raise ValueError(f"build_layout: names {sorted(missing)} are not parameters of the model.")
    return layout
