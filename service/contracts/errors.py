"""Problems of the contracts domain."""

from __future__ import annotations

from service.core.errors import Conflict, InvalidInput, NotFound


class ContractOverlaps(Conflict):
    """Names the clashing version: `clashing_contract_id`, its number and dates."""

    code = "contract_overlaps"
    title = "Contract versions overlap"


class ContractInForce(Conflict):
    code = "contract_in_force"
    title = "The version is in force"


class InvalidTerms(InvalidInput):
    code = "invalid_terms"
    title = "Invalid contract terms"


class InvalidDates(InvalidInput):
    code = "invalid_dates"
    title = "Invalid effective dates"


class NoContractInForce(NotFound):
    code = "no_contract_in_force"
    title = "No contract in force"
