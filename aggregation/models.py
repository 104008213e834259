"""Federated rounds: who takes part, each round's state, and each participant's stored update."""

from __future__ import annotations

import uuid

from django.db import models

from tasks.models import ModelVersion, Task


class Participant(models.Model):
    """One participant's membership of a task; the resume token lets it reconnect as itself."""

    class Kind(models.TextChoices):
        BROWSER = "browser", "Browser"
        PYTHON = "python", "Python client"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="participants")
    resume_token = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BROWSER)
    connected = models.BooleanField(default=True)
    address = models.GenericIPAddressField(null=True, blank=True, help_text="The client address it connected from "
                                                                           "last (for the per-address cap).")
    joined_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)
    # Participant sampling (the task's participants_per_round): those invited least recently go first.
    last_invited_round = models.PositiveIntegerField(null=True, blank=True, help_text="The last federated round it "
                                                     "was invited to (sampled tasks); empty: never invited.")

    class Meta:
        indexes = [models.Index(fields=["task", "connected"]),
                   models.Index(fields=["connected", "last_seen"], name="participant_silent")]

    def __str__(self) -> str:
        return f"{self.task_id}/{str(self.id)[:8]}"


class Round(models.Model):
    """A federated round: updates arrive against ``base_version`` until the quorum closes it.

    ``open`` -> ``aggregating`` -> ``closed`` (its result became the current version), ``superseded``
    (its result is stored as ``result_version`` but another version became current during the round:
    a rollback or an upload) or ``failed`` (nothing written). ``message`` says why it ended so.
    Only ``aggregation.rounds`` changes a round's status.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        AGGREGATING = "aggregating", "Aggregating"
        CLOSED = "closed", "Closed"
        SUPERSEDED = "superseded", "Superseded"
        FAILED = "failed", "Failed"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    # Null only for a finished round whose base version was pruned (manage.py prune_versions never
    # deletes the base of an open or aggregating round).
    base_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)
    deadline = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    result_version = models.OneToOneField(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="+")
    message = models.TextField(blank=True, help_text="The round's outcome in plain words: what it produced, or why "
                                                     "it failed or was superseded.")
    # Set when the round starts aggregating and again at each re-queue: the sweeper gives an aggregation
    # DISCO_AGGREGATION_STUCK_AFTER seconds from here, re-queues it once, then fails the round.
    aggregating_since = models.DateTimeField(null=True, blank=True)
    aggregation_attempts = models.PositiveSmallIntegerField(default=0, help_text="Re-queues by the sweeper.")
    # Recorded when the round stops taking updates (aggregating, or failed while open): the stored updates
    # of old rounds are pruned (DISCO_KEEP_CONTRIBUTION_ROUNDS), their tally stays. Null: still open.
    contributors = models.PositiveIntegerField(null=True, blank=True, help_text="Updates the round took.")
    bytes_received = models.BigIntegerField(null=True, blank=True, help_text="Bytes of the updates the round took.")
    aggregator = models.CharField(max_length=64, blank=True, help_text="The aggregator that produced the result.")
    # Participant sampling: the ids of the participants invited to send an update (chosen when the round opens,
    # then late joiners while there is room). Null: everyone is invited (the task samples no one).
    invited = models.JSONField(null=True, blank=True, help_text="Participant ids invited to the round; empty: "
                                                                "everyone (no participants-per-round setting).")
    # Federated evaluation: the sample-weighted validation metrics participants report on the result.
    val_loss = models.FloatField(null=True, blank=True)
    val_accuracy = models.FloatField(null=True, blank=True)
    val_samples = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["task", "-number"]
        indexes = [models.Index(fields=["status", "deadline"], name="round_status_deadline")]
        constraints = [
            models.UniqueConstraint(fields=["task", "number"], name="unique_round_number_per_task"),
            models.UniqueConstraint(fields=["task"], condition=models.Q(status__in=["open", "aggregating"]),
                                    name="one_active_round_per_task"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} round {self.number} ({self.status})"


class Contribution(models.Model):
    """One participant's update to one round; the frame itself lives in media storage."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="contributions")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="contributions")
    samples = models.PositiveIntegerField()
    blob = models.CharField(max_length=300, help_text="Path of the weight frame in media storage.")
    nbytes = models.BigIntegerField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_at"]
        constraints = [models.UniqueConstraint(fields=["round", "participant"], name="one_update_per_round")]

    def __str__(self) -> str:
        return f"{self.participant} -> round {self.round.number}"


