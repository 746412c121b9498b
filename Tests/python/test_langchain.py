"""LangChain's OpenAI integration against Caravan's gateway."""

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


class Forecast(BaseModel):
    city: str
    temperature: int


def chat(caravan, **options):
    return ChatOpenAI(model="fake/m1", base_url=caravan["base_url"], api_key=caravan["api_key"], max_retries=0, **options)


def test_invoke_and_stream(caravan):
    assert chat(caravan).invoke("hello there").content == "echo: hello there"
    assert "".join(chunk.content for chunk in chat(caravan).stream("hello there")) == "echo: hello there"


def test_tools(caravan):
    message = chat(caravan).bind_tools([get_weather]).invoke("Weather in Paris?")
    assert message.tool_calls[0]["name"] == "get_weather"
    assert message.tool_calls[0]["args"] == {"city": "Paris"}


def test_structured_output(caravan):
    assert chat(caravan).with_structured_output(Forecast).invoke("Forecast?") == Forecast(city="Paris", temperature=21)


def test_embeddings(caravan):
    embeddings = OpenAIEmbeddings(model="fake/emb", base_url=caravan["base_url"], api_key=caravan["api_key"], check_embedding_ctx_length=False, max_retries=0)
    vectors = embeddings.embed_documents(["first", "second"])
    assert len(vectors) == 2 and all(len(vector) == 8 for vector in vectors)
    assert embeddings.embed_query("first") == vectors[0]


def test_responses_api(caravan):
    model = chat(caravan, use_responses_api=True)
    assert model.invoke("hello there").text == "echo: hello there"
    message = model.bind_tools([get_weather]).invoke("Weather in Paris?")
    assert message.tool_calls[0]["name"] == "get_weather"
