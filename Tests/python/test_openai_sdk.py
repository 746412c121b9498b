"""The official `openai` SDK against Caravan's gateway."""

import asyncio

import openai
import pytest
from pydantic import BaseModel

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
HELLO = [{"role": "user", "content": "hello there"}]


def test_chat(client, fake):
    answer = client.chat.completions.create(model="fake/m1", messages=HELLO)
    assert answer.choices[0].message.content == "echo: hello there"
    assert answer.model == "fake/m1"
    assert answer.usage.total_tokens > 0
    assert fake.last()["model"] == "m1"


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(model="fake/m1", messages=HELLO, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "echo: hello there"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_tools_round_trip(client):
    first = client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and '"city"' in call.function.arguments
    messages = [{"role": "user", "content": "Weather in Paris?"}, first.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.completions.create(model="fake/m1", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "The tool said: sunny"


def test_streamed_tool_call(client):
    stream = client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER], stream=True)
    names = [call.function.name for chunk in stream if chunk.choices for call in (chunk.choices[0].delta.tool_calls or []) if call.function and call.function.name]
    assert names == ["get_weather"]


class Forecast(BaseModel):
    city: str
    temperature: int


def test_structured_output(client, fake):
    parsed = client.chat.completions.parse(model="fake/m1", messages=HELLO, response_format=Forecast)
    assert parsed.choices[0].message.parsed == Forecast(city="Paris", temperature=21)
    assert fake.last()["response_format"]["type"] == "json_schema"


def test_fifty_concurrent_calls(caravan):
    async def main():
        async with openai.AsyncOpenAI(base_url=caravan["base_url"], api_key=caravan["api_key"], max_retries=0) as client:
            answers = await asyncio.gather(*[client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": f"call {i}"}]) for i in range(50)])
            return [answer.choices[0].message.content for answer in answers]

    assert asyncio.run(main()) == [f"echo: call {i}" for i in range(50)]


def test_parameters_are_passed_on(client, fake):
    answer = client.chat.completions.create(
        model="fake/m1",
        messages=[{"role": "developer", "content": "Be brief."}] + HELLO,
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logprobs=True,
        top_logprobs=2,
        logit_bias={"50256": -100},
        parallel_tool_calls=False,
        tools=[WEATHER],
        tool_choice="none",
        reasoning_effort="low",
        metadata={"team": "a"},
        stop=["END", "STOP"],
        max_completion_tokens=40,
    )
    sent = fake.last()
    for field, value in {"seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.2, "logprobs": True, "top_logprobs": 2, "logit_bias": {"50256": -100}, "parallel_tool_calls": False, "reasoning_effort": "low", "metadata": {"team": "a"}, "stop": ["END", "STOP"], "max_completion_tokens": 40}.items():
        assert sent[field] == value, field
    assert "max_tokens" not in sent
    assert sent["messages"][0]["role"] == "developer"
    assert answer.choices[0].logprobs.content[0].token == "echo:"
    assert len(answer.choices[0].logprobs.content[0].top_logprobs) == 2


def test_a_parameter_the_provider_cannot_honour_is_refused(client):
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.chat.completions.create(model="claude/haiku", messages=HELLO, seed=1)
    assert refused.value.body["param"] == "seed"
    assert "cannot honour" in refused.value.body["message"]


def test_unknown_arguments_and_invalid_requests_are_bad_requests(client):
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="fake/m1", messages=HELLO, extra_body={"temprature": 0})
    assert unknown.value.body["param"] == "temprature"
    with pytest.raises(openai.BadRequestError) as invalid:
        client.chat.completions.create(model="fake/m1", messages=[{"role": "wizard", "content": "x"}])
    assert invalid.value.body["param"] == "messages.0.role"


def test_n_choices(client):
    answer = client.chat.completions.create(model="fake/m1", messages=HELLO, n=3)
    assert [choice.index for choice in answer.choices] == [0, 1, 2]
    assert all(choice.message.content == "echo: hello there" for choice in answer.choices)


def test_bare_model_names_use_the_default_provider(client, fake):
    answer = client.chat.completions.create(model="m1", messages=HELLO)
    assert answer.choices[0].message.content == "echo: hello there"
    assert fake.last()["model"] == "m1"


def test_models(client):
    assert {"fake/m1", "fake/emb", "claude/haiku"} <= {model.id for model in client.models.list()}
    assert client.models.retrieve("fake/m1").id == "fake/m1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("fake/nothing")
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nowhere/m1", messages=HELLO)
    assert unknown.value.body["code"] == "unknown_model"


def test_rate_limits_reach_the_client(client, fake):
    fake.fail_next(429, retry_after="60")
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="fake/m1", messages=HELLO)
    assert limited.value.response.headers["retry-after"] == "60"
    fake.fail_next(429, retry_after="60")
    with pytest.raises(openai.RateLimitError):
        next(iter(client.chat.completions.create(model="fake/m1", messages=HELLO, stream=True)))
    raw = client.chat.completions.with_raw_response.create(model="fake/m1", messages=HELLO)
    assert int(raw.headers["x-ratelimit-limit-requests"]) > 0
    assert 0 <= int(raw.headers["x-ratelimit-remaining-requests"]) < int(raw.headers["x-ratelimit-limit-requests"])
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")


def test_a_provider_failure_before_the_first_token_keeps_its_status(client, fake):
    fake.fail_next(503)
    with pytest.raises(openai.InternalServerError) as failed:
        next(iter(client.chat.completions.create(model="fake/m1", messages=HELLO, stream=True)))
    assert failed.value.status_code == 502


def test_authentication_errors(caravan):
    bad = openai.OpenAI(base_url=caravan["base_url"], api_key="ck_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="fake/m1", messages=HELLO)


def test_embeddings(client, fake):
    packed = client.embeddings.create(model="fake/emb", input=["first", "second"])  # the SDK asks for base64
    assert fake.last("/v1/embeddings")["encoding_format"] == "base64"
    assert [len(item.embedding) for item in packed.data] == [8, 8]
    plain = client.embeddings.create(model="fake/emb", input=["first", "second"], encoding_format="float")
    assert [round(x, 5) for x in plain.data[0].embedding] == [round(x, 5) for x in packed.data[0].embedding]
    assert plain.model == "fake/emb" and plain.usage.prompt_tokens > 0
    assert len(client.embeddings.create(model="emb", input="one", dimensions=4).data[0].embedding) == 4
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.embeddings.create(model="claude/haiku", input="x")
    assert refused.value.body["param"] == "model"


def test_images(client, fake):
    pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": pixel, "detail": "low"}}, {"type": "image_url", "image_url": {"url": "https://images.example/cat.jpg"}}]
    answer = client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": content}])
    assert answer.choices[0].message.content == "echo: What is this?"
    assert fake.last()["messages"][0]["content"] == content
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}}]}])
    assert refused.value.body["code"] == "egress_denied"


