"""The decentralized signalling consumer at ``/ws/decentralized/<task>/``.

It introduces peers and passes messages between them; it never decodes a model or an
update. Text frames are JSON control messages (``ready``, ``signal``, ``done``,
``status``); binary frames are relayed to one peer of the same round, the header
rewritten from ``{"to", "round", "kind", "part", "parts"}`` to ``{"from", "round",
"kind", "part", "parts"}`` and the payload forwarded byte for byte (``disco_client.relay``)::

    u32 little-endian n | n bytes of JSON header | payload

Payloads travel in parts of at most 1 MiB; a frame over one part + 64 KiB is refused.
Peers seal every payload end to end (``disco_client.peer_crypto``): the server forwards
their ephemeral public keys (``ready``'s ``publicKey``, the ``peers`` message's
``publicKeys``) and ciphertext, and holds no key that opens it.

A bad message gets an ``error`` frame with a reason and changes nothing. Joining (the
participation rule, the first ``join`` message, the caps) is ``aggregation.admission``'s, as
for federated tasks. Round bookkeeping lives in ``peer_rounds``; the consumer keeps no timers: the
ready and exchange deadlines are columns that ``aggregation.sweeper`` enforces.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from disco_client.relay import RELAY_PART_BYTES, RELAY_SLACK, RelayError, decode_relay_frame, encode_relay_frame
from tasks.models import Task

from . import evaluations, peer_rounds
from .admission import AdmittingConsumer
from .models import Participant
from .peer_rounds import PeerRoundError

log = logging.getLogger(__name__)


def _find_task(task_id: str) -> Task | None:
    return Task.objects.filter(pk=task_id, published=True, scheme="decentralized").first()


def _welcome(task: Task, resume_token: str, kind: str, address: str | None) -> tuple[Participant, dict[str, Any]]:
    participant, resumed = peer_rounds.join(task, resume_token=resume_token, kind=kind, address=address)
    return participant, {
        "type": "welcome", "participantId": str(participant.pk), "resumeToken": participant.resume_token,
        "resumed": resumed, **peer_rounds.state(task).fields(), "relayAllowed": task.allow_relay,
        "secure": task.aggregator == "secure", "maxShareValue": task.max_share_value,
        "iceServers": settings.DISCO_ICE_SERVERS, "deadlineSeconds": task.round_deadline_seconds,
        "currentVersion": task.current_version.number if task.current_version_id else None,
    }


def max_relay_bytes() -> int:
    """The largest relay frame: one part (1 MiB, or less when the task limit is smaller) + 64 KiB."""
    return min(RELAY_PART_BYTES, settings.DISCO_MAX_MODEL_BYTES) + RELAY_SLACK


def parse_relay(frame: bytes) -> tuple[dict[str, Any], int]:
    """The header of a relayed frame and where its payload starts; ``PeerRoundError`` when malformed."""
    if len(frame) > max_relay_bytes():
        raise PeerRoundError("too_large", f"The frame has {len(frame):,} bytes, over the limit of "
                                          f"{max_relay_bytes():,} for one relayed part: split payloads into parts "
                                          "of at most 1 MiB (\"part\", \"parts\").")
    try:
        header, payload = decode_relay_frame(frame)
    except RelayError as exc:
        raise PeerRoundError(exc.code, str(exc)) from None
    return header, len(frame) - len(payload)


def relay_frame(header: dict[str, Any], payload: bytes | memoryview) -> bytes:
    """``u32 LE n | JSON header | payload``: the relay's frame, both ways."""
    return encode_relay_frame(header, payload)


