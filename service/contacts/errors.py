from __future__ import annotations

from service.core.errors import AppError


class BatchInvalid(AppError):
    status = 422
    code = "batch_invalid"
    title = "The batch is not a JSON object with a records list"


class BatchTooLarge(AppError):
    status = 413
    code = "batch_too_large"
    title = "Too many records in one batch"


class ConcurrentImport(AppError):
    status = 409
    code = "concurrent_import"
    title = "Other imports kept changing these contacts; retry the batch"
    retry_after_s = 1
