"""The networks of the book, built from small blocks: one file per model (networks only)."""
from .basic_unet import AmountConditionedUNet, BasicUNet
from .classifier import FashionClassifier
from .noise_mlp import NoiseMLP
from .unet import UNet, UNetConfig

__all__ = ["AmountConditionedUNet", "BasicUNet", "FashionClassifier", "NoiseMLP", "UNet", "UNetConfig"]
