"""PerforatedAI dendrites for your own PyTorch Lightning module (optional extra `lightning`).

    callback = DendriteCallback(DendriteConfig(), save_dir="runs/my-pai", attr="model", monitor="val_loss")
    trainer = lightning.pytorch.Trainer(callbacks=[callback], ...)

`setup` perforates `pl_module.<attr>` (the module holding the network; None: the LightningModule itself);
at the end of each validation the monitored metric goes to PAI's tracker. When the tracker restructures the
network the new one is put back on the LightningModule and the optimizers are rebuilt through
`trainer.strategy.setup_optimizers`; when the tracker says training is complete, `trainer.should_stop` is set.
The same guards as the tldrlab loop apply (no sys.exit, no debugger prompt, its own save directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from tldrlab.errors import DependencyMissingError, InvalidInputError
from tldrlab.experiments.dendrites import DendriteConfig, DendriteHooks, dendrite_count, pai_parameter_count
from tldrlab.train.loop import TrainState

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the optional extra is missing: fail when the callback is created, not on import
    Callback = object  # type: ignore[assignment,misc]


class DendriteCallback(Callback):  # type: ignore[misc,valid-type]
    """Perforate in setup, feed the validation metric to PAI's tracker, rebuild optimizers on restructure."""

    def __init__(
        self,
        config: DendriteConfig | None = None,
        *,
        save_dir: Path | str,
        attr: str | None = "model",
        monitor: str = "val_loss",
        mode: Literal["min", "max"] = "min",
    ) -> None:
        if Callback is object:
            raise DependencyMissingError(
                "the Lightning callback needs the extra: pip install 'tldrlab[lightning]'"
            )
        super().__init__()
        self.hooks = DendriteHooks(
            config or DendriteConfig(), save_dir=Path(save_dir), best_metric=monitor, mode=mode
        )
        self.attr = attr
        self.monitor = monitor
        self.history: list[dict[str, Any]] = []
        """One entry per validation fed to the tracker (the hooks' events)."""

    def _network(self, pl_module: Any) -> Any:
        return pl_module if self.attr is None else getattr(pl_module, self.attr)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit" or self.hooks.model is not None:
            return
        if self.attr is not None and not hasattr(pl_module, self.attr):
            raise InvalidInputError(f"the LightningModule has no attribute {self.attr!r} to perforate")
        network = self.hooks.perforate(self._network(pl_module))
        if self.attr is not None:
            setattr(pl_module, self.attr, network)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self.hooks.model is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise InvalidInputError(
                f"metric {self.monitor!r} was not logged in validation; "
                f"logged: {sorted(trainer.callback_metrics)}"
            )
        if trainer.optimizers:
            self.hooks.lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        decision = self.hooks.on_eval(TrainState(step=trainer.global_step), {self.monitor: float(value)})
        self.history = list(self.hooks.events)
        if decision is None:
            return
        if decision.model is not None:
            if self.attr is None:
                raise InvalidInputError(
                    "PAI restructured the LightningModule itself: perforate a submodule (attr=)"
                )
            setattr(pl_module, self.attr, decision.model.to(pl_module.device))
        if decision.rebuild_optimizer:
            # the old optimizers hold the replaced parameters
            trainer.strategy.setup_optimizers(trainer)
        if decision.stop:
            trainer.should_stop = True

    @property
    def dendrites(self) -> int:
        return dendrite_count()

    def parameter_count(self, pl_module: Any) -> int:
        return pai_parameter_count(self._network(pl_module))
