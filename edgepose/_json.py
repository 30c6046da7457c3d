"""JSON reading that turns every way a file can fail Python's parser into one edgepose error.

``json.loads`` raises JSONDecodeError for bad syntax, but RecursionError for deeply nested arrays
(valid JSON) and a plain ValueError for an integer of more than 4300 digits (valid JSON too).
"""

from __future__ import annotations

from typing import Any, Type

from .errors import EdgePoseError


def loads(text: str, where: str, error: Type[EdgePoseError]) -> Any:
    """``json.loads(text)``, or ``error`` naming ``where`` (e.g. ``"spec file x.json"``) and the problem."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{where} is not valid JSON here: nested too deeply for the parser") from None
    except ValueError as e:  # JSONDecodeError, and int() refusing a number of more than 4300 digits
        raise error(f"{where} is not valid JSON: {str(e)[:200]}") from None
