"""Drives `kaos serve --http` with the official A2A Python SDK's client (a2a-sdk, pinned in
tests/a2a/requirements.txt): the agent card, a blocking send, a streamed send, an
input-required task approved by a follow-up message, get, subscribe, cancel, another caller's
task id and a wrong token.

Usage: interop.py BASE_URL ALICE_TOKEN BOB_TOKEN

The served agent's model (a loopback mock started by kaos-cli/tests/cli/a2a.rs) answers
`echo: <message>`; streams `one two three` for a message containing "stream"; writes the
message to note.txt with the destructive kaos-vfs-write tool (which needs approval) for one
containing "write"; and takes a minute for one containing "slow".

Prints one JSON object (what the Rust side checks in the data directory) and exits 0, or
fails with an assertion naming the step.
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    AuthInterceptor,
    ClientConfig,
    ClientFactory,
    CredentialService,
)
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import (
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict


class Token(CredentialService):
    """The bearer token for the card's `bearer` scheme."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_credentials(self, security_scheme_name, context):
        return self.token if security_scheme_name == "bearer" else None


def request(text: str, task_id: str = "", context_id: str = "") -> SendMessageRequest:
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    if task_id:
        message.task_id = task_id
    if context_id:
        message.context_id = context_id
    return SendMessageRequest(message=message)


async def collect(stream) -> list:
    return [event async for event in stream]


def artifact_text(events) -> str:
    return "".join(
        part.text
        for event in events
        if event.HasField("artifact_update")
        for part in event.artifact_update.artifact.parts
    )


def last_state(events):
    last = events[-1]
    assert last.HasField("status_update"), f"the stream ends with a status update: {last}"
    return last.status_update.status.state


async def main(base: str, alice: str, bob: str) -> dict:
    checks = []
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, base).get_agent_card()
    assert card.capabilities.streaming, card
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer", card
    interface = card.supported_interfaces[0]
    assert (interface.protocol_binding, interface.protocol_version) == ("JSONRPC", "1.0"), interface
    assert any(skill.id == "tool:kaos-vfs-write" for skill in card.skills), card.skills
    checks.append("card")

    def client(token: str, streaming: bool = True):
        factory = ClientFactory(ClientConfig(streaming=streaming))
        return factory.create(card, interceptors=[AuthInterceptor(Token(token))])

    blocking, streaming = client(alice, streaming=False), client(alice)

    # SendMessage: one answer, the completed task.
    [answer] = await collect(blocking.send_message(request("hello")))
    task = answer.task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
    assert "".join(p.text for a in task.artifacts for p in a.parts) == "echo: hello", task
    kaos = MessageToDict(task.metadata)["kaos"]
    assert kaos["stop_reason"] == "completed" and kaos["model_calls"] == 1, kaos
    assert "cost_usd" in kaos and kaos["usage"]["input_tokens"] > 0, kaos
    context = task.context_id
    checks.append("send")

    # SendStreamingMessage in the same context: the task, artifact chunks, the final status.
    events = await collect(streaming.send_message(request("stream please", context_id=context)))
    assert events[0].HasField("task") and events[0].task.context_id == context, events[0]
    chunks = [e for e in events if e.HasField("artifact_update")]
    assert len(chunks) >= 3 and chunks[1].artifact_update.append, chunks
    assert artifact_text(events) == "one two three", events
    assert last_state(events) == TaskState.TASK_STATE_COMPLETED, events[-1]
    assert MessageToDict(events[-1].status_update.metadata)["kaos"]["turn_number"] == 2, events[-1]
    checks.append("stream")

    # A destructive tool call pauses the run: input-required; the follow-up approves it.
    events = await collect(streaming.send_message(request("write first note")))
    assert last_state(events) == TaskState.TASK_STATE_INPUT_REQUIRED, events[-1]
    paused = events[-1].status_update
    question = paused.status.message
    assert "kaos-vfs-write" in question.parts[0].text, question
    pending = MessageToDict(question.parts[1].data)
    assert pending["tool_name"] == "kaos-vfs-write", pending
    events = await collect(
        streaming.send_message(request("approve", task_id=paused.task_id, context_id=paused.context_id))
    )
    assert events[0].task.id == paused.task_id, events[0]
    assert last_state(events) == TaskState.TASK_STATE_COMPLETED, events[-1]
    assert artifact_text(events).startswith("tool said:"), events
    checks.append("input-required-approve")

    # GetTask: the same task, completed, with its whole history.
    got = await streaming.get_task(GetTaskRequest(id=paused.task_id))
    assert got.status.state == TaskState.TASK_STATE_COMPLETED, got
    roles = [m.role for m in got.history]
    assert roles == [Role.ROLE_USER, Role.ROLE_AGENT, Role.ROLE_USER, Role.ROLE_AGENT], roles
    got = await streaming.get_task(GetTaskRequest(id=paused.task_id, history_length=1))
    assert len(got.history) == 1, got.history
    checks.append("get")

    # A finished task has nothing to subscribe to.
    try:
        await collect(streaming.subscribe(SubscribeToTaskRequest(id=paused.task_id)))
        raise AssertionError("subscribing to a completed task must fail")
    except UnsupportedOperationError:
        pass

    # A slow task: subscribe to it, cancel it; both streams end canceled.
    slow_stream = streaming.send_message(request("slow please"))
    first = await slow_stream.__anext__()
    slow = first.task
    assert slow.status.state == TaskState.TASK_STATE_WORKING, slow
    subscription = asyncio.ensure_future(collect(streaming.subscribe(SubscribeToTaskRequest(id=slow.id))))
    await asyncio.sleep(0.3)
    canceled = await streaming.cancel_task(CancelTaskRequest(id=slow.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED, canceled
    rest = [event async for event in slow_stream]
    assert last_state(rest) == TaskState.TASK_STATE_CANCELED, rest
    subscribed = await asyncio.wait_for(subscription, 10)
    assert subscribed[0].task.id == slow.id, subscribed[0]
    assert last_state(subscribed) == TaskState.TASK_STATE_CANCELED, subscribed
    got = await streaming.get_task(GetTaskRequest(id=slow.id))
    assert got.status.state == TaskState.TASK_STATE_CANCELED, got
    try:
        await streaming.cancel_task(CancelTaskRequest(id=slow.id))
        raise AssertionError("a canceled task cannot be canceled again")
    except TaskNotCancelableError:
        pass
    checks.append("subscribe")
    checks.append("cancel")

    # Another caller: Alice's task is not found, exactly like a missing one.
    for task_id in (paused.task_id, "run_missing"):
        try:
            await client(bob).get_task(GetTaskRequest(id=task_id))
            raise AssertionError("Bob must not read Alice's task")
        except TaskNotFoundError:
            pass
    checks.append("isolation")

    # A wrong token: 401.
    try:
        await collect(client("wrong-token-0123456789abcdef", streaming=False).send_message(request("hi")))
        raise AssertionError("a wrong token must be refused")
    except A2AClientError as error:
        assert "401" in str(error), error
    checks.append("wrong-token-401")

    return {
        "checks": checks,
        "context": context,
        "write_context": paused.context_id,
        "slow_context": slow.context_id,
    }


if __name__ == "__main__":
    report = asyncio.run(main(*sys.argv[1:4]))
    print(json.dumps(report))
