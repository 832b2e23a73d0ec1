"""Experiment tracking: PNG curves from metrics.jsonl, and Weights & Biases kept inside the run directory."""
