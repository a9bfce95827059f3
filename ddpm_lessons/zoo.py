"""The zoo: models that a later chapter reuses, loaded from the cache or trained once (chapters 5 and 6).

Chapter 5 trains its U-Net with a :class:`Recipe` (the config, the schedule, the optimizer and the time
budget) and writes the checkpoint to :func:`checkpoint_path`, with :func:`metadata`:

```python
recipe = dl.zoo.fashion_mnist_recipe()
dl.training.train(..., checkpoint_path=dl.zoo.checkpoint_path(recipe), metadata=dl.zoo.metadata(recipe))
```

Chapter 6 calls :func:`unet_fashion_mnist`: it loads that checkpoint when the cache holds one of
the same recipe, trained on the same images (checked against the metadata stored in the file, whose
checksum :func:`~ddpm_lessons.checkpoints.load` verifies), and otherwise trains it with the same
code and budget. So each notebook still runs alone (on Colab too): no notebook depends on another
having run, and a wrong model is never loaded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import _checks, checkpoints, settings, training
from .batches import TensorBatches
from .data import fashion_mnist_tensors, fingerprint
from .diffusion import LOSS_TYPES, Diffusion
from .models.unet import UNet, UNetConfig
from .schedules import SCHEDULES
from .utils import same_values

KIND = "zoo.unet_fashion_mnist/1"
"""Stored in every checkpoint of :func:`unet_fashion_mnist`; a change of the training code bumps it."""
CHECKPOINT_EVERY_S = 180.0


@dataclass(frozen=True)
class Recipe:
    """How chapter 5 trains its U-Net: everything that makes two trained models the same model.

    The defaults are chapter 5's full run; :func:`fashion_mnist_recipe` sets the time and step budget
    with ``dl.budget`` (tiny in quick mode). Training stops at ``train_seconds`` of training or
    ``max_steps`` steps, whichever comes first.
    """

    config: UNetConfig = UNetConfig()
    T: int = 100
    schedule: str = "cosine"
    loss_type: str = "l2"
    batch_size: int = 32
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    amp: bool = True
    channels_last: bool = True
    train_seconds: float = 30 * 60
    max_steps: int = 5_000
    seed: int = 0

    def __post_init__(self):
        where = "Recipe"
        if not isinstance(self.config, UNetConfig):
            raise ValueError(f"{where}: config must be a UNetConfig, e.g. UNetConfig(dim=32); got {self.config!r}")
        for name in ("T", "batch_size", "max_steps"):
            _checks.positive_int(getattr(self, name), name, where)
        _checks.positive_int(self.seed, "seed", where, minimum=0)
        _checks.one_of(self.schedule, tuple(SCHEDULES), "schedule", where)
        _checks.one_of(self.loss_type, LOSS_TYPES, "loss_type", where)
        _checks.one_of(self.optimizer, tuple(training.OPTIMIZERS), "optimizer", where)
        for name in ("lr", "grad_clip", "train_seconds"):
            _checks.number(getattr(self, name), name, where, 0.0, low_open=True)
        _checks.number(self.weight_decay, "weight_decay", where, 0.0)
        _checks.number(self.ema_decay, "ema_decay", where, 0.0, 1.0, low_open=True, high_open=True)
        for name in ("amp", "channels_last"):
            _checks.one_of(getattr(self, name), (True, False), name, where)

    def to_dict(self) -> dict:
        """Plain values (for a checkpoint or JSON)."""
        return {**asdict(self), "config": self.config.to_dict()}

    def diffusion(self) -> Diffusion:
        """The ``Diffusion`` the model is trained for: ``T`` steps of the named schedule."""
        return Diffusion(SCHEDULES[self.schedule](self.T))

    def loss(self, diffusion: Diffusion):
        """The training loss ``loss(model, x0)``: Algorithm 1 with the recipe's ``loss_type``."""
        return lambda model, x0: diffusion.loss(model, x0, loss_type=self.loss_type)

    def model(self) -> UNet:
        """A freshly initialised U-Net of ``config`` (seed the generators first for a repeatable start)."""
        return UNet(self.config)

    def batches(self, images: torch.Tensor, device=None) -> TensorBatches:
        """Random batches of ``batch_size`` from uint8 ``images`` held on ``device`` (chapter 5's fast path)."""
        return TensorBatches(images, self.batch_size, device=device, seed=self.seed)

    def train_options(self) -> dict:
        """The keyword arguments of :func:`~ddpm_lessons.training.train` that the recipe fixes."""
        return dict(lr=self.lr, optimizer=self.optimizer, weight_decay=self.weight_decay, ema_decay=self.ema_decay,
                    grad_clip=self.grad_clip, amp=self.amp, channels_last=self.channels_last)


