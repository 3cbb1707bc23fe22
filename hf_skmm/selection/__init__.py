"""Coreset selection on an N×m sketch matrix (numpy / scipy / torch only). Implemented in issue 4."""
