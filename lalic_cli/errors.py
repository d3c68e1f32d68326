"""The errors a user can cause. The CLI prints them in one line and exits 2."""

from __future__ import annotations


class LalicError(ValueError):
    """Base of every error caused by input, files or settings rather than by a bug."""


class InputError(LalicError):
    """A missing or unusable input path or option value."""


class QualityError(InputError):
    """A quality that is not a number, or that the family or the chosen weights do not code:
    one type for that one mistake, from the CLI, the library and the Pillow plugin alike."""


class ImageError(LalicError):
    """An input image that cannot be read or coded."""


class DecodeError(LalicError):
    """A file that parses but cannot be decoded correctly."""


USER_ERRORS = (LalicError,)
