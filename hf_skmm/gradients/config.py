"""``GradientConfig``: what is differentiated, against which target, with which engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_skmm._config import DictConfigMixin

PARAMS = ("head", "lora", "last_k", "names")
TARGETS = ("loss", "pseudo_label", "random_label", "output")
TASKS = ("auto", "classification", "regression", "token_classification", "causal_lm")
ENGINES = ("auto", "structured", "generic")
VMAP_MODES = ("auto", "on", "off")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"GradientConfig.{name}: got {value!r}; expected one of {list(choices)}.")


@dataclass
class GradientConfig(DictConfigMixin):
    """Which per-example gradients to extract (peft-style config; every field parses with HfArgumentParser).

    The per-example quantity is the gradient ``g_i = ∇_θ f_i`` of a scalar ``f_i`` (see ``target``) with
    respect to the selected parameters θ (see ``params``), flattened in the model's ``named_parameters``
    order (each block row-major). SkMM (Dong et al., 2024, §3) uses the rows ``g_i`` as the features of a
    kernel-regime ridge regression and sketches them to ``m`` dimensions.
    """

    params: str = field(
        default="head",
        metadata={
            "help": "Parameters to differentiate: 'head' (the last linear layer: classification/regression "
            "head), 'lora' (every trainable parameter a peft LoRA adapter adds: lora_A/lora_B, DoRA magnitudes, "
            "LoRA biases; not modules_to_save), 'last_k' (trainable parameters of the last `last_k` blocks and "
            "everything registered after them, e.g. pooler + head; an LM head tied to the input embedding is "
            "not included), or 'names' (see `param_names`).",
            "choices": list(PARAMS),
        },
    )
    param_names: list[str] = field(
        default_factory=list,
        metadata={
            "help": "With params='names': parameter names, module names (all their parameters) or regular "
            "expressions (full match against parameter names). Each entry must match something."
        },
    )
    head_name: str | None = field(
        default=None,
        metadata={
            "help": "Module name of the head for params='head' (e.g. 'classifier'); default: the last "
            "nn.Linear / Conv1D registered in the model (LoRA sub-layers excluded)."
        },
    )
    last_k: int = field(
        default=1,
        metadata={
            "help": "With params='last_k': how many of the last transformer blocks (or layers) to include."
        },
    )
    target: str = field(
        default="loss",
        metadata={
            "help": "What f is: 'loss' (per-example loss with the batch's labels), 'pseudo_label' (loss against "
            "the model's own argmax), 'random_label' (loss against labels drawn from the sketch seed, keyed on "
            "the row index), 'output' (regression: the output itself; classification / LM: a fixed seeded "
            "random unit projection uᵀ logits).",
            "choices": list(TARGETS),
        },
    )
    task: str = field(
        default="auto",
        metadata={
            "help": "Loss definition: 'classification' (cross-entropy), 'regression' (squared error (f-y)^2), "
            "'token_classification' (mean CE over non -100 tokens of each example), 'causal_lm' (shifted mean "
            "token CE over non-padded, non -100 tokens of each example), or 'auto' (from the model class).",
            "choices": list(TASKS),
        },
    )
    engine: str = field(
        default="auto",
        metadata={
            "help": "'structured' (hooks on linear layers: per-example gradient Σ_t δ_t h_tᵀ, Kronecker-sketched "
            "without forming it), 'generic' (torch.func per-example grad of any parameter), or 'auto' "
            "(structured when every selected parameter is the weight/bias of an unshared nn.Linear / Conv1D).",
            "choices": list(ENGINES),
        },
    )
    vmap: str = field(
        default="auto",
        metadata={
            "help": "Generic engine only: 'on' uses torch.func.vmap over the batch, 'off' loops over examples, "
            "'auto' tries vmap and falls back to the loop once if the model has data-dependent control flow "
            "(e.g. Hugging Face attention-mask helpers).",
            "choices": list(VMAP_MODES),
        },
    )
    chunk_size: int = field(
        default=0,
        metadata={
            "help": "Generic engine: examples processed (and sketched) together, bounding memory at about "
            "chunk_size x r gradient entries; 0 = the whole batch."
        },
    )

    def __post_init__(self) -> None:
        _check_choice("params", self.params, PARAMS)
        _check_choice("target", self.target, TARGETS)
        _check_choice("task", self.task, TASKS)
        _check_choice("engine", self.engine, ENGINES)
        _check_choice("vmap", self.vmap, VMAP_MODES)
        if isinstance(self.param_names, str):
            self.param_names = [self.param_names]
        self.param_names = list(self.param_names or [])
        if self.params == "names" and not self.param_names:
            raise ValueError(
                "GradientConfig.param_names: got [] with params='names'; pass at least one parameter name, "
                "module name or regex (e.g. param_names=['classifier.weight'])."
            )
        if self.params != "names" and self.param_names:
            raise ValueError(
                f"GradientConfig.param_names: got {self.param_names!r} with params={self.params!r}; "
                "set params='names' to differentiate an explicit list, or drop param_names."
            )
        if isinstance(self.last_k, bool) or not isinstance(self.last_k, int) or self.last_k < 1:
            raise ValueError(
                f"GradientConfig.last_k: got {self.last_k!r}; expected an integer >= 1 (number of last blocks)."
            )
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 0:
            raise ValueError(
                f"GradientConfig.chunk_size: got {self.chunk_size!r}; expected an integer >= 0 (0 = whole batch)."
            )
        if self.target == "pseudo_label" and self.task == "regression":
            raise ValueError(
                "GradientConfig.target: got 'pseudo_label' with task='regression'; the loss against the model's "
                "own prediction is identically 0 there. Use target='output' or 'random_label'."
            )
        if self.head_name is not None and not self.head_name:
            raise ValueError("GradientConfig.head_name: got ''; pass a module name or leave it None.")
