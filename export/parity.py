"""Does the ONNX model compute what the PyTorch model computes? Logits compared on real images."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FP32_ATOL = 1e-3  # max |onnx - torch| over the logits of the whole test set, fp32 on the same device


class ParityError(AssertionError):
    """The exported model's outputs differ from PyTorch's beyond tolerance."""


@dataclass(frozen=True)
class ParityResult:
    n: int
    max_abs_diff: float
    top1_agreement: float  # fraction of images where both pick the same class
    disagreements: int
    unexplained: int  # disagreements where PyTorch's top-2 margin exceeds 2*atol: not a near-tie
    atol: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs_diff)) and self.max_abs_diff <= self.atol and self.unexplained == 0

    def message(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"parity {verdict}: max |onnx - torch| = {self.max_abs_diff:.3g} (tolerance {self.atol:g}), "
                f"top-1 agreement {self.top1_agreement:.4%} over {self.n} test images"
                + (f", {self.unexplained} disagreement(s) that are not near-ties" if self.unexplained else ""))

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def compare_logits(reference: np.ndarray, candidate: np.ndarray, atol: float = FP32_ATOL) -> ParityResult:
    """Compare (N, C) logits. A top-1 flip is excused only where the reference's top-2 margin is
    within 2*atol (a tie the tolerance itself could flip); any other flip fails parity."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ParityError(f"output shapes differ: torch {reference.shape}, onnx {candidate.shape}")
    n = len(reference)
    if n == 0:
        raise ParityError("no images to compare")
    diff = np.abs(reference - candidate)
    max_diff = float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf")
    ref_top, cand_top = reference.argmax(1), candidate.argmax(1)
    differ = ref_top != cand_top
    if reference.shape[1] > 1:
        top2 = np.sort(reference, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    else:
        margin = np.full(n, np.inf)
    unexplained = int(np.sum(differ & (margin > 2 * atol)))
    return ParityResult(n=n, max_abs_diff=max_diff, top1_agreement=float(1.0 - differ.mean()),
                        disagreements=int(differ.sum()), unexplained=unexplained, atol=float(atol))
