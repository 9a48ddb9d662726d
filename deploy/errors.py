"""Error types users see; each message names the file, key, op or path at fault."""


class DeployError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(DeployError):
    """A build YAML or vdsp JSON is malformed; the message names the file and key path."""


class UnsupportedError(DeployError):
    """A feature, op or value this tool does not implement (said plainly, never faked)."""
