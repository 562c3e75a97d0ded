"""Performance metrics (issue 14): sampling into round-robin archives as xcp-rrdd keeps
them, and the formats they are read in.

    service.py   MetricsService: the sampling loop, the archives, queries
    collect.py   the host's /proc counters and the domains' counters -> xapi's values
    archive.py   one owner's rrdtool file and the names of its data sources
    sources.py   xapi's data source names, descriptions, units, standard or not
    formats.py   rrd_updates XML/JSON, full RRD dumps, Prometheus/OpenMetrics text
"""
from .service import MetricsService, NoData, Updates

__all__ = ["MetricsService", "NoData", "Updates"]
