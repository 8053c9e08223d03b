"""User-provided embeddings: the `embedders` setting, `_vectors` in documents, and the
brute-force cosine ranking behind `vector`, `hybrid` and `/similar`.

Only `source: userProvided` is supported (the devnode never calls a model). Documents keep
their `_vectors` as sent; the engine reads the embeddings of the configured embedders from
it. A semantic score is milli's: `1 - distance` with arroy's cosine distance
`(1 - cos) / 2`, kept at f32 precision, so it depends on the document and the query only.
Documents without an embedding rank after the others with no similarity (score 0), as
milli's `VectorSort` returns them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from miroir_devnode.engine import validation as v
from miroir_devnode.errors import MeiliError

CODE = "invalid_settings_embedders"
SOURCES = ["openAi", "huggingFace", "ollama", "userProvided", "rest", "composite"]
FIELDS = [
    "source",
    "model",
    "revision",
    "pooling",
    "apiKey",
    "dimensions",
    "binaryQuantized",
    "documentTemplate",
    "documentTemplateMaxBytes",
    "url",
    "request",
    "response",
    "headers",
    "searchEmbedder",
    "indexingEmbedder",
    "distribution",
]
USER_PROVIDED_FIELDS = ["source", "dimensions", "distribution", "binaryQuantized"]
VECTORS = "_vectors"
Embeddings = list[list[float]]


# -- settings --


def _embedder(name: str, value: Any) -> dict[str, Any] | None:
    path = f".embedders.{name}"
    if value is None:
        return None
    body = v.check_object(CODE, path, value)
    out: dict[str, Any] = {}
    for field, item in body.items():
        if field not in FIELDS:
            raise v.unknown_field(path, field, FIELDS, CODE)
        where = f"{path}.{field}"
        if item is None:
            out[field] = None
        elif field == "source":
            text = v.check_str(CODE, where, item)
            if text not in SOURCES:
                raise v.unknown_value(CODE, where, text, SOURCES)
            out[field] = text
        elif field == "dimensions":
            if v.check_usize(CODE, where, item) == 0:
                raise MeiliError(CODE, f"`{where}`: `dimensions` cannot be zero")
            out[field] = item
        elif field == "binaryQuantized":
            out[field] = v.check_bool(CODE, where, item)
        elif field == "distribution":
            shift = v.check_object(CODE, where, item)
            for key in shift:
                if key not in ("mean", "sigma"):
                    raise v.unknown_field(where, key, ["mean", "sigma"], CODE)
            out[field] = {k: v.check_float(CODE, f"{where}.{k}", shift[k]) for k in shift}
        else:
            out[field] = item
    source = out.get("source")
    if source is not None:
        check_source(name, out, source)
    return out


def check_source(name: str, embedder: Mapping[str, Any], source: str) -> None:
    """What the devnode can run: userProvided embedders with their dimensions."""
    if source != "userProvided":
        raise MeiliError(
            CODE,
            f"`.embedders.{name}.source`: the Miroir development node only supports "
            "`userProvided` embedders.",
        )
    for field, value in embedder.items():
        if field not in USER_PROVIDED_FIELDS and value is not None:
            # milli's InvalidFieldForSource wording [unverified in its notes].
            raise MeiliError(
                CODE,
                f"`.embedders.{name}`: Field `{field}` unavailable for source `userProvided`.\n"
                f"  - note: available fields for source `userProvided`: "
                + ", ".join(f"`{f}`" for f in USER_PROVIDED_FIELDS),
            )
    if embedder.get("dimensions") is None:
        raise MeiliError(
            CODE,
            f"`.embedders.{name}`: Missing field `dimensions` "
            "(note: this field is mandatory for source `userProvided`)",
        )


def validate_embedders(code: str, path: str, value: Any) -> dict[str, Any]:
    """The submitted `embedders` patch: name -> fields to change, or None to remove."""
    body = v.check_object(code, path, value)
    return {name: _embedder(name, item) for name, item in body.items()}


def apply_embedders(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = {name: dict(fields) for name, fields in current.items()}
    for name, fields in patch.items():
        if fields is None:
            merged.pop(name, None)
            continue
        base = merged.get(name, {})
        if "source" in fields and fields["source"] != base.get("source"):
            base = {}
        updated = {**base, **fields}
        merged[name] = {k: val for k, val in updated.items() if val is not None}
    return dict(sorted(merged.items()))


def check_embedders_when_applied(embedders: Mapping[str, Any]) -> None:
    for name, embedder in embedders.items():
        check_source(name, embedder, embedder.get("source", "openAi"))


# -- documents --


def _bad(doc_id: str, message: str) -> MeiliError:
    return MeiliError(
        "invalid_vectors_type",
        f"Bad embedder configuration in the document with id: `{doc_id}`. {message}",
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _embeddings(doc_id: str, path: str, value: list[Any]) -> Embeddings:
    """An array of floats (one embedding) or an array of arrays of floats."""
    if not value:
        return []
    first = value[0]
    if _number(first):
        for i, item in enumerate(value):
            if not _number(item):
                raise _bad(
                    doc_id,
                    v.type_error("invalid_vectors_type", f"{path}[{i}]", ["float"], item).message,
                )
        return [[float(x) for x in value]]
    if not isinstance(first, list):
        error = v.type_error("invalid_vectors_type", f"{path}[0]", ["float", "array"], first)
        raise _bad(doc_id, error.message)
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, list):
            raise _bad(
                doc_id,
                v.type_error("invalid_vectors_type", f"{path}[{i}]", ["array"], item).message,
            )
        for j, x in enumerate(item):
            if not _number(x):
                raise _bad(
                    doc_id,
                    v.type_error("invalid_vectors_type", f"{path}[{i}][{j}]", ["float"], x).message,
                )
        out.append([float(x) for x in item])
    return out


def _entry(doc_id: str, name: str, value: Any) -> Embeddings:
    path = f"._vectors.{name}"
    if value is None:
        return []
    if isinstance(value, list):
        return _embeddings(doc_id, path, value)
    if isinstance(value, dict):
        for field in value:
            if field not in ("regenerate", "embeddings"):
                raise _bad(
                    doc_id,
                    f"Unexpected field `{path}.{field}`\n"
                    "  - note: the allowed fields are `regenerate` and `embeddings`",
                )
        if "regenerate" not in value:
            raise _bad(
                doc_id,
                f"Missing field `{path}.regenerate`\n  - note: `{path}` must be an array of "
                "floats, an array of arrays of floats, or an object with field `regenerate`",
            )
        if not isinstance(value["regenerate"], bool):
            raise _bad(
                doc_id,
                f"Could not parse `{path}.regenerate`: invalid type: "
                f"{_serde_kind(value['regenerate'])}, expected a boolean",
            )
        embeddings = value.get("embeddings")
        if embeddings is None:
            return []
        if not isinstance(embeddings, list):
            error = v.type_error(
                "invalid_vectors_type", f"{path}.embeddings", ["null", "array"], embeddings
            )
            raise _bad(doc_id, error.message)
        return _embeddings(doc_id, f"{path}.embeddings", embeddings)
    kind = {"boolean": "boolean", "string": "string", "float": "number"}.get(
        v.kind(value), "integer"
    )
    shown = value if isinstance(value, str) else orjson.dumps(value).decode()
    raise _bad(
        doc_id,
        f"Expected `{path}` to be an array of floats, an array of arrays of floats, or an "
        f"object with at least the field `regenerate`, but got the {kind} `{shown}`",
    )


def _serde_kind(value: Any) -> str:
    if isinstance(value, str):
        return f"string {orjson.dumps(value).decode()}"
    if isinstance(value, int | float):
        return f"{'floating point' if isinstance(value, float) else 'integer'} `{value}`"
    if isinstance(value, list):
        return "sequence"
    return "map" if isinstance(value, dict) else "null"


def parse_document(
    doc_id: str, document: Mapping[str, Any], embedders: Mapping[str, Any]
) -> dict[str, Embeddings]:
    """Embeddings of the configured embedders a document provides (strict: task errors)."""
    if VECTORS not in document or not embedders:
        return {}
    raw = document[VECTORS]
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MeiliError(
            "invalid_vectors_type",
            f"The `_vectors` field in the document with id: `{doc_id}` is not an object. Was "
            "expecting an object with a key for each embedder with manually provided vectors, "
            f"but instead got `{orjson.dumps(raw).decode()}`",
        )
    found: dict[str, Embeddings] = {}
    for name, embedder in embedders.items():
        if name not in raw:
            continue
        embeddings = _entry(doc_id, name, raw[name])
        dimensions = embedder.get("dimensions")
        for position, embedding in enumerate(embeddings):
            if len(embedding) != dimensions:
                raise MeiliError(
                    "invalid_vector_dimensions",
                    f"Invalid vector dimensions in document with id `{doc_id}` in "
                    f"`._vectors.{name}`.\n  - note: embedding #{position} has dimensions "
                    f"{len(embedding)}\n  - note: embedder `{name}` requires {dimensions}",
                )
        found[name] = embeddings
    return found


def read_embeddings(
    document: Mapping[str, Any], embedders: Mapping[str, Any]
) -> dict[str, Embeddings]:
    """`parse_document` for stored documents (already checked): never raises."""
    try:
        return parse_document("", document, embedders)
    except MeiliError:
        return {}


def missing_vectors(name: str, doc_ids: list[str]) -> MeiliError:
    others = f" and at least {len(doc_ids) - 1} other document(s)" if len(doc_ids) > 1 else ""
    return MeiliError(
        "vector_embedding_error",
        f"While embedding documents for embedder `{name}`: no vectors provided for document "
        f"`{doc_ids[0]}`{others}\n- Note: `{name}` has `source: userProvided`, so documents "
        f"must provide embeddings as an array in `_vectors.{name}`.\n"
        f"- Hint: opt-out for a document with `_vectors.{name}: null`",
    )


def shown_vectors(
    document: Mapping[str, Any], embedders: Mapping[str, Any]
) -> dict[str, Any] | None:
    """`_vectors` as `retrieveVectors: true` shows it; None when there is nothing to show."""
    raw = document.get(VECTORS)
    shown: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    found = read_embeddings(document, embedders)
    for name in embedders:
        shown[name] = {"embeddings": found.get(name, []), "regenerate": False}
    if not shown and VECTORS not in document:
        return None
    return shown if shown or isinstance(raw, dict) else raw


# -- ranking --


def f32(value: float) -> float:
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def similarity(query: list[float], query_norm: float, embedding: list[float]) -> float:
    """milli's semantic score of one embedding: 1 - (1 - cos) / 2 at f32 precision."""
    norm = math.sqrt(sum(x * x for x in embedding))
    product = query_norm * norm
    if product <= 1.1920929e-07:
        distance = 0.0
    else:
        dot = sum(a * b for a, b in zip(query, embedding, strict=True))
        cos = max(-1.0, min(1.0, dot / product))
        distance = f32((1.0 - cos) / 2.0)
    return f32(1.0 - distance)


def rank(
    query: list[float],
    vectors: Mapping[int, Embeddings],
    candidates: Iterable[int],
) -> list[tuple[int, float | None]]:
    """Every candidate best first: by similarity (the best of a document's embeddings),
    then the ones without an embedding; ties in internal id order."""
    norm = math.sqrt(sum(x * x for x in query))
    scored: list[tuple[int, float]] = []
    without: list[int] = []
    for doc in candidates:
        embeddings = vectors.get(doc)
        if embeddings:
            scored.append((doc, max(similarity(query, norm, e) for e in embeddings)))
        else:
            without.append(doc)
    scored.sort(key=lambda item: (-item[1], item[0]))
    ranked: list[tuple[int, float | None]] = list(scored)
    ranked.extend((doc, None) for doc in sorted(without))
    return ranked
