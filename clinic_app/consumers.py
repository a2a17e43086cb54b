"""Websocket consumer for asking questions and following answers as they stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from clinic_app import selectors, services
from clinic_app.models import Role
from clinic_app.streaming import answer_group, register_server_loop

MAX_MESSAGE_BYTES = 16_384
CLOSE_FORBIDDEN = 4403


class AskConsumer(AsyncJsonWebsocketConsumer):
    """Protocol (JSON): the client sends ``ask``, ``cancel`` or ``follow``; the server answers
    ``accepted``, ``chunk`` (with ``seq``), ``done`` (with the persisted answer) or ``error``."""

    async def connect(self) -> None:
        register_server_loop(asyncio.get_running_loop())
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(selectors.user_has_role)(
            user, Role.CLINICIAN
        ):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.groups_joined: set[str] = set()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data or ""
        if bytes_data is not None or len(raw.encode()) > MAX_MESSAGE_BYTES:
            await self._error(f"Message too large (limit {MAX_MESSAGE_BYTES} bytes).")
            return
        try:
            content = json.loads(raw)
        except json.JSONDecodeError:
            await self._error("Malformed message.")
            return
        if not isinstance(content, dict):
            await self._error("Malformed message.")
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        action = content.get("action")
        if action == "ask":
            await self._ask(str(content.get("question", "")))
        elif action == "cancel":
            await self._cancel(content.get("answer_id"))
        elif action == "follow":
            await self._follow(content.get("answer_id"))
        else:
            await self._error("Unknown action.")

    async def _ask(self, question: str) -> None:
        user = self.scope["user"]
        ip = (self.scope.get("client") or ["", 0])[0] or ""
        try:
            answer = await database_sync_to_async(services.question_ask)(
                user=user, text=question, source_ip=ip
            )
        except services.QuestionRejected as exc:
            await self._error(str(exc))
            return
        # Subscribe before generation starts so that no chunk is published unheard.
        await self._join(answer.pk)
        await self.send_json(
            {"type": "accepted", "answer_id": answer.pk, "question": answer.question.text}
        )
        await database_sync_to_async(services.answer_start)(answer_id=answer.pk)

    async def _cancel(self, answer_id: Any) -> None:
        if not isinstance(answer_id, int):
            await self._error("Malformed cancel request.")
            return
        ok = await database_sync_to_async(services.answer_cancel)(
            user=self.scope["user"], answer_id=answer_id
        )
        if not ok:
            await self._error("That answer is not running.", answer_id=answer_id)

    async def _follow(self, answer_id: Any) -> None:
        """Resume an answer (after a reload): the persisted state, then the live stream."""
        if not isinstance(answer_id, int):
            await self._error("Malformed follow request.")
            return
        await self._join(answer_id)
        await database_sync_to_async(services.answer_expire_if_stale)(
            user=self.scope["user"], answer_id=answer_id
        )
        payload = await database_sync_to_async(self._answer_payload)(answer_id)
        if payload is None:
            await self._error("Answer not found.", answer_id=answer_id)
            return
        await self.send_json({"type": "snapshot", "answer": payload})

    def _answer_payload(self, answer_id: int) -> dict[str, Any] | None:
        answer = selectors.answer_get_for_user(user=self.scope["user"], answer_id=answer_id)
        return None if answer is None else selectors.answer_payload(answer)

    async def _join(self, answer_id: int) -> None:
        group = answer_group(answer_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def _error(self, message: str, **extra: Any) -> None:
        await self.send_json({"type": "error", "message": message, **extra})

    # Channel-layer events published by the worker (see clinic_app.streaming.ChannelSink).
    async def answer_chunk(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "chunk",
                "answer_id": event["answer_id"],
                "seq": event["seq"],
                "attempt": event.get("attempt", 1),
                "text": event["text"],
            }
        )

    async def answer_done(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "done", "seq": event["seq"], "answer": event["answer"]})
        group = answer_group(event["answer_id"])
        await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.discard(group)
