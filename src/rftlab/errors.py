"""User-facing errors. The CLI prints these as one line (no traceback) and exits non-zero."""


class RftlabError(Exception):
    """A mistake the user can fix: bad config, missing file, malformed data row."""


class ConfigError(RftlabError):
    """A configuration key or value is invalid; the message names the key and the allowed values."""


class DataError(RftlabError):
    """A data file is missing or malformed; the message names the file, the line and the field."""
