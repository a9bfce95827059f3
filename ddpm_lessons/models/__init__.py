"""The networks of the book, built from small blocks: one file per model."""
from .noise_mlp import NoiseMLP
from .basic_unet import BasicUNet
from .unet import UNet
