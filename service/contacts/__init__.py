"""Contacts: interactions offered to queues and agent states, from every telephony source.

`records` holds the normalized shapes; `parsers` turns source files (Asterisk
`queue_log` and its table exports, Amazon Connect contact records, CSV with a
column mapping) into them, without touching a database.
"""
