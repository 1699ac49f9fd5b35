"""File checks a data flow runs before delivery: size, name, checksum and document well-formedness.

Every check streams. A validator is driven as::

    v.start(name)        # once, with the file's name (may already raise, e.g. `name`)
    v.feed(chunk)        # for each chunk, in order (may raise as soon as the file is known bad)
    v.finish(size, sha)  # once, with the total size and lowercase hex SHA-256

and raises `ValidationError` on the first problem it finds. Memory stays bounded whatever the file
size: no validator keeps the whole file, only a small carry-over between chunks (an unfinished
token, segment or escape). `start` resets a validator, so one object may check many files one
after the other (not concurrently). `ValidationRun` drives a list of validators over one pass and
computes size and SHA-256 on the way; `validate_stream` does that for a binary stream.

The package, by job:

* `base`: the `Validator` protocol and registry, JSON specs (`parse_specs`), the command line's
  short forms (`parse_cli_spec`, `parse_size`), and the one pass (`ValidationRun`, `validate_stream`).
* `simple`: ``max_size``, ``min_size``, ``name`` (glob or regex), ``sha256``.
* `json`: RFC 8259 with a streaming tokenizer (UTF-8, optional BOM, one top-level value,
  nesting limited by ``max_depth``, default 512).
* `xml`: namespace-aware expat, fed incrementally. Entity declarations are refused (no XXE,
  no billion laughs) and external entities and DTDs are never loaded; a plain DOCTYPE is fine.
* `edi`: ``x12`` (the ISA header, fixed 106 characters, sets the separators) and ``edifact``
  (optional UNA service string advice; release characters are honoured): segments cut out of the
  stream and checked by
* `envelopes`: one envelope engine for both standards (ISA/GS/ST…SE/GE/IEA and UNB/UNG/UNH…
  UNT/UNE/UNZ nest and balance, control references match, counts agree), driven by a table of the
  two standards' differences.
"""

from core.validators.base import (
    CHUNK_SIZE,
    ValidationError,
    ValidationRun,
    Validator,
    parse_cli_spec,
    parse_size,
    parse_specs,
    validate_stream,
    validator_types,
)
from core.validators.edi import EdifactValidator, X12Validator
from core.validators.json import JsonValidator
from core.validators.simple import MaxSizeValidator, MinSizeValidator, NameValidator, Sha256Validator
from core.validators.xml import XmlValidator

__all__ = [
    "CHUNK_SIZE",
    "EdifactValidator",
    "JsonValidator",
    "MaxSizeValidator",
    "MinSizeValidator",
    "NameValidator",
    "Sha256Validator",
    "ValidationError",
    "ValidationRun",
    "Validator",
    "X12Validator",
    "XmlValidator",
    "parse_cli_spec",
    "parse_size",
    "parse_specs",
    "validate_stream",
    "validator_types",
]
