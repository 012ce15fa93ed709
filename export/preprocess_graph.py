"""``engine.preprocess`` as an ONNX graph: raw uint8 images in, the model's float input out.

The graph takes ``image``: uint8 ``(batch, height, width, channels)`` of any height and
width, and gives the model's ``(batch, 3, S, S)`` float32 input, computing both steps of
``engine.preprocess`` (docs/CONTRACTS.md) inside onnxruntime:

1. Storage (image-folder models, ``Preprocess.storage``): Pillow's ``ImageOps.fit`` with
   bicubic resampling, reproduced bit for bit. Pillow's 8-bit resampler is a separable
   convolution with fixed-point (22-bit) coefficients and a uint8 rounding between its two
   passes; the graph computes the same coefficients (``_pillow_axis``) for the centre-crop
   box of whatever size comes in, and applies them as two matrix products in float64, where
   every sum of the fixed-point products is an exact integer. The pass order is that of the
   Pillow installed where the file is exported (the training environment, as a rule): Pillow
   13's ``Resample.c`` runs the vertical pass first when the height shrinks by more than twice
   what the width does, earlier versions always start horizontally (``pillow_order``); it
   moves a few pixels by one level at most. EXIF orientation is metadata, not pixels: the
   client applies it before the graph.
2. Input: /255; grey data's one channel (``Preprocess.grey``) is resized once and repeated to
   three; ``Resize`` (opset 18) linear, half-pixel, ``antialias=1`` with ``exclude_outside=1``,
   which is torch's ``interpolate(..., antialias=True)`` filter (a shrinking axis gets the
   widened triangle, a growing one plain bilinear); (x - mean) / std.

Channels: RGB models take 1 (grey, repeated), 3 or 4 (RGBA, alpha dropped: Pillow's
``convert("RGB")``); grey models take 1, or 3/4 turned grey in the graph with Pillow's own
integer formula for ``convert("L")``: (19595 R + 38470 G + 7471 B + 32768) >> 16.
tests/test_embedded_onnx.py pins the graph to ``engine.transforms.preprocess`` and to Pillow.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.preprocess import Preprocess, Storage

OPSET = 18  # Resize's antialias attribute
INPUT_NAME = "image"
PRECISION_BITS = 22  # Pillow's fixed-point coefficients (Resample.c, 8 bits per channel)
BICUBIC_A = -0.5  # Pillow's bicubic filter
LUMA = (19595, 38470, 7471)  # Pillow's RGB -> L weights, /65536 (they sum to 65536)
_F64 = np.float64


VERTICAL_FIRST_FROM = (13,)  # the Pillow release whose resampler may start with the vertical pass


def pillow_order(version: str | None = None) -> str:
    """How the installed (or given) Pillow orders its two resampling passes:
    "vertical-first-when-height-shrinks-2x" (Pillow >= 13) or "horizontal-first"."""
    import PIL

    release = tuple(int(p) for p in (version or PIL.__version__).split(".")[:1])
    return "vertical-first-when-height-shrinks-2x" if release >= VERTICAL_FIRST_FROM else "horizontal-first"


class GraphBuilder:
    """Nodes and constants of one ONNX graph, each value named uniquely under ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0
        self._consts: dict[tuple, str] = {}

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value, dtype) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.name("const")
            self.initializers.append(numpy_helper.from_array(arr, self._consts[key]))
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.name(op_type), **attrs))
        return out

    def i64(self, *values: int) -> str:
        return self.const(list(values), np.int64)


def _bicubic(g: GraphBuilder, x: str) -> str:
    """Pillow's ``bicubic_filter`` (a = -0.5, support 2), elementwise on float64, in its operation order."""
    a = BICUBIC_A
    ax = g.op("Abs", x)
    near = g.op("Add", g.op("Mul", g.op("Mul", g.op("Sub", g.op("Mul", g.const(a + 2.0, _F64), ax),
                                                     g.const(a + 3.0, _F64)), ax), ax), g.const(1.0, _F64))
    far = g.op("Mul", g.op("Sub", g.op("Mul", g.op("Add", g.op("Mul", g.op("Sub", ax, g.const(5.0, _F64)), ax),
                                                   g.const(8.0, _F64)), ax), g.const(4.0, _F64)), g.const(a, _F64))
    return g.op("Where", g.op("Less", ax, g.const(1.0, _F64)), near,
                g.op("Where", g.op("Less", ax, g.const(2.0, _F64)), far, g.const(0.0, _F64)))


