"""The core kit every domain builds on: config, db, errors, logging, time."""
