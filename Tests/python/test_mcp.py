"""The official MCP Python SDK as a client of Caravan's `/mcp`: the organization's workflows as tools."""

import asyncio
import json
import urllib.request

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def put_workflow(caravan, name, definition):
    request = urllib.request.Request(
        caravan["base_url"] + f"/workflows/{name}",
        method="PUT",
        data=json.dumps(definition).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {caravan['api_key']}"},
    )
    urllib.request.urlopen(request, timeout=30).read()


def test_workflows_are_tools(caravan):
    put_workflow(caravan, "greet", {
        "name": "greet",
        "description": "Greets someone.",
        "input": {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]},
        "steps": [{"id": "hello", "template": "Hello, {{ input.who }}!"}],
        "output": "{{ steps.hello.output }}",
    })

    async def main():
        url = caravan["base_url"].removesuffix("/v1") + "/mcp"
        headers = {"Authorization": f"Bearer {caravan['api_key']}"}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http, streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {tool.name: tool for tool in (await session.list_tools()).tools}
                assert tools["workflow-greet"].description == "Greets someone."
                assert tools["workflow-greet"].input_schema["required"] == ["who"]
                result = await session.call_tool("workflow-greet", {"who": "Ada"})
                assert not result.is_error and result.content[0].text == "Hello, Ada!"
                refused = await session.call_tool("workflow-greet", {})
                assert refused.is_error

    asyncio.run(main())