def _pillow_axis(g: GraphBuilder, length: str, start: str, span: str, out_size: int,
                 transposed: bool = False) -> str:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for one axis, as a dense
    ``(out_size, length)`` float64 matrix of the integer coefficients (``(length, out_size)`` when
    ``transposed``: built that way, not by a Transpose, which onnxruntime < 1.2x fuses into a
    float-only FusedMatMul).

    ``length``: the input's size on this axis (float64, shape (1,)); the box is
    [start, start + span). Output pixel xx is centred at start + (xx + 0.5) * scale;
    input pixels within ``support`` (2 x max(scale, 1)) of it get bicubic weights, which are
    normalised to sum 1, then rounded half away from zero at 2^-22.
    """
    scale = g.op("Div", span, g.const(float(out_size), _F64))
    filterscale = g.op("Max", scale, g.const(1.0, _F64))
    support = g.op("Mul", g.const(2.0, _F64), filterscale)
    inv = g.op("Div", g.const(1.0, _F64), filterscale)  # Pillow multiplies by 1/filterscale
    center = g.op("Add", start, g.op("Mul", g.const(np.arange(out_size) + 0.5, _F64), scale))  # (S,)
    half = g.const(0.5, _F64)
    # (int)(v + 0.5) clamped below at 0: for v < 0 truncation and floor both end up at 0
    xmin = g.op("Max", g.op("Floor", g.op("Add", g.op("Sub", center, support), half)), g.const(0.0, _F64))
    xmax = g.op("Min", g.op("Floor", g.op("Add", g.op("Add", center, support), half)), length)
    out_axis, in_axis = (g.i64(1), g.i64(0)) if transposed else (g.i64(0), g.i64(1))
    xs = g.op("Unsqueeze", g.op("Range", g.const(0.0, _F64), g.op("Squeeze", length, g.i64(0)),
                                g.const(1.0, _F64)), out_axis)  # input positions along in_axis
    w = _bicubic(g, g.op("Mul", g.op("Add", g.op("Sub", xs, g.op("Unsqueeze", center, in_axis)), half), inv))
    window = g.op("And", g.op("GreaterOrEqual", xs, g.op("Unsqueeze", xmin, in_axis)),
                  g.op("Less", xs, g.op("Unsqueeze", xmax, in_axis)))
    w = g.op("Where", window, w, g.const(0.0, _F64))
    total = g.op("ReduceSum", w, in_axis, keepdims=1)
    zero = g.op("Equal", total, g.const(0.0, _F64))
    k = g.op("Div", w, g.op("Where", zero, g.const(1.0, _F64), total))
    scaled = g.op("Mul", g.op("Abs", k), g.const(float(1 << PRECISION_BITS), _F64))
    return g.op("Mul", g.op("Sign", k), g.op("Floor", g.op("Add", scaled, half)))


def _clip8(g: GraphBuilder, acc: str) -> str:
    """Pillow's ``clip8(ss)`` with ``ss`` starting at 2^21: round the fixed-point sum, clamp to 0..255."""
    rounded = g.op("Floor", g.op("Div", g.op("Add", acc, g.const(float(1 << (PRECISION_BITS - 1)), _F64)),
                                 g.const(float(1 << PRECISION_BITS), _F64)))
    return g.op("Clip", rounded, g.const(0.0, _F64), g.const(255.0, _F64))


def _storage(g: GraphBuilder, rgb_nhwc: str, storage: Storage, order: str) -> str:
    """uint8 (N, H, W, 3) -> float64 (N, 3, S, S) holding the stored image's 0..255 values
    (Pillow's ``ImageOps.fit(image, (S, S), BICUBIC)``: centre square crop, then resample)."""
    size = storage.size
    x = g.op("Transpose", g.op("Cast", rgb_nhwc, to=TensorProto.DOUBLE), perm=[0, 3, 1, 2])
    shape = g.op("Cast", g.op("Shape", rgb_nhwc), to=TensorProto.DOUBLE)
    height = g.op("Slice", shape, g.i64(1), g.i64(2))
    width = g.op("Slice", shape, g.i64(2), g.i64(3))
    side = g.op("Min", height, width)  # ImageOps.fit to a square: the shorter side, centred
    half = g.const(0.5, _F64)
    kx_t = _pillow_axis(g, width, g.op("Mul", g.op("Sub", width, side), half), side, size, transposed=True)  # (W, S)
    ky = _pillow_axis(g, height, g.op("Mul", g.op("Sub", height, side), half), side, size)  # (S, H)

    def branch(name: str, vertical_first: bool) -> onnx.GraphProto:
        sub = GraphBuilder(f"{g.prefix}{name}/")
        if vertical_first:
            out = _clip8(sub, sub.op("MatMul", _clip8(sub, sub.op("MatMul", ky, x)), kx_t))
        else:
            out = _clip8(sub, sub.op("MatMul", ky, _clip8(sub, sub.op("MatMul", x, kx_t))))
        result = helper.make_tensor_value_info(out, TensorProto.DOUBLE, None)
        return helper.make_graph(sub.nodes, name, [], [result], sub.initializers)

    if order == "horizontal-first":
        return _clip8(g, g.op("MatMul", ky, _clip8(g, g.op("MatMul", x, kx_t))))
    # Pillow 13's Resample.c: the vertical pass runs first when the height shrinks more than twice the width does
    size_f = g.const([float(size)], _F64)
    dh, dw = g.op("Sub", height, size_f), g.op("Sub", width, size_f)
    vertical_first = g.op("And", g.op("Greater", dh, g.const([0.0], _F64)),
                          g.op("Greater", dh, g.op("Mul", dw, g.const([2.0], _F64))))
    cond = g.op("Squeeze", vertical_first, g.i64(0))
    return g.op("If", cond, then_branch=branch("vertical_first", True), else_branch=branch("horizontal_first", False))


