"""Per-example gradients of a model, sketched on the fly (torch + peft only). Implemented in issue 5."""
