"""The Lightning callback perforates a real LightningModule and rebuilds its optimizer on restructure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tldrlab.experiments.dendrites import DendriteConfig, pai_parameter_count


def regressor_class() -> type:
    """A tiny LightningModule class. Lightning is imported here, not when the module is collected: the import
    costs ~2 CPU-s, which every pytest-xdist worker paid at collection although one runs this test."""
    import lightning.pytorch as pl

    class Regressor(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            generator = torch.Generator().manual_seed(0)
            self.x = torch.randn(64, 4, generator=generator)
            self.y = (self.x[:, :1] * self.x[:, 1:2]).detach()

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.model(x), y)

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.model(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-2)

        def _loader(self) -> torch.utils.data.DataLoader:
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=16)

        def train_dataloader(self) -> torch.utils.data.DataLoader:
            return self._loader()

        def val_dataloader(self) -> torch.utils.data.DataLoader:
            return self._loader()

    return Regressor


@pytest.mark.slow
def test_callback_adds_dendrites_and_rebuilds_the_optimizer(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from tldrlab.experiments.lightning import DendriteCallback  # imports Lightning too

    module = regressor_class()()
    # PAI's graphs are drawn once, after training (test_dendrites.py checks the redraw at every evaluation):
    # at every validation they were most of this test's time and no assertion reads them
    config = DendriteConfig(
        module_names=["Linear"], output_dimensions=[-1, 0], switch_every=2, max_dendrites=1,
        graphs_every_eval=False,
    )  # fmt: skip
    callback = DendriteCallback(config, save_dir=tmp_path / "pai", attr="model", monitor="val_loss")
    trainer = pl.Trainer(
        max_epochs=20, callbacks=[callback], accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    plain = sum(p.numel() for p in module.parameters())
    trainer.fit(module)
    assert callback.dendrites == 1
    assert any(e["restructured"] for e in callback.history)
    assert callback.parameter_count(module) > plain
    assert trainer.current_epoch < 20  # the tracker ended training
    # the optimizer now trains the restructured network's parameters, not the replaced ones
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert {id(p) for p in module.parameters() if p.requires_grad} <= optimized
    assert pai_parameter_count(module.model) == callback.parameter_count(module)
    callback.hooks.draw_graphs()
    assert list((tmp_path / "pai" / "pai").glob("*.png"))  # PAI's files stay in the callback's save_dir
