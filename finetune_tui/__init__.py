"""finetune-tui: fine-tune pretrained image backbones over a grid, watch it live, deploy it."""

__version__ = "0.1.0"
