"""The REST contract: an OpenAPI 3.0 document built from the transcoder's own bindings.

The document is derived from the same `Binding` list the transcoder routes with
(integration_hub/http/transcoder.py), which is derived from the descriptors and their
google.api.http annotations, so the published contract and the served routes cannot
drift. The hub serves it at GET /openapi.json; `cmd/gen-protos.sh` writes it to
protos/openapi.json (committed) and `--check` fails when that file is stale.

OpenAPI 3.0.3 rather than 3.1: client generators (openapi-generator, oapi-codegen,
openapi-typescript...) support 3.0 best, and nothing of the proto3 JSON mapping needs
3.1 (no field is documented as nullable). Schemas follow the proto3 JSON mapping as
json_format prints it (the hub prints with the proto field names and every field
without presence); see DESCRIPTION for what else it accepts.

Run `python -m integration_hub.http.openapi` to print the document.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import grpc
import orjson
from google.api import field_behavior_pb2
from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor

import integration_hub.v1
from integration_hub.errors import ERROR_DOMAIN, HTTP_STATUS_BY_CODE
from integration_hub.http.transcoder import Binding, Transcoder, compile_segments
from integration_hub.rpc import Method, _method_from_descriptor
from integration_hub.v1 import common_pb2

OPENAPI_VERSION = "3.0.3"
_OWN_PACKAGE = "integration_hub.v1."
_SECURITY_SCHEME = "hubToken"
NDJSON = "application/x-ndjson"
# A message descriptor: protobuf's Python and upb classes differ in type, not in use.
Descriptor = Any
Field = Any


def api_services() -> list[ServiceDescriptor]:
    """Every service of the generated API package (integration_hub/v1/*_pb2), by name.

    The hub binds each of them (integration_hub/hub.py); the test that compares the
    committed document with the one a live hub serves keeps the two in step.
    """
    services = []
    for module in pkgutil.iter_modules(integration_hub.v1.__path__):
        if module.name.endswith("_pb2"):
            generated = importlib.import_module(f"integration_hub.v1.{module.name}")
            services.extend(generated.DESCRIPTOR.services_by_name.values())
    return sorted(services, key=lambda service: service.full_name)


DESCRIPTION = """\
The REST mapping of the integration-hub gRPC API (protos/integration_hub/v1), generated
from the descriptors and their google.api.http annotations: the same bindings the hub's
transcoder routes with. Every operation needs `Authorization: Bearer <hub token>`; the
scopes it accepts are in its description and in `x-hub-scopes`.

JSON is the proto3 JSON mapping as protobuf's json_format prints it: the proto field
names (snake_case), every field without presence always present (zero values, empty
lists and maps included), fields with presence (messages, `optional`, oneof members)
only when set; 64-bit integers as strings, enums as their names (a number the hub does
not know as that number), float and double as numbers or "NaN"/"Infinity"/"-Infinity",
bytes as base64, Timestamp as RFC 3339, Duration as seconds ("1.5s"), FieldMask as one
comma-separated string, Struct as a JSON object. Requests are read by json_format too,
which also accepts the lowerCamelCase JSON names, numbers for 64-bit integers, numeric
strings for 32-bit ones, enum numbers, and null for "unset"; the schemas here give the
canonical form. Query parameters take the proto field names (lowerCamelCase accepted),
enums by name, Timestamp and Duration in their JSON form, and repeat for a list.

Server-streaming RPCs answer `application/x-ndjson`: one `{"result": ...}` object per
line, and an `{"error": ...}` line if the call fails after the first result. Streaming
RPCs without a REST mapping (client or bidirectional streaming) are gRPC only and not in
this document{unmapped}.

Errors carry the google.rpc.Status JSON shape (`Error`): the HTTP status, the gRPC status
name, a message, and an ErrorInfo detail (domain "integration-hub", a stable `reason` of
the ErrorReason enum) plus a RetryInfo when a retry is worth it.
"""

# The error statuses every operation documents, with what they mean. Which ones an
# operation really answers depends on its service code; these are the hub's whole map
# (integration_hub/errors.py), minus OK, 499 (a client that hung up sees nothing) and 501:
# UNIMPLEMENTED is only a method a path does not take (ROUTE_NOT_FOUND), never a documented
# operation's answer; a provider without the capability is FAILED_PRECONDITION, a 400.
_ERRORS: dict[str, str] = {
    "400": (
        "The request is invalid (INVALID_FIELD names the field), or a precondition failed"
        " (CAPABILITY_NOT_SUPPORTED: the credential's provider does not offer this capability)."
    ),
    "401": "The hub token is missing or invalid, or the provider rejected the credential.",
    "403": "The token lacks the scope, or the provider refused the call.",
    "404": "No such credential, call, campaign, route or provider resource.",
    "409": "A duplicate name, or a concurrent change: retry with fresh data.",
    "413": "The request body is larger than the hub accepts.",
    "429": "A rate limit (the hub's or the provider's) or a full queue; RetryInfo says when to retry.",
    "500": "An unexpected fault in the hub; the request id leads to its logs.",
    "503": "The hub's store, or the provider, is unavailable; or every target's breaker is open.",
    "504": "The provider, or the call's deadline (X-Timeout), ran out of time.",
}


def api_methods() -> list[Method]:
    """The API's methods from the descriptors alone, for the document written offline.

    Their handlers are never called: the document needs only the descriptors.
    """
    return [
        _method_from_descriptor(method, _not_served)
        for service in api_services()
        for method in service.methods
    ]


def _not_served(*_: object) -> None:
    raise RuntimeError("a descriptor-only method (the OpenAPI generator's) cannot be called")


def build_document(bindings: Sequence[Binding], unmapped: Iterable[str] = ()) -> dict[str, Any]:
    """The OpenAPI document of these bindings; `unmapped` names the RPCs left out."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for binding in bindings:
        base_id = f"{binding.method.service.rsplit('.', 1)[-1]}_{binding.method.name}"
        counts[base_id] = counts.get(base_id, 0) + 1
        # grpc-gateway's convention: an additional binding's id gets its ordinal.
        operation_id = base_id if counts[base_id] == 1 else f"{base_id}{counts[base_id]}"
        path = _openapi_path(binding.template.path)
        paths.setdefault(path, {})[binding.http_method.lower()] = _operation(binding, operation_id, schemas)
    left_out = sorted(name.lstrip("/").replace("/", ".") for name in unmapped)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "integration-hub",
            "version": "v1",
            "description": DESCRIPTION.replace("{unmapped}", f" ({', '.join(left_out)})" if left_out else ""),
        },
        "tags": sorted(
            ({"name": tag} for tag in {b.method.service.rsplit(".", 1)[-1] for b in bindings}),
            key=lambda tag: tag["name"],
        ),
        "paths": paths,
        "components": {
            "schemas": {**schemas.defined, **_error_schemas()},
            "responses": {status: _error_response(text) for status, text in _ERRORS.items()},
            "securitySchemes": {
                _SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "ihub_...",
                    "description": "A hub token (integration-hub tokens create); its scopes decide.",
                }
            },
        },
        "security": [{_SECURITY_SCHEME: []}],
    }


def document_bytes(bindings: Sequence[Binding], unmapped: Iterable[str] = ()) -> bytes:
    """The document as committed: sorted keys, two-space indent, a final newline."""
    return (
        orjson.dumps(build_document(bindings, unmapped), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
        + b"\n"
    )


def committed_document() -> bytes:
    """The document of the API's descriptors (what protos/openapi.json holds)."""
    methods = api_methods()
    return document_bytes(Transcoder(methods).bindings, (m.full_name for m in methods if m.http_rule is None))


def _openapi_path(template: str) -> str:
    # "{name=things/*}" -> "{name}": OpenAPI has no variable patterns (the parameter's schema has it).
    return re.sub(r"\{([^}=]+)=[^}]*\}", r"{\1}", template)


def _operation(binding: Binding, operation_id: str, schemas: _Schemas) -> dict[str, Any]:
    method = binding.method
    scopes = sorted(method.allowed_scopes)
    request = method.request_type.DESCRIPTOR
    path_fields = binding.bound_fields()
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [method.service.rsplit(".", 1)[-1]],
        "summary": f"{method.service}.{method.name}",
        "description": f"gRPC `{method.full_name}`. Scopes: {', '.join(scopes)} (any one).",
        "x-hub-scopes": scopes,
        "parameters": [
            *(_path_parameter(request, binding, path) for path in binding.template.variables.values()),
            *_query_parameters(binding),
        ],
        "responses": {"200": _success(binding, schemas), **_error_refs()},
    }
    if binding.body:
        operation["requestBody"] = {
            "required": False,  # an empty body is an empty message
            "content": {"application/json": {"schema": _body_schema(binding, request, path_fields, schemas)}},
        }
    if not operation["parameters"]:
        del operation["parameters"]
    return operation


def _error_refs() -> dict[str, Any]:
    return {status: {"$ref": f"#/components/responses/{status}"} for status in _ERRORS}


def _success(binding: Binding, schemas: _Schemas) -> dict[str, Any]:
    response = binding.method.response_type.DESCRIPTOR
    if binding.response_body:
        schema = schemas.field(response.fields_by_name[binding.response_body], output=True)
    else:
        schema = schemas.ref(response, output=True)
    if binding.method.server_streaming:
        line = {
            "type": "object",
            "description": "One line of the stream: a result, or the error that ended it.",
            "properties": {"result": schema, "error": {"$ref": "#/components/schemas/Status"}},
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
        }
        return {
            "description": "Newline-delimited JSON, one object per line.",
            "content": {NDJSON: {"schema": line}},
        }
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _body_schema(
    binding: Binding, request: Descriptor, path_fields: set[str], schemas: _Schemas
) -> dict[str, Any]:
    if binding.body != "*":
        return schemas.field(request.fields_by_name[binding.body], output=False)
    if not path_fields & set(request.fields_by_name):
        return schemas.ref(request, output=False)
    # The fields bound by the path are not in the body (the path's value would win).
    return schemas.message(request, output=False, leave_out=path_fields)


def _path_parameter(request: Descriptor, binding: Binding, field_path: str) -> dict[str, Any]:
    schema = _url_schema(_resolve(request, field_path))
    written = re.search(r"\{" + re.escape(field_path) + r"=([^}]+)\}", binding.template.path)
    if written:
        # A variable with its own segments ("{name=things/*}"): the same regex the transcoder matches.
        schema["pattern"] = f"^{compile_segments(written.group(1))}$"
    return {"name": field_path, "in": "path", "required": True, "schema": schema}


def _resolve(message: Descriptor, field_path: str) -> Field:
    names = field_path.split(".")
    for name in names[:-1]:
        sub = message.fields_by_name[name].message_type
        if sub is None:
            raise ValueError(f"{message.full_name}: {field_path} goes through a non-message field")
        message = sub
    return message.fields_by_name[names[-1]]


def _query_parameters(binding: Binding) -> list[dict[str, Any]]:
    if binding.body == "*":
        return []  # the transcoder refuses query parameters when the body holds every field
    consumed = binding.bound_fields() | ({binding.body} if binding.body else set())
    request = binding.method.request_type.DESCRIPTOR
    parameters = []
    for name, schema in _url_fields(request, "", frozenset({request.full_name})):
        if name.split(".")[0] in consumed:
            continue
        # A REQUIRED top-level field the service checks (a nested one's parent may be unset).
        field = request.fields_by_name.get(name)
        required = field is not None and field_behavior_pb2.REQUIRED in _behaviors(field)
        parameter = {
            "name": name,
            "in": "query",
            "required": required,
            "schema": _non_empty(schema) if required else schema,
        }
        if schema.get("type") == "array":
            parameter.update(style="form", explode=True)
        parameters.append(parameter)
    return parameters


def _url_fields(
    message: Descriptor, prefix: str, seen: frozenset[str]
) -> Iterable[tuple[str, dict[str, Any]]]:
    """The fields a URL can set, as (dotted name, schema): messages flattened, maps left out."""
    for field in message.fields:
        name = prefix + field.name
        if _is_map(field) or field.type == FieldDescriptor.TYPE_BYTES:
            continue  # the transcoder refuses maps and cannot take bytes from a URL
        kind = field.message_type.full_name if field.message_type is not None else ""
        if field.message_type is not None and kind not in _URL_WELL_KNOWN:
            if field.is_repeated or kind in seen or kind.startswith("google.protobuf."):
                continue  # a repeated or recursive message, or a Struct, cannot come from a URL
            yield from _url_fields(field.message_type, name + ".", seen | {kind})
            continue
        yield name, _url_schema(field)


_URL_WELL_KNOWN = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
    | {
        f"google.protobuf.{n}Value"
        for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String")
    }
)


def _url_schema(field: Field) -> dict[str, Any]:
    """A query or path value's schema: the transcoder's reading of a URL string."""
    if field.message_type is not None:
        kind = field.message_type.full_name
        if kind in _TEXT_WELL_KNOWN:
            item = dict(_TEXT_WELL_KNOWN[kind])
        else:  # a wrapper: its value's form
            item = _url_schema(field.message_type.fields_by_name["value"])
    elif field.enum_type is not None:
        item = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    elif field.type in _FLOATS:
        item = {"type": "number", "format": _FLOATS[field.type]}
    else:
        item = dict(_URL_SCALARS.get(field.type, {"type": "string"}))
    if field.is_repeated:
        return {"type": "array", "items": item}
    return item


_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
_INT64_RANGE = {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1}
_UINT64_RANGE = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
_URL_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    **{
        t: _INT32
        for t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32)
    },
    **{t: _UINT32 for t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32)},
    **{
        t: _INT64_RANGE
        for t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64)
    },
    **{t: _UINT64_RANGE for t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)},
}
_FLOATS = {FieldDescriptor.TYPE_DOUBLE: "double", FieldDescriptor.TYPE_FLOAT: "float"}
_DURATION = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$", "example": "1.5s"}
_TEXT_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": _DURATION,
    "google.protobuf.FieldMask": {"type": "string", "description": "Field paths, comma-separated."},
}


def _is_map(field: Field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _behaviors(field: Field) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


class _Schemas:
    """components/schemas, filled as operations refer to messages.

    A message has two schemas: what the hub prints (its name; every field without presence
    is required, since json_format always prints it) and what a request may hold (its name
    + "Input"; only the REQUIRED fields are required, OUTPUT_ONLY fields left out).
    """

    def __init__(self) -> None:
        self.defined: dict[str, dict[str, Any]] = {}

    def ref(self, message: Descriptor, *, output: bool) -> dict[str, Any]:
        inline = _WELL_KNOWN.get(message.full_name)
        if inline is not None:
            return dict(inline)
        name = _schema_name(message, output)
        if name not in self.defined:
            self.defined[name] = {}  # reserved first: a recursive message refers to itself
            self.defined[name] = self.message(message, output=output)
        return {"$ref": f"#/components/schemas/{name}"}

    def message(
        self, message: Descriptor, *, output: bool, leave_out: Collection[str] = ()
    ) -> dict[str, Any]:
        skip = field_behavior_pb2.INPUT_ONLY if output else field_behavior_pb2.OUTPUT_ONLY
        fields = [f for f in message.fields if f.name not in leave_out and skip not in _behaviors(f)]
        if output:
            required = [f.name for f in fields if not f.has_presence]
        else:
            required = [f.name for f in fields if field_behavior_pb2.REQUIRED in _behaviors(f)]
        properties = {f.name: self.field(f, output=output) for f in fields}
        if not output:
            for name in required:
                # REQUIRED means set to a value other than the zero one (AIP-203), which the
                # service checks: not "", not [], not {}.
                properties[name] = _non_empty(properties[name])
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        exclusive = [
            [f.name for f in oneof.fields if f in fields] for oneof in message.oneofs if len(oneof.fields) > 1
        ]
        pairs = [
            {"required": [a, b]} for names in exclusive for i, a in enumerate(names) for b in names[i + 1 :]
        ]
        if pairs:
            # A oneof: at most one of its members is set (json_format refuses two).
            schema["not"] = {"anyOf": pairs}
        return schema

    def field(self, field: Field, *, output: bool) -> dict[str, Any]:
        if _is_map(field):
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value, output)}
        item = self._single(field, output)
        return {"type": "array", "items": item} if field.is_repeated else item

    def _single(self, field: Field, output: bool) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type, output=output)
        if field.enum_type is not None:
            if field.enum_type.full_name == "google.protobuf.NullValue":
                return {"nullable": True, "enum": [None]}
            names = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
            # An open enum: a number the hub does not know is kept and printed as that number.
            return {"anyOf": [names, {"type": "integer", "format": "int32"}]}
        return dict(_JSON_SCALARS[field.type])


def _non_empty(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and "format" not in schema:
        return {**schema, "minLength": 1}
    if kind == "array":
        return {**schema, "minItems": 1}
    if kind == "object" and "$ref" not in schema:
        return {**schema, "minProperties": 1}
    return schema


def _schema_name(message: Descriptor, output: bool) -> str:
    name = message.full_name.removeprefix(_OWN_PACKAGE)
    return name if output else f"{name}Input"


_JSON_FLOAT = {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}
_INT64_STRING = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_UINT64_STRING = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
_JSON_SCALARS: dict[int, dict[str, Any]] = {
    **_URL_SCALARS,
    FieldDescriptor.TYPE_DOUBLE: {"anyOf": [{"type": "number", "format": "double"}, _JSON_FLOAT]},
    FieldDescriptor.TYPE_FLOAT: {"anyOf": [{"type": "number", "format": "float"}, _JSON_FLOAT]},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    **{
        t: _INT64_STRING
        for t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64)
    },
    **{t: _UINT64_STRING for t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)},
}


def _wrapper(value_type: int) -> dict[str, Any]:
    return dict(_JSON_SCALARS[value_type])


# Well-known types have JSON forms of their own, inlined where used.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    **_TEXT_WELL_KNOWN,
    "google.protobuf.Struct": {"type": "object", "additionalProperties": {}},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": {},
    },
    "google.protobuf.DoubleValue": _wrapper(FieldDescriptor.TYPE_DOUBLE),
    "google.protobuf.FloatValue": _wrapper(FieldDescriptor.TYPE_FLOAT),
    "google.protobuf.Int64Value": _wrapper(FieldDescriptor.TYPE_INT64),
    "google.protobuf.UInt64Value": _wrapper(FieldDescriptor.TYPE_UINT64),
    "google.protobuf.Int32Value": _wrapper(FieldDescriptor.TYPE_INT32),
    "google.protobuf.UInt32Value": _wrapper(FieldDescriptor.TYPE_UINT32),
    "google.protobuf.BoolValue": _wrapper(FieldDescriptor.TYPE_BOOL),
    "google.protobuf.StringValue": _wrapper(FieldDescriptor.TYPE_STRING),
    "google.protobuf.BytesValue": _wrapper(FieldDescriptor.TYPE_BYTES),
}


def _error_schemas() -> dict[str, dict[str, Any]]:
    reasons = [
        name.removeprefix("ERROR_REASON_")
        for name in common_pb2.ErrorReason.keys()  # noqa: SIM118 (an enum wrapper, not a dict)
        if name != "ERROR_REASON_UNSPECIFIED"
    ]
    statuses = sorted({code.name for code in HTTP_STATUS_BY_CODE if code != grpc.StatusCode.OK})
    return {
        "Error": {
            "type": "object",
            "description": "An error answer: google.rpc.Status as JSON, under `error`.",
            "properties": {"error": {"$ref": "#/components/schemas/Status"}},
            "required": ["error"],
            "additionalProperties": False,
        },
        "Status": {
            "type": "object",
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status."},
                "status": {"type": "string", "enum": statuses, "description": "The gRPC status code."},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/ErrorInfo"},
                            {"$ref": "#/components/schemas/RetryInfo"},
                        ]
                    },
                },
            },
            "required": ["code", "status", "message", "details"],
            "additionalProperties": False,
        },
        "ErrorInfo": {
            "type": "object",
            "properties": {
                "@type": {"type": "string", "enum": ["type.googleapis.com/google.rpc.ErrorInfo"]},
                "reason": {"type": "string", "enum": reasons},
                "domain": {"type": "string", "enum": [ERROR_DOMAIN]},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["@type", "reason", "domain", "metadata"],
            "additionalProperties": False,
        },
        "RetryInfo": {
            "type": "object",
            "properties": {
                "@type": {"type": "string", "enum": ["type.googleapis.com/google.rpc.RetryInfo"]},
                "retry_delay": _DURATION,
            },
            "required": ["@type", "retry_delay"],
            "additionalProperties": False,
        },
    }


def _error_response(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def main() -> int:
    sys.stdout.buffer.write(committed_document())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
