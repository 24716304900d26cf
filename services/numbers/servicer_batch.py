"""Numbers RPCs that work on many numbers at once. (Being written.)"""

from __future__ import annotations


class BatchRpcs:
    pass
