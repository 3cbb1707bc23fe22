"""Johnson–Lindenstrauss sketches Γ ∈ R^{r×m} (numpy + torch only). Implemented in issue 3."""
