"""The HTTP API's request and response bodies (pydantic): what ``/openapi.json`` publishes, what
``/docs`` shows, what FastAPI checks every request body against, and what the contract test
(tests/server/test_contract.py, schemathesis) holds every response to.

Requests are strict (a string is not a number, unknown fields are refused); responses are built
as plain dicts by the routes (app.py: the web layer only converts) and encoded with orjson, so
these models document them rather than construct them.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ..dialogue.sessions import MAX_TURN_CHARS
from ..index.image_query import MAX_BYTES as MAX_PICTURE_BYTES
from .openai_compat import KNOWN_ARGUMENTS, MODEL_ID, ROLES

MAX_K = 100
MAX_FILTER = 10_000
# a picture travels as base64 (4 characters per 3 bytes), maybe in a data URL
MAX_PICTURE_CHARS = (MAX_PICTURE_BYTES + 2) // 3 * 4 + 64

PICTURE_DOC = ("a picture to search by: JPEG, PNG or WebP, as a data URL (data:image/png;base64,...) or plain "
               f"base64; at most {MAX_PICTURE_BYTES} bytes, 8192 pixels a side and 40 megapixels")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ---------------------------------------------------------------------------------
class ErrorInfo(BaseModel):
    type: str = Field(description="invalid_request, not_found, unauthorized, too_large, index_damaged, internal, ...")
    message: str
    request_id: str | None = Field(None, description="on 5xx: the id the server's log has the details under")


class ErrorBody(BaseModel):
    error: ErrorInfo


class OpenAIErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorInfo


# -- sessions and turns ---------------------------------------------------------------------
class SessionCreated(BaseModel):
    session_id: str


def text_or_picture(field: str) -> dict:
    """JSON schema: the body has non-blank ``field``, an ``image``, or both."""
    return {"anyOf": [{"required": [field], "properties": {field: {"pattern": r"\S"}}}, {"required": ["image"]}]}


class TurnRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra=text_or_picture("text"))
    text: StrictStr = Field("", max_length=MAX_TURN_CHARS, description="the user's turn; may be empty with an image")
    image: StrictStr | None = Field(None, max_length=MAX_PICTURE_CHARS, description=PICTURE_DOC)


class Span(BaseModel):
    start: float
    end: float


class VideoOut(BaseModel):
    video_id: int
    name: str
    duration: float


class CandidateOut(VideoOut):
    rank: int
    score: float
    moment: Span | None = Field(None, description="the candidate's best moment for the turn's search")


class MomentOut(Span):
    video_id: int
    score: float


class TurnReply(BaseModel):
    session_id: str
    intent: str
    text: str = Field(description="the reply, with the IVCR answer line ('video N' or 'a.as-b.bs')")
    candidates: list[CandidateOut]
    video_id: int | None
    video: VideoOut | None
    moment: MomentOut | None
    evidence: list[str]
    assumed: str | None
    timings_ms: dict[str, float]


class SessionMoment(Span):
    video_id: int


class SessionView(BaseModel):
    session_id: str
    query: str
    selected: int | None
    candidates: list[int]
    excluded: list[int]
    moment: SessionMoment | None
    picture: bool = Field(description="whether the current search was given a picture")
    history: list[dict[str, Any]]


class Deleted(BaseModel):
    deleted: str


# -- one-shot search ------------------------------------------------------------------------
class SearchRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra=text_or_picture("query"))
    query: StrictStr = Field("", max_length=MAX_TURN_CHARS, description="what the videos show or say; may be empty "
                                                                          "with an image")
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    allow: list[Annotated[StrictInt, Field(ge=0)]] | None = Field(None, max_length=MAX_FILTER,
                                                                   description="search only these videos")
    deny: list[Annotated[StrictInt, Field(ge=0)]] | None = Field(None, max_length=MAX_FILTER,
                                                                  description="never return these videos")
    image: StrictStr | None = Field(None, max_length=MAX_PICTURE_CHARS, description=PICTURE_DOC)


class HitEvidence(BaseModel):
    lines: list[tuple[str, float, float, str]] = Field(description="(source, start, end, text) under the moment")
    concepts: list[str]


class Hit(BaseModel):
    video_id: int
    name: str
    start: float
    end: float
    score: float
    rank: int
    evidence: HitEvidence


class SearchReply(BaseModel):
    query: str
    hits: list[Hit]


# -- operations -----------------------------------------------------------------------------
class Health(BaseModel):
    ok: bool
    videos: int
    refs: int
    sessions: int
    batching: bool | None


# -- OpenAI-shaped chat ---------------------------------------------------------------------
class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    text_model: str
    videos: int


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    # the roles OpenAI knows (an unknown one is refused in OpenAI's words: openai_compat.last_user_turn)
    role: StrictStr = Field(json_schema_extra={"enum": sorted(ROLES)})
    content: StrictStr | list[dict[str, Any]] | None = Field(
        None, description="text, or content parts: {type: text, text} and {type: image_url, image_url: {url: "
                          "data URL}} (a picture to search by)")


def openai_arguments(schema: dict) -> None:
    """The published schema lists every argument OpenAI's API takes (accepted; sampling settings
    change nothing: the engine words one answer a turn) and no other."""
    for name in sorted(KNOWN_ARGUMENTS - set(schema["properties"])):
        schema["properties"][name] = {"description": "accepted as OpenAI's API takes it; changes nothing here"}
    schema["additionalProperties"] = False


class ChatRequest(BaseModel):
    """OpenAI's chat completion request. Unknown arguments are refused with OpenAI's message, so
    the model lets them through to openai_compat.check_request (the published schema refuses them)."""
    model_config = ConfigDict(extra="allow", json_schema_extra=openai_arguments)
    # required, and the one model GET /v1/models lists (a missing or unknown one is refused in
    # OpenAI's words, 400 and 404: openai_compat.check_request)
    model: StrictStr | None = Field(None, json_schema_extra={"enum": [MODEL_ID]})
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = None
    stream_options: dict[str, Any] | None = None
    user: StrictStr | None = None
    n: StrictInt | None = None


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    finish_reason: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


def errors(*codes: int, openai: bool = False) -> dict:
    """The error responses a route documents (each one's body: the API's error object, or
    OpenAI's on the OpenAI-shaped routes)."""
    model = OpenAIErrorBody if openai else ErrorBody
    said = {400: "a malformed or invalid request", 401: "a missing or wrong bearer token", 404: "not found",
            413: "the body is over the cap", 500: "an engine fault (the log has it under the request id)",
            503: "the index is damaged"}
    return {c: {"model": model, "description": said[c]} for c in codes}