def test_images_stay_in_a_stored_conversation(client, fake):
    image = {"type": "input_image", "image_url": "https://images.example/cat.jpg", "detail": "low"}
    first = client.responses.create(model="fake/m1", input=[{"role": "user", "content": [{"type": "input_text", "text": "A cat?"}, image]}])
    client.responses.create(model="fake/m1", input="And its colour?", previous_response_id=first.id)
    history = fake.last()["messages"]
    assert history[0]["content"] == [{"type": "text", "text": "A cat?"}, {"type": "image_url", "image_url": {"url": "https://images.example/cat.jpg", "detail": "low"}}]
    assert [message["role"] for message in history] == ["user", "assistant", "user"]


def test_request_level_fallbacks(client, fake):
    fake.fail_next(503)
    answer = client.chat.completions.create(model="fake/m1", messages=HELLO, extra_body={"models": ["emb"]})
    assert answer.model == "fake/emb" and answer.choices[0].message.content == "echo: hello there"
    answer = client.chat.completions.create(model="claude/haiku", messages=HELLO, seed=5, extra_body={"models": ["fake/m1"]})
    assert answer.model == "fake/m1" and fake.last()["seed"] == 5


def test_keys_with_model_and_spend_limits(caravan):
    from conftest import call

    base = caravan["base_url"].removesuffix("/v1")
    created = call(base, "POST", "/v1/api-keys", {"name": "app", "role": "developer"}, caravan["api_key"])
    call(base, "PUT", f"/v1/api-keys/{created['id']}/limits", {"models": ["fake/m1"]}, caravan["api_key"])
    app = openai.OpenAI(base_url=caravan["base_url"], api_key=created["key"], max_retries=0)
    assert app.chat.completions.create(model="fake/m1", messages=HELLO).choices[0].message.content == "echo: hello there"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        app.chat.completions.create(model="fake/emb", messages=HELLO)
    assert refused.value.body["code"] == "model_not_allowed"
    usage = call(base, "GET", "/v1/usage?group_by=key", None, caravan["api_key"])
    assert next(item for item in usage["items"] if item["key"] == created["id"])["requests"] == 1
    call(base, "PUT", f"/v1/api-keys/{created['id']}/limits", {"monthly_cost_usd": 0}, caravan["api_key"])
    with pytest.raises(openai.APIStatusError) as spent:
        app.chat.completions.create(model="fake/m1", messages=HELLO)
    assert spent.value.status_code == 402 and spent.value.body["code"] == "budget_exceeded"


def test_responses(client, fake):
    first = client.responses.create(model="fake/m1", input="hello there", instructions="Be brief.")
    assert first.output_text == "echo: hello there" and first.status == "completed"
    assert fake.last()["messages"][0] == {"role": "system", "content": "Be brief."}
    second = client.responses.create(model="fake/m1", input="and again", previous_response_id=first.id)
    assert [m["content"] for m in fake.last()["messages"]] == ["hello there", "echo: hello there", "and again"]
    assert second.previous_response_id == first.id
    assert client.responses.retrieve(first.id).output_text == "echo: hello there"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="fake/m1", input="x", previous_response_id="resp_nothing")


