"""REST from the google.api.http annotations, like grpc-gateway: one generic
transcoder driven by the descriptors, no hand-written route per RPC.

Implements the HttpRule mapping of google/api/http.proto: path templates with
variables ({id}, {name=things/*}, ** and a trailing :verb), body "*" or a field,
the remaining fields from the query string, response_body, and
additional_bindings. It is framework-free: match() takes a method and a path,
build_request() a query and a body; the HTTP app wires it to the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from google.api import http_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from integration_hub.errors import invalid_field
from integration_hub.rpc import Message, Method


@dataclass(frozen=True, slots=True)
class _PathTemplate:
    # The template as written in the annotation ("/v1/credentials/{id}:verify"): the OpenAPI
    # document (integration_hub/http/openapi.py) publishes it.
    path: str
    regex: re.Pattern[str]
    # Regex group name -> request field path ("id", "parent.name").
    variables: dict[str, str]
    # Literal prefix used to order matching: more literal segments first.
    literal_weight: int


@dataclass(frozen=True, slots=True)
class Binding:
    method: Method
    http_method: str
    template: _PathTemplate
    body: str  # "", "*", or a field name
    response_body: str  # "" or a field name

    def bound_fields(self) -> set[str]:
        return {path.split(".")[0] for path in self.template.variables.values()}


_SEGMENT_REGEX = {"*": r"[^/]+", "**": r".+"}


def compile_segments(segments: str) -> str:
    """A template's literal or variable segments ("things/*") as a regex."""
    return "/".join(_SEGMENT_REGEX.get(s, re.escape(s)) for s in segments.split("/"))


def compile_template(template: str) -> _PathTemplate:
    """ "/v1/credentials/{id}:verify" -> a regex with one named group per variable."""
    if not template.startswith("/"):
        raise ValueError(f"http path template must start with '/': {template!r}")
    written = template
    verb = ""
    last = template.rsplit("/", 1)[-1]
    if ":" in last and "}" not in last.split(":")[-1]:
        template, verb = template.rsplit(":", 1)
    variables: dict[str, str] = {}
    pattern = []
    literal_weight = 0
    position = 0
    for match in re.finditer(r"\{([^}=]+)(?:=([^}]+))?\}", template):
        literal = template[position : match.start()]
        pattern.append(compile_segments(literal) if literal else "")
        literal_weight += literal.count("/") + sum(c.isalnum() for c in literal)
        group = f"v{len(variables)}"
        variables[group] = match.group(1)
        pattern.append(f"(?P<{group}>{compile_segments(match.group(2)) if match.group(2) else '[^/]+'})")
        position = match.end()
    tail = template[position:]
    pattern.append(compile_segments(tail) if tail else "")
    literal_weight += sum(c.isalnum() for c in tail)
    if verb:
        pattern.append(":" + re.escape(verb))
        literal_weight += len(verb)
    return _PathTemplate(written, re.compile("^" + "".join(pattern) + "$"), variables, literal_weight)


def _bindings_of(method: Method, rule: http_pb2.HttpRule) -> Iterable[Binding]:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError(f"{method.full_name}: http rule has no pattern")
    if kind == "custom":
        http_method, path = rule.custom.kind.upper(), rule.custom.path
    else:
        http_method, path = kind.upper(), getattr(rule, kind)
    yield Binding(method, http_method, compile_template(path), rule.body, rule.response_body)
    for extra in rule.additional_bindings:
        yield from _bindings_of(method, extra)


class Transcoder:
    def __init__(self, methods: Iterable[Method]) -> None:
        bindings = [b for m in methods if m.http_rule is not None for b in _bindings_of(m, m.http_rule)]
        # Most specific templates first, so "/v1/x/{id}:verify" wins over "/v1/x/{id}".
        bindings.sort(key=lambda b: -b.template.literal_weight)
        self._bindings = bindings

    @property
    def bindings(self) -> Sequence[Binding]:
        return self._bindings

    def match(self, http_method: str, path: str) -> tuple[Binding, dict[str, str]] | None:
        """The binding for this request and its path variables; None if no route."""
        for binding in self._bindings:
            if binding.http_method != http_method:
                continue
            found = binding.template.regex.match(path)
            if found:
                values = {binding.template.variables[g]: v for g, v in found.groupdict().items()}
                return binding, values
        return None

    def allowed_methods(self, path: str) -> list[str]:
        return sorted({b.http_method for b in self._bindings if b.template.regex.match(path)})


def build_request(
    binding: Binding, path_values: Mapping[str, str], query: Iterable[tuple[str, str]], body: bytes
) -> Message:
    request = binding.method.request_type()
    if binding.body:
        _merge_body(request, binding.body, body)
    consumed = binding.bound_fields() | ({binding.body} if binding.body not in ("", "*") else set())
    for key, value in query:
        if binding.body == "*":
            raise invalid_field(
                key, "query parameters are not accepted here: send every field in the JSON body"
            )
        if key.split(".")[0] in consumed:
            raise invalid_field(key, "is bound by the path or body and cannot be set in the query")
        _set_field_path(request, key, value, source="query")
    for field_path, value in path_values.items():
        _set_field_path(request, field_path, value, source="path")
    return request