def fashion_mnist_recipe() -> Recipe:
    """Chapter 5's recipe with its budgets: T = 100, and 5,000 steps or 30 minutes of training, whichever
    comes first (one thread of a 2-core CPU took 16-18 minutes for the steps, an H100 under one; the
    time caps a slow machine; quick mode: T = 10, 6 steps)."""
    return Recipe(T=settings.budget(full=100, quick=10), train_seconds=settings.budget(full=30 * 60, quick=2),
                  max_steps=settings.budget(full=5_000, quick=6))


def _recipe_and_images(recipe, images):
    recipe = fashion_mnist_recipe() if recipe is None else recipe
    if not isinstance(recipe, Recipe):
        raise ValueError(f"zoo: recipe must be a dl.zoo.Recipe (or None for chapter 5's), got {recipe!r}")
    if images is None:
        images = fashion_mnist_tensors(train=True)[0]
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"zoo: images must be the uint8 training images (N, C, H, W), got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
    return recipe, images


def metadata(recipe: Recipe | None = None, images: torch.Tensor | None = None) -> dict:
    """What a checkpoint of ``recipe`` must carry to be reused: the recipe, the betas and the training
    data's fingerprint (``images``: the uint8 training images, default FashionMNIST's training split).
    ``train()`` adds the model's config and compares all of it on resume."""
    recipe, images = _recipe_and_images(recipe, images)
    return {"kind": KIND, "recipe": recipe.to_dict(), "betas": recipe.diffusion().float64["betas"],
            "data": {"fingerprint": fingerprint(images), "images": len(images)}}


def checkpoint_path(recipe: Recipe | None = None, images: torch.Tensor | None = None) -> Path:
    """The cache file of ``recipe`` trained on ``images``, in ``dl.settings.cache_dir()``, named after a hash
    of both (so another recipe or other data gets another file)."""
    recipe, images = _recipe_and_images(recipe, images)
    key = json.dumps({"kind": KIND, "recipe": recipe.to_dict(), "data": fingerprint(images)}, sort_keys=True)
    return settings.cache_dir() / f"unet_fashion_mnist_{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"


@dataclass
class Pretrained:
    """What :func:`unet_fashion_mnist` returns: the EMA model (eval mode) and what a reader needs about it."""

    model: nn.Module = field(repr=False)
    diffusion: Diffusion
    recipe: Recipe
    steps: int
    seconds: float
    images: int
    history: list = field(repr=False)
    source: str
    checkpoint_path: Path | None = field(default=None, repr=False)

    def __str__(self) -> str:
        parameters = sum(p.numel() for p in self.model.parameters())
        return (f"chapter 5's U-Net ({parameters:,} parameters, T = {self.recipe.T}, {self.recipe.schedule} "
                f"schedule): {self.steps:,} steps, {_duration(self.seconds)} of training, "
                f"{self.images:,} images seen; {self.source}")


def _differences(saved: dict, expected: dict) -> str | None:
    """Why a checkpoint's metadata is not what this call expects, in words; None when it is."""
    for key in expected:
        if same_values(saved.get(key), expected[key]):
            continue
        there, now = saved.get(key), expected[key]
        if key in ("recipe", "model_config") and isinstance(there, dict):
            changed = [f"{name} {there.get(name)!r} there, {now[name]!r} now" for name in now
                       if not same_values(there.get(name), now[name])]
            return f"it was trained with a different {'recipe' if key == 'recipe' else 'U-Net config'} ({'; '.join(changed)})"
        if key == "data" and isinstance(there, dict):
            return (f"it was trained on other images ({there.get('images')} images with fingerprint "
                    f"{there.get('fingerprint')} there; {now['images']} with {now['fingerprint']} now)")
        if key == "betas":
            return "it was trained for a different noise schedule (its betas differ)"
        return f"its {key} differs ({there!r:.60} there, {now!r:.60} now)"
    return None


