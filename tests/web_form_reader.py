"""What a browser would post for a form: the fields of an HTML form as the page gives them, read with
the standard library's parser (a unit of pure logic: the browser itself is tests/web's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class FormField:
    tag: str  # input | select | textarea
    type: str  # the input's type ("text", "password", "checkbox", ...), or the tag
    name: str
    value: str  # what the page holds (a select: its selected option, else its first)
    attrs: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    form: str = ""  # the action of the form it is in
    in_label: bool = False  # inside a <label> (labelled by it)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fields: list[FormField] = []
        self.ids: list[str] = []
        self.labels_for: list[str] = []
        self._textarea: FormField | None = None
        self._select: FormField | None = None
        self._selected: str | None = None
        self._form = ""
        self._labels = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._form = found.get("action", "")
        if "id" in found:
            self.ids.append(found["id"])
        if tag == "label":
            self._labels += 1
            if "for" in found:
                self.labels_for.append(found["for"])
        if tag == "input" and "name" in found:
            kind = found.get("type", "text")
            self.fields.append(
                FormField(
                    "input",
                    kind,
                    found["name"],
                    found.get("value", ""),
                    found,
                    form=self._form,
                    in_label=self._labels > 0,
                )
            )
        elif tag == "textarea":
            self._textarea = FormField(
                "textarea",
                "textarea",
                found.get("name", ""),
                "",
                found,
                form=self._form,
                in_label=self._labels > 0,
            )
        elif tag == "select":
            self._select = FormField(
                "select",
                "select",
                found.get("name", ""),
                "",
                found,
                form=self._form,
                in_label=self._labels > 0,
            )
            self._selected = None
        elif tag == "option" and self._select is not None:
            value = found.get("value", "")
            self._select.options.append(value)
            if "selected" in found:
                self._selected = value

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea.value += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._labels = max(0, self._labels - 1)
        if tag == "textarea" and self._textarea is not None:
            self.fields.append(self._textarea)
            self._textarea = None
        elif tag == "select" and self._select is not None:
            options = self._select.options
            self._select.value = (
                self._selected if self._selected is not None else (options[0] if options else "")
            )
            self.fields.append(self._select)
            self._select = None


@dataclass
class Page:
    fields: list[FormField]
    ids: list[str]
    labels_for: list[str]

    def by_name(self) -> dict[str, FormField]:
        named = {f.name: f for f in self.fields}
        assert len(named) == len(self.fields), "a field name is used twice"
        return named

    def unlabelled(self) -> list[str]:
        """The names of the fields a person fills in that no <label> names."""
        return [
            f.name
            for f in self.fields
            if f.type not in ("hidden", "submit")
            and not f.in_label
            and f.attrs.get("id") not in self.labels_for
        ]

    def submit(self, typed: dict[str, str], ticked: set[str] = frozenset()) -> dict[str, str]:  # type: ignore[assignment]
        """The url-encoded fields the browser posts after the user typed `typed` (by field name;
        each must exist) and ticked the checkboxes `ticked`."""
        named = self.by_name()
        unknown = set(typed) - set(named)
        assert not unknown, f"no such fields in the form: {sorted(unknown)}"
        posted: dict[str, str] = {}
        for name, one in named.items():
            if one.type == "checkbox":
                # As the page has it (checked or not), unless typed ("1" ticks, "" unticks) or ticked.
                if name in ticked or typed.get(name, "checked" in one.attrs):
                    posted[name] = one.value or "on"
                continue
            value = typed.get(name, one.value)
            if one.tag == "select":
                assert value in one.options, f"{name}: {value!r} is not one of {one.options}"
            if one.tag == "textarea":
                value = value.replace("\r\n", "\n").replace("\n", "\r\n")  # as browsers send it
            posted[name] = value
        return posted


def read_page(html: str, form: str | None = None) -> Page:
    """The page's fields (only those of the form whose action is `form`, if given)."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    fields = [f for f in reader.fields if form is None or f.form == form]
    assert fields or form is None, f"no form {form!r} in the page"
    return Page(fields, reader.ids, reader.labels_for)
