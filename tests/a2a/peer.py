"""An A2A agent served by the official Python SDK (a2a-sdk 1.x, JSON-RPC binding), used as a
remote delegate by KAOS's interop tests (kaos-runner/tests/it/a2a_delegate.rs).

    python3 tests/a2a/peer.py [--token TOKEN] [--no-streaming]

Binds 127.0.0.1 on a free port and prints `listening on http://127.0.0.1:PORT` once it serves.
With --token, the JSON-RPC endpoint answers 401 to a request without `Authorization: Bearer
TOKEN` (the agent card stays public, as A2A expects).

What the agent does:
- a message containing `refund` asks for input (`input-required`: "Refund 42 EUR to ACME?");
  the follow-up on the same task completes it: `Refund done.` when it starts with `approve`,
  `Refund cancelled: <the rest>` when it starts with `deny`;
- a message containing `slow` streams `thinking...`, then works for a minute (until canceled);
- anything else is echoed back (`echo: <text>`) as an artifact streamed in two chunks, and the
  task completes with a cost in KAOS's metadata (`{"kaos": {"cost_usd": 0.25, ...}}`).
"""

import argparse
import asyncio
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse

from a2a.helpers.proto_helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
    Task,
    TaskState,
    TaskStatus,
)

RPC_PATH = '/a2a/jsonrpc'
COST = {'kaos': {'cost_usd': 0.25, 'usage': {'input_tokens': 100, 'output_tokens': 20}}}


class PeerExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        task = context.current_task
        updater = TaskUpdater(event_queue, context.task_id or '', context.context_id or '')
        if task is None:
            await event_queue.enqueue_event(
                Task(
                    id=context.task_id,
                    context_id=context.context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[context.message],
                )
            )
        await updater.start_work()
        waiting = task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        if waiting:
            answer = text.strip()
            if answer.lower().startswith('approve'):
                reply = 'Refund done.'
            else:
                reason = answer.split(':', 1)[1].strip() if ':' in answer else answer
                reply = f'Refund cancelled: {reason}'
            await updater.add_artifact([Part(text=reply)], name='result', last_chunk=True)
            await updater.update_status(TaskState.TASK_STATE_COMPLETED, metadata=COST)
            return
        if 'slow' in text.lower():
            await updater.add_artifact([Part(text='thinking...')], artifact_id='answer', name='answer')
            await asyncio.sleep(60)
            return
        if 'refund' in text.lower():
            question = new_text_message(
                'Refund 42 EUR to ACME?', context_id=context.context_id, task_id=context.task_id
            )
            await updater.requires_input(question)
            return
        await updater.add_artifact([Part(text='echo: ')], artifact_id='answer', name='answer')
        await updater.add_artifact(
            [Part(text=text)], artifact_id='answer', append=True, last_chunk=True
        )
        await updater.update_status(TaskState.TASK_STATE_COMPLETED, metadata=COST)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id or '', context.context_id or '')
        await updater.cancel()


class BearerToken(BaseHTTPMiddleware):
    def __init__(self, app, token: str) -> None:
        super().__init__(app)
        self.expected = f'Bearer {token}'

    async def dispatch(self, request, call_next):
        if request.url.path == RPC_PATH and request.headers.get('authorization') != self.expected:
            return JSONResponse({'error': 'unauthorized'}, status_code=401)
        return await call_next(request)


def card(url: str, streaming: bool) -> AgentCard:
    return AgentCard(
        name='Billing peer',
        description='Echoes, and asks before refunding.',
        version='1.0.0',
        capabilities=AgentCapabilities(streaming=streaming, push_notifications=False),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(
                id='billing',
                name='Billing',
                description='Echoes; refunds after approval.',
                tags=['billing'],
            )
        ],
        supported_interfaces=[
            AgentInterface(protocol_binding='JSONRPC', protocol_version='1.0', url=url + RPC_PATH)
        ],
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--token')
    parser.add_argument('--no-streaming', action='store_true')
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', 0))
    base = f'http://127.0.0.1:{sock.getsockname()[1]}'
    agent_card = card(base, streaming=not args.no_streaming)
    handler = DefaultRequestHandler(
        agent_executor=PeerExecutor(), task_store=InMemoryTaskStore(), agent_card=agent_card
    )
    app = Starlette(
        routes=create_agent_card_routes(agent_card) + create_jsonrpc_routes(handler, RPC_PATH)
    )
    if args.token:
        app.add_middleware(BearerToken, token=args.token)
    server = uvicorn.Server(uvicorn.Config(app, log_level='warning'))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
            return
        await asyncio.sleep(0.02)
    print(f'listening on {base}', flush=True)
    await serving


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