def test_responses_tools_and_structured_output(client):
    tool = {"type": "function", "name": "get_weather", "description": "The weather.", "parameters": WEATHER["function"]["parameters"]}
    asked = client.responses.create(model="fake/m1", input="Weather in Paris?", tools=[tool])
    call = asked.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and '"city"' in call.arguments
    answered = client.responses.create(model="fake/m1", previous_response_id=asked.id, tools=[tool], input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert answered.output_text == "The tool said: sunny"
    parsed = client.responses.parse(model="fake/m1", input="Forecast?", text_format=Forecast)
    assert parsed.output_parsed == Forecast(city="Paris", temperature=21)


def test_responses_stream(client):
    events = list(client.responses.create(model="fake/m1", input="hello there", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(event.delta for event in events if event.type == "response.output_text.delta") == "echo: hello there"
    assert events[-1].response.output_text == "echo: hello there"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert len([event for event in events if event.type == "response.output_text.delta"]) > 1, "sent as it arrives"


def test_responses_stream_helper_with_tools(client):
    tool = {"type": "function", "name": "get_weather", "description": "The weather.", "parameters": WEATHER["function"]["parameters"]}
    with client.responses.stream(model="fake/m1", input="Weather in Paris?", tools=[tool]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    assert final.output[0].type == "function_call" and final.output[0].name == "get_weather"
    with client.responses.stream(model="fake/m1", input="stream me") as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        assert text == stream.get_final_response().output_text == "echo: stream me"


def test_request_log(client, caravan, fake):
    from conftest import call

    base = caravan["base_url"].removesuffix("/v1")
    call(base, "PUT", "/v1/model-requests/settings", {"log_bodies": True}, caravan["api_key"])
    raw = client.chat.completions.with_raw_response.create(model="fake/m1", messages=[{"role": "user", "content": "log me"}])
    request_id = raw.headers["request-id"]
    assert raw.parse().choices[0].message.content == "echo: log me"
    fake.fail_next(500)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "fail me"}])
    items = call(base, "GET", "/v1/model-requests?limit=10", None, caravan["api_key"])["items"]
    logged = next(item for item in items if item["request_id"] == request_id)
    assert logged["model"] == "fake/m1" and logged["status"] == 200 and logged["input_tokens"] > 0
    assert logged["latency_ms"] >= 0 and logged["endpoint"] == "chat.completions"
    assert items[0]["status"] >= 500 and items[0]["outcome"] != "success"
    detail = call(base, "GET", f"/v1/model-requests/{logged['id']}", None, caravan["api_key"])
    assert detail["request"]["messages"] == [{"role": "user", "content": "log me"}]
    assert detail["response"]["choices"][0]["message"]["content"] == "echo: log me"
    call(base, "PUT", "/v1/model-requests/settings", {"log_bodies": False}, caravan["api_key"])


def test_deterministic_calls_are_answered_from_the_cache(client, fake):
    before = len(fake.requests)
    first = client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "cache me"}], temperature=0)
    second = client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "cache me"}], temperature=0)
    assert first.choices[0].message.content == second.choices[0].message.content == "echo: cache me"
    assert len(fake.requests) == before + 1
    client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "cache me"}], temperature=0, extra_headers={"Cache-Control": "no-cache"})
    assert len(fake.requests) == before + 2


def test_a_model_route_spreads_calls_over_its_deployments(client, caravan):
    from conftest import call

    base = caravan["base_url"].removesuffix("/v1")
    call(base, "PUT", "/v1/model-routes/smart", {"deployments": [{"model": "fake/m1", "weight": 1}, {"model": "fake/emb", "weight": 1}]}, caravan["api_key"])
    served = {client.chat.completions.create(model="smart", messages=HELLO).model for _ in range(30)}
    assert served == {"fake/m1", "fake/emb"}


def test_the_circuit_breaker_opens_for_one_model_only(client, caravan, fake):
    from conftest import call

    fake.fail_next(503, times=5)
    for _ in range(5):
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="fake/m2", messages=HELLO)
    sent = len(fake.requests)
    with pytest.raises(openai.APIStatusError) as open_circuit:
        client.chat.completions.create(model="fake/m2", messages=HELLO)
    assert "circuit_open" in open_circuit.value.message and len(fake.requests) == sent, "not sent to the provider"
    assert client.chat.completions.create(model="fake/m1", messages=HELLO).choices[0].message.content == "echo: hello there"
    provider = call(caravan["base_url"].removesuffix("/v1"), "GET", "/v1/providers/fake", None, caravan["api_key"])
    assert provider["circuits"]["m2"] == "open" and provider["circuits"]["m1"] == "closed"