def preprocess_graph(spec: Preprocess, output: str, *, ir_version: int, opset: int = OPSET,
                     prefix: str = "preprocess/", order: str | None = None) -> onnx.ModelProto:
    """A model from uint8 NHWC ``image`` to ``output``: the float32 (N, 3, S, S) input ``spec`` describes.
    ``order``: Pillow's pass order for the storage step (default: the installed Pillow's, ``pillow_order``)."""
    g = GraphBuilder(prefix)
    image = INPUT_NAME
    # at most 3 channels (RGBA loses alpha), then 1 -> 3 by broadcasting: Pillow's convert("RGB")
    rgb = g.op("Expand", g.op("Slice", image, g.i64(0), g.i64(3), g.i64(3)), g.i64(1, 1, 1, 3))
    if spec.storage is not None:
        if spec.grey:
            raise ValueError("a stored (image-folder) model is RGB; grey storage is not a format this code writes")
        stored = _storage(g, rgb, spec.storage, order or pillow_order())
        pixels = g.op("Cast", stored, to=TensorProto.FLOAT)  # (N, 3, S, S)
        channels = 3
    elif spec.grey:
        # Pillow's convert("L"): exact in float32 (every partial sum is an integer below 2^24)
        luma = g.op("MatMul", g.op("Cast", rgb, to=TensorProto.FLOAT), g.const(np.reshape(LUMA, (3, 1)), np.float32))
        grey = g.op("Floor", g.op("Div", g.op("Add", luma, g.const(32768.0, np.float32)), g.const(65536.0, np.float32)))
        pixels = g.op("Transpose", grey, perm=[0, 3, 1, 2])  # (N, 1, H, W)
        channels = 1
    else:
        pixels = g.op("Transpose", g.op("Cast", rgb, to=TensorProto.FLOAT), perm=[0, 3, 1, 2])
        channels = 3
    x = g.op("Div", pixels, g.const(255.0, np.float32))  # as torch: x.to(float32) / 255.0
    size = spec.image_size
    batch_and_channels = g.op("Slice", g.op("Shape", x), g.i64(0), g.i64(2))
    sizes = g.op("Concat", batch_and_channels, g.i64(size, size), axis=0)
    # an unchanged size is the identity here, as torch skips the call
    x = g.op("Resize", x, "", "", sizes, mode="linear", antialias=1, exclude_outside=1,
             coordinate_transformation_mode="half_pixel")
    if channels == 1:
        x = g.op("Expand", x, g.i64(1, 3, 1, 1))
    mean = g.const(np.reshape(spec.mean, (1, 3, 1, 1)), np.float32)
    std = g.const(np.reshape(spec.std, (1, 3, 1, 1)), np.float32)
    g.op("Div", g.op("Sub", x, mean), std, out=output)
    graph = helper.make_graph(
        g.nodes, "finetune-tui preprocessing",
        [helper.make_tensor_value_info(image, TensorProto.UINT8, ["batch", "height", "width", "channels"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 3, size, size])],
        g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version,
                             producer_name="finetune-tui")


def describe(spec: Preprocess) -> str:
    """What the graph does and what it leaves to the client, in words (the file's ``preprocess``)."""
    storage = spec.storage
    client = ("the client decodes the file, applies its EXIF orientation, and passes uint8 pixels"
              if storage is not None and storage.exif else "the client decodes the file and passes its uint8 pixels")
    channels = ("1 channel, or 3/4 (RGB/RGBA) made grey in the graph as Pillow's convert('L')" if spec.grey
                else "1 (grey, repeated), 3 (RGB) or 4 (RGBA, alpha dropped) channels")
    steps = []
    if storage is not None:
        import PIL

        steps.append(f"storage in the graph: {storage.resample} centre crop to {storage.size}x{storage.size} "
                     f"(ImageOps.fit of Pillow {PIL.__version__}, bit-exact)")
    steps.append(f"/255; resize to {spec.image_size}x{spec.image_size} bilinear, half-pixel centres, antialiased "
                 "when a side shrinks (Resize antialias=1, exclude_outside=1 = torch antialias=True)")
    if spec.grey:
        steps.append("grey repeated to 3 channels")
    steps.append("(x - mean) / std per channel")
    return (f"{client} as a uint8 (batch, height, width, channels) tensor of any height and width, {channels}; "
            f"in the graph: {'; '.join(steps)}; outputs: softmax probabilities (batch, classes) and the "
            f"class index (batch,), int64; class names in `classes`")