def render_response(binding: Binding, response: Message) -> bytes:
    target = getattr(response, binding.response_body) if binding.response_body else response
    return orjson.dumps(message_to_dict(target))


def message_to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _merge_body(request: Message, body_field: str, body: bytes) -> None:
    if not body.strip():
        return
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_field("body", f"malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise invalid_field("body", "must be a JSON object")
    target = request if body_field == "*" else getattr(request, body_field)
    try:
        json_format.ParseDict(data, target, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise invalid_field("body", _describe_parse_error(str(exc))) from None


def _describe_parse_error(text: str) -> str:
    # ParseDict says e.g. 'Message type "integration_hub.v1.X" has no field named "foo" at "X".'
    return text.replace("integration_hub.v1.", "")


def _set_field_path(request: Message, field_path: str, raw: str, *, source: str) -> None:
    target: Message = request
    names = field_path.split(".")
    for name in names[:-1]:
        field = _field(target.DESCRIPTOR, name, field_path)
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            raise invalid_field(field_path, f"{name} is not a message ({source} parameter)")
        target = getattr(target, field.name)
    field = _field(target.DESCRIPTOR, names[-1], field_path)
    if field.message_type is not None and field.message_type.full_name in _FROM_URL_TEXT:
        _set_well_known(target, field, raw, field_path)
        return
    value = _scalar(field, raw, field_path)
    try:
        if field.is_repeated:
            getattr(target, field.name).append(value)
        else:
            setattr(target, field.name, value)
    except ValueError:
        # An integer beyond the field's width (int32 page_size=2**40): the caller's mistake.
        raise invalid_field(field_path, f"{raw!r} is out of range for this field") from None


# Well-known types a URL may carry as one string, in their JSON form, as grpc-gateway
# accepts them: Timestamp as RFC 3339 ("2025-01-01T00:00:00Z"), Duration as "1.5s",
# FieldMask as "a,b.c", and the wrappers as their value.
_TEXT_FORM = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"})
_WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_FROM_URL_TEXT = _TEXT_FORM | _WRAPPERS


def _set_well_known(target: Message, field: FieldDescriptor, raw: str, field_path: str) -> None:
    assert field.message_type is not None  # checked by the caller: a well-known message type
    type_name = field.message_type.full_name
    message = getattr(target, field.name).add() if field.is_repeated else getattr(target, field.name)
    if type_name == "google.protobuf.FieldMask":
        # As written (snake_case, like the proto field names): the JSON form's camelCase
        # conversion would refuse "display_name".
        message.paths.extend(path.strip() for path in raw.split(",") if path.strip())
        return
    if type_name in _TEXT_FORM:
        try:
            message.FromJsonString(raw)
        except ValueError:
            expected = {
                "google.protobuf.Timestamp": "an RFC 3339 time such as 2025-01-01T00:00:00Z",
                "google.protobuf.Duration": "a duration such as 1.5s",
            }[type_name]
            raise invalid_field(field_path, f"{raw!r} is not {expected}") from None
        return
    value_field = message.DESCRIPTOR.fields_by_name["value"]
    if value_field.type == FieldDescriptor.TYPE_BYTES:
        raise invalid_field(field_path, "bytes cannot be set from the URL")
    message.value = _scalar(value_field, raw, field_path)


def _field(descriptor: Any, name: str, field_path: str) -> FieldDescriptor:
    by_name, by_json_name = descriptor.fields_by_name, descriptor.fields_by_camelcase_name
    field: FieldDescriptor | None = by_name.get(name) or by_json_name.get(name)
    if field is None:
        raise invalid_field(field_path, "unknown parameter")
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        raise invalid_field(field_path, "maps cannot be set from the URL")
    return field


def _scalar(field: FieldDescriptor, raw: str, field_path: str) -> Any:
    try:
        if field.type == FieldDescriptor.TYPE_STRING:
            return raw
        if field.type == FieldDescriptor.TYPE_BOOL:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            return float(raw)
        if field.enum_type is not None:
            number = field.enum_type.values_by_name.get(raw)
            if number is None:
                raise ValueError
            return number.number
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            raise invalid_field(field_path, "a message cannot be set from the URL")
        return int(raw)
    except ValueError:
        raise invalid_field(field_path, f"{raw!r} is not a valid {_type_name(field)}") from None


def _type_name(field: FieldDescriptor) -> str:
    if field.enum_type is not None:
        return "value of " + field.enum_type.name
    return {
        FieldDescriptor.TYPE_BOOL: "boolean",
        FieldDescriptor.TYPE_DOUBLE: "number",
        FieldDescriptor.TYPE_FLOAT: "number",
    }.get(field.type, "integer")
