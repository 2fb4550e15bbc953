"""Problems of the agents domain."""

from __future__ import annotations

from service.core.errors import Conflict, InvalidInput


class AgentHasHistory(Conflict):
    code = "agent_has_history"
    title = "Agent has history"


class ExternalIdTaken(Conflict):
    code = "external_id_taken"
    title = "External id taken"


class AgentEmailTaken(Conflict):
    code = "email_taken"
    title = "E-mail taken"


class CertificationExists(Conflict):
    code = "certification_exists"
    title = "Certification exists"


class UnknownProject(InvalidInput):
    code = "unknown_project"
    title = "Unknown project"


class InvalidCertificationDates(InvalidInput):
    code = "invalid_certification_dates"
    title = "Invalid certification dates"
