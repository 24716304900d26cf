"""Numbers RPCs that describe numbers: classification, locality, access codes. (Being written.)"""

from __future__ import annotations

from voxplane.numbers.v1 import numbers_pb2 as pb


def classification_proto(e164: str) -> pb.Classification:
    return pb.Classification()


class CatalogRpcs:
    pass
