"""The training loop: checkpoints and resume, fine-tuning, CPU or CUDA, a progress bar, a loss log,
and validation through ``edgepose eval``.

    python -m tools.train --annotations coco_mini/person_keypoints.json --images coco_mini/images \\
        --out runs/mini --epochs 60 --input-size 192x256 --backbone mobilenet --width 0.5

Writes into ``--out``: ``last.pt`` (after every epoch: weights, optimiser, epoch, step, settings),
``log.jsonl`` (one JSON object per step: losses per stage, learning rate; and per validation: the
metrics), and with ``--val-every`` the exported ``val.onnx`` and ``val.json`` (the six metrics of
``edgepose eval``). ``--resume runs/mini/last.pt`` continues a run where it stopped (same samples,
same learning rate schedule); ``--init some.pt`` starts a new run from a checkpoint's weights
(fine-tuning). Randomness depends only on ``--seed``, the epoch and the sample index.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from edgepose.errors import EdgePoseError, InputError

from .data import Augment, CocoPoses
from .export import export_onnx, load_checkpoint
from .loss import pose_loss
from .model import BACKBONES, ModelConfig, PoseNet

__all__ = ["TrainConfig", "Trainer", "main", "resolve_device"]

CHECKPOINT_FORMAT = "edgepose-train-1"


@dataclass
class TrainConfig:
    """Settings of one run (stored in checkpoints; ``--resume`` takes them from there)."""

    annotations: str
    images: str
    out: str
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    input_size: Tuple[int, int] = (192, 256)
    deploy_size: Tuple[int, int] = (288, 384)
    seed: int = 0
    workers: int = 0
    val_every: int = 0
    max_steps: Optional[int] = None
    people_only: bool = False
    limit: Optional[int] = None
    model: Dict[str, Any] = field(default_factory=lambda: ModelConfig().to_dict())
    augment: Dict[str, Any] = field(default_factory=lambda: asdict(Augment()))


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda[:i]``; asking for CUDA without it is an
    error, never a silent fall-back to the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r}: this PyTorch has no usable CUDA device; pass --device cpu")
        return torch.device(name)
    raise InputError(f"device: expected auto, cpu or cuda[:N], got {name!r}")


class _Bar:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled, self.n = total, label, enabled, 0
        self.t0 = time.perf_counter()

    def update(self, text: str) -> None:
        self.n += 1
        if not self.enabled:
            return
        width = 24
        done = int(width * self.n / max(self.total, 1))
        rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
        sys.stderr.write(f"\r{self.label} [{'#' * done}{'.' * (width - done)}] {self.n}/{self.total} "
                         f"{rate:.1f} it/s {text}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _collate(items: List[Dict[str, np.ndarray]]) -> Dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}


class Trainer:
    """One training run.

    Args:
        config: the run's settings.
        device: where to train (:func:`resolve_device`).
        resume: a checkpoint to continue (its settings win over ``config`` except ``epochs``,
            ``max_steps``, ``val_every`` and ``workers``).
        init: a checkpoint whose weights start a new run (fine-tuning; its network shape is used).
        progress: show a progress bar on stderr.
    """

    def __init__(self, config: TrainConfig, device: torch.device, *, resume: Optional[Path] = None,
                 init: Optional[Path] = None, progress: bool = True) -> None:
        self.device = device
        self.progress = progress
        self.epoch = 0
        self.step = 0
        state = None
        if resume is not None:
            _, state = load_checkpoint(resume)
            if state.get("format") != CHECKPOINT_FORMAT or "train_config" not in state:
                raise InputError(f"--resume {resume}: not a resumable tools.train checkpoint")
            saved = dict(state["train_config"])
            for key in ("epochs", "max_steps", "val_every", "workers", "out"):
                saved[key] = getattr(config, key)
            saved["input_size"], saved["deploy_size"] = tuple(saved["input_size"]), tuple(saved["deploy_size"])
            config = TrainConfig(**saved)
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if init is not None:
            init_net, _ = load_checkpoint(init)
            config.model = init_net.config.to_dict()
        self.config = config
        torch.manual_seed(config.seed)
        self.net = PoseNet(ModelConfig(**config.model)).to(device)
        if init is not None:
            self.net.load_state_dict(init_net.state_dict())
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        if state is not None:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.data = CocoPoses(config.annotations, config.images, input_size=config.input_size,
                              deploy_size=config.deploy_size, augment=Augment(**{
                                  k: tuple(v) if isinstance(v, list) else v for k, v in config.augment.items()}),
                              seed=config.seed, people_only=config.people_only, limit=config.limit)
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)

    # -- schedule ----------------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.config.batch_size)

    @property
    def total_steps(self) -> int:
        total = self.config.epochs * self.steps_per_epoch
        return min(total, self.config.max_steps) if self.config.max_steps else total

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 5% of ``lr`` at the last step (a function of the step
        only, so resuming needs no scheduler state)."""
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        t = (step - c.warmup_steps) / max(1, self.total_steps - c.warmup_steps)
        return c.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    def _batches(self, epoch: int) -> List[List[int]]:
        order = np.random.default_rng([self.config.seed, epoch, 1 << 20]).permutation(len(self.data))
        b = self.config.batch_size
        return [order[i:i + b].tolist() for i in range(0, len(order), b)]

    # -- the loop -----------------------------------------------------------------------------------
    def _log(self, record: Dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def save(self, path: Optional[Path] = None) -> Path:
        """Write a checkpoint (``last.pt`` by default) atomically."""
        path = path or self.out / "last.pt"
        tmp = path.with_suffix(".tmp")
        cfg = asdict(self.config)
        cfg["input_size"], cfg["deploy_size"] = list(cfg["input_size"]), list(cfg["deploy_size"])
        torch.save({"format": CHECKPOINT_FORMAT, "model": self.net.state_dict(),
                    "model_config": self.net.config.to_dict(), "optimizer": self.optimizer.state_dict(),
                    "epoch": self.epoch, "step": self.step, "train_config": cfg}, tmp)
        tmp.replace(path)
        return path

    def train_epoch(self) -> List[float]:
        """One epoch (or up to ``max_steps``); returns the total loss of each step."""
        from torch.utils.data import DataLoader

        self.net.train()
        self.data.epoch = self.epoch
        loader = DataLoader(self.data, batch_sampler=self._batches(self.epoch), collate_fn=_collate,
                            num_workers=self.config.workers)
        bar = _Bar(self.steps_per_epoch, f"epoch {self.epoch + 1}/{self.config.epochs}", self.progress)
        losses: List[float] = []
        try:
            for batch in loader:
                if self.step >= self.total_steps:
                    break
                lr = self.lr_at(self.step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                outputs = self.net(batch["image"])
                loss, parts = pose_loss(outputs, batch["heatmap"], batch["paf"], batch["mask"])
                if not torch.isfinite(loss):
                    raise EdgePoseError(f"step {self.step}: the loss is {float(loss)}; lower --lr")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.step += 1
                losses.append(float(loss.detach()))
                self._log({"epoch": self.epoch, "step": self.step, "lr": lr, "loss": losses[-1], **parts})
                bar.update(f"loss {losses[-1]:.2f}")
        finally:
            bar.close()
        self.epoch += 1
        return losses

    def validate(self) -> Dict[str, float]:
        """Export ``val.onnx`` and score it with ``edgepose eval`` on the training annotations."""
        from edgepose.cli import main as edgepose_main

        onnx_path = self.out / "val.onnx"
        metrics_path = self.out / "val.json"
        export_onnx(self.net, onnx_path, input_size=self.config.deploy_size)
        argv = ["eval", "--model", str(onnx_path), "--images", str(self.config.images), "--annotations",
                str(self.config.annotations), "--json", str(metrics_path), "--overwrite", "--no-progress"]
        if self.config.limit is not None:
            argv += ["--limit", str(self.config.limit)]
        status = edgepose_main(argv)
        if status != 0:
            raise EdgePoseError(f"edgepose {' '.join(argv)} failed with status {status}")
        metrics = json.loads(metrics_path.read_text())
        self._log({"epoch": self.epoch, "step": self.step, "val": metrics})
        self.net.to(self.device)
        return metrics

    def run(self) -> Dict[str, Any]:
        """Train to ``epochs`` (or ``max_steps``), saving ``last.pt`` after each epoch."""
        first: Optional[float] = None
        last: Optional[float] = None
        while self.epoch < self.config.epochs and self.step < self.total_steps:
            losses = self.train_epoch()
            if losses:
                first = losses[0] if first is None else first
                last = float(np.mean(losses))
            self.save()
            if self.config.val_every and (self.epoch % self.config.val_every == 0 or self.epoch == self.config.epochs):
                self.validate()
        return {"epochs": self.epoch, "steps": self.step, "first_loss": first, "last_epoch_loss": last}


def _size(text: str) -> Tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or any(int(p) % 8 or int(p) < 8 for p in parts):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, multiples of 8, such as 192x256, got {text!r}")
    return int(parts[0]), int(parts[1])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--annotations", required=True, type=Path, help="COCO person-keypoints json")
    p.add_argument("--images", required=True, type=Path, help="folder of the annotated images")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, log, validation)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--input-size", type=_size, default=(192, 256), metavar="HxW", help="training crop size")
    p.add_argument("--deploy-size", type=_size, default=(288, 384), metavar="HxW",
                   help="the exported input size; sets the scale images are seen at (default 288x384)")
    p.add_argument("--backbone", choices=BACKBONES, default="mobilenet")
    p.add_argument("--width", type=float, default=1.0, help="backbone channel multiplier")
    p.add_argument("--stage-channels", type=int, default=128)
    p.add_argument("--refinement-stages", type=int, default=1)
    p.add_argument("--people-only", action="store_true", help="train only on images with a labelled person")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use only the first N images of the annotation file (what edgepose eval --limit N scores)")
    p.add_argument("--no-augment", action="store_true", help="whole images letterboxed, no random changes")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--workers", type=int, default=0, help="data loading processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=0, metavar="E", help="run edgepose eval every E epochs")
    p.add_argument("--resume", type=Path, default=None, help="continue the run of this checkpoint")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights (fine-tune)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry; a user error prints one line and returns 2."""
    args = _parser().parse_args(argv)
    try:
        if args.resume is not None and args.init is not None:
            raise InputError("--resume and --init exclude each other")
        for name in ("epochs", "batch_size"):
            if getattr(args, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}: must be at least 1")
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        config = TrainConfig(
            annotations=str(args.annotations), images=str(args.images), out=str(args.out), epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, input_size=args.input_size, deploy_size=args.deploy_size,
            seed=args.seed, workers=args.workers, val_every=args.val_every, max_steps=args.max_steps,
            people_only=args.people_only, limit=args.limit,
            model=ModelConfig(args.backbone, args.width, args.stage_channels, args.refinement_stages).to_dict(),
            augment=asdict(Augment.none() if args.no_augment else Augment()),
        )
        trainer = Trainer(config, resolve_device(args.device), resume=args.resume, init=args.init,
                          progress=not args.no_progress)
        t0 = time.perf_counter()
        summary = trainer.run()
    except (EdgePoseError, ValueError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary))
    return 0
