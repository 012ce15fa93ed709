"""Feature-extractor studies: the `finetune-tui study` command, figures and torch-free readers (engine/study computes)."""
