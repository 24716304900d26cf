"""Numbers RPCs that describe numbers: classification, classifiers, locality, access codes.

None of them touches the database: they answer from libphonenumber's data and the
deployment's settings, so they run as quick RPCs.
"""

from __future__ import annotations

from voxplane.numbers.v1 import numbers_pb2 as pb

from ..core.auth import Access, Caller
from ..core.rpc import rpc
from ..core.servicer import Servicer
from . import catalog
from .messages import classification_message


class CatalogRpcs(Servicer):
    @rpc(Access.READ, quick=True)
    def ClassifyNumber(self, request: pb.ClassifyNumberRequest, caller: Caller) -> pb.ClassifyNumberResponse:
        found = catalog.classify(request.number, request.region_code)
        return pb.ClassifyNumberResponse(
            number=found.number,
            classification=classification_message(found.classification),
            national_format=found.national_format,
            international_format=found.international_format,
        )

    @rpc(Access.READ, quick=True)
    def ListClassifiers(self, request: pb.ListClassifiersRequest, caller: Caller) -> pb.ListClassifiersResponse:
        return pb.ListClassifiersResponse(
            classifiers=[
                pb.Classifier(name=c.name, friendly_name=c.friendly_name, pattern=c.pattern)
                for c in catalog.classifiers()
            ]
        )

    @rpc(Access.READ, quick=True)
    def GetNumberLocality(self, request: pb.GetNumberLocalityRequest, caller: Caller) -> pb.GetNumberLocalityResponse:
        return pb.GetNumberLocalityResponse(
            localities=[
                pb.Locality(
                    e164_number=place.e164_number,
                    region_code=place.region_code,
                    description=place.description,
                    carrier=place.carrier,
                    time_zones=place.time_zones,
                )
                for place in catalog.localities(request.numbers)
            ]
        )

    @rpc(Access.READ, quick=True)
    def ListAccessCodes(self, request: pb.ListAccessCodesRequest, caller: Caller) -> pb.ListAccessCodesResponse:
        return pb.ListAccessCodesResponse(
            access_codes=[pb.AccessCode(code=a.code, description=a.description) for a in catalog.ACCESS_CODES]
        )
