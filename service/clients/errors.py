"""Problems of the clients domain."""

from __future__ import annotations

from service.core.errors import Conflict


class ClientNameTaken(Conflict):
    code = "client_name_taken"
    title = "Client name taken"


class ClientHasProjects(Conflict):
    code = "client_has_projects"
    title = "The client has projects"


class ClientInUse(Conflict):
    code = "client_in_use"
    title = "The client is still referenced"
