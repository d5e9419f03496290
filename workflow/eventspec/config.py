"""Pipeline configuration: schema validation with defaults, for the CLI.

The Snakefile validates with ``snakemake.utils.validate`` against the same
schema; the CLI does it here so stages run without Snakemake too.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from .event_window import EventWindowError, resolve_event_window
from .levels import scale_adapters

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_PATH = PACKAGE_DIR / "xsd" / "config.schema.yaml"
"""``xsd/`` and the default ``config.yaml`` ship inside the package (links to the repository's copies in a
checkout), so a non-editable ``pip install .`` finds them too."""
DEFAULT_CONFIG = PACKAGE_DIR / "config.yaml"


class ConfigError(ValueError):
    """Invalid configuration; the message names the key."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = json.loads(json.dumps(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


DefaultFillingValidator = _with_defaults(jsonschema.Draft202012Validator)


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate(config: dict, source: str = "config") -> dict:
    """Fill defaults in place (the adapter registry's level defaults first: ``levels.scale_adapters``) and check
    ``config``; raise ConfigError naming the key.

    Beyond the schema: the drafter's event window is resolved and checked against the drafter
    (``event_window.resolve_event_window``).
    """
    scale_adapters(config)
    errors = sorted(DefaultFillingValidator(load_schema()).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise ConfigError(f"{source}: invalid value at key '{key}': {err.message}")
    try:
        return resolve_event_window(config)
    except EventWindowError as err:
        raise ConfigError(f"{source}: {err}") from err


def load(path: str | Path | None = None, inline: str | None = None) -> dict:
    """Validated config from a YAML file and/or an inline JSON object (which wins per top-level key)."""
    config: dict = {}
    source = "config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file missing")
        config = yaml.safe_load(path.read_text()) or {}
        source = str(path)
    if inline:
        config.update(json.loads(inline))
    return validate(config, source)
