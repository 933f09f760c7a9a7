"""The checks every import of users' networks shares: the ``{id: network}`` mapping, the
``{id: dict}`` metadata, and metadata merged over the defaults a conversion derives.

A leaf of the import modules (``torch_import``, ``torch_import_ctrnn``, ``array_import``,
``module_member``), so that none of them imports another for these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dynamo_lightning.population.member import check_member_id

#: Metadata keys that are facts of the networks: a metadata dict may repeat them, not contradict.
DERIVED = ("architecture", "hidden_size")


def check_import(members: object, metadata: object, call: str, form: str
                 ) -> Mapping[str, Mapping[str, Any]]:
    """Check the arguments of ``call`` (``from_torch``, ``from_arrays``) before converting.

    Args:
        members: must be a non-empty mapping with file-name-safe string ids.
        metadata: None or a mapping whose ids are all in ``members``.
        call: the entry point's name, for the messages.
        form: what ``members`` maps ids to, in words (``"(rnn, readout)"``).

    Returns:
        ``metadata`` as a mapping (empty for None).

    Raises:
        ValueError: naming the bad container, id or metadata key.
    """
    if not isinstance(members, Mapping) or not members:
        raise ValueError(f"{call} takes a non-empty dict {{id: {form}}}, got "
                         f"{type(members).__name__} {members!r:.80}")
    for member_id in members:
        problem = check_member_id(member_id)
        if problem:
            raise ValueError(problem)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be None or a dict {{id: dict}}, got "
                         f"{type(metadata).__name__}")
    unknown = sorted(set(metadata) - set(members), key=str)
    if unknown:
        raise ValueError(f"metadata given for unknown member id(s) {unknown} "
                         f"(member ids: {list(members)})")
    return metadata


def merge_metadata(member_id: str, defaults: Mapping[str, Any], extra: object,
                   source: str) -> dict[str, Any]:
    """``defaults`` describing the conversion, with the user's ``extra`` merged over them.

    Args:
        member_id: the member, for the messages.
        defaults: what the conversion derived (``architecture``, ``hidden_size``, ...).
        extra: the user's metadata dict for this member, or None.
        source: what ``defaults`` were read from, in words (``"the GRU module"``).

    Raises:
        ValueError: ``extra`` is not a dict, or contradicts a ``DERIVED`` key.
    """
    if extra is None:
        return dict(defaults)
    if not isinstance(extra, Mapping):
        raise ValueError(f"member {member_id!r}: metadata must be a dict, got "
                         f"{type(extra).__name__}")
    for key in DERIVED:
        if key in extra and key in defaults and extra[key] != defaults[key]:
            raise ValueError(f"member {member_id!r}: metadata says {key}={extra[key]!r} but "
                             f"{source} gives {defaults[key]!r}")
    return {**defaults, **extra}
