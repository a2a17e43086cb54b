"""Websocket consumer for asking questions and following answers as they stream."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from clinic_app.accounts import sessions
from clinic_app.accounts.permissions import user_has_role
from clinic_app.answers import selectors, services
from clinic_app.answers.contracts import AnswerPayload
from clinic_app.answers.streaming import answer_group, register_server_loop, user_group
from clinic_app.models import FINAL_STATUSES, Role
from clinic_app.observability import metrics

MAX_MESSAGE_BYTES = 16_384
CLOSE_FORBIDDEN = 4403
CLOSE_SESSION_ENDED = 4401
# One message for a foreign answer and a missing one: the reply must not tell them apart.
NOT_YOURS = "No such answer of yours."
SESSION_ENDED = "Your session has ended; sign in again."
ROLE_LOST = "Your account may no longer ask questions."
_MAX_ANSWER_ID = 2**63 - 1  # the largest primary key the database holds

log = logging.getLogger(__name__)


class MessageWindow:
    """At most ``limit`` messages in any ``period`` seconds (a sliding window)."""

    def __init__(self, limit: int, period: float = 1.0) -> None:
        self.limit = limit
        self.period = period
        self._times: deque[float] = deque()

    def admit(self, now: float) -> bool:
        while self._times and now - self._times[0] >= self.period:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


def _answer_id(value: Any) -> int | None:
    """A well-formed answer id, or None (bools are ints in Python; huge ids overflow SQL)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_ANSWER_ID:
        return None
    return value