def _ema_model(recipe: Recipe, ema_state: dict) -> nn.Module:
    with torch.random.fork_rng(devices=[]):   # the weights are replaced: do not use up the caller's random numbers
        model = recipe.model()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True)
    ema.load_state_dict(ema_state)
    return ema.module


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _train(recipe, images, path, meta, device, resume, progress) -> training.TrainResult:
    diffusion = recipe.diffusion()
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):   # repeatable from the recipe's seed; the caller's generators untouched
        torch.manual_seed(recipe.seed)
        model = recipe.model()
        return training.train(model, recipe.loss(diffusion), recipe.batches(images, device),
                              steps=recipe.max_steps, max_seconds=recipe.train_seconds, checkpoint_path=path,
                              checkpoint_every_s=CHECKPOINT_EVERY_S, resume=resume, metadata=meta, device=device,
                              progress=progress, desc="training", **recipe.train_options())


def _from_cache(recipe: Recipe, path: Path, expected: dict, device) -> tuple[Pretrained | None, str, bool]:
    """The cached model of ``recipe`` if the file at ``path`` is one; else None, why not, and whether to resume."""
    if not path.is_file():
        return None, "the cache holds no model of this recipe", False
    try:
        state = checkpoints.load(path)   # checks the checksum
    except checkpoints.CheckpointError as error:
        return None, f"the cached file is unusable ({str(error).replace(str(path), path.name)}); training afresh", False
    why = _differences(state.get("metadata", {}), expected) or (
        None if state.get("ema") is not None else "it holds no EMA weights")
    if why:
        return None, f"{why}; training afresh", False
    if state["step"] < recipe.max_steps and state["seconds"] < recipe.train_seconds:
        return None, (f"the cached run stopped at step {state['step']:,}, after {_duration(state['seconds'])} of its "
                      f"{_duration(recipe.train_seconds)}: resuming it"), True
    try:
        model = _ema_model(recipe, state["ema"]).to(device)
    except (RuntimeError, KeyError) as error:
        return None, f"its weights do not fit this version's U-Net ({type(error).__name__}); training afresh", False
    return Pretrained(model.eval().requires_grad_(False), recipe.diffusion(), recipe, int(state["step"]),
                      float(state["seconds"]), int(state["images"]), state["history"].tolist(),
                      "loaded from the cache (trained earlier with this recipe on these images)", path), "", False


def unet_fashion_mnist(recipe: Recipe | None = None, device=None, progress: bool = True, verbose: bool = True,
                       images: torch.Tensor | None = None) -> Pretrained:
    """Chapter 5's U-Net, trained: loaded from the cache when it holds this recipe trained on these images,
    else trained now with the same code and budget (and cached for the next call) (chapters 5-6).

    A cached file is used only if its checksum holds and its metadata (recipe, U-Net config, betas,
    data fingerprint) equal this call's; otherwise ``verbose`` says why and the model is trained afresh.
    A run that stopped before its budget (a disconnect) is resumed. ``recipe``: default
    :func:`fashion_mnist_recipe`; ``images``: the uint8 training images (default FashionMNIST's split).
    Returns a :class:`Pretrained` whose ``model`` is the EMA network in eval mode on ``device``.
    """
    recipe, images = _recipe_and_images(recipe, images)
    device = torch.device(device) if device is not None else settings.get_device()
    path, meta = checkpoint_path(recipe, images), metadata(recipe, images)
    say = print if verbose else (lambda *args: None)
    cached, why, resume = _from_cache(recipe, path, {**meta, "model_config": recipe.config.to_dict()}, device)
    if cached is not None:
        say(cached)
        return cached
    say(f"Not loaded: {why}." if path.is_file() else f"Training: {why}.")
    say(f"Chapter 5's recipe: up to {_duration(recipe.train_seconds)} of training (at most {recipe.max_steps:,} "
        f"steps of {recipe.batch_size} images) on {settings.device_name(device)}; then it is cached.")
    result = _train(recipe, images, path, meta, device, resume, progress)
    source = "resumed and finished now" if resume else "trained now with chapter 5's recipe"
    stored = "not cached (the file could not be written)" if "checkpoint_error" in result.extras else "cached"
    trained = Pretrained(result.ema_model.module.eval().requires_grad_(False), recipe.diffusion(), recipe, result.steps,
                         result.seconds, result.images, list(result.history), f"{source}, and {stored}", path)
    say(trained)
    return trained
