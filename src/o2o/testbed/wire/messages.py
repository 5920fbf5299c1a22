"""The testbed's messages: one pydantic schema per message type, validated in full before any
node or controller state sees it (no extra or missing field, ranges checked, no NaN or infinity).

Who sends what (paper VI-A: the Control Layer's controller and the Execution Layer's edge nodes):

* node -> controller: ``time_req``, ``register``, ``heartbeat``, ``ready``, ``decision`` (what a
  node observed at a slot boundary and its action, the log's observation fields of paper IV-B),
  ``task_event`` (a task reached its destination, or ended with its outcome), ``episode_stats``;
* controller -> node: ``time_reply``, ``config``, ``peers``, ``prepare``, ``episode_start``,
  ``slot`` (the task the end devices hand over at the slot, with its draws), ``episode_end``,
  ``model``, ``shutdown``, ``reject``;
* node -> node, data link (one-way, FIFO): ``announce`` (a task joined the sender's send queue
  towards the receiver: the receiver's receiving queue l^r_ij grows), ``payload_begin``,
  ``chunk`` (with payload bytes), ``payload_end``, ``payload_abort``, ``cancel``, ``overload``;
* node -> node, probe link: ``probe`` / ``probe_answer``;
* node -> node, payload link (kernel-shaped links only, one-way): ``payload_begin``, ``chunk``,
  ``payload_end``, ``payload_abort``;
* trainer -> controller (admin): ``model`` / ``ready``.

``challenge`` and ``hello`` belong to the handshake of ``frames``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from o2o.core.episodes import SCHED_UNIFORMS
from o2o.testbed.wire.errors import MalformedMessage

MAX_NODES = 4096
# The frame size limit nodes are configured with (``NodeRuntime``): a large network's
# configuration fits; payload chunks are much smaller.
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


NodeIndex = Annotated[int, Field(ge=0, lt=MAX_NODES)]
EpisodeIndex = Annotated[int, Field(ge=0)]
SlotIndex = Annotated[int, Field(ge=0, le=10_000_000)]
Nonce = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Count = Annotated[int, Field(ge=0)]
Outcome = Literal["SUCCESS", "DROP", "EXECUTION_FAILURE", "TRANSMISSION_FAILURE"]


class Challenge(_Msg):
    type: Literal["challenge"] = "challenge"
    version: int
    nonce: Nonce


class Hello(_Msg):
    type: Literal["hello"] = "hello"
    version: int
    role: Literal["node", "peer", "probe", "payload", "admin"]
    node: NodeIndex | None = None
    nonce: Nonce


# ---- node -> controller
class Register(_Msg):
    type: Literal["register"] = "register"
    node: NodeIndex | None = None          # None: the controller assigns the lowest free index
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int, Field(ge=1, le=65535)]
    pid: Count


class TimeRequest(_Msg):
    type: Literal["time_req"] = "time_req"
    id: Count
    t_node: float


class Heartbeat(_Msg):
    type: Literal["heartbeat"] = "heartbeat"
    rejected: dict[str, Count] = {}


class Ready(_Msg):
    """Answer to ``prepare``: the node is connected to its alive peers, has loaded the model
    announced last (``model_version``, for drl) and built its scheduler; or ``error`` says why not."""

    type: Literal["ready"] = "ready"
    round: Count
    model_version: Annotated[int, Field(ge=1)] | None = None
    model_sha256: str | None = None
    error: Annotated[str, Field(max_length=2000)] | None = None


class Decision(_Msg):
    """What node ``node`` saw at the start of slot ``slot`` and what it decided (the log's
    observation fields: l_i and l^r_ij of paper IV-B and the peers' 1-bit overload flags of the
    action mask). ``slot = T`` is the boundary after the last slot."""

    type: Literal["decision"] = "decision"
    episode: EpisodeIndex
    slot: SlotIndex
    node: NodeIndex
    has_task: bool
    action: Count
    action_prob: Annotated[float, Field(ge=0, le=1)] | None = None
    exec_len: Count
    recv_len: list[Count]
    peer_overloaded: list[bool]
    received_at: float
    decided_at: float
    # With a task: every node's execution backlog as this node probed it (None: not probed)
    # and its own send backlogs, seconds (observation v2, o2o.core.decpomdp).
    peer_backlog_s: list[Annotated[float, Field(ge=0)] | None] | None = None
    send_backlog_s: list[Annotated[float, Field(ge=0)]] | None = None


class TaskEvent(_Msg):
    """A task reached its destination's execution queue (``arrived``) or ended (``end``).
    Times are on the controller clock; None where the stage did not happen."""

    type: Literal["task_event"] = "task_event"
    episode: EpisodeIndex
    slot: SlotIndex
    source: NodeIndex
    dest: NodeIndex
    kind: Literal["arrived", "end"]
    outcome: Outcome | None = None
    tx_start: float | None = None
    tx_end: float | None = None
    exec_arrive: float | None = None
    exec_start: float | None = None
    end_at: float | None = None


Transfer = tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(ge=0)]]


class EpisodeStats(_Msg):
    """Measurements of one node over one episode, for the benchmark: the lateness of each slot
    message it received, (size bytes, rate B/s, seconds) of each payload it received (start of
    the transfer at the sender to the last byte processed here), and of each payload it sent
    (start to its last chunk handed to the kernel)."""

    type: Literal["episode_stats"] = "episode_stats"
    episode: EpisodeIndex
    slot_lateness_s: list[float]
    transfers: list[Transfer]
    # The same seen by the sender: until its last chunk was handed to the kernel (user-space
    # pacing), or until the receiver's TCP had acknowledged every byte (kernel-shaped links).
    sent: list[Transfer] = []
    rejected: dict[str, Count] = {}


# ---- controller -> node
class PeerAddress(_Msg):
    node: NodeIndex
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int, Field(ge=1, le=65535)]


class NodeRuntime(_Msg):
    """How nodes run, pushed with the configuration."""

    heartbeat_s: Annotated[float, Field(gt=0)] = 0.1
    probe_timeout_s: Annotated[float, Field(gt=0)] = 0.05
    exec_mode: Literal["emulated", "compute"] = "emulated"
    compute_scale: Annotated[float, Field(gt=0)] = 1.0
    chunk_s: Annotated[float, Field(gt=0, le=1)] = 0.004
    # user: the sender paces each payload at r_ij itself; kernel: the link is shaped by the
    # kernel (``o2o.testbed.netns``), the sender writes at full speed on a payload connection
    # of its own, and the link is free once the receiver's TCP has acknowledged every byte.
    pacing: Literal["user", "kernel"] = "user"
    max_frame_bytes: Annotated[int, Field(ge=64 * 1024)] = DEFAULT_MAX_FRAME_BYTES


class Config(_Msg):
    type: Literal["config"] = "config"
    node: NodeIndex
    scenario: dict
    network: dict
    peers: list[PeerAddress]
    alive: list[NodeIndex]
    runtime: NodeRuntime


class TimeReply(_Msg):
    type: Literal["time_reply"] = "time_reply"
    id: Count
    t_node: float
    t_ctrl: float


class Peers(_Msg):
    type: Literal["peers"] = "peers"
    peers: list[PeerAddress]
    alive: list[NodeIndex]


# A tunable rule's parameters by name (``o2o.schedulers.TUNABLE``), e.g. the values ``o2o tune``
# chose on validation episodes; the node checks names and ranges when it builds the rule.
RuleParams = Annotated[dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], float],
                       Field(max_length=16)]


class Prepare(_Msg):
    """Between episodes: connect to the alive peers, load a pending model, build ``scheduler``
    (at ``params``, a tunable rule's values; None: its defaults), then answer ``ready`` with the
    same round."""

    type: Literal["prepare"] = "prepare"
    round: Count
    scheduler: Annotated[str, Field(min_length=1, max_length=64)]
    params: RuleParams | None = None


class EpisodeStart(_Msg):
    type: Literal["episode_start"] = "episode_start"
    episode: EpisodeIndex
    seed: int
    epoch: float                      # controller-clock time of the start of slot 0
    scheduler: Annotated[str, Field(min_length=1, max_length=64)]


class TaskSpec(_Msg):
    """One task as the end device hands it over, with the episode's draws for it
    (``o2o.core.episodes``), so the testbed runs the simulator's task sequence."""

    size_bytes: Annotated[float, Field(gt=0)]
    cycles: Annotated[float, Field(gt=0)]
    deadline_s: Annotated[float, Field(gt=0)]
    tx_fail_clock: Annotated[float, Field(ge=0)]
    exec_fail_clock: Annotated[float, Field(ge=0)]
    sched_u: Annotated[list[Annotated[float, Field(ge=0, lt=1)]],
                       Field(min_length=SCHED_UNIFORMS, max_length=SCHED_UNIFORMS)]


class Slot(_Msg):
    type: Literal["slot"] = "slot"
    episode: EpisodeIndex
    slot: SlotIndex
    task: TaskSpec | None = None


class EpisodeEnd(_Msg):
    type: Literal["episode_end"] = "episode_end"
    episode: EpisodeIndex


class ModelAvailable(_Msg):
    """A new model version is in the store: load it (checksum verified) before the next episode."""

    type: Literal["model"] = "model"
    store: Annotated[str, Field(min_length=1, max_length=4096)]
    version: Annotated[int, Field(ge=1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Shutdown(_Msg):
    type: Literal["shutdown"] = "shutdown"
    reason: Annotated[str, Field(max_length=2000)] = ""


class Reject(_Msg):
    type: Literal["reject"] = "reject"
    reason: Annotated[str, Field(max_length=2000)]


# ---- node <-> node
class Probe(_Msg):
    type: Literal["probe"] = "probe"
    id: Count


class ProbeAnswer(_Msg):
    """A peer's live state for the deciding node's rule: capacity F_j, failure rate alpha_j,
    execution backlog in seconds and the 1-bit overload flag of the action mask (paper IV-B)."""

    type: Literal["probe_answer"] = "probe_answer"
    id: Count
    capacity_hz: Annotated[float, Field(gt=0)]
    node_fail_rate: Annotated[float, Field(ge=0)]
    exec_backlog_s: Annotated[float, Field(ge=0)]
    overloaded: bool
    exec_len: Count


class _TaskRef(_Msg):
    episode: EpisodeIndex
    slot: SlotIndex
    source: NodeIndex


class Announce(_TaskRef):
    """The task joined the sender's send queue towards the receiver (a receiving queue grows)."""

    type: Literal["announce"] = "announce"


class PayloadBegin(_TaskRef):
    type: Literal["payload_begin"] = "payload_begin"
    size_bytes: Annotated[int, Field(gt=0)]
    task_size_bytes: Annotated[float, Field(gt=0)]
    cycles: Annotated[float, Field(gt=0)]
    deadline_s: Annotated[float, Field(gt=0)]
    due: float
    exec_fail_clock: Annotated[float, Field(ge=0)]
    tx_start: float


class Chunk(_TaskRef):
    type: Literal["chunk"] = "chunk"


class PayloadEnd(_TaskRef):
    type: Literal["payload_end"] = "payload_end"


class PayloadAbort(_TaskRef):
    """The link failed during the transfer (its failure clock ran out inside the stage, paper
    III-A, eq. 5): the payload will not complete."""

    type: Literal["payload_abort"] = "payload_abort"


class Cancel(_TaskRef):
    """The task left the send queue without a transfer: dropped at its head because it could no
    longer meet its deadline (paper III-B, eq. 8)."""

    type: Literal["cancel"] = "cancel"


class Overload(_Msg):
    """The sender's 1-bit overload flag changed (pushed to every peer)."""

    type: Literal["overload"] = "overload"
    flag: bool


Message = Annotated[Union[
    Challenge, Hello, Register, TimeRequest, Heartbeat, Ready, Decision, TaskEvent, EpisodeStats,
    Config, TimeReply, Peers, Prepare, EpisodeStart, Slot, EpisodeEnd, ModelAvailable, Shutdown, Reject,
    Probe, ProbeAnswer, Announce, PayloadBegin, Chunk, PayloadEnd, PayloadAbort, Cancel, Overload,
], Field(discriminator="type")]

_MESSAGE = TypeAdapter(Message)


def parse_message(header: bytes):
    """A validated message from its JSON header, or ``MalformedMessage``."""
    try:
        return _MESSAGE.validate_json(header)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise MalformedMessage(f"{where}: {first['msg']} ({err.error_count()} error(s))") from None


def encode_message(msg: _Msg) -> bytes:
    return msg.__pydantic_serializer__.to_json(msg)

