"""Problems of the operations routes."""

from __future__ import annotations

from service.core.errors import Forbidden, InvalidInput


class OperationsQueryInvalid(InvalidInput):
    code = "operations_query_invalid"
    title = "Invalid query"


class ClientViewersExcluded(Forbidden):
    """Double bookings involve other clients' projects by nature: not for client viewers."""

    code = "client_viewer_excluded"
    title = "Not available to client viewers"
