"""Training loops and reweighting."""