class SignallingConsumer(AdmittingConsumer):
    """One peer's connection to one decentralized task."""

    scheme = "decentralized"
    find_task = staticmethod(_find_task)
    join = staticmethod(_welcome)

    async def connect(self) -> None:
        """Admit the connection (task, participation rule); the peer joins with its first message."""
        await self.admit_connection()

    async def _join(self, text_data: str | None) -> None:
        welcome = await self.admit_participant(text_data)
        if welcome is None:
            return
        self.me = str(self.participant.pk)
        await self.channel_layer.group_add(peer_rounds.group_name(self.task.pk), self.channel_name)
        await self.channel_layer.group_add(peer_rounds.peer_group(self.me), self.channel_name)
        await self.send(text_data=json.dumps(welcome))

    async def disconnect(self, code: int) -> None:
        self.stop_join_timer()
        if self.task is None or self.participant is None:
            return
        await self.channel_layer.group_discard(peer_rounds.group_name(self.task.pk), self.channel_name)
        await self.channel_layer.group_discard(peer_rounds.peer_group(self.me), self.channel_name)
        await database_sync_to_async(peer_rounds.leave)(self.participant)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.task is None:
            return
        if self.participant is None:
            await self._join(text_data)
            return
        try:
            if bytes_data is not None:
                await self._relay(bytes_data)
            else:
                await self._control(text_data or "")
        except PeerRoundError as exc:
            await self.send_error(exc.code, str(exc))

    async def _control(self, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            raise PeerRoundError("bad_json", "Text frames must be JSON objects such as {\"type\": \"status\"}.") \
                from None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ready":
            await database_sync_to_async(peer_rounds.ready)(self.participant, message.get("round"),
                                                            message.get("publicKey"))
        elif kind == "received":
            await database_sync_to_async(peer_rounds.report_received)(self.participant, message.get("round"),
                                                                      message.get("peers"))
        elif kind == "done":
            await database_sync_to_async(peer_rounds.done)(self.participant, message.get("round"))
        elif kind == "signal":
            target = message.get("to")
            await database_sync_to_async(peer_rounds.check_signal_target)(self.participant, target)
            await self.channel_layer.group_send(peer_rounds.peer_group(target), {
                "type": "peer.signal", "from": self.me, "data": message.get("data")})
        elif kind == "status":
            state = await database_sync_to_async(peer_rounds.state)(self.task)
            await self.send(text_data=json.dumps({"type": "status", **state.fields()}))
        elif kind == "evaluation":
            try:
                reply = await database_sync_to_async(evaluations.record)(self.participant, message)
            except evaluations.EvaluationError as exc:
                reply = evaluations.refusal(exc)
            await self.send(text_data=json.dumps(reply))
        else:
            raise PeerRoundError("unknown_type", f"Unknown message type {kind!r}; send 'ready', 'signal', 'received', "
                                                 "'done', 'evaluation' or 'status' as text, or a relayed frame as "
                                                 "binary.")

    async def _relay(self, frame: bytes) -> None:
        header, offset = parse_relay(frame)
        target, number = header.get("to"), header.get("round")
        await database_sync_to_async(peer_rounds.check_relay)(self.participant, target, number)
        out = relay_frame({"from": self.me, "round": number, "kind": header["kind"], "part": header.get("part", 0),
                           "parts": header.get("parts", 1)}, memoryview(frame)[offset:])
        await self.channel_layer.group_send(peer_rounds.peer_group(target),
                                            {"type": "peer.relay", "frame": out})

    # Group events
    async def participants_changed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({**{k: v for k, v in event.items() if k != "type"},
                                              "type": "participants"}))

    async def peers_started(self, event: dict[str, Any]) -> None:
        if self.me in event["peers"]:
            await self.send(text_data=json.dumps({"type": "peers", "round": event["round"], "peers": event["peers"],
                                                  "deadline": event["deadline"],
                                                  "publicKeys": event.get("public_keys", {})}))

    async def peers_agreed(self, event: dict[str, Any]) -> None:
        if self.me in event["members"]:
            await self.send(text_data=json.dumps({"type": "agreed", "round": event["round"], "peers": event["peers"]}))

    async def round_closed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "round_closed", "round": event["round"],
                                              "nextRound": event["next_round"], "peers": event["peers"]}))

    async def round_evaluated(self, event: dict[str, Any]) -> None:
        """For the round dashboard (``observers``); peers are not told the others' scores."""

    async def peer_left(self, event: dict[str, Any]) -> None:
        if event["peer"] != self.me:
            await self.send(text_data=json.dumps({"type": "peer_left", "round": event["round"],
                                                  "peer": event["peer"]}))

    async def peer_signal(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "signal", "from": event["from"], "data": event["data"]}))

    async def peer_relay(self, event: dict[str, Any]) -> None:
        await self.send(bytes_data=event["frame"])
