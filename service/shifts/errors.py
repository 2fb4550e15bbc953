"""Problems of the shifts domain."""

from __future__ import annotations

from service.core.errors import Conflict, InvalidInput


class ShiftOverlaps(Conflict):
    code = "shift_overlaps"
    title = "The agent is already booked"


class AgentNotCertified(InvalidInput):
    code = "agent_not_certified"
    title = "Agent not certified for the project"


class AgentInactive(InvalidInput):
    code = "agent_inactive"
    title = "Agent inactive"


class UnknownAgent(InvalidInput):
    code = "unknown_agent"
    title = "Unknown agent"


class ProjectInactive(InvalidInput):
    code = "project_inactive"
    title = "Project inactive"


class InvalidShiftRange(InvalidInput):
    code = "invalid_range"
    title = "Invalid shift range"


class ShiftExternalIdTaken(Conflict):
    code = "external_id_taken"
    title = "External id taken"


class InvalidWindow(InvalidInput):
    code = "invalid_window"
    title = "Invalid date window"


class ImportRejected(InvalidInput):
    """All-or-nothing import with at least one bad row: nothing was written."""

    code = "import_rejected"
    title = "Import rejected"


class InvalidImportFile(InvalidInput):
    """The file as a whole cannot be read; `reason` says why."""

    code = "invalid_import_file"
    title = "Invalid import file"


class ScheduleChanged(Conflict):
    """A concurrent booking clashed with the import between its checks and its write."""

    code = "schedule_changed"
    title = "The schedule changed during the import"
