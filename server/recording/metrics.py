"""The recording feature's metrics (callassist_recording*, callassist_photos*), registered
with the app's registry through `Metrics.add_collector` by server.recording.service."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from recorder.spool import SpoolStats
from server.recording.service import RecordingService

# --- metrics: this feature owns every callassist_recording*/callassist_photos* family;
# setup() hands collect_metrics to server/observe/metrics.py (Metrics.add_collector).


def collect_metrics(s: RecordingService) -> Iterator[Metric]:
    """Read at scrape time. Every family is always there (zeros before the service starts),
    because add_collector checks the names once at registration."""
    c = s.counters
    g = GaugeMetricFamily("callassist_recordings_active", "Recordings in progress.")
    g.add_metric([], len(s.active))
    yield g
    rec = CounterMetricFamily("callassist_recordings", "Recordings by outcome.",
                              labels=["outcome"])  # fmt: skip
    for outcome, n in (("started", c.started), ("completed", c.completed),
                       ("failed", c.failed), ("recovered", c.recovered)):  # fmt: skip
        rec.add_metric([outcome], n)
    yield rec
    written = c.bytes + sum(a.recorder.stats.bytes_cipher for a in list(s.active.values()))
    st = s.spool.stats if s.spool is not None else SpoolStats()
    for name, doc, value in (
        ("callassist_recording_bytes", "Encrypted recording bytes written to the spool "
         "(header, segments, manifest).", written),
        ("callassist_recording_segments", "Segments stored (spooled).", c.segments),
        ("callassist_recording_segments_lost", "Segments that could not be stored.",
         c.segments_lost),
        ("callassist_recording_frames", "Video frames recorded.", c.frames),
        ("callassist_recording_frames_lost", "Video frames lost by the recorder.",
         c.frames_lost),
        ("callassist_recording_upload_failures", "Failed upload attempts to the storage "
         "(S3); each is retried.", c.upload_failures),
        ("callassist_recording_spool_over_limit", "Times the spool went over its limit.",
         c.spool_over_limit),
        ("callassist_recording_uploaded_bytes", "Ciphertext bytes uploaded to the storage.",
         st.uploaded_bytes),
    ):  # fmt: skip
        fam = CounterMetricFamily(name, doc)
        fam.add_metric([], value)
        yield fam
    for name, doc, value in (
        ("callassist_recording_spool_bytes", "Ciphertext waiting in the spool.",
         st.size_bytes),
        ("callassist_recording_spool_objects", "Objects waiting for upload.", st.pending),
        ("callassist_recording_spool_over", "1 while the spool is over its limit.",
         int(st.over_limit)),
    ):  # fmt: skip
        gauge = GaugeMetricFamily(name, doc)
        gauge.add_metric([], value)
        yield gauge
    photos = CounterMetricFamily("callassist_photos", "Photos stored, by kind.",
                                 labels=["kind"])  # fmt: skip
    for kind in ("snapshot", "upload"):
        photos.add_metric([kind], c.photos[kind])
    yield photos
    refused = CounterMetricFamily("callassist_photos_refused", "Photo uploads refused.",
                                  labels=["code"])  # fmt: skip
    for code, n in sorted(c.photos_refused.items()):
        refused.add_metric([code], n)
    yield refused
