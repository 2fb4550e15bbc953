"""Problems of the projects domain."""

from __future__ import annotations

from service.core.errors import Conflict, Forbidden, InvalidInput


class ProjectNameTaken(Conflict):
    code = "project_name_taken"
    title = "Project name taken"


class QueueKeyTaken(Conflict):
    code = "queue_key_taken"
    title = "Queue key already mapped"


class UnknownClient(InvalidInput):
    code = "unknown_client"
    title = "No such client"


class ClientInactive(InvalidInput):
    code = "client_inactive"
    title = "The client is inactive"


class UnknownProject(InvalidInput):
    code = "unknown_project"
    title = "No such project"


class NotAssignable(InvalidInput):
    code = "not_assignable"
    title = "Client viewers are not assigned to projects"


class ProjectScoped(Forbidden):
    code = "project_scoped"
    title = "Project-scoped users cannot create projects"