class PeerRound(models.Model):
    """A decentralized round: the server only records who took part and when; no weights ever.

    ``open`` collects ready peers; at quorum the round is ``exchanging`` (its peers trade updates
    among themselves) and the next round opens at once for peers that finish or join meanwhile;
    ``closed`` when every peer reported done or the exchange deadline passed.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        EXCHANGING = "exchanging", "Exchanging"
        CLOSED = "closed", "Closed"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="peer_rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)
    ready_deadline = models.DateTimeField(null=True, blank=True,
                                          help_text="The first ready peer's time plus the task's round deadline.")
    started_at = models.DateTimeField(null=True, blank=True)
    exchange_deadline = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    agreed = models.JSONField(null=True, blank=True, help_text="The peers whose updates every remaining peer holds: "
                                                               "the round's mean is theirs (peer ids only).")
    message = models.TextField(blank=True)
    # Federated evaluation: the sample-weighted validation metrics the peers report after the round.
    val_loss = models.FloatField(null=True, blank=True)
    val_accuracy = models.FloatField(null=True, blank=True)
    val_samples = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["task", "-number"]
        indexes = [models.Index(fields=["status"], name="peer_round_status")]  # the sweeper's due rounds
        constraints = [
            models.UniqueConstraint(fields=["task", "number"], name="unique_peer_round_number_per_task"),
            models.UniqueConstraint(fields=["task"], condition=models.Q(status="open"),
                                    name="one_open_peer_round_per_task"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} peer round {self.number} ({self.status})"


class PeerTurn(models.Model):
    """One participant's part in one decentralized round: when it was ready, chosen, done or gone."""

    round = models.ForeignKey(PeerRound, on_delete=models.CASCADE, related_name="turns")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="peer_turns")
    ready_at = models.DateTimeField(auto_now_add=True)
    selected = models.BooleanField(default=False, help_text="In the round's peer list.")
    done_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)
    received = models.JSONField(null=True, blank=True, help_text="The peers whose updates it reported holding.")
    public_key = models.CharField(max_length=100, blank=True, default="",
                                  help_text="The peer's ephemeral ECDH P-256 public key for this round (base64; "
                                            "public, forwarded with the peer list).")

    class Meta:
        ordering = ["round", "participant_id"]
        constraints = [models.UniqueConstraint(fields=["round", "participant"], name="one_turn_per_peer_round")]

    def __str__(self) -> str:
        return f"{self.participant} in peer round {self.round.number}"


class ServerOptimizerState(models.Model):
    """A federated task's server optimizer state between rounds (FedAvgM's momentum, FedAdam's moments).

    The arrays live in media storage (``blob``, a ``numpy.savez`` file read without pickle); the row
    says which optimizer made them and which version their last step produced. Only
    ``aggregation.rounds.finish`` writes it, in the transaction that makes that version current,
    so a superseded or failed round never advances it; a round whose base is another version (a
    rollback, an upload) starts the state afresh (``aggregation.optimizer_state``).
    """

    task = models.OneToOneField(Task, primary_key=True, on_delete=models.CASCADE,
                                related_name="server_optimizer_state")
    optimizer = models.CharField(max_length=32, help_text="The server optimizer whose state this is.")
    version = models.ForeignKey(ModelVersion, null=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="The version the last step produced: the next step must start from it.")
    steps = models.PositiveIntegerField(default=0, help_text="Steps since the state was last reset.")
    blob = models.CharField(max_length=300, help_text="Path of the state's arrays (.npz) in media storage.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.task_id} {self.optimizer} state ({self.steps} steps)"


class Evaluation(models.Model):
    """One participant's report on one finished round: the round's model scored on its own validation split.

    Numbers only (the loss, the accuracy if the model has one, the sample count, clamped as updates are);
    never data. Exactly one of ``round`` (federated) and ``peer_round`` (decentralized) is set.
    ``aggregation.evaluations`` writes these rows and keeps the round's ``val_*`` columns their
    sample-weighted mean. The participant is kept as null when its row is pruned, so a later report
    still averages with every earlier one.
    """

    round = models.ForeignKey(Round, null=True, blank=True, on_delete=models.CASCADE, related_name="evaluations")
    peer_round = models.ForeignKey(PeerRound, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="evaluations")
    participant = models.ForeignKey(Participant, null=True, on_delete=models.SET_NULL, related_name="evaluations")
    loss = models.FloatField()
    accuracy = models.FloatField(null=True, blank=True)
    samples = models.PositiveIntegerField(help_text="Validation samples, clamped to the task's maxSamplesPerUpdate.")
    reported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["reported_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(round__isnull=False, peer_round__isnull=True)
                                   | models.Q(round__isnull=True, peer_round__isnull=False),
                                   name="evaluation_of_one_round"),
            models.UniqueConstraint(fields=["round", "participant"], name="one_evaluation_per_round"),
            models.UniqueConstraint(fields=["peer_round", "participant"], name="one_evaluation_per_peer_round"),
        ]

    def __str__(self) -> str:
        which = self.round or self.peer_round
        return f"{self.participant_id} evaluated {which}"
