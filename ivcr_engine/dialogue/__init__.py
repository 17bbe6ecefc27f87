"""The interactive layer: sessions over an index, intent routing, responders."""
from .engine import Engine, Session
from .gguf_responder import GGUFResponder
from .responders import LLMResponder, TemplateResponder, parse_ivcr_answer
from .router import Intent, Routed, Router
from .state import Candidate, Moment, Reply, SessionState

__all__ = ["Candidate", "Engine", "GGUFResponder", "Intent", "LLMResponder", "Moment", "Reply", "Routed", "Router", "Session",
           "SessionState", "TemplateResponder", "parse_ivcr_answer"]
