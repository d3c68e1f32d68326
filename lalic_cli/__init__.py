"""lalic: the LALIC learned image codec as a library and a command-line tool."""

import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning)

from .codec import decode_bytes, decode_file, encode_image  # noqa: E402
from .models import LALIC  # noqa: E402

__all__ = ["LALIC", "decode_bytes", "decode_file", "encode_image"]
__version__ = "0.1.0"
