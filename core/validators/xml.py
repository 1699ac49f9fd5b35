"""``xml``: well-formedness by the standard library's expat, fed incrementally, with entity
declarations refused (no XXE, no billion laughs)."""

from __future__ import annotations

from typing import NoReturn
from xml.parsers import expat

from core.validators.base import NoParams, register


@register
class XmlValidator(NoParams):
    """``{"type": "xml"}``: a well-formed, namespace-well-formed XML document (expat, streamed).

    Entity declarations (internal or external, general or parameter) are refused, which rules out
    XXE and entity-expansion bombs; external DTDs and entities are never fetched. A DOCTYPE that
    only names a DTD (as cXML does) is accepted.
    """

    type = "xml"
    reads_content = True

    def __init__(self) -> None:
        self.start("")

    def start(self, name: str) -> None:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.EntityDeclHandler = self._entity_decl
        parser.UnparsedEntityDeclHandler = self._unparsed_entity_decl
        parser.ExternalEntityRefHandler = self._external_entity
        self._parser = parser
        self._done = False

    def _refuse(self, what: str) -> NoReturn:
        p = self._parser
        self.fail(f"line {p.CurrentLineNumber} column {p.CurrentColumnNumber + 1}: {what} not allowed")

    def _entity_decl(self, name: str, is_parameter: int, *args: object) -> None:
        self._refuse(f"entity declaration {'%' if is_parameter else '&'}{name};")

    def _unparsed_entity_decl(self, name: str, *args: object) -> None:
        self._refuse(f"unparsed entity declaration {name}")

    def _external_entity(self, *args: object) -> int:
        self._refuse("external entity")

    def _parse(self, data: bytes, final: bool) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            self.fail(f"line {exc.lineno} column {exc.offset + 1}: {expat.ErrorString(exc.code)}")

    def feed(self, chunk: bytes) -> None:
        self._parse(chunk, False)

    def finish(self, size: int, sha256: str) -> None:
        self._parse(b"", True)
