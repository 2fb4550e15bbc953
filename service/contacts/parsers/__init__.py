"""Source parsers: pure, streaming, every input item accounted for in `ImportStats`."""

from service.contacts.parsers._common import ImportStats
from service.contacts.parsers.queue_log import QueueLogParser

__all__ = ["ImportStats", "QueueLogParser"]
