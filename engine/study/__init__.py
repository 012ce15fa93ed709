"""The feature-extractor study: how well a backbone's frozen features separate the classes.

``finetune-tui study run`` scores datasets x extractors (pretrained backbones, the fine-tuned
backbones of finished runs next to the same backbones before fine-tuning, and two from-scratch
baselines) by silhouette, Davies-Bouldin, k-means ARI and NMI, kNN and linear-probe accuracy, with
PCA and t-SNE projections and extraction speed. A study is a folder of the run store
(``engine.store.StudyDir``) and runs detached like a grid (``control``).

Modules: ``extractors`` (specs -> what to score), ``adapter`` (the only calls into the engine's data
path, models and feature cache), ``baselines`` (small CNN, autoencoder), ``scoring`` and ``projection``
(scikit-learn), ``progress`` (status.json, cancel), ``runner`` (the cells), ``control`` (start, detach,
resume, cancel); figures live in the top-level ``study`` package.
"""
