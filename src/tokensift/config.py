"""Config loading: one dataclass per stage, filled from defaults < YAML file < command-line `key=value`.

Every field carries `metadata["help"]` (unit and effect on speed/memory); the CLI turns fields into `--flags`.
Nested dataclass fields (pipelines) are YAML mappings and take dotted overrides (`oracle.learning_rate=1e-6`).
Unknown keys are errors with a "did you mean" suggestion; YAML is read with `yaml.safe_load` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path

import yaml

from tokensift.errors import UserError


def option(default, help: str, **kwargs):
    """A dataclass field with help text (mutable defaults go through default_factory)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def _field_types(cls) -> dict[str, object]:
    return typing.get_type_hints(cls)


def unwrap_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def suggest(name: str, choices, prefix: str = "") -> str:
    """" (did you mean 'x'?)" for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def coerce(value, tp, key: str):
    """Convert a YAML value or a command-line string to the field's type, or raise a UserError naming the key."""
    tp, optional = unwrap_optional(tp)
    unset = isinstance(value, str) and value.lower() in ("none", "null") and (optional or tp is not str)
    if value is None or unset:
        if optional:
            return None
        raise UserError(f"config key '{key}' may not be empty (null unsets only keys whose default is none)")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if tp is int:
            return _whole_number(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            try:
                return float(value)
            except ValueError:
                raise ValueError("expected a number such as 0.1 or 5e-6") from None
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError("expected a string")
            return str(value)
        origin = tp if tp in (list, dict) else typing.get_origin(tp)
        if origin in (list, dict):
            if isinstance(value, str):
                value = json.loads(value) if value.strip()[:1] in "[{" else [v for v in value.split(",") if v]
            if not isinstance(value, origin):
                raise ValueError(f"expected a {origin.__name__}")
            return value
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ValueError("expected a mapping of keys")
            return build(tp, value, prefix=key + ".")
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise UserError(f"config key '{key}': cannot use {value!r}: {exc}") from None
    return value


def _whole_number(value) -> int:
    """An integer setting from YAML or the command line: 8, "8", 8.0 and "1e3" are whole numbers; 8.5, "eight" and
    true are not."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true/false")
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise ValueError("expected a whole number such as 8") from None
    if isinstance(number, float) and number.is_integer():
        return int(number)
    raise ValueError("expected a whole number such as 8")


def section_of(cls, name: str):
    """The config class whose keys a mapping field holds (SePO's `oracle`, TSO's `train` ...), or None."""
    field = cls.__dataclass_fields__.get(name)
    section = field.metadata.get("section") if field is not None else None
    return section() if callable(section) and not isinstance(section, type) else section


def unknown_key(cls, key: str, prefix: str = "") -> UserError:
    """The error for a key `cls` does not have: another project's name for one of ours (TRL's, KEY_ALIASES), a key
    of one of its sections (`beta` in TSO is `train.beta`), or the closest key."""
    fields = [f.name for f in dataclasses.fields(cls)]
    note = getattr(cls, "KEY_ALIASES", {}).get(key)
    if isinstance(note, str):
        return UserError(f"unknown config key '{prefix}{key}': {note}")
    homes = [name for name in fields if (section := section_of(cls, name)) is not None
             and key in section.__dataclass_fields__]
    if homes:
        names = [f"{prefix}{home}.{key}" for home in homes]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        return UserError(f"unknown config key '{prefix}{key}': here it belongs to a section; write {listed}")
    return UserError(f"unknown config key '{prefix}{key}'{suggest(key, fields, prefix)}")


def apply_aliases(cls, values: dict, prefix: str = "") -> dict:
    """Another project's names for our keys (`KEY_ALIASES` of the class: name -> (our key, converter or None)),
    renamed to ours; the converter maps the other project's values onto ours (a UserError for one with no
    counterpart). Giving both names is an error, so neither value is silently dropped."""
    aliases = getattr(cls, "KEY_ALIASES", {})
    out = {}
    for key, value in values.items():
        alias = aliases.get(key)
        if isinstance(alias, tuple) and key not in cls.__dataclass_fields__:
            ours, convert = alias
            if convert is not None and value is not None:
                value = convert(value)
            if ours in values or ours in out:
                raise UserError(f"config keys '{prefix}{key}' and '{prefix}{ours}' are the same setting; give one")
            out[ours] = value
        else:
            out[key] = value
    return out


def build(cls, values: dict, prefix: str = ""):
    """Instantiate `cls` from a mapping, checking every key and value."""
    types_ = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    values = apply_aliases(cls, values, prefix)
    for key, value in values.items():
        if key not in fields:
            raise unknown_key(cls, key, prefix)
        if fields[key].metadata.get("in_memory") and not isinstance(value, (str, int, float, bool, type(None))):
            kwargs[key] = value  # rows handed over in Python (the API): validate() turns them into a source
            continue
        kwargs[key] = coerce(value, types_[key], prefix + key)
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserError(f"missing required config key(s): {', '.join(prefix + m for m in missing)}")
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, not a {type(data).__name__}")
    return data


def apply_override(values: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"override '{dotted}': '{key}' is not a section")
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise UserError(f"expected key=value, got '{item}'")
        key, value = item.split("=", 1)
        out.append((key.strip().replace("-", "_"), value))
    return out


def merged(base: dict, values: dict) -> dict:
    """`values` over `base`, mappings merged key by key (a run's recorded `train` section plus `train.beta=...`)."""
    out = dict(base)
    for key, value in values.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(cls, path: str | None = None, overrides: list[str] | None = None, flags: dict | None = None,
                base=None):
    """defaults < base < YAML file < flags (from --options) < key=value overrides. `base`: a mapping, or a function
    of the other values giving one (e.g. the settings a run folder recorded, found from their output_dir)."""
    values = read_yaml(path) if path else {}
    for key, value in (flags or {}).items():
        apply_override(values, key, value)
    for key, value in parse_overrides(overrides or []):
        apply_override(values, key, value)
    if base is not None:
        values = merged(base(values) if callable(base) else base, values)
    return build(cls, values)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def help_of(cls, name: str) -> str:
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


# ----------------------------------------------------------------------------------------- command line
def add_config_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (),
                       positional: str | None = None) -> None:
    """One `--option` per dataclass field (help from the field), plus --config and key=value overrides.
    `positional` names what plain arguments besides key=value are (e.g. FILE), see split_positional."""
    parser.add_argument("--config", help="YAML file of settings (keys as below, underscores).")
    parser.config_class = cls  # what the options fill (tests/test_cli_help.py checks the help's examples against it)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(unwrap_optional(hints[f.name])[0]):
            continue
        tp, _ = unwrap_optional(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else "(see help)"
        # argparse expands %-formats in help text: a literal % ("the top 40%") must reach it as %%
        text = f"{f.metadata.get('help', '')} [default: {default}]".replace("%", "%%")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, nargs="?", const="true", default=argparse.SUPPRESS, help=text,
                                metavar="BOOL")
        else:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=text, metavar=f.name.upper())
    example = getattr(cls, "CLI_EXAMPLE", "")
    metavar, text = "key=value", "Overrides of the options above" + (f", e.g. {example}" if example else "")
    if positional:
        metavar, text = f"{positional} | key=value", f"{positional} arguments, and key=value overrides of the options"
    parser.add_argument("overrides", nargs="*", metavar=metavar, help=text.replace("%", "%%"))
    parser.add_argument("--check", action="store_true", help=(
        "Preflight: check the settings, the data files, the model and tokenizer and the output folder, print the "
        "plan (steps, tokens, what is reused) and exit without loading any weights. Exit status 2 with the errors "
        "the run would stop on."))
    parser.epilog = KEY_VALUE_NOTE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


