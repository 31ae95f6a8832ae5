"""translator: OpenAI requests → Bedrock Converse, Anthropic Messages → InvokeModel, answers streamed back."""

from translator.server import TranslatorApp

__all__ = ["TranslatorApp"]
