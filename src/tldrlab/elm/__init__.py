"""ELM summary adapter: document embeddings in, summaries out through a decoder LM.

- `prepare`: pair data -> embeddings + synthesis JSONL per split; task filtering with index remapping.
- `model`: the adapter (embedding -> soft prefix), the LM sources, generation, save / load.
- `losses`: LM cross-entropy, text drift loss, in-batch contrastive loss.
- `task`: the TrainTask for tldrlab's training loop.
- `train`: one training run (ElmTrainConfig, run_elm_training).
- `evaluate`: BERTScore P/R/F1 + composite, ROUGE, length / empty / unique-token statistics.
- `optimize`: a Bayesian search over the adapter's hyperparameters on the Sweeps engine's storage, sampler
  and pruner.
- `compare`: the ELM vs a from-scratch T5 on one data set with one CPU budget.
"""
