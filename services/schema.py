"""Every table of the deployment on one metadata, for migrations and the schema check."""

from .agents import models as _agents  # noqa: F401
from .calls import models as _calls  # noqa: F401
from .edge import models as _edge  # noqa: F401
from .events import models as _events  # noqa: F401
from .messaging import models as _messaging  # noqa: F401
from .numbers import models as _numbers  # noqa: F401
from .persistence import tenancy as _tenancy  # noqa: F401
from .persistence.base import Base
from .webhooks import models as _webhooks  # noqa: F401

metadata = Base.metadata
