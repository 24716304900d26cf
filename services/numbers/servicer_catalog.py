"""Numbers RPCs that describe numbers: classification, classifiers, locality, access codes.

None of them touches the database: they answer from libphonenumber's data and the
deployment's settings, so they run as quick RPCs.
"""

from __future__ import annotations

import functools

from voxplane.numbers.v1 import numbers_pb2 as pb

from ..core.auth import Access, Caller
from ..core.rpc import rpc
from . import catalog


# Numbers share a few dozen classifications; a message each is copied into every Number that has it.
@functools.lru_cache(maxsize=1024)
def _classification_message(found: catalog.Classification) -> pb.Classification:
    return pb.Classification(
        type=pb.NumberType.Value(f"NUMBER_TYPE_{found.type}"),
        region_code=found.region_code,
        country_code=found.country_code,
        international=found.international,
        classifiers=found.classifiers,
    )


def classification_proto(e164: str) -> pb.Classification:
    """The `classification` of a stored Number."""
    return _classification_message(catalog.classification(e164))


class CatalogRpcs:
    @staticmethod
    def check_catalog_settings() -> None:
        """Reads the classifier file and home region now, so bad settings stop the server from starting."""
        try:
            catalog.check_settings()
        except catalog.SettingsError as error:
            raise SystemExit(str(error)) from None

    @rpc(Access.READ, quick=True)
    def ClassifyNumber(self, request: pb.ClassifyNumberRequest, caller: Caller) -> pb.ClassifyNumberResponse:
        found = catalog.classify(request.number, request.region_code)
        return pb.ClassifyNumberResponse(
            number=found.number,
            classification=_classification_message(found.classification),
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
