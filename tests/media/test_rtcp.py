from __future__ import annotations

import pytest

from media import rtcp
from media.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStatistics,
    ReportBlock,
    SenderReport,
    SourceDescription,
)
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from tests.media.conftest import LOOPBACK, RecordingHandler, wait_for


def test_compound_packet_round_trip() -> None:
    block = ReportBlock(0x11, 25, -3, 70000, 42, 0xAABBCCDD, 65536)
    packets: list[rtcp.RtcpPacket] = [
        SenderReport(0x22, rtcp.ntp_timestamp(1_700_000_000.5), 1234, 50, 8000, (block,)),
        SourceDescription(((0x22, "voxgate-test"),)),
        Bye((0x22,)),
    ]
    data = b"".join(rtcp.serialize(p) for p in packets)
    assert len(data) % 4 == 0
    assert rtcp.parse_compound(data) == packets


def test_receiver_report_round_trip() -> None:
    report = ReceiverReport(7, (ReportBlock(9, 0, 0, 100, 3),))
    assert rtcp.parse_compound(rtcp.serialize(report)) == [report]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc8", "too short"),
        (b"\x40\xc9\x00\x00", "version"),
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "exceeds"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x01", "shorter than its report count"),
    ],
)
def test_malformed_rtcp_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rtcp.parse_compound(data)


def test_reception_statistics_count_loss_across_wrap() -> None:
    stats = ReceptionStatistics(8000)
    sequences = [65530 + i for i in range(6)] + [0, 1, 3, 4]  # sequence 2 is lost
    for index, sequence in enumerate(sequences):
        stats.update(5, sequence & 0xFFFF, 160 * index, 0.02 * index)
    block = stats.report_block(1.0)
    assert block is not None
    assert block.highest_sequence == 65536 + 4
    assert block.cumulative_lost == 1
    assert block.fraction_lost == 256 * 1 // 11
    assert block.jitter == 0
    again = stats.report_block(2.0)
    assert again is not None
    assert again.fraction_lost == 0


def test_reception_jitter_follows_rfc3550_estimator() -> None:
    stats = ReceptionStatistics(8000)
    stats.update(1, 0, 0, 0.0)
    stats.update(1, 1, 160, 0.030)  # 10 ms late = 80 timestamp units
    assert stats.jitter == pytest.approx(80 / 16)


@pytest.mark.parametrize("mux", [False, True])
async def test_sessions_exchange_reports(port_pool: RtpPortPool, mux: bool) -> None:
    config = RtpSessionConfig(rtcp_mux=mux, rtcp_interval_s=0.2)
    a = await RtpSession.open_from_pool(port_pool, config, local_host=LOOPBACK)
    b = await RtpSession.open_from_pool(
        port_pool, config, local_host=LOOPBACK, remote=a.local_address
    )
    a.set_remote(b.local_address)
    try:
        a.attach(RecordingHandler())
        b.attach(RecordingHandler())
        await wait_for(
            lambda: (
                a.remote_report is not None
                and b.remote_report is not None
                and a.remote_report.highest_sequence > 0
                and a.round_trip_ms is not None
            )
        )
        report = a.remote_report
        assert report is not None
        assert report.ssrc == a.ssrc
        assert report.cumulative_lost == 0
        assert a.round_trip_ms is not None
        assert 0 <= a.round_trip_ms < 1000
        assert a.stats.rtcp_ignored == 0
    finally:
        await a.close()
        await b.close()
