"""X12 and EDIFACT interchanges built from parts, for the edi-route tests."""

from __future__ import annotations

from collections.abc import Sequence


def isa_header(
    sender: str = "ACME",
    receiver: str = "GLOBEX",
    control: int = 1,
    sep: str = "*",
    comp: str = ">",
    term: str = "~",
) -> str:
    fields = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        sender.ljust(15),
        "ZZ",
        receiver.ljust(15),
        "240115",
        "1230",
        "U",
        "00401",
        f"{control:09d}",
        "0",
        "P",
        comp,
    ]
    header = sep.join(fields) + term
    assert len(header) == 106, header
    return header


def x12(
    groups: Sequence[tuple[str, Sequence[str]]] = (("PO", ("850",)),),
    *,
    sender: str = "ACME",
    receiver: str = "GLOBEX",
    control: int = 1,
    sep: str = "*",
    comp: str = ">",
    term: str = "~",
    newline: str = "\n",
) -> bytes:
    """One interchange: each group a (GS01, [ST01, ...]) pair, each set three segments long."""
    segments = [isa_header(sender, receiver, control, sep, comp, term)[:-1]]
    set_number = 0
    for group_number, (functional_id, sets) in enumerate(groups, 1):
        segments.append(
            sep.join(
                ["GS", functional_id, sender, receiver, "20240115", "1230", str(group_number), "X", "004010"]
            )
        )
        for st in sets:
            set_number += 1
            ref = f"{set_number:04d}"
            segments += [
                sep.join(["ST", st, ref]),
                sep.join(["BEG", "00", "SA", f"PO-{set_number}", "", "20240115"]),
                sep.join(["SE", "3", ref]),
            ]
        segments.append(sep.join(["GE", str(len(sets)), str(group_number)]))
    segments.append(sep.join(["IEA", str(len(groups)), f"{control:09d}"]))
    return "".join(segment + term + newline for segment in segments).encode()


def edifact(
    messages: Sequence[str] = ("ORDERS",),
    *,
    sender: str = "5412345678908",
    recipient: str = "8798765432106",
    control: str = "778",
    una: str | None = ":+.? '",
    grouped: bool = False,
    newline: str = "\n",
) -> bytes:
    """One interchange of messages (each three segments), with the delimiters `una` announces
    (None: no UNA, the defaults). `sender` and `recipient` are written as given (escape yourself)."""
    delimiters = una if una is not None else ":+.? '"
    comp, sep, rel, term = delimiters[0], delimiters[1], delimiters[3], delimiters[5]
    segments = [
        f"UNB{sep}UNOC{comp}3{sep}{sender}{comp}14{sep}{recipient}{comp}14{sep}240115{comp}1230{sep}{control}"
    ]
    if grouped:
        segments.append(
            f"UNG{sep}{messages[0]}{sep}{sender}{sep}{recipient}{sep}240115{comp}1230{sep}42{sep}UN{sep}D{comp}96A"
        )
    for number, message in enumerate(messages, 1):
        ref = f"M{number:05d}"
        segments += [
            f"UNH{sep}{ref}{sep}{message}{comp}D{comp}96A{comp}UN",
            f"BGM{sep}220{sep}PO{rel}{sep}{number}{sep}9",
            f"UNT{sep}3{sep}{ref}",
        ]
    if grouped:
        segments.append(f"UNE{sep}{len(messages)}{sep}42")
    segments.append(f"UNZ{sep}{1 if grouped else len(messages)}{sep}{control}")
    head = f"UNA{una}{newline}" if una is not None else ""
    return (head + "".join(segment + term + newline for segment in segments)).encode()
