"""erase-diffusion: erase concepts from Stable Diffusion by unlearning its CLIP text encoder (CLIPErase)."""

__version__ = "0.1.0"
