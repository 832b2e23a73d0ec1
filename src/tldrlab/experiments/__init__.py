"""Experiments composed from the training pieces.

- `compression`: a smaller T5 cut from a baseline (layer selection, width slicing) or random.
- `dendrites`: PerforatedAI dendrites driven by the training loop's evaluations, with its traps guarded.
- `lightning`: the same as a PyTorch Lightning callback (optional extra).
- `dendrite_experiment`: baseline vs compressed vs compressed + dendrites (`tldrlab experiment dendrites`).
- `results`: scoring summaries, the results table (Markdown / CSV / JSON) and the comparison plot.
"""