class AskConsumer(AsyncJsonWebsocketConsumer):
    """Protocol (JSON): the client sends ``ask`` (with ``follow_up_of``: an answer id, to
    continue that conversation), ``cancel`` or ``follow``; the server answers
    ``accepted``, ``chunk`` (with ``seq``), ``done`` (with the persisted answer) or ``error``.

    Every message is rate limited and re-checks the session (``accounts.sessions``); a socket
    whose session ended gets one last error and is closed with 4401 (4403: no longer a
    clinician). Only the user's own answers can be followed or cancelled."""

    async def connect(self) -> None:
        register_server_loop(asyncio.get_running_loop())
        self.groups_joined: set[str] = set()
        self._ended = False
        self._watchdog: asyncio.Task[None] | None = None
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(user_has_role)(user, Role.CLINICIAN):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        session = self.scope.get("session")
        self.session_key: str | None = getattr(session, "session_key", None)
        self.session_digest = sessions.session_digest(self.session_key)
        # Channels' AuthMiddleware does not know the idle and absolute limits: an idle or too
        # old session must not open a socket either. Opening one (the page reconnects on its
        # own) is no sign of the clinician's activity, so it does not touch the session.
        checked = await self._session_check(touch=False)
        if checked.state is not sessions.SessionState.VALID:
            await self.close(
                code=CLOSE_FORBIDDEN
                if checked.state is sessions.SessionState.FORBIDDEN
                else CLOSE_SESSION_ENDED
            )
            return
        self.window = MessageWindow(settings.WS_MAX_MESSAGES_PER_SECOND)
        self.user_group = user_group(user.pk)
        # Joined before accepting, so a sign-out from here on always reaches this socket.
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()
        self._counted = True
        metrics.WEBSOCKETS.inc()
        self._watchdog = asyncio.create_task(self._watch_session(checked.expires_in))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the socket ended (even by an exception, which skips ``disconnect``).
            watchdog = getattr(self, "_watchdog", None)
            if watchdog is not None:
                watchdog.cancel()
            if getattr(self, "_counted", False):
                self._counted = False
                metrics.WEBSOCKETS.dec()

    async def disconnect(self, code: int) -> None:
        await self._leave_all()

    async def _leave_all(self) -> None:
        groups = set(getattr(self, "groups_joined", set()))
        if hasattr(self, "user_group"):
            groups.add(self.user_group)
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = set()

    @property
    def _ip(self) -> str:
        return str((self.scope.get("client") or ["", 0])[0] or "")

    async def _session_check(self, *, touch: bool) -> sessions.SocketSession:
        return await database_sync_to_async(sessions.socket_session_check)(
            session_key=self.session_key,
            user_id=self.scope["user"].pk,
            touch=touch,
            source_ip=self._ip,
        )

    async def _end(self, state: sessions.SessionState) -> None:
        """Last error, then close: 4403 when only the role was lost, else 4401."""
        if self._ended:
            return
        self._ended = True
        forbidden = state is sessions.SessionState.FORBIDDEN
        # Leave every group first, so no further chunk is sent to a socket being closed.
        await self._leave_all()
        await self._error(ROLE_LOST if forbidden else SESSION_ENDED)
        await self.close(code=CLOSE_FORBIDDEN if forbidden else CLOSE_SESSION_ENDED)

    async def _watch_session(self, expires_in: float) -> None:
        """Close the socket when its session runs out even if the client stays silent, and
        re-read the session now and then (a change made where no event reached us)."""
        while not self._ended:
            await asyncio.sleep(min(expires_in, sessions.SOCKET_RECHECK_S) + 0.05)
            try:
                checked = await self._session_check(touch=False)
            except Exception as exc:  # the next message still fails closed
                log.warning("websocket session check failed (%s); retrying", exc)
                expires_in = sessions.SOCKET_RECHECK_S
                continue
            if checked.state is not sessions.SessionState.VALID:
                await self._end(checked.state)
                return
            expires_in = checked.expires_in

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._ended:
            return
        # Rate first: it is what keeps a flood away from the session check's queries.
        if not self.window.admit(time.monotonic()):
            await self._error(
                f"Too many messages: at most {self.window.limit} per second. "
                "This one was ignored; please wait a moment."
            )
            return
        checked = await self._session_check(touch=True)
        if checked.state is not sessions.SessionState.VALID:
            await self._end(checked.state)
            return
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
            await self._ask(str(content.get("question", "")), content.get("follow_up_of"))
        elif action == "cancel":
            await self._cancel(content.get("answer_id"))
        elif action == "follow":
            await self._follow(content.get("answer_id"))
        else:
            await self._error("Unknown action.")

    async def _ask(self, question: str, follow_up: Any = None) -> None:
        """A new question, or (``follow_up_of``) a follow-up of one of the user's answers."""
        parent = None if follow_up is None else _answer_id(follow_up)
        if follow_up is not None and parent is None:
            await self._error("Malformed follow-up: follow_up_of must be an answer id.")
            return
        if not await self._may_join(None):
            return
        user = self.scope["user"]
        try:
            answer = await database_sync_to_async(services.question_ask)(
                user=user, text=question, source_ip=self._ip, follow_up_of=parent
            )
        except services.FollowUpNotYours:
            # The same reply as for any answer that is not the user's (audited by the service).
            await self._error(NOT_YOURS, answer_id=parent)
            return
        except services.QuestionRejected as exc:
            await self._error(str(exc), **({} if parent is None else {"follow_up_of": parent}))
            return
        # Subscribe before generation starts so that no chunk is published unheard.
        await self._join(answer.pk)
        await self.send_json(
            {
                "type": "accepted",
                "answer_id": answer.pk,
                "question": answer.question.text,
                "thread_id": answer.question.thread_id,
                "turn": answer.question.turn,
                "follow_up_of": parent,
            }
        )
        await database_sync_to_async(services.answer_start)(answer_id=answer.pk)

    async def _owned(self, answer_id: int, request: str) -> bool:
        """Ownership is settled before anything else happens for this id."""
        owned = await database_sync_to_async(services.answer_access_check)(
            user=self.scope["user"], answer_id=answer_id, source_ip=self._ip, request=request
        )
        if not owned:
            await self._error(NOT_YOURS, answer_id=answer_id)
        return owned

    async def _cancel(self, value: Any) -> None:
        answer_id = _answer_id(value)
        if answer_id is None:
            await self._error("Malformed cancel request.")
            return
        if not await self._owned(answer_id, "cancel"):
            return
        ok = await database_sync_to_async(services.answer_cancel)(
            user=self.scope["user"], answer_id=answer_id, source_ip=self._ip
        )
        if not ok:
            await self._error("That answer is not running.", answer_id=answer_id)

    async def _follow(self, value: Any) -> None:
        """Resume an answer (after a reload): the persisted state, then the live stream."""
        answer_id = _answer_id(value)
        if answer_id is None:
            await self._error("Malformed follow request.")
            return
        if not await self._owned(answer_id, "follow"):
            return
        if not await self._may_join(answer_id):
            return
        # Joined before reading the state, so nothing published in between is missed.
        await self._join(answer_id)
        await database_sync_to_async(services.answer_expire_if_stale)(
            user=self.scope["user"], answer_id=answer_id
        )
        payload = await database_sync_to_async(self._answer_payload)(answer_id)
        if payload is None:  # deleted since the check
            await self._leave(answer_id)
            await self._error(NOT_YOURS, answer_id=answer_id)
            return
        if payload["status"] in FINAL_STATUSES:
            # Nothing more will stream: free the slot so that reopening finished answers
            # never uses up WS_MAX_GROUPS_PER_SOCKET.
            await self._leave(answer_id)
        await self.send_json({"type": "snapshot", "answer": payload})

    def _answer_payload(self, answer_id: int) -> AnswerPayload | None:
        answer = selectors.answer_get_for_user(user=self.scope["user"], answer_id=answer_id)
        return None if answer is None else selectors.answer_payload(answer)

    async def _may_join(self, answer_id: int | None) -> bool:
        """Whether this socket may follow one more answer (``WS_MAX_GROUPS_PER_SOCKET``)."""
        limit = settings.WS_MAX_GROUPS_PER_SOCKET
        if answer_id is not None and answer_group(answer_id) in self.groups_joined:
            return True
        if len(self.groups_joined) < limit:
            return True
        extra = {} if answer_id is None else {"answer_id": answer_id}
        await self._error(
            f"This connection already follows {limit} unfinished answers, the most it may. "
            "Wait for one to finish, or reload the page.",
            **extra,
        )
        return False

    async def _join(self, answer_id: int) -> None:
        group = answer_group(answer_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def _leave(self, answer_id: int) -> None:
        group = answer_group(answer_id)
        await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.discard(group)

    async def _error(self, message: str, **extra: Any) -> None:
        await self.send_json({"type": "error", "message": message, **extra})

    # Channel-layer events published by the worker (see clinic_app.answers.streaming.ChannelSink).
    async def answer_chunk(self, event: dict[str, Any]) -> None:
        if self._ended or answer_group(event["answer_id"]) not in self.groups_joined:
            return
        await self.send_json(
            {
                "type": "chunk",
                "answer_id": event["answer_id"],
                "seq": event["seq"],
                "attempt": event.get("attempt", 1),
                "text": event["text"],
            }
        )

    async def answer_evidence(self, event: dict[str, Any]) -> None:
        if self._ended or answer_group(event["answer_id"]) not in self.groups_joined:
            return
        await self.send_json(
            {
                "type": "evidence",
                "answer_id": event["answer_id"],
                "attempt": event.get("attempt", 1),
                "evidence": event["evidence"],
            }
        )

    async def answer_done(self, event: dict[str, Any]) -> None:
        if self._ended or answer_group(event["answer_id"]) not in self.groups_joined:
            return
        await self.send_json({"type": "done", "seq": event["seq"], "answer": event["answer"]})
        await self._leave(event["answer_id"])

    async def session_end(self, event: dict[str, Any]) -> None:
        """Published on the user's group (``accounts.sessions.session_end_broadcast``)."""
        if self._ended:
            return
        ended = str(event.get("session", ""))
        if ended and hmac.compare_digest(ended, self.session_digest):
            await self._end(sessions.SessionState.ENDED)
            return
        # Another of the user's sessions, or an account change: this session decides.
        checked = await self._session_check(touch=False)
        if checked.state is not sessions.SessionState.VALID:
            await self._end(checked.state)
