"""translator: OpenAI (and Anthropic) requests → Bedrock Converse, answers streamed back."""

from translator.server import TranslatorApp

__all__ = ["TranslatorApp"]
