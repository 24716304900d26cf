"""Numbers and AsyncNumbers: the Numbers service's RPCs, as in the Fonoster SDK."""

from __future__ import annotations

import os

from ._bulk import ImportSummary, import_csv, import_csv_async
from ._client import AsyncClient, Method, Pages, SyncClient
from .numbers.v1 import numbers_pb2 as pb
from .numbers.v1 import numbers_pb2_grpc


class _NumbersMethods:
    stub_type = numbers_pb2_grpc.NumbersStub

    create_number = Method("CreateNumber", pb.CreateNumberRequest)
    get_number = Method("GetNumber", pb.GetNumberRequest, positional="ref")
    update_number = Method("UpdateNumber", pb.UpdateNumberRequest)
    list_numbers = Method("ListNumbers", pb.ListNumbersRequest)
    delete_number = Method("DeleteNumber", pb.DeleteNumberRequest, positional="ref")
    get_ingress_info = Method("GetIngressInfo", pb.GetIngressInfoRequest, positional="e164_number")
    get_messaging_route = Method("GetMessagingRoute", pb.GetMessagingRouteRequest, positional="e164_number")
    iter_numbers = Pages("list_numbers", "numbers")

    activate_number = Method("ActivateNumber", pb.ActivateNumberRequest, positional="ref")
    suspend_number = Method("SuspendNumber", pb.SuspendNumberRequest, positional="ref")
    release_number = Method("ReleaseNumber", pb.ReleaseNumberRequest, positional="ref")

    import_inventory = Method("ImportInventory", pb.ImportInventoryRequest)
    list_available_prefixes = Method("ListAvailablePrefixes", pb.ListAvailablePrefixesRequest)
    search_available_numbers = Method("SearchAvailableNumbers", pb.SearchAvailableNumbersRequest, positional="prefix")
    check_availability = Method("CheckAvailability", pb.CheckAvailabilityRequest)
    acquire_number = Method("AcquireNumber", pb.AcquireNumberRequest, positional="e164_number")
    reserve_number = Method("ReserveNumber", pb.ReserveNumberRequest, positional="e164_number")

    classify_number = Method("ClassifyNumber", pb.ClassifyNumberRequest, positional="number")
    list_classifiers = Method("ListClassifiers", pb.ListClassifiersRequest)
    get_number_locality = Method("GetNumberLocality", pb.GetNumberLocalityRequest)
    list_access_codes = Method("ListAccessCodes", pb.ListAccessCodesRequest)

    update_subscriber = Method("UpdateSubscriber", pb.UpdateSubscriberRequest)
    review_subscriber = Method("ReviewSubscriber", pb.ReviewSubscriberRequest)
    set_emergency_address = Method("SetEmergencyAddress", pb.SetEmergencyAddressRequest)
    enable_emergency = Method("EnableEmergency", pb.EnableEmergencyRequest)

    batch_create_numbers = Method("BatchCreateNumbers", pb.BatchCreateNumbersRequest)
    batch_delete_numbers = Method("BatchDeleteNumbers", pb.BatchDeleteNumbersRequest)


class Numbers(_NumbersMethods, SyncClient):
    """Blocking client of the Numbers service.

    >>> numbers = Numbers(endpoint="127.0.0.1:50051", api_key="vxp_...")
    >>> number = numbers.create_number(e164_number="+17853177343", provider_ref="p1",
    ...                                aor_link="sip:1001@sip.local")
    >>> numbers.get_number(number.ref).e164_number
    '+17853177343'
    """

    def import_numbers_csv(
        self, path: str | os.PathLike[str], *, batch_size: int = 1000, progress: bool | None = None
    ) -> ImportSummary:
        """Creates the numbers of a CSV file of any size, `batch_size` rows per BatchCreateNumbers call.

        Columns (header on line 1): e164_number, provider_ref, and optionally name and one routing:
        aor_link, webhook or forward_sip_to. The file is streamed, never loaded whole.
        A progress bar is drawn on stderr when it is a terminal (`progress=True` forces it, False
        silences it). A refused batch raises the server's error (e.g. InvalidArgumentError) naming the
        file's lines; every batch before it is imported. Running the same file again is safe: rows
        imported already are not created twice, so a fixed file can simply be imported again.
        """
        return import_csv(self, path, batch_size=batch_size, progress=progress)


class AsyncNumbers(_NumbersMethods, AsyncClient):
    """asyncio client of the Numbers service: the same methods, awaited."""

    async def import_numbers_csv(
        self, path: str | os.PathLike[str], *, batch_size: int = 1000, progress: bool | None = None
    ) -> ImportSummary:
        """Numbers.import_numbers_csv, awaited; the file is read on a thread, off the event loop."""
        return await import_csv_async(self, path, batch_size=batch_size, progress=progress)
