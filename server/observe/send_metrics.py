"""The metric families of send batching (server/media/send_batch.py): how the forwarded
RTP datagrams left, from the counts every room's outboxes keep (`send_batch.COUNTS`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily

# (the label, the count it reads)
PATHS = (("gso", "gso"), ("single", "single"), ("transport", "to_transport"),
         ("dropped", "dropped"))  # fmt: skip


def families(counts: Mapping[str, int]) -> Iterator[CounterMetricFamily]:
    sent = CounterMetricFamily(
        "callassist_media_datagrams_sent",
        "Forwarded RTP datagrams by how they left (media.send_batching): gso (in one "
        "sendmsg with others), single, transport (the transport's own path from a batch: "
        "socket full or GSO refused), dropped (its transport closed first).",
        labels=["path"],
    )
    for path, kind in PATHS:
        sent.add_metric([path], counts.get(kind, 0))
    yield sent
    yield CounterMetricFamily(
        "callassist_media_gso_sendmsg", "sendmsg calls that carried several datagrams.",
        value=counts.get("gso_calls", 0),
    )
    yield CounterMetricFamily(
        "callassist_media_gso_refused",
        "Subscribers whose kernel refused UDP GSO (they send one datagram at a time).",
        value=counts.get("gso_refused", 0),
    )
