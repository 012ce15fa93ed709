"""The seed's reference table (SPEC.md section 1): accuracy and macro F1 at 32x32 input, on a GPU."""

from __future__ import annotations

# column name in the SPEC table -> (accuracy, F1) per dataset
REFERENCE: dict[str, dict[str, tuple[float, float]]] = {
    "transport": {"VGG16": (0.87, 0.86), "ResNet50": (0.91, 0.90), "MobileNetV2": (0.88, 0.87),
                  "EfficientNetB0": (0.90, 0.89)},
    "animals": {"VGG16": (0.78, 0.77), "ResNet50": (0.83, 0.82), "MobileNetV2": (0.76, 0.75),
                "EfficientNetB0": (0.81, 0.80)},
    "footwear": {"VGG16": (0.92, 0.92), "ResNet50": (0.94, 0.94), "MobileNetV2": (0.91, 0.91),
                 "EfficientNetB0": (0.94, 0.93)},
    "people": {"VGG16": (0.48, 0.45), "ResNet50": (0.57, 0.54), "MobileNetV2": (0.45, 0.42),
               "EfficientNetB0": (0.55, 0.52)},
}
REFERENCE_IMAGE_SIZE = 32

# the seed's short names, and the timm names they resolve to (engine.backbones), -> SPEC column
SEED_COLUMNS: dict[str, str] = {
    "vgg16": "VGG16",
    "resnet50": "ResNet50",
    "mobilenetv2": "MobileNetV2",
    "mobilenetv2_100": "MobileNetV2",
    "efficientnetb0": "EfficientNetB0",
    "efficientnet_b0": "EfficientNetB0",
}


def reference_column(backbone: str) -> str | None:
    """The SPEC table column for a backbone, or None when the seed had no such model."""
    return SEED_COLUMNS.get(backbone.split(".")[0].lower())


def reference(dataset: str, backbone: str) -> tuple[float, float] | None:
    """(accuracy, F1) the seed reached, or None where it has no number for this pair."""
    column = reference_column(backbone)
    if column is None:
        return None
    return REFERENCE.get(dataset, {}).get(column)


def why_no_reference(dataset: str, backbone: str) -> str:
    if dataset not in REFERENCE:
        return f"the seed had no dataset {dataset!r} (its datasets: {', '.join(REFERENCE)})"
    return f"the seed had no backbone {backbone!r} (its backbones: {', '.join(REFERENCE['transport'])})"

# the typical confusions SPEC.md names, as class-name pairs of each dataset
KNOWN_CONFUSIONS: dict[str, list[tuple[str, str]]] = {
    "transport": [("automobile", "truck")],
    "animals": [("cat", "dog"), ("deer", "horse")],
    "footwear": [("sneaker", "ankle boot")],
    "people": [("boy", "man"), ("girl", "woman")],
}


def is_known_confusion(dataset: str, a: str, b: str) -> bool:
    pairs = KNOWN_CONFUSIONS.get(dataset, [])
    return (a, b) in pairs or (b, a) in pairs
