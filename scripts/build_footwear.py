"""Build engine/data/footwear.npz, the embedded footwear subset, from the Fashion-MNIST idx files.

Uses the same recipe and drawing code as load_dataset, so the embedded file
and a fresh draw from the source agree bit for bit (tests/test_data.py checks
it). Looks for the idx files where load_dataset does (``--data-root``, then
Debian's /usr/share/datasets/fashion-mnist).

    python scripts/build_footwear.py [--data-root data] [--out engine/data/footwear.npz]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from engine.data import DATASETS, DataError, embedded, idx  # noqa: E402
from engine.data.recipes import draw_recipe  # noqa: E402

log = logging.getLogger("build_footwear")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data", help="where to look for the Fashion-MNIST idx files")
    parser.add_argument("--out", type=Path, default=embedded.path_for("footwear"), help="npz to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    recipe = DATASETS["footwear"]
    try:
        subset = draw_recipe(idx.load(Path(args.data_root), recipe.name), recipe)
    except DataError as exc:
        log.error("build_footwear: %s", exc)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    embedded.save(tmp, subset, recipe)
    tmp.replace(args.out)
    counts = {c: int((subset.train.y == i).sum()) for i, c in enumerate(subset.classes)}
    log.info("wrote %s (%.1f MB): %d train %s, %d test; %s", args.out, args.out.stat().st_size / 1e6,
             len(subset.train.y), counts, len(subset.test.y), subset.source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
