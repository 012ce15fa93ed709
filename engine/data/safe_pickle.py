"""Unpickle dataset files without letting them run code.

The CIFAR archives are pickles written by someone else, and a pickle can call
any importable function (``os.system`` included). This unpickler resolves
only the handful of globals needed to rebuild dicts of numpy uint8 arrays and
label lists, and refuses everything else before it is called.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import DataError

# Take the real functions from numpy itself so this works on numpy 1.x
# (numpy.core) and 2.x (numpy._core) alike, and without deprecation warnings.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_FROMBUFFER = np.ndarray.__reduce_ex__(np.zeros(1), 5)[0]
_SCALAR = np.int64(0).__reduce__()[0]


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, "latin1");
    # allow exactly that, not arbitrary codecs.
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return codecs.encode(text, "latin1")


_ALLOWED: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(_mod, "scalar")] = _SCALAR
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _FROMBUFFER
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("_codecs", "encode")] = _latin1_encode
for _mod in ("builtins", "__builtin__"):  # Python 3 / Python 2 spelling
    _ALLOWED[(_mod, "bytes")] = bytes


class SafeUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that only rebuilds numpy arrays and plain containers."""

    def __init__(self, file: BinaryIO, path: str | Path = "<stream>") -> None:
        super().__init__(file, encoding="bytes")
        self.path = str(path)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.path}: refusing to unpickle {module}.{name}; dataset pickles may hold only "
                f"numpy arrays, lists, dicts and strings (is this really a CIFAR file?)"
            ) from None


def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`; any failure is a DataError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return SafeUnpickler(fh, path).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            LookupError) as exc:
        raise DataError(f"{path}: not a readable dataset pickle ({type(exc).__name__}: {exc}); "
                        f"delete it and unpack the archive again") from None
    except OSError as exc:
        raise DataError(f"{path}: can't read it ({exc.strerror or exc})") from None
