"""Numbers RPCs for the inventory and the lifecycle. (Being written.)"""

from __future__ import annotations


class InventoryRpcs:
    pass


class LifecycleRpcs:
    pass
