"""Source parsers: pure (no I/O beyond the file object given), every input item accounted for.

* `queue_log.QueueLogParser`: Asterisk/Wazo `queue_log`, streaming, resumable state;
  `queue_log_tables`: its table exports (extended CSV, MySQL dump, psql output).
* `amazon_connect.parse_ctr`: Amazon Connect contact trace records.
* `csv_records.CsvRecordParser`: any CSV through a `CsvMapping`.
"""

from service.contacts.parsers._common import ImportStats
from service.contacts.parsers.amazon_connect import ConnectImport, parse_ctr
from service.contacts.parsers.csv_records import CsvMapping, CsvRecordParser
from service.contacts.parsers.queue_log import QueueLogParser
from service.contacts.parsers.queue_log_tables import (
    extended_table_rows,
    mysql_dump_rows,
    psql_table_rows,
)

__all__ = [
    "ConnectImport",
    "CsvMapping",
    "CsvRecordParser",
    "ImportStats",
    "QueueLogParser",
    "extended_table_rows",
    "mysql_dump_rows",
    "parse_ctr",
    "psql_table_rows",
]
