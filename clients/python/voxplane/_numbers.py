"""Numbers and AsyncNumbers: the Numbers service's RPCs, as in the Fonoster SDK."""

from __future__ import annotations

from ._client import AsyncClient, Method, Pages, Retry, SyncClient
from .numbers.v1 import numbers_pb2 as pb
from .numbers.v1 import numbers_pb2_grpc


class _NumbersMethods:
    stub_type = numbers_pb2_grpc.NumbersStub

    create_number = Method("CreateNumber", pb.CreateNumberRequest, Retry.WITH_REQUEST_ID)
    get_number = Method("GetNumber", pb.GetNumberRequest, Retry.ALWAYS, positional="ref")
    update_number = Method("UpdateNumber", pb.UpdateNumberRequest)
    list_numbers = Method("ListNumbers", pb.ListNumbersRequest, Retry.ALWAYS)
    delete_number = Method("DeleteNumber", pb.DeleteNumberRequest, positional="ref")
    get_ingress_info = Method("GetIngressInfo", pb.GetIngressInfoRequest, Retry.ALWAYS, positional="e164_number")
    iter_numbers = Pages("list_numbers", "numbers")


class Numbers(_NumbersMethods, SyncClient):
    """Blocking client of the Numbers service.

    >>> numbers = Numbers(endpoint="127.0.0.1:50051", api_key="vxp_...")
    >>> number = numbers.create_number(e164_number="+17853177343", provider_ref="p1",
    ...                                aor_link="sip:1001@sip.local")
    >>> numbers.get_number(number.ref).e164_number
    '+17853177343'
    """


class AsyncNumbers(_NumbersMethods, AsyncClient):
    """asyncio client of the Numbers service: the same methods, awaited."""