KEY_VALUE_NOTE = """\
settings: defaults < --config FILE.yaml < --option value < key=value (later wins). Keys are the option names
with underscores (max_length=256, or --max-length 256). Sections take dotted keys (oracle.epochs=2).
key=null unsets an optional key (e.g. max_steps=null: train by epochs again). Lists: a=1,2 or a=[1,2].
--check prints the plan without loading weights."""


def split_positional(args: argparse.Namespace, field: str) -> None:
    """Move plain arguments (an existing path, or anything without `key=`) out of the key=value overrides into
    the list field `field`, after any values the field got from --config or its --flag."""
    overrides, plain = [], []
    for item in getattr(args, "overrides", None) or []:
        key = item.split("=", 1)[0]
        is_override = "=" in item and key.replace(".", "_").replace("-", "_").isidentifier()
        (overrides if is_override and not Path(item).exists() else plain).append(item)
    args.overrides = overrides
    if plain:
        given = getattr(args, field, None)
        given = [] if given is None else [v for v in given.split(",") if v] if isinstance(given, str) else list(given)
        setattr(args, field, given + plain)


def config_from_args(cls, args: argparse.Namespace, skip=("config", "overrides", "command", "func", "verbose"),
                     base=None):
    flags = {k: v for k, v in vars(args).items() if k not in (*skip, "check") and not k.startswith("_")}
    overrides = list(getattr(args, "overrides", None) or [])
    hints = typing.get_type_hints(cls)
    for name, value in list(flags.items()):
        # `--serve output_dir=X`: a bare boolean flag (nargs="?") took the key=value after it as its value
        if (name in hints and unwrap_optional(hints[name])[0] is bool and isinstance(value, str) and "=" in value
                and value.split("=", 1)[0].replace(".", "_").isidentifier()):
            flags[name] = "true"
            overrides.insert(0, value)
    return load_config(cls, args.config, overrides, flags, base)
