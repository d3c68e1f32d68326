"""lalic: the LALIC learned image codec as a library and a command-line tool.

The public names are imported on first use, so that ``import lalic_cli`` (and
the commands that code nothing, such as ``lalic --help`` or ``lalic info``) do
not pay for torch and CompressAI.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from . import _compressai
from ._lazy import lazy_exports

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning)
_compressai.defer()

if TYPE_CHECKING:
    from .bitstream import BitstreamError
    from .codec import decode_bytes, decode_file, encode_image
    from .errors import DecodeError, ImageError, InputError, LalicError, QualityError
    from .fileio import OutputExistsError
    from .models import LALIC
    from .pillow_plugin import register_pillow
    from .zoo.checkpoint import CheckpointError
    from .zoo.registry import WeightsError

# Every error a user can cause derives from LalicError (a ValueError); all but
# CheckpointError (raised while importing weights, which needs torch anyway) live in
# modules that import neither torch nor numpy.
_EXPORTS = {
    "BitstreamError": ".bitstream",
    "CheckpointError": ".zoo.checkpoint",
    "DecodeError": ".errors",
    "ImageError": ".errors",
    "InputError": ".errors",
    "LalicError": ".errors",
    "QualityError": ".errors",
    "OutputExistsError": ".fileio",
    "WeightsError": ".zoo.registry",
    "LALIC": ".models",
    "decode_bytes": ".codec",
    "decode_file": ".codec",
    "encode_image": ".codec",
    "register_pillow": ".pillow_plugin",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
