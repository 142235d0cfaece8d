"""Layer types: each file states its forward expression; SymPy derives the rest."""
